"""``robot-rl``: the command line of the training service.

Every subcommand takes ``--config FILE`` (YAML) and ``KEY=VALUE`` overrides of the typed config
(``task.reward=sparse sim.num_robots=2``); ``robot-rl config show`` prints what they resolve to.
Errors in the input are reported as one clear message naming the field, with exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable, Sequence

from robot_rl.config import Config, ConfigError, load_config

EPILOG = """\
examples:
  robot-rl config show                              # the default configuration, resolved
  robot-rl config show --config my.yaml task.reward=sparse
  robot-rl sim rollout --policy scripted --episodes 100 task.action_mode=ee_velocity
  robot-rl sim rollout --policy random --episodes 5 task.name=push
  robot-rl train --task reach --algo td3 --steps 20000 --name td3_reach
  robot-rl eval runs/td3_reach/checkpoints/ckpt_000020000.safetensors
  robot-rl plot runs/td3_reach

Configuration: --config FILE loads YAML sections (robot, task, sim, safety, agent, replay, run);
KEY=VALUE arguments override single fields. Unknown keys and bad values are refused with the
field's path.
"""


class CliError(Exception):
    """A user error: printed as ``robot-rl: error: ...``, exit status 2."""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="YAML configuration file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config fields, e.g. task.reward=sparse")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, tuple(args.overrides))


# --------------------------------------------------------------------------- config


def cmd_config_show(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.format == "json":
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    else:
        sys.stdout.write(cfg.to_yaml())
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    _config(args)
    print(f"ok: {args.config or '<defaults>'} is a valid configuration")
    return 0


# --------------------------------------------------------------------------- sim


def cmd_sim_rollout(args: argparse.Namespace) -> int:
    import numpy as np

    from robot_rl.sim.env import PandaEnv

    cfg = _config(args)
    if args.episodes < 1:
        raise CliError(f"--episodes must be >= 1, got {args.episodes}")
    env = PandaEnv(cfg)
    policy: Callable
    if args.policy == "random":
        rng = np.random.default_rng(cfg.run.seed)

        def policy(_s, _obs):
            return rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
    else:
        if cfg.task.name != "reach":
            raise CliError(f"--policy scripted solves task.name=reach only (got {cfg.task.name!r})")
        from robot_rl.sim.scripted import ScriptedReacher

        reacher = ScriptedReacher(env.mapper, profile=cfg.robot)

        def policy(s, _obs):
            return reacher(s)

    print(f"# {env.task.describe()} policy={args.policy} episodes={args.episodes} "
          f"seed={cfg.run.seed} control_hz={cfg.sim.control_hz:g} substeps={cfg.sim.substeps}",
          flush=True)
    successes, steps, returns = 0, 0, []
    t0 = time.perf_counter()
    for ep in range(args.episodes):
        obs, _ = env.reset(seed=cfg.run.seed + ep)
        ret, done, info = 0.0, False, {}
        while not done:
            obs, r, term, trunc, info = env.step(policy(env.snapshot(), obs))
            ret += r
            steps += 1
            done = term or trunc
        successes += bool(info.get("is_success"))
        returns.append(ret)
        if args.verbose:
            print(f"episode {ep}: return {ret:.3f} success {bool(info.get('is_success'))} "
                  f"final distance {info['distance']:.4f} m", flush=True)
    dt = time.perf_counter() - t0
    env.close()
    result = {
        "task": cfg.task.name, "reward": cfg.task.reward, "action_mode": cfg.task.action_mode,
        "policy": args.policy, "episodes": args.episodes, "success_rate": successes / args.episodes,
        "mean_return": float(np.mean(returns)), "env_steps": steps,
        "steps_per_s": steps / dt if dt > 0 else float("nan"), "wall_s": dt,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"success {successes}/{args.episodes} ({100 * result['success_rate']:.1f}%), "
              f"mean return {result['mean_return']:.3f}, {steps} steps in {dt:.2f} s "
              f"({result['steps_per_s']:.0f} steps/s)")
    return 0


# --------------------------------------------------------------------------- replay


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def cmd_replay_info(args: argparse.Namespace) -> int:
    from robot_rl.replay.inspection import store_info

    info = store_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c = info["commit"]
    src = info["rows_by_source"]
    print(f"replay store {info['path']} (schema {info['schema_version']}, created {info['created']})")
    print(f"  commit point: {c['rows']} rows (commit #{c['commit']}, {c['time']}), "
          f"{c['sessions_acked']} actor sessions acknowledged")
    print(f"  rows by source: policy {src['policy']}, demo {src['demo']}, "
          f"intervention {src['intervention']}")
    print(f"  episodes: {info['episodes']} (terminated {info['episode_ends']['terminated']}, "
          f"truncated {info['episode_ends']['truncated']}); robots: "
          + (", ".join(f"{k}: {v} rows" for k, v in info["robots"].items()) or "none"))
    print(f"  observation: {info['observation']['dim']} ({', '.join(info['observation']['names'])})")
    print(f"  action: {info['action']['dim']} ({', '.join(info['action']['names'])})")
    print(f"  chunks: {info['chunk_rows']} rows; allocated {info['allocated_rows']} rows; "
          f"size on disk {_human_bytes(info['size_on_disk_bytes'])}")
    print(f"  writer: {info['writer']}")
    return 0


def cmd_replay_verify(args: argparse.Namespace) -> int:
    from robot_rl.replay.inspection import verify

    res = verify(args.path)
    if args.json:
        print(json.dumps({"path": args.path, "ok": res.ok, "rows": res.rows,
                          "problems": res.problems, "notes": res.notes}, indent=2))
    else:
        for note in res.notes:
            print(f"note: {note}")
        for problem in res.problems:
            print(f"PROBLEM: {problem}")
        print(f"{'ok' if res.ok else 'DAMAGED'}: {args.path}: {res.rows} committed rows, "
              f"{len(res.problems)} problem(s)")
    return 0 if res.ok else 1


# --------------------------------------------------------------------------- learning


def _train_overrides(args: argparse.Namespace) -> list[str]:
    """The train shortcuts (--task, --algo, ...) as KEY=VALUE overrides (explicit ones win)."""
    out = []
    for flag, key in (("task", "task.name"), ("reward", "task.reward"), ("algo", "agent.algo"),
                      ("steps", "run.total_steps"), ("seed", "run.seed"), ("name", "run.name")):
        v = getattr(args, flag, None)
        if v is not None:
            out.append(f"{key}={v}")
    return out + list(args.overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from robot_rl.agents.trainer import train

    cfg = load_config(args.config, tuple(_train_overrides(args)))
    res = train(cfg, resume=args.resume, argv=sys.argv)
    if args.json:
        print(json.dumps(res.__dict__))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from robot_rl.agents.trainer import eval_checkpoint

    res = eval_checkpoint(args.checkpoint, episodes=args.episodes, seed=args.seed,
                          overrides=tuple(args.overrides))
    if args.json:
        print(json.dumps(res))
    else:
        print(f"# {res['task']}")
        print(f"success {res['success_rate']:.1%} over {res['episodes']} episodes (seeds "
              f"{res['seeds'][0]}..{res['seeds'][1]}), mean return {res['mean_return']:.3f}, "
              f"final distance {res['mean_final_distance']:.4f} m [{res['wall_s']:.1f} s]")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from robot_rl.agents.trainer import plot_run

    print(plot_run(args.run_dir, args.output))
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-rl",
        description="robot_rl: off-policy RL training for robot arms over ROS 2, with a PyBullet "
        "Panda for headless development.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from robot_rl import __version__

    parser.add_argument("--version", action="version", version=f"robot-rl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_cfg = sub.add_parser("config", help="show or check the resolved configuration",
                           description="Show or check the resolved configuration.")
    cfg_sub = p_cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    p = cfg_sub.add_parser("show", help="print the resolved config (defaults + file + overrides)")
    _add_config_args(p)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.set_defaults(func=cmd_config_show)
    p = cfg_sub.add_parser("check", help="validate a config; exit 2 naming every bad field")
    _add_config_args(p)
    p.set_defaults(func=cmd_config_check)

    p_sim = sub.add_parser("sim", help="the PyBullet simulation: rollouts in the gym env",
                           description="In-process PyBullet simulation (no ROS).")
    sim_sub = p_sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    p = sim_sub.add_parser(
        "rollout",
        help="run a random or scripted policy; print success rate and steps/s",
        description="Roll out a random policy, or the scripted P-controller (reach), in the gym "
        "env for seeded episodes (seeds run.seed, run.seed+1, ...); prints success rate and "
        "control steps per second.",
    )
    _add_config_args(p)
    p.add_argument("--policy", choices=("random", "scripted"), default="random")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.add_argument("--verbose", "-v", action="store_true", help="one line per episode")
    p.set_defaults(func=cmd_sim_rollout)

    p_rep = sub.add_parser("replay", help="inspect or check a replay store (zarr)",
                           description="Inspect or check a replay store (runs/<name>/replay.zarr). "
                           "Read-only: safe while the replay node writes.")
    rep_sub = p_rep.add_subparsers(dest="replay_command", metavar="SUBCOMMAND")
    p = rep_sub.add_parser("info", help="rows by source, episodes, robots, size, commit point",
                           description="Summarise a replay store: commit point, rows by source, "
                           "episodes, robots, spec, size on disk, whether a writer is open.")
    p.add_argument("path", metavar="PATH", help="store directory or fsspec URL")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_replay_info)
    p = rep_sub.add_parser("verify", help="integrity check; exit 1 if the store is damaged",
                           description="Check a replay store: commit marker vs array lengths, "
                           "dtypes and shapes, spec present, chunk files, values (finite, valid "
                           "sources and booleans), uniqueness of (robot_id, actor_session, seq). "
                           "Exit status 0: intact, 1: damaged, 2: not a replay store.")
    p.add_argument("path", metavar="PATH", help="store directory or fsspec URL")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_replay_verify)

    p = sub.add_parser(
        "train", help="train an agent in the gym env (in-process): replay store, learner, evals",
        description="Train DDPG / TD3 / DDPGfD / SVG(0) on the PyBullet gym env in one process; "
        "transitions go through the replay store in runs/<name>/. Writes progress.csv, eval.csv, "
        "TensorBoard events (tb/), checkpoints/, policy.safetensors, config.yaml and "
        "provenance.json. Shortcut flags set the config fields named in their help.")
    _add_config_args(p)
    p.add_argument("--task", choices=("reach", "push"), help="task.name")
    p.add_argument("--reward", choices=("dense", "sparse"), help="task.reward")
    p.add_argument("--algo", choices=("ddpg", "td3", "ddpgfd", "svg0"), help="agent.algo")
    p.add_argument("--steps", type=int, help="run.total_steps")
    p.add_argument("--seed", type=int, help="run.seed")
    p.add_argument("--name", help="run.name (the directory runs/<name>/)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint of the run")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser(
        "eval", help="success rate of a checkpoint's deterministic policy",
        description="Evaluate a checkpoint (DESIGN 8): the deterministic policy on a fixed list "
        "of seeded episodes (run.eval_seed + i, run.eval_episodes of them, from the checkpoint's "
        "config unless given); KEY=VALUE overrides change the env (e.g. task.reward=sparse).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a ckpt_*.safetensors file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config fields")
    p.add_argument("--episodes", type=int, help="episodes (default run.eval_episodes)")
    p.add_argument("--seed", type=int, help="first episode seed (default run.eval_seed)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("plot", help="PNG learning curve of a run directory",
                       description="Plot eval success rate and training return against env "
                       "steps (matplotlib, Agg) into RUN_DIR/learning_curve.png.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="runs/<name>")
    p.add_argument("--output", "-o", help="PNG path (default RUN_DIR/learning_curve.png)")
    p.set_defaults(func=cmd_plot)

    # Subcommand groups without a subcommand print their help.
    for grp in (p_cfg, p_sim, p_rep):
        grp.set_defaults(func=lambda _a, g=grp: (g.print_help(), 2)[1])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, CliError, ValueError) as e:
        print(f"robot-rl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robot-rl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
