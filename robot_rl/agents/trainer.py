"""The in-process trainer: gym env -> replay store -> sampler -> learner, in one process.

The fastest loop for algorithm work and the reference for the ROS graph: the same pieces, in
the same order, without DDS in between -- the behaviour policy of every actor node
(:class:`~robot_rl.agents.acting.BehaviourPolicy`) and the learner node's training loop
(:class:`~robot_rl.agents.loop.TrainingLoop`)::

    env.step(BehaviourPolicy(s))  ->  ReplayWriter.append(Transition)   (source=policy)
    TrainingLoop.env_step()       ->  the updates the step earned: Learner.step(sampler batch)
                                      (+ PER priorities), sampled from the rows of past episodes
    episode end                   ->  ReplayWriter.flush(); TrainingLoop.join() (the episode
                                      joins the pool); a checkpoint when one is due

Transitions go through the real replay store (``runs/<name>/replay.zarr``) and the learner's
mirror of it, never a private buffer. Scripted demonstrations (``run.demo_episodes``) are
appended as whole episodes with ``source=demo`` before training starts.

``runs/<name>/`` receives::

    config.yaml          the resolved configuration
    provenance.json      git commit, package versions, machine, command line, start time
    progress.csv         one row per run.log_every env steps (returns, success, rates, losses)
    eval.csv             one row per evaluation (DESIGN §8: deterministic policy, a fixed list
                         of run.eval_episodes seeded episodes: seeds run.eval_seed + i)
    tb/events.out.tfevents.*   the same scalars for TensorBoard
    checkpoints/ckpt_<env steps>.safetensors (+ .json)   see robot_rl.agents.checkpoint
    policy.safetensors   the latest policy alone (the PolicyWeights payload)
    replay.zarr/         the replay store

Evaluation success is ``info["is_success"]`` at the last step of an episode (an episode ends on
success when ``task.terminate_on_success``, else at the time limit).
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from robot_rl.config import Config, config_from_dict

DEMO_SESSION = 0xDE30  # actor_session of scripted demonstrations
DEMO_SEED = 2_000_000  # demo episode i is reset with seed DEMO_SEED + i


@dataclass
class EvalResult:
    """Evaluation of a deterministic policy on a fixed list of seeded episodes."""

    episodes: int
    success_rate: float
    mean_return: float
    mean_final_distance: float
    seeds: tuple[int, int]  # first seed, last seed (inclusive)
    wall_s: float


def evaluate(policy: Callable[[np.ndarray], np.ndarray], env: Any, episodes: int,
             seed: int) -> EvalResult:
    """Run ``policy`` (observation -> action, no noise) for ``episodes`` episodes reset with
    seeds ``seed, seed + 1, ...``; success = ``info["is_success"]`` when the episode ends."""
    if episodes < 1:
        raise ValueError(f"run.eval_episodes: expected >= 1, got {episodes}")
    t0 = time.perf_counter()
    succ, rets, dists = 0, [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, ret, info = False, 0.0, {}
        while not done:
            obs, r, term, trunc, info = env.step(np.asarray(policy(obs), dtype=np.float32))
            ret += r
            done = term or trunc
        succ += bool(info.get("is_success"))
        rets.append(ret)
        dists.append(float(info.get("distance", math.nan)))
    return EvalResult(episodes, succ / episodes, float(np.mean(rets)), float(np.mean(dists)),
                      (seed, seed + episodes - 1), time.perf_counter() - t0)


class _Csv:
    """Appends rows to ``path``; an existing file keeps its own header (columns added since it
    was written stay out of it, so a resumed old run's CSV stays aligned)."""

    def __init__(self, path: Path, fields: list[str]) -> None:
        new = not path.exists() or path.stat().st_size == 0
        if not new:
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            fields = header or fields
        self.fields = fields
        self.f = open(path, "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields, extrasaction="ignore")
        if new:
            self.w.writeheader()

    def row(self, d: dict[str, Any]) -> None:
        self.w.writerow({k: d.get(k, "") for k in self.fields})
        self.f.flush()

    def close(self) -> None:
        self.f.close()


PROGRESS_FIELDS = ["env_steps", "episodes", "updates", "wall_s", "episode_return",
                   "episode_success", "episode_length", "env_steps_per_s", "updates_per_s",
                   "exploration_std", "critic_loss", "actor_loss", "q_mean", "td_abs", "bc_loss",
                   "q_filter_pass", "entropy", "actor_saturation", "alpha", "q_std",
                   "temperature_loss"]

EVAL_FIELDS = ["env_steps", "updates", "wall_s", "success_rate", "mean_return",
               "mean_final_distance", "episodes", "first_seed", "snapshot_unix", "time_unix"]


@dataclass
class TrainResult:
    run_dir: str
    env_steps: int
    updates: int
    episodes: int
    wall_s: float
    final_eval: dict[str, Any] | None
    checkpoint: str | None


def _record_demos(env: Any, writer: Any, cfg: Config, n: int) -> dict[str, int]:
    """Append ``n`` scripted episodes (source=demo) as whole episodes: :class:`ScriptedReacher`
    for reach, :class:`ScriptedPusher` for push."""
    from robot_rl.replay.schema import Source, empty_columns
    from robot_rl.sim.scripted import ScriptedPusher, ScriptedReacher

    if cfg.task.name == "reach":
        reacher = ScriptedReacher(env.mapper, profile=cfg.robot)
    elif cfg.task.name == "push":
        reacher = ScriptedPusher(env.mapper, object_size=cfg.task.object_size, profile=cfg.robot)
    else:
        raise ValueError(f"run.demo_episodes: no scripted demonstrator for task.name="
                         f"{cfg.task.name!r} (reach and push have one)")
    seq, successes, rows = 0, 0, 0
    for i in range(n):
        obs, _ = env.reset(seed=DEMO_SEED + i)
        steps: list[tuple] = []
        done = False
        info: dict[str, Any] = {}
        while not done:
            a = np.clip(reacher(env.snapshot()), -1.0, 1.0).astype(np.float32)
            nobs, r, term, trunc, info = env.step(a)
            steps.append((obs, a, nobs, r, term, trunc))
            obs = nobs
            done = term or trunc
        k = len(steps)
        cols = empty_columns(k, env.observation_space.shape[0], env.action_space.shape[0])
        for j, (o, a, no, r, te, tr) in enumerate(steps):
            cols["observation"][j], cols["action"][j], cols["next_observation"][j] = o, a, no
            cols["reward"][j], cols["terminated"][j], cols["truncated"][j] = r, te, tr
        cols["source"][:] = Source.DEMO
        cols["robot_id"][:] = 0
        cols["actor_session"][:] = DEMO_SESSION
        cols["seq"][:] = np.arange(seq, seq + k)
        cols["episode_id"][:] = i
        cols["step_index"][:] = np.arange(k)
        res = writer.append_episode(cols)
        seq += k
        rows += res.accepted
        successes += bool(info.get("is_success"))
    return {"episodes": n, "rows": rows, "successes": successes}


def _next_episode_id(store: Path) -> int:
    from robot_rl.replay import ReplayReader

    r = ReplayReader(store)
    n = len(r)
    if n == 0:
        return 0
    return int(r.read(0, n, ("episode_id",))["episode_id"].max()) + 1


def train(cfg: Config, *, resume: bool = False, log: Callable[[str], None] | None = None,
          argv: list[str] | None = None) -> TrainResult:
    """Train ``cfg.agent`` on the gym env of ``cfg.task`` for ``cfg.run.total_steps`` env steps.

    ``resume``: continue from the newest checkpoint in ``runs/<name>/checkpoints`` (weights,
    optimisers, normaliser, counters, noise and RNG states, sampler priorities); rows the store
    got after that checkpoint stay in it and are sampled. Without ``resume`` an existing run
    directory with a store is refused.
    """
    import torch

    from robot_rl import provenance as prov
    from robot_rl.agents.checkpoint import (
        export_policy,
        latest_checkpoint,
        load_checkpoint,
        save_checkpoint,
        write_atomic,
    )
    from robot_rl.agents.acting import BehaviourPolicy, LearnerPolicy
    from robot_rl.agents.config import learner_config
    from robot_rl.agents.learning import SATURATION_WARN, Learner, saturation_message
    from robot_rl.agents.loop import Every, TrainingLoop
    from robot_rl.agents.networks import resolve_device, set_torch_threads
    from robot_rl.agents.tblog import EventWriter
    from robot_rl.replay import ReplayMirror, ReplaySampler, ReplayWriter

    log = log or (lambda s: print(s, flush=True))
    run, agent = cfg.run, cfg.agent
    run_dir = Path(run.run_dir)
    store_path = run_dir / "replay.zarr"
    ckpt_dir = run_dir / "checkpoints"
    ckpt = latest_checkpoint(ckpt_dir) if resume else None
    if resume and ckpt is None:
        raise ValueError(f"--resume: no checkpoint in {ckpt_dir}")
    if not resume and store_path.exists():
        raise ValueError(f"run.name: {run_dir} already holds a run (replay.zarr); pick another "
                         "run.name or pass --resume")
    if run.demo_episodes and agent.demo_sampling == "fixed" and agent.demo_fraction == 0:
        raise ValueError("agent.demo_fraction: run.demo_episodes > 0 but demo_fraction is 0 with "
                         "demo_sampling=fixed, so no demo row would ever be sampled; set "
                         "agent.demo_fraction (e.g. 0.5) or agent.demo_sampling=union")
    run_dir.mkdir(parents=True, exist_ok=True)
    threads = set_torch_threads(agent.torch_threads)
    device = resolve_device(agent.device)
    t_start = time.time()
    from robot_rl.sim.env import PandaEnv  # pybullet: imported once the arguments are checked

    # run.train_through_safety: both act through the safety node's filter as the graph does
    env = PandaEnv(cfg, safety=run.train_through_safety)
    eval_env = PandaEnv(cfg, safety=run.train_through_safety)
    obs_spec, act_spec = env.task.obs_spec, env.mapper.spec
    low = act_spec.low.astype(np.float32)
    high = act_spec.high.astype(np.float32)
    lcfg = learner_config(agent, cfg.replay)
    learner = Learner(lcfg, obs_spec.dim, act_spec.dim, action_low=low, action_high=high,
                      device=device, seed=run.seed, observation=obs_spec)
    writer = ReplayWriter(store_path, obs_spec, act_spec, cfg.replay)
    try:
        demo_info = None
        if run.demo_episodes and not resume:
            demo_info = _record_demos(env, writer, cfg, run.demo_episodes)
            log(f"# demos: {demo_info['episodes']} scripted episodes, {demo_info['rows']} rows, "
                f"{demo_info['successes']} successful")
        demo_fraction = None if agent.demo_sampling == "union" else agent.demo_fraction
        her = None
        if agent.her != "none":
            from robot_rl.replay.her import relabeler_for_task

            her = relabeler_for_task(env.task, agent.her, agent.her_k)
            log(f"# {her.describe()}")
        sampler = ReplaySampler(ReplayMirror(store_path, cfg.replay.capacity), gamma=agent.gamma,
                                n_step=agent.n_step, demo_fraction=demo_fraction,
                                config=cfg.replay, seed=run.seed + 3, her=her)
        # noise seeded run.seed + 4, warm-up actions and Gaussian draws run.seed + 5
        behaviour = BehaviourPolicy(agent, low, high, seed=run.seed + 4,
                                    warmup=agent.warmup_steps)
        policy = LearnerPolicy(learner)
        # the in-process trainer always caps (agent.utd_pacing is the learner node's): nothing
        # runs beside its updates that they could make room for
        loop = TrainingLoop(learner, sampler, utd_ratio=agent.utd_ratio,
                            warmup_steps=agent.warmup_steps, device=device,
                            eval_every=run.eval_every, checkpoint_dir=ckpt_dir,
                            checkpoint_every_steps=run.checkpoint_every or None)
        steps = episodes = 0
        session = 1
        episode_id = run.demo_episodes
        seq = 0
        if ckpt is not None:
            meta = load_checkpoint(ckpt, learner, sampler=sampler)
            ex = meta["extra"]
            steps, episodes = ex["env_steps"], ex["episodes"]
            loop.restore(env_steps=steps, updates_done=ex["updates_done"])
            session = ex["actor_session"] + 1
            behaviour.set_state({"noise": ex["noise"], "rng": ex["rng"], "xi": ex.get("xi")})
            env.np_random.bit_generator.state = ex["env_rng"]
            episode_id = _next_episode_id(store_path)
            log(f"# resumed from {ckpt} at {steps} env steps, {loop.schedule.done} updates")
        else:
            env.reset(seed=run.seed)  # seeds the env's generator; episodes reset from it
        loop.join()  # the pool starts with what the store holds (demos; a resumed run's rows)
        if agent.pretrain_updates and ckpt is None:
            t_pre = time.perf_counter()
            done = loop.pretrain(agent.pretrain_updates)
            log(f"# pretrained on the {loop.sampler.mirror.n_demo} demo rows: {done} updates "
                f"before the first env step [{time.perf_counter() - t_pre:.1f} s]" if done else
                "# agent.pretrain_updates: no demo rows to pretrain on")
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
        provenance = {**prov.provenance(), "command": argv or sys.argv, "started": time.strftime(
            "%Y-%m-%dT%H:%M:%S%z", time.localtime(t_start)), "torch_threads": threads,
            "device": str(device), "resumed_from": str(ckpt) if ckpt else None,
            "demos": demo_info, "learner": lcfg.to_dict(), "task": env.task.describe()}
        write_atomic(run_dir / "provenance.json", json.dumps(provenance, indent=1).encode(),
                     fsync=False)
        progress_csv = _Csv(run_dir / "progress.csv", PROGRESS_FIELDS)
        eval_csv = _Csv(run_dir / "eval.csv", EVAL_FIELDS)
        tb = EventWriter(run_dir / "tb")
        log(f"# {env.task.describe()} | algo={agent.algo} seed={run.seed} steps={run.total_steps} "
            f"device={device} threads={threads} run_dir={run_dir}")

        def do_eval() -> dict[str, Any]:
            t_snap = time.time()
            res = evaluate(lambda o: learner.act(o, deterministic=True), eval_env,
                           run.eval_episodes, run.eval_seed)
            row = {"env_steps": steps, "updates": learner.num_steps,
                   "wall_s": round(time.time() - t_start, 2), "success_rate": res.success_rate,
                   "mean_return": res.mean_return, "mean_final_distance": res.mean_final_distance,
                   "episodes": res.episodes, "first_seed": res.seeds[0],
                   "snapshot_unix": round(t_snap, 3), "time_unix": round(time.time(), 3)}
            eval_csv.row(row)
            tb.scalars(steps, {"eval/success_rate": res.success_rate,
                               "eval/mean_return": res.mean_return,
                               "eval/final_distance": res.mean_final_distance})
            tb.flush()
            log(f"eval @ {steps} steps: success {res.success_rate:.0%} "
                f"({res.episodes} episodes, seeds {res.seeds[0]}..{res.seeds[1]}), "
                f"return {res.mean_return:.2f}, final distance {res.mean_final_distance:.3f} m "
                f"[{res.wall_s:.1f} s]")
            return row

        def do_checkpoint() -> Path:
            extra = {"env_steps": steps, "episodes": episodes,
                     "updates_done": loop.schedule.done, "actor_session": session,
                     **behaviour.state(),
                     "env_rng": env.np_random.bit_generator.state,
                     "config": cfg.model_dump(mode="json")}
            p = save_checkpoint(loop.checkpoint_path(steps), learner, sampler=sampler,
                                extra=extra, fsync=cfg.replay.fsync)
            write_atomic(run_dir / "policy.safetensors",
                         export_policy(learner, version=learner.num_actor_updates),
                         fsync=cfg.replay.fsync)
            loop.saved(p)
            return p

        recent_ret: deque[float] = deque(maxlen=20)
        recent_succ: deque[float] = deque(maxlen=20)
        recent_len: deque[int] = deque(maxlen=20)
        saturation_told = False
        log_every = Every(run.log_every, steps, name="run.log_every")
        t_mark, steps_mark, upd_mark = time.perf_counter(), steps, learner.num_steps
        final_eval = None
        last_ckpt: Path | None = None
        dt_ns = int(round(cfg.sim.control_dt * 1e9))

        obs, _ = env.reset()
        behaviour.reset()
        ep_ret, ep_len = 0.0, 0
        while steps < run.total_steps:
            action = behaviour(obs, policy, steps)
            nobs, reward, term, trunc, info = env.step(action)
            if "observation_clipped" in info and env.observation_clips == 1:
                log(f"warning: step {steps + 1}: the sim's observation left its spec "
                    f"({info['observation_clipped']}); clipped into it and stored (a physics "
                    "spike; counted, total at the end)")
            # through the safety filter: what the arm did, in the policy's action space (an
            # actor node stores the same), or the proposal (replay.policy_action), and which
            # rules changed it
            stored = (action if cfg.replay.policy_action == "proposed"
                      else info.get("applied_action", action))
            writer.append(observation=obs, action=stored,
                          next_observation=nobs, reward=reward,
                          terminated=term, truncated=trunc, source=0, robot_id=0,
                          actor_session=session, seq=seq, episode_id=episode_id,
                          step_index=ep_len, stamp_ns=steps * dt_ns,
                          policy_version=learner.num_actor_updates,
                          safety_rules=info.get("safety_rules", 0))
            seq += 1
            steps += 1
            ep_ret += reward
            ep_len += 1
            obs = nobs
            loop.env_step()  # the updates this step earned (the episode is not in the pool yet)
            if term or trunc:
                writer.flush()
                if writer.stats.rejected_total:
                    raise RuntimeError(f"the replay store refused {writer.stats.rejected_total} "
                                       f"transitions: {dict(writer.stats.rejected)}; e.g. "
                                       f"{next(iter(writer.stats.examples.values()), '')}")
                loop.join()
                episodes += 1
                recent_ret.append(ep_ret)
                recent_succ.append(float(bool(info.get("is_success"))))
                recent_len.append(ep_len)
                episode_id += 1
                obs, _ = env.reset()
                behaviour.reset()
                ep_ret, ep_len = 0.0, 0
                if loop.checkpoint_due():
                    last_ckpt = do_checkpoint()
            if log_every.due(steps):
                now = time.perf_counter()
                dt = max(now - t_mark, 1e-9)
                row = {"env_steps": steps, "episodes": episodes, "updates": learner.num_steps,
                       "wall_s": round(time.time() - t_start, 2),
                       "episode_return": float(np.mean(recent_ret)) if recent_ret else "",
                       "episode_success": float(np.mean(recent_succ)) if recent_succ else "",
                       "episode_length": float(np.mean(recent_len)) if recent_len else "",
                       "env_steps_per_s": (steps - steps_mark) / dt,
                       "updates_per_s": (learner.num_steps - upd_mark) / dt,
                       "exploration_std": behaviour.noise.sigma(steps)}
                row.update({k: float(v) for k, v in loop.last_metrics.items()
                            if k not in ("actor_updated", "actor_saturation")})
                if learner.actor_saturation is not None:
                    row["actor_saturation"] = float(learner.actor_saturation)
                progress_csv.row(row)
                tb.scalars(steps, {f"train/{k}": float(v) for k, v in row.items()
                                   if k not in ("env_steps", "wall_s") and v != ""})
                ret_s = f"{row['episode_return']:.2f}" if recent_ret else "-"
                succ_s = f"{row['episode_success']:.0%}" if recent_succ else "-"
                loss_s = f" | critic {row['critic_loss']:.4f}" if "critic_loss" in row else ""
                sat = row.get("actor_saturation")
                if sat is not None and sat > SATURATION_WARN:
                    loss_s += f" | SATURATED {sat:.0%}"
                    if not saturation_told:
                        saturation_told = True
                        log(saturation_message(sat, cfg.agent))
                log(f"step {steps:>8} | episodes {episodes:>5} | return {ret_s:>7} | success "
                    f"{succ_s:>4} | updates {learner.num_steps} ({row['updates_per_s']:.0f}/s) | "
                    f"env {row['env_steps_per_s']:.0f} steps/s{loss_s}")
                t_mark, steps_mark, upd_mark = now, steps, learner.num_steps
                log_every.fired(steps)
            if loop.eval_due():
                loop.eval_started()
                final_eval = do_eval()
        writer.flush()
        if final_eval is None or final_eval["env_steps"] != steps:
            final_eval = do_eval()
        last_ckpt = do_checkpoint()
        progress_csv.close()
        eval_csv.close()
        tb.close()
        wall = time.time() - t_start
        clips = (f"; {env.observation_clips} observation(s) clipped into the spec (last: "
                 f"{env.last_clip})" if env.observation_clips else "")
        log(f"# done: {steps} env steps, {learner.num_steps} updates, {episodes} episodes in "
            f"{wall:.1f} s; final success {final_eval['success_rate']:.0%}; checkpoint "
            f"{last_ckpt}{clips}")
        return TrainResult(str(run_dir), steps, learner.num_steps, episodes, wall, final_eval,
                           str(last_ckpt))
    finally:
        writer.close()
        env.close()
        eval_env.close()


def load_for_eval(checkpoint: str | Path, overrides: tuple[str, ...] = ()) -> tuple[Any, Config]:
    """A learner restored from ``checkpoint`` and the run config stored in it (+ overrides)."""
    from robot_rl.agents.checkpoint import load_checkpoint, read_checkpoint
    from robot_rl.agents.config import LearnerConfig
    from robot_rl.agents.learning import Learner
    from robot_rl.config import _merge, parse_overrides

    _, meta = read_checkpoint(checkpoint)
    raw = meta.get("extra", {}).get("config")
    if raw is None:
        raise ValueError(f"checkpoint {checkpoint}: holds no run config (not written by the "
                         "trainer)")
    if overrides:
        raw = _merge(raw, parse_overrides(list(overrides)))
    cfg = config_from_dict(raw, source=f"{checkpoint} + overrides")
    arch = meta["architecture"]
    lcfg = LearnerConfig.from_dict(meta["learner"]["config"])
    from robot_rl.tasks import make_task

    # the observation spec of the config (with the overrides): a checkpoint that recorded
    # another one is refused, naming the field
    learner = Learner(lcfg, arch["obs_dim"], arch["act_dim"], device="cpu",
                      observation=make_task(cfg.task, cfg.robot).obs_spec)
    load_checkpoint(checkpoint, learner)
    return learner, cfg


def eval_checkpoint(checkpoint: str | Path, *, episodes: int | None = None,
                    seed: int | None = None, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Success rate of a checkpoint's deterministic policy (DESIGN §8)."""
    learner, cfg = load_for_eval(checkpoint, overrides)
    from robot_rl.sim.env import PandaEnv  # pybullet: only once the checkpoint has loaded

    env = PandaEnv(cfg)
    try:
        res = evaluate(lambda o: learner.act(o), env, episodes or cfg.run.eval_episodes,
                       cfg.run.eval_seed if seed is None else seed)
    finally:
        env.close()
    return {"checkpoint": str(checkpoint), "task": env.task.describe(), **asdict(res)}


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Learning curve PNG of a run: eval success rate and training return vs env steps."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("robot-rl plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    ev_path, pr_path = run_dir / "eval.csv", run_dir / "progress.csv"
    if not ev_path.exists() and not pr_path.exists():
        raise ValueError(f"{run_dir}: no eval.csv or progress.csv (not a run directory?)")

    def read(p: Path) -> list[dict[str, str]]:
        if not p.exists():
            return []
        with open(p, newline="") as f:
            return list(csv.DictReader(f))

    ev, pr = read(ev_path), read(pr_path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if ev:
        x = [int(r["env_steps"]) for r in ev]
        ax1.plot(x, [100 * float(r["success_rate"]) for r in ev], marker="o")
    ax1.set(xlabel="env steps", ylabel="eval success rate (%)", ylim=(-2, 102),
            title=f"evaluation ({ev[0]['episodes'] if ev else '?'} seeded episodes)")
    ax1.grid(alpha=0.3)
    rows = [r for r in pr if r.get("episode_return") not in ("", None)]
    if rows:
        ax2.plot([int(r["env_steps"]) for r in rows], [float(r["episode_return"]) for r in rows])
    ax2.set(xlabel="env steps", ylabel="training episode return (last 20)", title="training")
    ax2.grid(alpha=0.3)
    cfg_path = run_dir / "config.yaml"
    title = run_dir.name
    if cfg_path.exists():
        import yaml

        c = yaml.safe_load(cfg_path.read_text())
        title += (f" - {c['agent']['algo']} on {c['task']['name']} ({c['task']['reward']}), "
                  f"seed {c['run']['seed']}")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "learning_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
