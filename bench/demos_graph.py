#!/usr/bin/env python3
"""Issue 7's learning evidence through the ROS graph: sparse reach with scripted-operator demos
vs no demo rows at all. Budgets are fixed here, before anything runs (DESIGN §8).

Per seed and arm, one run directory ``<root>/<arm>_s<seed>/``:

* ``demos``: first ``robot-rl up sim --demos --scripted-operator`` (two robots, real time, no
  learner) records demonstrations until the actors made ``DEMO_STEPS`` env steps (19-25 episodes here) -- the
  scripted operator's marked episodes land whole as source=demo, discarded ones never do --
  then ``robot-rl up sim --resume`` trains on the same store for ``BUDGET`` env steps;
* ``nodemo``: the same training run on an empty store.

Training is identical in both arms: DDPGfD as in bench/learning.py's ``ddpgfd`` arm (5-step
returns mixed with 1-step, prioritized replay with the demo bonus, L2 on the critic, BC with a
Q-filter -- inactive without demo rows), sparse reward, ee_velocity
actions, two robots in lockstep with the learner gate (UTD 1), evaluation every ``EVAL_EVERY``
env steps on the fixed 50 seeded episodes through the safety filter.

    python bench/demos_graph.py --seeds 0 1 2          # runs what is missing (resumable)
    python bench/demos_graph.py --summary              # the table for docs/results.md
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from robot_rl.runner import _child_setup  # noqa: E402  (after the path)

ROBOT_RL = str(Path(sys.executable).parent / "robot-rl")

BUDGET = 12_000  # env steps of training (both robots together); the first experiment's budget
# A later experiment continues the same runs to a larger budget (``--budget``, fixed before it
# started): 30,000 env steps (session 3). The learner resumes exactly from its checkpoint on the
# same store, so a continued run is the run it would have been with the larger budget.
#: training variants (each its own experiment and root): ``ddpgfd`` as above; ``twin``: the same
#: with clipped double-Q (two critics, the target takes their minimum). Added in session 3,
#: fixed before it ran, after ``ddpgfd``'s demos_s0 collapsed from 64 % at 12k env steps to 0 %
#: from 18k on (the single critic's overestimation is the classic cause: the actor drives into
#: actions the critic over-values; TD3's twins are the standard remedy, and make sim's TD3 learns).
#: ``twin_clip`` (session 6, fixed before it ran): ``twin`` with the TD targets clipped into the
#: sparse returns' range (``agent.target_clip=auto`` -> [-100, 0], the learner's default since
#: session 5), after ``twin`` with 15 demo episodes ended at 85 % (76-94) and the in-process
#: clipped DDPGfD reached 100 % in every seed.
VARIANTS = {"ddpgfd": [], "twin": ["agent.twin_critics=true"],
            "twin_clip": ["agent.twin_critics=true", "agent.target_clip=auto"]}
STOP_MARGIN = 300  # env steps past the budget before stopping, so the evaluation at the budget
# itself is in eval.csv (the gated learner evaluates before it lets the actors go on)
DEMO_STEPS = 600  # env steps of demonstration recording (both robots): about 20 episodes
EVAL_EVERY = 2_000
COMMON = [
    "task.name=reach", "task.reward=sparse", "task.action_mode=ee_velocity",
    "safety.ee_speed_max=0.55", "sim.num_robots=2",
    "agent.algo=ddpgfd", "agent.n_step=5", "agent.demo_sampling=union",
    "replay.prioritized=true", "agent.critic_l2=1e-5", "agent.warmup_steps=1000",
    f"run.eval_every={EVAL_EVERY}", "run.eval_episodes=50",
    "agent.target_clip=null",  # as these experiments ran (before agent.target_clip=auto)
]


def _run(cmd: list[str], log: Path) -> int:
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        # PR_SET_PDEATHSIG: a killed bench stops its `robot-rl up` (which stops its nodes)
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
                              preexec_fn=_child_setup(0)).returncode


def _online_rows(run_dir: Path) -> tuple[int, int, int]:
    """(online env steps, demo rows, demo episodes) in the run's store."""
    from robot_rl.replay import ReplayReader

    r = ReplayReader(run_dir / "replay.zarr")
    src = r.read(0, len(r), ("source", "episode_id"))
    demo = src["source"] == 1
    return (int((~demo).sum()), int(demo.sum()),
            int(len(set(src["episode_id"][demo].tolist()))))


def run_one(root: Path, arm: str, seed: int, budget: int, variant: str = "ddpgfd",
            demo_episodes: int | None = None) -> None:
    name = f"{arm}_s{seed}"
    run_dir = root / name
    log = root / f"{name}.log"
    done = run_dir / "done.json"
    meta = json.loads(done.read_text()) if done.exists() else None
    if meta is not None and meta["budget"] >= budget:
        print(f"{name}: done already (budget {meta['budget']})", flush=True)
        return
    over = COMMON + VARIANTS[variant] + [f"run.seed={seed}", f"run.root={root}"]
    t0 = time.time()
    resume = []
    if arm == "demos":
        if not (run_dir / "replay.zarr").exists():
            stop = (["--max-demo-episodes", str(demo_episodes)] if demo_episodes else
                    ["--max-env-steps", str(DEMO_STEPS)])
            rc = _run([ROBOT_RL, "up", "sim", "--demos", "--scripted-operator", "--name", name,
                       *stop, *over], log)
            if rc != 0:
                raise RuntimeError(f"{name}: demo recording failed ({rc}); see {log}")
        resume = ["--resume"]
    elif run_dir.exists():
        resume = ["--resume"]
    t1 = time.time()
    done_steps = _online_rows(run_dir)[0] if (run_dir / "replay.zarr").exists() else 0
    # the first experiment stopped at exactly its budget; continuations stop STOP_MARGIN past it
    margin = 0 if budget == BUDGET else STOP_MARGIN
    left = budget + margin - done_steps
    if left > 0:
        rc = _run([ROBOT_RL, "up", "sim", "--name", name, *resume, "--max-env-steps", str(left),
                   "sim.clock=lockstep", *over], log)
        if rc != 0:
            raise RuntimeError(f"{name}: training failed ({rc}); see {log}")
    online, demo_rows, demo_eps = _online_rows(run_dir)
    record_s = meta["record_s"] if meta else round(t1 - t0, 1)
    train_s = (meta["train_s"] if meta else 0.0) + round(time.time() - t1, 1)
    history = (meta.get("history", []) if meta else []) + ([{k: meta[k] for k in (
        "budget", "train_s")}] if meta else [])
    done.write_text(json.dumps({
        "arm": arm, "seed": seed, "budget": budget, "online_env_steps": online,
        "demo_rows": demo_rows, "demo_episodes": demo_eps, "record_s": record_s,
        "train_s": round(train_s, 1), "history": history}) + "\n")
    print(f"{name}: done in {time.time() - t0:.0f} s ({online} online env steps)", flush=True)


def summary(root: Path, budget: int) -> dict:
    out: dict = {}
    for arm in ("demos", "nodemo"):
        finals, best, to90, walls, demos = [], [], [], [], []
        for d in sorted(root.glob(f"{arm}_s*")):
            if not (d / "done.json").exists():
                continue
            meta = json.loads((d / "done.json").read_text())
            if meta["budget"] < budget:
                continue
            with open(d / "eval.csv") as f:
                rows = [r for r in csv.DictReader(f) if int(r["env_steps"]) <= budget + 500]
            if not rows:
                continue
            finals.append(float(rows[-1]["success_rate"]))
            best.append(max(float(r["success_rate"]) for r in rows))
            hit = [int(r["env_steps"]) for r in rows if float(r["success_rate"]) >= 0.9]
            to90.append(hit[0] if hit else None)
            # wall-clock of training up to this budget (the first experiment's part if shorter)
            walls.append(next((h["train_s"] for h in meta.get("history", [])
                               if h["budget"] == budget), meta["train_s"]))
            demos.append((meta["demo_episodes"], meta["demo_rows"]))
        if finals:
            out[arm] = {"runs": len(finals), "final_success_mean": statistics.mean(finals),
                        "final_success_min": min(finals), "final_success_max": max(finals),
                        "best_success": best, "env_steps_to_90": to90, "train_wall_s": walls,
                        "demo_episodes_rows": demos}
    return out


def _curve(run_dir: Path, budget: int) -> tuple[list[int], list[float]]:
    with open(run_dir / "eval.csv") as f:
        rows = [r for r in csv.DictReader(f) if int(r["env_steps"]) <= budget + 500]
    return [int(r["env_steps"]) for r in rows], [100 * float(r["success_rate"]) for r in rows]


def plot(root: Path, budget: int, out: Path, reference: Path | None = None,
         reference_label: str = "single-critic DDPGfD, demos, seed 0") -> Path:
    """Success vs env steps of every finished run (demos solid, no demos dashed), the arms'
    means bold; ``reference``: one more curve drawn grey and dotted, ``reference_label`` in the
    legend -- a run directory (e.g. the single-critic run), or another experiment's root, whose
    demo arm's mean is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    for arm, color, style, label in (("demos", "tab:blue", "-", "scripted-operator demos"),
                                     ("nodemo", "tab:red", "--", "no demo rows")):
        curves = []
        for d in sorted(root.glob(f"{arm}_s*")):
            done = d / "done.json"
            if not done.exists() or json.loads(done.read_text())["budget"] < budget:
                continue
            x, y = _curve(d, budget)
            curves.append((x, y))
            ax.plot(x, y, style, color=color, alpha=0.35, lw=1)
        if curves:
            n = min(len(c[1]) for c in curves)
            mean = [statistics.mean(c[1][i] for c in curves) for i in range(n)]
            ax.plot(curves[0][0][:n], mean, style, color=color, lw=2.5,
                    label=f"{label} (mean of {len(curves)} seeds; thin: each seed)")
    if reference is not None:
        runs = ([reference] if (reference / "eval.csv").exists() else
                [d for d in sorted(reference.glob("demos_s*")) if (d / "eval.csv").exists()])
        if not runs:
            raise ValueError(f"--reference: no eval.csv in {reference} or its demos_s*/")
        curves = [_curve(d, budget) for d in runs]
        n = min(len(c[1]) for c in curves)
        ax.plot(curves[0][0][:n], [statistics.mean(c[1][i] for c in curves) for i in range(n)],
                ":", color="grey", lw=1.5, label=reference_label)
    ax.axhline(90, color="k", lw=0.6, alpha=0.5)
    ax.set_xlabel("env steps (both robots)")
    ax.set_ylabel("eval success, 50 fixed episodes (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("sparse reach through the ROS 2 graph (2 robots, lockstep, UTD 1)", fontsize=10)
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="ddpgfd")
    ap.add_argument("--root", default=None,
                    help="default: runs/exp_demos_graph (ddpgfd) or runs/exp_demos_graph_<variant>")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["demos", "nodemo"])
    ap.add_argument("--budget", type=int, default=BUDGET,
                    help=f"env steps of training per run (default {BUDGET}); a larger one continues "
                    "finished runs from their checkpoints")
    ap.add_argument("--demo-episodes", type=int, default=None, metavar="N",
                    help="record until N demo episodes are stored (robot-rl up "
                    "--max-demo-episodes) instead of for DEMO_STEPS env steps; give such an "
                    "experiment its own --root")
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--plot", metavar="PNG", help="draw the finished runs' curves into PNG")
    ap.add_argument("--reference", metavar="RUN_DIR",
                    help="with --plot: one more curve drawn grey and dotted: a run directory, "
                    "or an experiment's root (the mean of its demos_s* runs)")
    ap.add_argument("--reference-label", default="single-critic DDPGfD, demos, seed 0",
                    help="with --reference: its legend entry")
    args = ap.parse_args(argv)
    if args.demo_episodes is not None and args.demo_episodes < 1:
        ap.error(f"--demo-episodes: expected >= 1, got {args.demo_episodes}")
    root = Path(args.root or REPO / "runs" / ("exp_demos_graph" if args.variant == "ddpgfd"
                                              else f"exp_demos_graph_{args.variant}")).absolute()
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if args.plot:
        print(plot(root, args.budget, Path(args.plot),
                   Path(args.reference) if args.reference else None, args.reference_label))
        return 0
    if args.summary:
        print(json.dumps({"budget_env_steps": args.budget,
                          "demo_recording": (f"{args.demo_episodes} episodes" if args.demo_episodes
                                             else f"{DEMO_STEPS} env steps"),
                          "config": COMMON + VARIANTS[args.variant], **summary(root, args.budget)}, indent=1))
        return 0
    for seed in args.seeds:
        for arm in args.arms:
            run_one(root, arm, seed, args.budget, args.variant, args.demo_episodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
