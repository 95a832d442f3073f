"""``robot-rl``: the command line of the training service.

Every subcommand takes ``--config FILE`` (YAML) and ``KEY=VALUE`` overrides of the typed config
(``task.reward=sparse sim.num_robots=2``); ``robot-rl config show`` prints what they resolve to.
Errors in the input are reported as one clear message naming the field, with exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
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
  robot-rl up sim --robots 2 --name reach2 --until-success 0.9   # the ROS graph, headless
  robot-rl up robot --config lab.yaml --dry-run     # print each node's command line
  robot-rl estop                                    # latch every robot's e-stop
  robot-rl demos import yesterday_bag --store runs/reach/replay.zarr --dry-run
  robot-rl demos list runs/reach/replay.zarr        # demo episodes: counts, success, returns

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
        from robot_rl.sim.scripted import ScriptedPusher, ScriptedReacher

        if cfg.task.name == "push":
            reacher = ScriptedPusher(env.mapper, object_size=cfg.task.object_size,
                                     profile=cfg.robot)
        else:
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
    if info["observation"].get("fields"):
        print(f"  observation fields: {', '.join(info['observation']['fields'])} "
              f"(spec {info['observation']['hash']})")
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


def cmd_replay_migrate(args: argparse.Namespace) -> int:
    from robot_rl.replay.migrate import migrate_store
    from robot_rl.tasks import make_task

    cfg = _config(args)
    spec = make_task(cfg.task, cfg.robot).obs_spec
    from robot_rl.replay import StoreLockedError

    try:
        res = migrate_store(args.path, spec, log=(lambda _s: None) if args.json else print)
    except StoreLockedError as e:
        print(f"robot-rl: error: {e}; stop the replay node (or the run) first", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(res))
    return 0


# --------------------------------------------------------------------------- demos


def cmd_demos_import(args: argparse.Namespace) -> int:
    from robot_rl.demos import ImportOptions, TopicNames, import_bag
    from robot_rl.replay import StoreLockedError

    cfg = _config(args)
    topics = TopicNames(joint_states=args.joint_states_topic, teleop=args.teleop_topic,
                        commands=args.commands_topic, task_state=args.task_topic,
                        namespace=args.namespace or "", twist=args.twist_topic or "",
                        joy=args.joy_topic or "", goal=args.goal_topic or "")
    if (args.twist_topic or args.joy_topic) and not args.teleop_source:
        raise CliError("--twist-topic / --joy-topic: only with --teleop-source spacenav|joy")
    if args.teleop_source and args.action_source != "auto":
        raise CliError("--teleop-source and --action-source: choose one (the device topics "
                       "replace the teleop and commands topics)")
    if args.twist_topic and args.teleop_source == "joy":
        raise CliError("--twist-topic: a joy device has no twist topic (its axes are on "
                       "--joy-topic)")
    opts = ImportOptions(topics=topics, robot_id=args.robot_id, episodes_file=args.episodes,
                         action_source=args.action_source, distro=args.distro,
                         max_gap=args.max_gap, jitter=args.jitter,
                         allow_reimport=args.allow_reimport, teleop_source=args.teleop_source,
                         goal_frame=args.goal_frame)
    try:
        res = import_bag(args.bag, args.store, cfg, opts, dry_run=args.dry_run)
    except StoreLockedError as e:
        raise CliError(f"--store {args.store}: {e}") from None
    doc = res.to_dict()
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"bag {doc['bag']} ({doc['storage']}: {', '.join(doc['files']) or '?'}), "
          f"{doc['duration_s']:.2f} s")
    for t in doc["topics"]:
        rate = "" if t["rate_hz"] is None else f", {t['rate_hz']:.1f} Hz"
        print(f"  {t['role']}: {t['name']} ({t['type']}), {t['messages']} messages{rate}")
    print(f"  actions from {doc['action_source']}; episodes from {doc['boundaries']}; "
          f"resampled to {doc['control_hz']:g} Hz; robot_id {doc['robot_id']}, actor_session "
          f"{hex(doc['actor_session'])}")
    for e in doc["episodes"]:
        print(f"  episode {e['episode']} [{e['origin']}] {e['start_s']:.2f}-{e['end_s']:.2f} s: "
              f"{e['steps']} steps, {'success' if e['success'] else 'no success'} "
              f"({'terminated' if e['terminated'] else 'truncated'}), return {e['return']:.3f}, "
              f"final distance {e['final_distance']:.3f} m, episode_id {e['episode_id']}")
    for d in doc["dropped"]:
        print(f"  dropped: {d}")
    for n in doc["notes"]:
        print(f"  note: {n}")
    n_eps, rows = len(doc["episodes"]), doc["rows"]
    if not res.written:
        print(f"dry run: would append {n_eps} episode(s), {rows} rows "
              f"({doc['already_stored_rows']} already in the store) to {res.store}"
              + (" (a new store)" if res.created_store else ""))
    else:
        print(f"{res.store}: appended {doc['added_rows']} rows of {n_eps} episode(s) as "
              f"source=demo ({doc['duplicate_rows']} already stored)"
              + ("; store created" if res.created_store else ""))
    return 0


def _stats_text(s: dict | None, fmt: str = ".3f") -> str:
    if not s:
        return "-"
    return f"{s['mean']:{fmt}} ({s['min']:{fmt}}..{s['max']:{fmt}})"


def cmd_demos_list(args: argparse.Namespace) -> int:
    from robot_rl.demos.summary import summary

    doc = summary(args.path)
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    src = doc["rows_by_source"]
    print(f"replay store {doc['path']}: {doc['rows']} committed rows (policy {src['policy']}, "
          f"demo {src['demo']}, intervention {src['intervention']})")
    for name, g in doc["by_source"].items():
        print(f"  {name}: {g['episodes']} episodes, {g['rows']} rows, {g['successes']} "
              f"successful; length {_stats_text(g['length'], '.1f')}; return "
              f"{_stats_text(g['return'])}")
    for rid, g in doc["by_robot"].items():
        print(f"  robot {rid}: {g['episodes']} episodes, {g['rows']} rows, {g['successes']} "
              "successful")
    for sess, g in doc["sessions"].items():
        print(f"  session {sess}: {g['episodes']} episodes ({', '.join(g['sources'])}), "
              f"{g['rows']} rows, robots {', '.join(map(str, g['robots']))}")
    return 0


def cmd_demos_show(args: argparse.Namespace) -> int:
    from robot_rl.demos import summary as S

    if args.episode is None:
        eps = S.episodes(args.path)
        if args.robot is not None:
            eps = [e for e in eps if e["robot_id"] == args.robot]
        if args.json:
            print(json.dumps(eps, indent=1))
            return 0
        print(f"{'robot':>5} {'episode_id':>20} {'source':<12} {'rows':>5} {'success':<7} "
              f"{'return':>9} {'seconds':>7}  session")
        for e in eps:
            print(f"{e['robot_id']:>5} {e['episode_id']:>20} {e['source']:<12} {e['rows']:>5} "
                  f"{str(e['success']).lower():<7} {e['return']:>9.3f} {e['duration_s']:>7.2f}  "
                  f"{hex(e['actor_session'])}" + ("" if e["complete"] else "  (incomplete)"))
        print(f"{len(eps)} demo/intervention episode(s)")
        return 0
    try:
        episode = int(args.episode, 0)
    except ValueError:
        raise CliError(f"--episode: expected an episode id (integer), got {args.episode!r}")
    ep = S.episode_rows(args.path, episode, args.robot)
    rows = ep["rows"]
    if args.json:
        print(json.dumps({**{k: v for k, v in ep.items() if k != "rows"},
                          "rows": {k: v.tolist() for k, v in rows.items()}}, indent=1))
        return 0
    names = {0: "policy", 1: "demo", 2: "intervention"}
    t0 = int(rows["stamp_ns"][0])
    print(f"robot {ep['robot_id']} episode {ep['episode_id']}: {len(rows['reward'])} steps, "
          f"return {float(rows['reward'].sum(dtype='float64')):.3f}, actor_session "
          f"{hex(int(rows['actor_session'][0]))}")
    print(f"  actions: {', '.join(ep['action_names'])}")
    for k in range(len(rows["reward"])):
        flags = ("terminated" if rows["terminated"][k] else "") + \
            ("truncated" if rows["truncated"][k] else "")
        act = " ".join(f"{x:+.2f}" for x in rows["action"][k])
        print(f"  {int(rows['step_index'][k]):>4} {(int(rows['stamp_ns'][k]) - t0) / 1e9:>7.2f}s "
              f"{names.get(int(rows['source'][k]), '?'):<12} r={float(rows['reward'][k]):+.4f} "
              f"a=[{act}] {flags}")
    return 0


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


# --------------------------------------------------------------------------- ROS graph


def _up_overrides(args: argparse.Namespace) -> list[str]:
    out = [] if args.name is None else [f"run.name={args.name}"]
    return out + list(args.overrides)


def up_plan(args: argparse.Namespace):
    """The :class:`robot_rl.runner.RunPlan` of ``robot-rl up`` arguments."""
    from robot_rl.runner import plan_run, split_list

    cfg = load_config(args.config, tuple(_up_overrides(args)))
    demos = getattr(args, "demos", False)
    return plan_run(args.graph, cfg, robots=args.robots, namespaces=split_list(args.namespaces),
                    learner=not (args.no_learner or demos), roles=split_list(args.only),
                    resume=args.resume, teleop=getattr(args, "teleop", False),
                    operator=getattr(args, "scripted_operator", False), demos=demos,
                    # the scripted operators keep exactly N episodes between them
                    operator_episodes=(args.max_demo_episodes
                                       if demos and getattr(args, "scripted_operator", False)
                                       and (args.max_demo_episodes or 0) >= 1 else None))


def cmd_up(args: argparse.Namespace) -> int:
    import shlex

    from robot_rl.runner import Runner

    plan = up_plan(args)
    if plan.kind == "robot" and plan.cfg.robot.name == "panda":
        print("note: robot.name=panda (panda_joint1..7, multipanda_ros2); an FR3 under "
              "franka_ros2 needs robot.name=fr3", file=sys.stderr)
    runner = Runner(plan, until_success=args.until_success, max_env_steps=args.max_env_steps,
                    max_time=args.max_time, max_demo_episodes=args.max_demo_episodes,
                    verbose=args.verbose, argv=sys.argv,
                    progress_every=args.progress_every, domain_check=args.domain_check)
    if args.dry_run:
        print(f"# robot-rl up {plan.kind}: {len(plan.nodes)} nodes, {plan.num_robots} robot(s), "
              f"run {plan.run_dir} (dry run: nothing written or started)")
        for spec in plan.nodes:
            nice = f", nice {spec.nice}" if spec.nice else ""
            print(f"# {spec.fully_qualified_name} ({spec.role}{nice}); parameters: "
                  + ", ".join(f"{k}={v!r}" for k, v in spec.parameters.items()))
            print(shlex.join(plan.command(spec)))
        return 0
    return runner.run()


def cmd_estop(args: argparse.Namespace) -> int:
    from robot_rl.graph import robot_namespaces
    from robot_rl.runner import call_estop, estop_services, split_list

    if args.timeout <= 0:
        raise CliError(f"--timeout: expected seconds > 0, got {args.timeout}")
    ns = split_list(args.namespaces)
    if ns is not None and args.robots is not None:
        raise CliError("give either --namespaces or --robots, not both")
    if args.robots is not None and args.robots < 1:
        raise CliError(f"--robots: expected >= 1, got {args.robots}")
    services = None
    if ns is not None or args.robots is not None:
        n = args.robots if args.robots is not None else len(ns)
        services = estop_services(robot_namespaces(n, ns))
    what = "release" if args.release else "latch"
    results = call_estop(services, latch=not args.release, timeout=args.timeout)
    if not results:
        print(f"robot-rl estop: no safety/estop service found within {args.timeout:g} s "
              f"(ROS_DOMAIN_ID="
              f"{os.environ.get('ROS_DOMAIN_ID', '0')}); is the graph running? Name the robots "
              "with --namespaces or --robots to wait for them", file=sys.stderr)
        return 1
    for r in results:
        state = ("released" if args.release else "LATCHED") if r.ok else "FAILED"
        print(f"{r.service}: {state} ({r.message})")
    bad = [r.service for r in results if not r.ok]
    if bad:
        print(f"robot-rl estop: could not {what} {len(bad)} of {len(results)} robot(s): "
              f"{', '.join(bad)}", file=sys.stderr)
        return 1
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
    p.add_argument("--policy", choices=("random", "scripted"), default="random",
                   help="scripted: the reach P-controller or the push expert (sim/scripted.py)")
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
    p = rep_sub.add_parser(
        "migrate", help="convert a store of an earlier layout (schema 1) to the current one",
        description="Convert a replay store written before observations were stored per field "
        "(schema 1: one flat observation array; it opens read-only) to schema 2 (one array per "
        "observation field, the fields recorded). The config names the task whose fields cut "
        "the store's observation (default: the default config's task; --config or "
        "task.name=push for another). Every row is copied into a new store beside it, read back "
        "and compared bit for bit before the two are swapped; the original is kept as "
        "PATH.v1. Needs the writer lock: stop the replay node first. Exit 2 with a message if "
        "anything does not match; the original is then unchanged.")
    p.add_argument("path", metavar="PATH", help="local store directory")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    _add_config_args(p)
    p.set_defaults(func=cmd_replay_migrate)

    p = sub.add_parser(
        "train", help="train an agent in the gym env (in-process): replay store, learner, evals",
        description="Train DDPG / TD3 / DDPGfD / SVG(0) / SAC (RLPD recipe) / CrossQ on the "
        "PyBullet gym env in one process; "
        "transitions go through the replay store in runs/<name>/. Writes progress.csv, eval.csv, "
        "TensorBoard events (tb/), checkpoints/, policy.safetensors, config.yaml and "
        "provenance.json. Shortcut flags set the config fields named in their help.")
    _add_config_args(p)
    p.add_argument("--task", choices=("reach", "push"), help="task.name")
    p.add_argument("--reward", choices=("dense", "sparse"), help="task.reward")
    from robot_rl.agents.registry import ALGORITHMS

    p.add_argument("--algo", choices=tuple(ALGORITHMS), help="agent.algo")
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

    p = sub.add_parser(
        "up", help="start the ROS 2 training graph (sim or a lab robot) as processes",
        description="Start the training graph of robot_rl.graph (the node list the launch "
        "files use) as one process per node: sim node (sim only), a safety and an actor node "
        "per robot, replay, learner. Writes RUN_DIR/config.yaml, provenance.json, graph/*.yaml "
        "(each node's parameters) and logs/*.log; prints progress from /diagnostics every "
        "couple of seconds. Ctrl-C stops every node (in reverse start order; SIGKILL after "
        "10 s). A node that exits on its own stops the run with a non-zero status; nothing is "
        "restarted. RUN_DIR is run.root/run.name (default runs/default).")
    p.add_argument("graph", choices=("sim", "robot"),
                   help="sim: PyBullet robots; robot: a lab arm under franka_ros2")
    _add_config_args(p)
    p.add_argument("--robots", type=int, metavar="N",
                   help="number of robots (default: sim.num_robots for sim, 1 for robot)")
    p.add_argument("--namespaces", metavar="A,B",
                   help="the robots' namespaces (default: root for one robot, robot_<i>)")
    p.add_argument("--name", help="run.name (the directory runs/<name>/)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in an existing run directory")
    p.add_argument("--until-success", type=float, metavar="X",
                   help="stop once the learner's eval success rate is >= X (0..1)")
    p.add_argument("--max-env-steps", type=int, metavar="N",
                   help="stop once the actors made N env steps in total")
    p.add_argument("--max-time", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--max-demo-episodes", type=int, metavar="N",
                   help="stop once the replay node has stored N demonstration episodes (with "
                        "--demos; an episode being recorded at that moment is not stored; with "
                        "--scripted-operator the operators keep exactly N between them)")
    p.add_argument("--no-learner", action="store_true",
                   help="collect only: no learner node (e.g. demonstrations)")
    p.add_argument("--only", metavar="ROLES",
                   help="start only these roles, e.g. sim,safety (one machine of a graph "
                   "spread over several on one ROS_DOMAIN_ID)")
    p.add_argument("--teleop", action="store_true",
                   help="a teleop node per robot (SpaceMouse via spacenav, or joy: "
                        "teleop.input): holding the deadman takes over from the policy "
                        "(stored as source=intervention)")
    p.add_argument("--demos", action="store_true",
                   help="record demonstrations: the operator drives (teleop nodes), episodes "
                        "are held until marked success/failure (appended whole, source=demo) or "
                        "discard (never stored); no learner; the sim runs in real time")
    p.add_argument("--scripted-operator", action="store_true",
                   help="sim: a scripted operator per robot publishes what a SpaceMouse would "
                        "(the stand-in for a person; implies --teleop)")
    p.add_argument("--dry-run", action="store_true",
                   help="print each node's command line and parameters; start nothing")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="echo every node's log, each line prefixed with the node's name")
    p.add_argument("--progress-every", type=float, default=2.0, metavar="S",
                   help="seconds between progress lines (default 2)")
    p.add_argument("--domain-check", type=float, default=4.0, metavar="S",
                   help="seconds of DDS discovery before starting, to refuse a ROS_DOMAIN_ID "
                   "that already has nodes of this graph's names (another graph would exchange "
                   "data with this one); 0 skips it (default 4)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser(
        "estop", help="latch (or --release) every robot's e-stop",
        description="Call each robot's safety/estop service (std_srvs/SetBool) on this "
        "ROS_DOMAIN_ID. Latching needs no confirmation; the arms brake to zero and stay "
        "stopped across restarts until released. Without --namespaces/--robots: every "
        "*/safety/estop service seen within 2 s (or within --timeout, until a first one is "
        "seen). Exit status 1 if any robot could not be "
        "reached within --timeout.")
    p.add_argument("--release", action="store_true",
                   help="release the e-stop instead of latching it (explicit on purpose)")
    p.add_argument("--namespaces", metavar="A,B", help="the robots' namespaces")
    p.add_argument("--robots", type=int, metavar="N",
                   help="N robots with the default namespaces (root for 1, robot_<i>)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for every service's answer (default 10)")
    p.set_defaults(func=cmd_estop)

    p_demo = sub.add_parser(
        "demos", help="demonstrations: import rosbag2 recordings, list / show demo episodes",
        description="Teleoperated demonstrations in a replay store: import a rosbag2 bag "
        "(MCAP or sqlite3; no ROS needed), summarise what a store holds.")
    demo_sub = p_demo.add_subparsers(dest="demos_command", metavar="SUBCOMMAND")
    p = demo_sub.add_parser(
        "import", help="append a rosbag2 recording's episodes (source=demo) to a store",
        description="Read a rosbag2 bag (directory with metadata.yaml, or one .mcap/.db3 file) "
        "with the rosbags library: joint states (any rate and joint order), the teleop topic "
        "(or, without it, the applied joint velocity commands) and the task state. Episodes "
        "come from --episodes, else the bag's episode marks (success / failure end one, "
        "discard drops it), else the whole bag. They are resampled to sim.control_hz (joint "
        "states interpolated linearly, task state and teleop held), rewarded with the task's "
        "functions and appended whole. Every message is checked before anything is written: a "
        "bad bag imports nothing and the error names the file, topic, type and message. "
        "Re-importing the same bag with the same settings adds nothing. A lab's own recording "
        "(no robot_rl topics): --teleop-source spacenav (geometry_msgs/Twist on "
        "/spacenav/twist + sensor_msgs/Joy buttons on /spacenav/joy) or joy (sensor_msgs/Joy "
        "on /joy) replays the device through the config's teleop mapping in bag time -- the "
        "commands the teleop node would have sent, deadman and episode-mark buttons included "
        "-- and --goal-topic reads the goal from geometry_msgs/PointStamped or PoseStamped "
        "(in the robot base frame) instead of the task_state topic.")
    p.add_argument("bag", metavar="BAG", help="bag directory or .mcap / .db3 file")
    p.add_argument("--store", required=True, metavar="PATH",
                   help="replay store (created with the config's specs if missing)")
    _add_config_args(p)
    p.add_argument("--robot-id", type=int, default=0, help="robot_id of the rows (default 0)")
    p.add_argument("--namespace", metavar="NS",
                   help="the robot's namespace: relative topic names resolve under /NS/")
    p.add_argument("--joint-states-topic", default="joint_states", metavar="NAME")
    p.add_argument("--teleop-topic", default="rl/teleop", metavar="NAME")
    p.add_argument("--commands-topic", default="joint_velocity_controller/commands",
                   metavar="NAME")
    p.add_argument("--task-topic", default="task_state", metavar="NAME")
    p.add_argument("--action-source", choices=("auto", "teleop", "commands"), default="auto",
                   help="auto (default): the teleop topic if recorded, else the commands")
    p.add_argument("--teleop-source", choices=("spacenav", "joy"),
                   help="actions from a recorded SpaceMouse (spacenav) or gamepad (joy) instead "
                   "of the teleop / commands topics, mapped with the config's teleop section "
                   "(teleop.input is set to this; deadman and mark buttons as live)")
    p.add_argument("--twist-topic", metavar="NAME",
                   help="spacenav: geometry_msgs/Twist or TwistStamped topic (default "
                   "/spacenav/twist)")
    p.add_argument("--joy-topic", metavar="NAME",
                   help="sensor_msgs/Joy topic (default /spacenav/joy for spacenav: its "
                   "buttons; /joy for joy: axes and buttons)")
    p.add_argument("--goal-topic", metavar="NAME",
                   help="the goal from geometry_msgs/PointStamped (point) or PoseStamped "
                   "(pose.position) instead of the task_state topic, held until the next one; "
                   "tasks without an object only")
    p.add_argument("--goal-frame", metavar="FRAME",
                   help="with --goal-topic: the robot base frame's name in the recording "
                   "(default: the URDF's root link, panda_link0); a goal whose non-empty "
                   "header.frame_id differs is refused (no transforms are applied)")
    p.add_argument("--episodes", metavar="FILE",
                   help="episode time ranges, YAML or CSV: start,end[,success] in seconds "
                   "from the bag start (overrides the bag's episode marks)")
    p.add_argument("--distro", default="kilted", help="ROS 2 distro of the standard message "
                   "types (humble, iron, jazzy, kilted; default kilted)")
    p.add_argument("--max-gap", type=float, metavar="S",
                   help="refuse joint-state gaps / command ages above S seconds (default "
                   "max(0.1, 2 control periods))")
    p.add_argument("--jitter", type=float, default=0.25, metavar="F",
                   help="a teleop command up to F control periods after a tick belongs to "
                   "it (default 0.25)")
    p.add_argument("--allow-reimport", action="store_true",
                   help="import a recording already in the store with other settings")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and report what would be imported; write nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_demos_import)
    p = demo_sub.add_parser("list", help="demo / intervention episodes: counts, lengths, "
                            "success, returns by source, robot and session")
    p.add_argument("path", metavar="PATH", help="store directory or fsspec URL")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demos_list)
    p = demo_sub.add_parser("show", help="one line per demo episode, or one episode's steps",
                            description="Without --episode: one line per demo / intervention "
                            "episode. With --episode ID: its rows step by step.")
    p.add_argument("path", metavar="PATH", help="store directory or fsspec URL")
    p.add_argument("--episode", metavar="ID", help="an episode id (decimal or 0x hex)")
    p.add_argument("--robot", type=int, metavar="R", help="only robot R")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demos_show)
    p_demo.set_defaults(func=lambda _a: (p_demo.print_help(), 2)[1])

    # Subcommand groups without a subcommand print their help.
    for grp in (p_cfg, p_sim, p_rep):
        grp.set_defaults(func=lambda _a, g=grp: (g.print_help(), 2)[1])
    return parser


def parse_args(argv: Sequence[str] | None = None,
               parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse a command line; KEY=VALUE overrides may also follow options."""
    parser = parser or build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # KEY=VALUE after an option following a positional (`up sim --robots 2 a.b=1`): argparse
        # has already closed the overrides list; they are overrides all the same.
        if hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(argv, parser)
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
