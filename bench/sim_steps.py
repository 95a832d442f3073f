#!/usr/bin/env python3
"""Control steps per second of the gym env against raw PyBullet doing the same work.

Prints one JSON object on stdout.

* **env**: ``PandaEnv`` (``PandaReach-v0`` / ``PandaPush-v0``; default config: 20 Hz, 12
  substeps, joint action mode), stepped by a random policy whose actions are drawn beforehand
  from a seeded generator inside the action bounds, ``reset()`` every ``task.max_steps`` (50)
  steps. ``task.terminate_on_success`` is off so that every episode has that length (a success
  costs the same step; it only ends the episode early).
* **raw**: the same scene built with bare ``pybullet`` calls (plane, the profile's URDF with the
  same flags and fixed base, the cube for push, the same gravity, time step
  ``1 / (control_hz * substeps)`` and engine parameters) and, per control step, only the calls
  the env makes: ``setJointMotorControlArray`` (velocity control, the same targets and forces),
  ``substeps`` x ``stepSimulation``, ``getJointStates``, ``getLinkState`` (forward kinematics),
  plus ``getBasePositionAndOrientation`` for push. Episodes restart at the same steps with the
  same reset calls and values.

The raw side replays what the env sent to PyBullet: an untimed first pass of the env records its
reset poses and joint-velocity commands (so any action mode works). PyBullet is deterministic,
so both worlds then go through bit-identical states; the benchmark checks that after every
repetition (``states_identical``), which shows the two sides simulate the same thing.

Timing: a repetition runs ``--steps`` steps on each side, interleaved one episode at a time
(env, raw, raw, env, ...) so that the load of a shared machine falls on both alike; its rate is
steps / (summed episode times). Quoted: the median over ``--repeats`` repetitions, wall clock
(``*_steps_per_s``) and this thread's CPU time (``*_steps_per_cpu_s``, less disturbed by other
processes). ``overhead_pct = (raw_rate / env_rate - 1) * 100`` is the env's cost over raw
physics; ``ratio_env_over_raw = env_rate / raw_rate``.

    python bench/sim_steps.py --task reach            # 2000 steps x 5 repetitions a side
    python bench/sim_steps.py --task push --quick     # a few seconds (CI smoke run)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pybullet as p
import pybullet_data

from robot_rl.config import Config, load_config
from robot_rl.kinematics import resolve_urdf
from robot_rl.provenance import provenance
from robot_rl.sim.env import PandaEnv

REPO = Path(__file__).resolve().parents[1]
FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")  # as sim/panda.py


# -------------------------------------------------------------------------- the recorded plan


@dataclass
class Plan:
    """What the env sent to PyBullet in one pass; the raw side replays it call for call.

    Attributes:
        actions: the policy's actions, one float32 array each (as a policy hands them over).
        episodes: (first step, end step) of each episode.
        resets: per episode, the joint positions and the cube position (None for reach) that
            the env's reset gave the world.
        commands: per step, the joint-velocity targets the env commanded (Python floats).
    """

    actions: list[np.ndarray]
    episodes: list[tuple[int, int]]
    resets: list[tuple[list[float], list[float] | None]] = field(default_factory=list)
    commands: list[list[float]] = field(default_factory=list)


def env_episode(env: PandaEnv, plan: Plan, k: int, seed: int) -> None:
    """Episode ``k`` on the env: reset (seeded for the first), then its steps."""
    if k == 0:
        env.reset(seed=seed)
    else:
        env.reset()
    start, end = plan.episodes[k]
    step = env.step
    for a in plan.actions[start:end]:
        step(a)


def record_plan(env: PandaEnv, actions: list[np.ndarray], seed: int) -> Plan:
    """One untimed pass of ``env`` that records its reset values and commands (also a warm-up).

    Spies sit on the world instance for this pass only and are removed afterwards.
    """
    n, length = len(actions), env.config.task.max_steps
    plan = Plan(actions, [(s, min(s + length, n)) for s in range(0, n, length)])
    world, cls = env.world, type(env.world)
    reset: dict[str, Any] = {}

    def reset_robot(i, q):
        reset["q"] = [float(v) for v in q]
        reset["inside"] = True  # reset_robot sends a zero command of its own
        cls.reset_robot(world, i, q)
        reset["inside"] = False

    def set_object_pose(i, pos, *args, **kwargs):
        reset["obj"] = [float(v) for v in np.asarray(pos, dtype=np.float64)]
        cls.set_object_pose(world, i, pos, *args, **kwargs)

    def set_joint_velocities(i, dq):
        if not reset.get("inside"):
            plan.commands.append([float(v) for v in dq])
        cls.set_joint_velocities(world, i, dq)

    world.reset_robot = reset_robot
    world.set_object_pose = set_object_pose
    world.set_joint_velocities = set_joint_velocities
    try:
        for k in range(len(plan.episodes)):
            reset.clear()
            env_episode(env, plan, k, seed)
            plan.resets.append((reset["q"], reset.get("obj")))
    finally:
        del world.reset_robot, world.set_object_pose, world.set_joint_velocities
    if len(plan.commands) != n:
        raise RuntimeError(f"recorded {len(plan.commands)} commands for {n} steps")
    return plan


# -------------------------------------------------------------------------- raw PyBullet


class RawScene:
    """The env's scene built with bare ``pybullet`` calls, in the same order."""

    def __init__(self, cfg: Config, with_object: bool):
        sim, robot, task = cfg.sim, cfg.robot, cfg.task
        self.substeps = sim.substeps
        self.cid = cid = p.connect(p.DIRECT)
        p.setGravity(0, 0, -9.81, physicsClientId=cid)
        p.setTimeStep(1.0 / (sim.control_hz * sim.substeps), physicsClientId=cid)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=cid)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=cid)
        p.loadURDF("plane.urdf", physicsClientId=cid)
        self.body = body = p.loadURDF(
            str(resolve_urdf(robot.urdf)), [0.0, 0.0, 0.0], useFixedBase=True,
            flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid,
        )
        by_name, links, forces = {}, {}, {}
        for j in range(p.getNumJoints(body, physicsClientId=cid)):
            info = p.getJointInfo(body, j, physicsClientId=cid)
            name = info[1].decode()
            by_name[name] = j
            forces[name] = float(info[10]) if info[10] > 0 else 87.0
            links[info[12].decode()] = j
        self.joints = [by_name[n] for n in robot.urdf_joint_names]
        self.forces = [forces[n] for n in robot.urdf_joint_names]
        self.fingers = [by_name[n] for n in FINGER_JOINTS if n in by_name]
        self.ee_link = links[robot.ee_link]
        self.obj = None
        if with_object:
            half = task.object_size / 2.0
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[half] * 3, physicsClientId=cid)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[half] * 3,
                                      rgbaColor=[0.9, 0.3, 0.2, 1], physicsClientId=cid)
            self.obj = p.createMultiBody(baseMass=0.1, baseCollisionShapeIndex=col,
                                         baseVisualShapeIndex=vis, basePosition=[0.5, 0.0, half],
                                         physicsClientId=cid)
            p.changeDynamics(self.obj, -1, lateralFriction=0.5, physicsClientId=cid)
        self.last: tuple[Any, Any, Any] = (None, None, None)

    def episode(self, plan: Plan, k: int) -> None:
        """Episode ``k`` of ``plan``: the env's reset calls, then per step its calls, no more."""
        cid, body, joints, forces, ee, obj = (self.cid, self.body, self.joints, self.forces,
                                              self.ee_link, self.obj)
        motors, step_simulation = p.setJointMotorControlArray, p.stepSimulation
        joint_states, link_state, base_pose = (p.getJointStates, p.getLinkState,
                                               p.getBasePositionAndOrientation)
        velocity, substeps = p.VELOCITY_CONTROL, range(self.substeps)

        q, obj_pos = plan.resets[k]
        for j, qj in zip(joints, q):
            p.resetJointState(body, j, qj, 0.0, physicsClientId=cid)
        for j in self.fingers:
            p.resetJointState(body, j, 0.0, 0.0, physicsClientId=cid)
            p.setJointMotorControl2(body, j, p.POSITION_CONTROL, targetPosition=0.0, force=20.0,
                                    physicsClientId=cid)
        motors(body, joints, velocity, targetVelocities=[0.0] * len(joints), forces=forces,
               physicsClientId=cid)
        if obj_pos is not None:
            p.resetBasePositionAndOrientation(obj, obj_pos, [0.0, 0.0, 0.0, 1.0],
                                              physicsClientId=cid)
            p.resetBaseVelocity(obj, [0, 0, 0], [0, 0, 0], physicsClientId=cid)
        js = joint_states(body, joints, physicsClientId=cid)  # the reset's observation
        ls = link_state(body, ee, computeForwardKinematics=True, physicsClientId=cid)
        ob = base_pose(obj, physicsClientId=cid) if obj is not None else None

        start, end = plan.episodes[k]
        for cmd in plan.commands[start:end]:
            motors(body, joints, velocity, targetVelocities=cmd, forces=forces, physicsClientId=cid)
            for _ in substeps:
                step_simulation(physicsClientId=cid)
            js = joint_states(body, joints, physicsClientId=cid)
            ls = link_state(body, ee, computeForwardKinematics=True, physicsClientId=cid)
            if obj is not None:
                ob = base_pose(obj, physicsClientId=cid)
        self.last = (js, ls, ob)

    def close(self) -> None:
        p.disconnect(physicsClientId=self.cid)


def same_state(env: PandaEnv, raw: RawScene) -> bool:
    """Bit for bit: the env's joint state, end-effector and cube pose equal the raw scene's."""
    js, ls, ob = raw.last
    q, dq = env.world.joint_state(0)
    ok = (np.array_equal(q, [s[0] for s in js]) and np.array_equal(dq, [s[1] for s in js])
          and np.array_equal(env.world.ee_position(0), ls[4]))
    if raw.obj is not None:
        ok = ok and np.array_equal(env.world.object_pose(0), np.concatenate([ob[0], ob[1]]))
    return bool(ok)


# -------------------------------------------------------------------------- metadata


def metadata(cfg: Config) -> dict[str, Any]:
    return {
        "task": cfg.task.name,
        "action_mode": cfg.task.action_mode,
        "control_hz": cfg.sim.control_hz,
        "substeps": cfg.sim.substeps,
        "physics_dt": cfg.sim.physics_dt,
        "episode_steps": cfg.task.max_steps,
        **provenance(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# -------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=("reach", "push"), default="reach")
    ap.add_argument("--action-mode", choices=("joint", "ee_velocity"), default="joint")
    ap.add_argument("--steps", type=int, default=2000, help="control steps a side per repetition")
    ap.add_argument("--repeats", type=int, default=5, help="repetitions (median quoted)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the actions and the env's resets")
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke run: 200 steps x 2 repetitions (overrides --steps/--repeats)")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 200, 2
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be >= 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(None, [f"task.name={args.task}", f"task.action_mode={args.action_mode}",
                             "task.terminate_on_success=false"])
    env = PandaEnv(cfg)
    low, high = env.action_space.low, env.action_space.high
    actions = np.random.default_rng(args.seed).uniform(low, high, (args.steps, low.shape[0]))
    actions = list(actions.astype(np.float32))  # one array per step, as a policy hands them
    plan = record_plan(env, actions, args.seed)  # untimed; env warm-up
    raw = RawScene(cfg, with_object=env.task.has_object)
    for k in range(len(plan.episodes)):  # untimed; raw warm-up: both worlds share one history
        raw.episode(plan, k)
    identical = [same_state(env, raw)]

    wall = {"env": [], "raw": []}
    cpu = {"env": [], "raw": []}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        spent = {"env": [0.0, 0.0], "raw": [0.0, 0.0]}  # wall, cpu
        for k in range(len(plan.episodes)):
            for side in (("env", "raw") if k % 2 == 0 else ("raw", "env")):
                t0, c0 = time.perf_counter(), time.thread_time()
                if side == "env":
                    env_episode(env, plan, k, args.seed)
                else:
                    raw.episode(plan, k)
                c1, t1 = time.thread_time(), time.perf_counter()
                spent[side][0] += t1 - t0
                spent[side][1] += c1 - c0
        for side, (w, c) in spent.items():
            wall[side].append(args.steps / w)
            cpu[side].append(args.steps / c)
        identical.append(same_state(env, raw))
    load_after = os.getloadavg()[0]
    env.close()
    raw.close()

    env_rate, raw_rate = statistics.median(wall["env"]), statistics.median(wall["raw"])
    env_cpu, raw_cpu = statistics.median(cpu["env"]), statistics.median(cpu["raw"])
    return {
        "benchmark": "sim_steps",
        "unit": "control steps/s",
        "steps": args.steps,
        "repeats": args.repeats,
        "episodes_per_repeat": len(plan.episodes),
        "env_steps_per_s": round(env_rate, 1),
        "raw_steps_per_s": round(raw_rate, 1),
        "ratio_env_over_raw": round(env_rate / raw_rate, 4),
        "overhead_pct": round((raw_rate / env_rate - 1.0) * 100.0, 2),
        "env_steps_per_s_all": [round(r, 1) for r in wall["env"]],
        "raw_steps_per_s_all": [round(r, 1) for r in wall["raw"]],
        "env_steps_per_cpu_s": round(env_cpu, 1),
        "raw_steps_per_cpu_s": round(raw_cpu, 1),
        "overhead_pct_cpu_time": round((raw_cpu / env_cpu - 1.0) * 100.0, 2),
        "states_identical": all(identical),
        "load_avg_1min": [round(load_before, 2), round(load_after, 2)],
        **metadata(cfg),
    }


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv)), indent=2), flush=True)


if __name__ == "__main__":
    main()
