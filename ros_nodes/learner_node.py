"""learner_node: trains from the replay store and publishes the policy (DESIGN §2, §4, §8).

One per graph, in the root namespace. The learning is :mod:`robot_rl.agents` (the same
``Learner``, ``ReplayMirror``/``ReplaySampler``, ``UpdateSchedule`` and checkpoints as the
in-process trainer, :mod:`robot_rl.agents.trainer`); this node only tails the store, paces the
updates, and turns the results into messages and files.

* **Store.** ``<run_dir>/replay.zarr`` is written by the replay node (another process). Until it
  exists (and holds a commit marker) the node waits and says so once. It is tailed through a
  :class:`~robot_rl.replay.ReplayMirror` (refreshed every ``refresh_s``, at most
  ``refresh_rows`` rows per tick so a large backlog does not stall the node) and sampled by a
  :class:`~robot_rl.replay.ReplaySampler` configured exactly as the trainer configures it
  (``agent.demo_fraction`` / ``agent.demo_sampling``, ``agent.n_step``, ``replay.prioritized``
  and the PER settings). A store created for another observation/action spec is refused.
* **Pacing.** The trainer's loop, :class:`~robot_rl.agents.loop.TrainingLoop`: this node feeds it
  the store's commit length every ``refresh_s`` and runs its updates in slices of at most
  ``slice_s`` seconds on a timer, so the node stays responsive (diagnostics, Ctrl-C) whatever
  the backlog; it publishes, checkpoints and evaluates when the loop says so. *env steps* are the
  store's policy rows (``source=policy``). As in the trainer, after ``n`` env steps the learner
  has done ``floor((n - agent.warmup_steps) * agent.utd_ratio)`` updates
  (:class:`~robot_rl.agents.schedule.UpdateSchedule`), and none before the pool holds a batch
  (``agent.batch_size`` rows); new rows earn their updates, sampled from the rows the node held
  before them, then join the pool (at once when newer rows are committed meanwhile). Demo rows
  are sampled but, as in the trainer, do not earn updates. PER priorities are updated after
  every step, as in the trainer. ``total_updates`` > 0 stops training there (the node stays up,
  so its latched policy stays available). ``agent.utd_pacing=floor``: train as fast as the
  hardware allows once warmed up (a robot in real time does not wait for the learner), the UTD
  ratio being the least it must reach.
* **UTD achieved.** ``/diagnostics`` reports the updates per new env step over the last
  ``utd_window_s`` seconds (``utd``; ``utd.robot_<id>``: updates per env step of that robot, from
  the store rows' robot ids) next to the configured ``utd_ratio``; in real time
  (``sim.clock=realtime``: a lab arm, or the sim without lockstep) a learner that falls behind
  it (it did less than 90 % of the updates due in the window and its backlog grew) sets
  ``utd_behind``, the status level to warn, and logs a warning (at most once a minute).
* **Policy.** Every ``publish_every`` updates the actor is exported
  (:func:`~robot_rl.agents.checkpoint.export_policy`) and published as ``PolicyWeights`` on
  ``policy_topic`` (reliable, transient_local, depth 1: a late or restarted actor gets the newest
  at once). Its ``version`` rises strictly across restarts and crashes: the new version is
  written to ``<run_dir>/learner/policy_version.json`` (atomic, fsync) *before* the message
  leaves, and a starting node continues above the largest of that file, the checkpoint's and
  ``policy.safetensors``'s version. Each publication also rewrites ``<run_dir>/policy.safetensors``
  (the same blob). After a resume the restored policy is published at once.
* **Checkpoints.** ``<run_dir>/checkpoints/ckpt_<updates:09d>.safetensors`` (+ ``.json``):
  learner, sampler state, and ``extra`` = updates, version, rows/env steps/demo rows mirrored,
  the resolved config (so ``robot-rl eval`` reads it like a trainer checkpoint). Written every
  ``checkpoint_every_s`` seconds when there are new updates, and on shutdown (SIGINT/SIGTERM ->
  ``destroy_node``); the newest ``keep_checkpoints`` are kept. On start the newest readable
  checkpoint is resumed (a damaged one is skipped with a warning); one written for another
  architecture stops the node (exit 2) naming each differing field.
* **Evaluation** (``eval_in_sim``, DESIGN §8): every ``run.eval_every`` env steps the deterministic
  policy (a snapshot of the exported actor) runs ``run.eval_episodes`` episodes seeded
  ``run.eval_seed + i`` in the node's own :class:`~robot_rl.sim.env.PandaEnv` with the safety
  filter between policy and arm (``safety=True``: as in the graph it learned in) -- the trainer's
  :func:`~robot_rl.agents.trainer.evaluate`, one episode per timer tick. Rows go to
  ``<run_dir>/eval.csv`` (the trainer's columns) and TensorBoard. pybullet is imported only then.
* **Logs.** TensorBoard scalars in ``<run_dir>/tb`` (``train/*`` losses, updates/s, version,
  rows; ``eval/*``; step = env steps, as in the trainer), a progress line every ``log_every_s``
  (and a last one on shutdown),
  ``/diagnostics`` once a second (state, updates, updates_per_s, update_target (what the UTD
  ratio asks for now), updates_behind, utd, utd_ratio, utd_pacing, utd_behind, utd.robot_<id>,
  env_steps_per_s.robot_<id>, policy_version, rows, demo_rows, env_steps, eval_success_rate,
  eval_env_steps, checkpoint), and
  ``<run_dir>/learner/provenance.json`` (git commit, packages, machine, device, threads,
  resumed checkpoint, resolved learner config).
* **Beside actors.** ``agent.torch_threads`` unset means 1 thread here; the node raises its own
  niceness to ``nice`` (default 10; never lowers it); device ``agent.device`` (auto: CUDA when
  present).

Nothing is pickled; ``torch.load`` is never used (safetensors + JSON only).
"""
from __future__ import annotations

import array
import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from robot_rl.config import ConfigError
from robot_rl.graph import DIAGNOSTICS_TOPIC, POLICY_TOPIC
from robot_rl.ros_nodes.common import LATCHED_QOS, run_node, status_message
from robot_rl.ros_nodes.params import declare_config
from robot_rl_interfaces.msg import PolicyWeights

#: Node parameters besides the robot_rl config: name -> (default, description).
PARAMETERS: dict[str, tuple[Any, str]] = {
    "run_dir": ("", "run directory (replay.zarr, checkpoints/, tb/, eval.csv); "
                    "'' = run.root/run.name"),
    "policy_topic": (POLICY_TOPIC, "PolicyWeights topic (latched)"),
    "diagnostics_topic": (DIAGNOSTICS_TOPIC, "diagnostic_msgs/DiagnosticArray, 1 Hz"),
    "publish_every": (200, "updates between PolicyWeights publications"),
    "checkpoint_every_s": (60.0, "seconds between checkpoints (when there are new updates)"),
    "keep_checkpoints": (5, "newest checkpoints kept (0: keep all)"),
    "eval_in_sim": (False, "evaluate the deterministic policy in the node's own PyBullet env every "
                           "run.eval_every env steps (DESIGN 8)"),
    "total_updates": (0, "stop training after this many updates (0: unlimited)"),
    "nice": (10, "raise this process's niceness to this value at start (never lowered)"),
    "slice_s": (0.05, "longest run of updates between two executor turns (s)"),
    "refresh_s": (0.1, "how often the store is tailed for new rows (s)"),
    "refresh_rows": (65536, "most store rows taken in per timer tick"),
    "log_every_s": (10.0, "seconds between progress lines (and TensorBoard train scalars)"),
    "allowance_topic": ("/rl/env_step_allowance",
                        "std_msgs/UInt64: env steps the sim may still take beyond the policy rows "
                        "the learner has seen, without the learner falling behind its UTD ratio "
                        "(a lockstep sim waits for it; '' = not published)"),
    "allowance_slack": (500, "env steps of allowance beyond the UTD target (rows in flight)"),
    "utd_window_s": (10.0, "seconds over which the achieved UTD ratio is measured (diagnostics)"),
}

VERSION_FILE = "policy_version.json"


def read_version_file(path: Path) -> tuple[int, str | None]:
    """``(version, problem)``: the persisted policy version (0 if missing), and what was wrong
    with the file if it could not be read."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return 0, None
    except (OSError, ValueError) as e:
        return 0, f"unreadable ({e})"
    v = data.get("version") if isinstance(data, dict) else None
    if not isinstance(v, int) or v < 0:
        return 0, f"no non-negative integer 'version' in {data!r}"
    return v, None


def policy_file_version(path: Path) -> int:
    """The ``version`` in the metadata of a policy export (0 if missing or unreadable)."""
    from robot_rl.agents.checkpoint import _safetensors_metadata

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return 0
            n = int.from_bytes(head, "little")
            meta = _safetensors_metadata(head + f.read(n))
        return int(meta.get("version", 0))
    except (OSError, ValueError):
        return 0


class LearnerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("learner_node", **kwargs)
        self.cfg = cfg = declare_config(self, ("robot", "task", "sim", "agent", "replay", "run"))
        p = {}
        for name, (default, doc) in PARAMETERS.items():
            d = ParameterDescriptor(description=doc, dynamic_typing=True)
            p[name] = self.declare_parameter(name, default, d).value
        self.params = p = self._check_params(p)
        log = self.get_logger()
        self.t_start = time.time()

        # -- process: priority, threads, device ---------------------------------------------
        self._renice(p["nice"])

        from robot_rl.actions import ActionMapper
        from robot_rl.agents.checkpoint import policy_architecture
        from robot_rl.agents.config import config_hash, learner_config
        from robot_rl.agents.learning import Learner
        from robot_rl.agents.networks import resolve_device, set_torch_threads
        from robot_rl.agents.schedule import UtdMeter
        from robot_rl.tasks import make_task

        agent = cfg.agent
        try:
            self.threads = set_torch_threads(agent.torch_threads or 1)
            self.device = resolve_device(agent.device)
            self.utd_meter = UtdMeter(agent.utd_ratio, p["utd_window_s"])
            self.obs_fields = make_task(cfg.task, cfg.robot).obs_spec
            self.obs_spec = self.obs_fields.flat
            self.act_spec = ActionMapper(cfg.task, cfg.robot).spec
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.lcfg = learner_config(agent, cfg.replay)
        self.learner = Learner(self.lcfg, self.obs_spec.dim, self.act_spec.dim,
                               action_low=self.act_spec.low.astype(np.float32),
                               action_high=self.act_spec.high.astype(np.float32),
                               device=self.device, seed=cfg.run.seed,
                               observation=self.obs_fields)
        #: what export_policy puts in its metadata, and what actors check (load_policy)
        self.config_hash = config_hash(policy_architecture(self.learner))

        # -- files ---------------------------------------------------------------------------
        self.run_dir = Path(p["run_dir"] or cfg.run.run_dir).expanduser()
        self.store_path = self.run_dir / "replay.zarr"
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.learner_dir = self.run_dir / "learner"
        self.version_path = self.learner_dir / VERSION_FILE
        self.policy_path = self.run_dir / "policy.safetensors"
        try:
            self.learner_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"run_dir: cannot create {self.learner_dir} ({e})") from None
        self.checkpoint = self._pick_checkpoint()  # architecture checked here, loaded later
        persisted, problem = read_version_file(self.version_path)
        if problem:
            log.warning(f"{self.version_path}: {problem}; continuing above the checkpoint's and "
                        f"{self.policy_path.name}'s versions")
        self.version = max(persisted, policy_file_version(self.policy_path),
                           self._checkpoint_meta.get("extra", {}).get("version", 0)
                           if self.checkpoint else 0)
        self.published_version: int | None = None

        # -- ROS -----------------------------------------------------------------------------
        self.policy_pub = self.create_publisher(PolicyWeights, p["policy_topic"], LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, p["diagnostics_topic"], 10)
        from std_msgs.msg import UInt64

        self._UInt64 = UInt64
        self.allowance_pub = (self.create_publisher(UInt64, p["allowance_topic"], 10)
                              if p["allowance_topic"] else None)
        self._allowance_sent = (-1, 0.0)

        from robot_rl.agents.tblog import EventWriter

        self.tb = EventWriter(self.run_dir / "tb")
        self.eval_env = None
        self.eval_csv = None
        if p["eval_in_sim"]:
            from robot_rl.agents.trainer import EVAL_FIELDS, _Csv
            from robot_rl.sim.env import PandaEnv  # pybullet: only when evaluating here

            # With the safety filter between policy and arm, as in the graph that trained it.
            self.eval_env = PandaEnv(cfg, safety=True)
            self.eval_csv = _Csv(self.run_dir / "eval.csv", EVAL_FIELDS)

        # -- state ---------------------------------------------------------------------------
        self.sampler = None  # set once the store is open
        self._updates_done: int | None = None  # the schedule's count in a resumed checkpoint
        self._pretrain_left = 0  # warm-start updates still to run (agent.pretrain_updates)
        self.loop = None  # the TrainingLoop, once the store is open (and a checkpoint resumed)
        self.realtime = cfg.sim.clock == "realtime"
        self.state = "waiting for store"
        self.last_ckpt: Path | None = self.checkpoint
        self.last_publish_updates = 0
        self.last_eval: dict[str, Any] | None = None
        self._eval_run: dict[str, Any] | None = None
        self._meter_baseline = False
        self._waiting_logged: str | None = None
        self._next_open_try = 0.0
        self._next_refresh = 0.0
        self._diag_mark = (time.monotonic(), 0)
        self.updates_per_s = 0.0
        self._log_mark = (time.monotonic(), 0)
        self._next_log = time.monotonic() + p["log_every_s"]
        self._done_logged = False
        self._log_seen: tuple[int, int] | None = None
        self._demo_warned = False

        self.create_timer(0.01, self.on_tick)
        self.create_timer(1.0, self.publish_diagnostics)
        log.info(
            f"learner node: algo={agent.algo} hidden={list(self.lcfg.hidden)} "
            f"batch={self.lcfg.batch_size} utd={agent.utd_ratio} ({agent.utd_pacing}) "
            f"warmup={agent.warmup_steps} "
            f"device={self.device} threads={self.threads} run_dir={self.run_dir} "
            f"publish_every={p['publish_every']} checkpoint_every_s={p['checkpoint_every_s']:g} "
            f"eval_in_sim={p['eval_in_sim']} policy_topic={p['policy_topic']} "
            f"version={self.version}")
        self._try_open_store()

    # ------------------------------------------------------------------ set-up helpers

    @staticmethod
    def _check_params(p: dict[str, Any]) -> dict[str, Any]:
        def num(name: str, kind: type, low: float, strict: bool = False) -> Any:
            v = p[name]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if ok and kind is int:
                ok = float(v).is_integer()
            if ok:
                v = kind(v)
                ok = v > low if strict else v >= low
            if not ok:
                rel = ">" if strict else ">="
                raise ConfigError(f"{name}: expected {'an integer' if kind is int else 'a number'}"
                                  f" {rel} {low:g}, got {p[name]!r}")
            return v

        out = dict(p)
        out["publish_every"] = num("publish_every", int, 1)
        out["checkpoint_every_s"] = num("checkpoint_every_s", float, 0, strict=True)
        out["keep_checkpoints"] = num("keep_checkpoints", int, 0)
        out["total_updates"] = num("total_updates", int, 0)
        out["nice"] = num("nice", int, -20)
        out["slice_s"] = num("slice_s", float, 0, strict=True)
        out["refresh_s"] = num("refresh_s", float, 0)
        out["refresh_rows"] = num("refresh_rows", int, 1)
        out["log_every_s"] = num("log_every_s", float, 0, strict=True)
        out["allowance_slack"] = num("allowance_slack", int, 0)
        out["utd_window_s"] = num("utd_window_s", float, 0, strict=True)
        if not isinstance(p["allowance_topic"], str):
            raise ConfigError(f"allowance_topic: expected a string, got {p['allowance_topic']!r}")
        for name in ("run_dir", "policy_topic", "diagnostics_topic"):
            if not isinstance(p[name], str):
                raise ConfigError(f"{name}: expected a string, got {p[name]!r}")
        for name in ("policy_topic", "diagnostics_topic"):
            if not p[name]:
                raise ConfigError(f"{name}: expected a topic name, got ''")
        if not isinstance(p["eval_in_sim"], bool):
            raise ConfigError(f"eval_in_sim: expected true or false, got {p['eval_in_sim']!r}")
        return out

    def _renice(self, target: int) -> None:
        log = self.get_logger()
        try:
            cur = os.nice(0)
            if target > cur:
                new = os.nice(target - cur)
                log.info(f"niceness {cur} -> {new} (nice={target}: below the control loop)")
            else:
                log.info(f"niceness {cur} kept (nice={target} would not lower the priority)")
        except OSError as e:
            if e.errno != errno.EPERM:
                raise
            log.warning(f"cannot change niceness to {target}: {e}")

    def _pick_checkpoint(self) -> Path | None:
        """The newest checkpoint whose sidecar reads (its architecture must match ours)."""
        from robot_rl.agents.checkpoint import architecture_difference

        self._checkpoint_meta: dict[str, Any] = {}
        found = sorted(p for p in self.ckpt_dir.glob("ckpt_*.safetensors")
                       if p.with_suffix(".json").exists())
        for path in reversed(found):
            try:
                meta = json.loads(path.with_suffix(".json").read_text())
                arch = meta["architecture"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                self.get_logger().warning(f"checkpoint {path}: sidecar unreadable ({e}); trying "
                                          "an older one")
                continue
            diff = architecture_difference(arch, self.learner.architecture())
            if diff:
                raise ConfigError(
                    f"checkpoint {path} was written for another architecture (agent.* / task.* "
                    "parameters differ from the run that wrote it); use its settings or a new "
                    "run_dir:\n  " + "\n  ".join(diff))
            self._checkpoint_meta = meta
            return path
        return None

    def _try_open_store(self) -> bool:
        """Open the store if it is there (else log once and wait); resume; start training."""
        from robot_rl.agents.loop import TrainingLoop
        from robot_rl.replay import ReplayMirror, ReplaySampler, StoreError

        now = time.monotonic()
        if now < self._next_open_try:
            return False
        self._next_open_try = now + 0.5
        try:
            mirror = ReplayMirror(self.store_path, self.cfg.replay.capacity)
            mirror.reader.commit()
        except (StoreError, ValueError, KeyError, OSError) as e:  # not there (yet), or half made
            msg = str(e)
            if self._waiting_logged != msg:
                self.get_logger().info(f"waiting for the replay store {self.store_path} ({msg})")
                self._waiting_logged = msg
            return False
        try:
            mirror.reader.layout.check_matches(self.obs_fields, self.act_spec,
                                               str(self.store_path))
        except StoreError as e:
            raise ConfigError(f"task/robot: {e}") from None
        agent = self.cfg.agent
        demo_fraction = None if agent.demo_sampling == "union" else agent.demo_fraction
        her = None
        if agent.her != "none":  # the same relabelling as the in-process trainer's
            from robot_rl.replay.her import relabeler_for_task
            from robot_rl.tasks import make_task

            her = relabeler_for_task(make_task(self.cfg.task, self.cfg.robot), agent.her,
                                     agent.her_k)
            self.get_logger().info(f"hindsight relabelling: {her.describe()}")
        self.sampler = ReplaySampler(mirror, gamma=agent.gamma, n_step=agent.n_step,
                                     demo_fraction=demo_fraction, config=self.cfg.replay,
                                     seed=self.cfg.run.seed + 3, her=her)
        self.mirror = mirror
        if self.checkpoint is not None:
            self._resume()
        p = self.params
        self.loop = loop = TrainingLoop(
            self.learner, self.sampler, utd_ratio=agent.utd_ratio,
            warmup_steps=agent.warmup_steps, pacing=agent.utd_pacing, device=self.device,
            total_updates=p["total_updates"], publish_every=p["publish_every"],
            eval_every=self.cfg.run.eval_every if self.eval_env is not None else None,
            checkpoint_dir=self.ckpt_dir, checkpoint_every_s=p["checkpoint_every_s"],
            keep_checkpoints=p["keep_checkpoints"])
        loop.restore(env_steps=mirror.online_seen,
                     updates_done=(self._updates_done if self._updates_done is not None
                                   else self.learner.num_steps))
        if self.checkpoint is not None:
            loop.last_checkpoint = self.checkpoint
            loop.checkpoint_updates = self.learner.num_steps
        # an offline warm start on the demo rows (agent.pretrain_updates), on a fresh start only
        self._pretrain_left = agent.pretrain_updates if self.checkpoint is None else 0
        self.last_publish_updates = self.learner.num_steps
        self._log_mark = (time.monotonic(), self.learner.num_steps)
        self._diag_mark = self._log_mark
        self.state = "warm-up"
        self._write_provenance()
        self.get_logger().info(
            f"replay store {self.store_path}: {mirror.reader.commit().length} rows committed; "
            f"training from {self.learner.num_steps} updates")
        if self.checkpoint is not None:
            self.publish_policy("resume")
        return True

    def _resume(self) -> None:
        from robot_rl.agents.checkpoint import CheckpointMismatchError, load_checkpoint

        path = self.checkpoint
        try:
            meta = load_checkpoint(path, self.learner, sampler=self.sampler)
        except CheckpointMismatchError as e:
            raise ConfigError(f"run_dir: {e}") from None
        except ValueError as e:
            raise ConfigError(f"run_dir: cannot resume from {path} with the store "
                              f"{self.store_path}: {e}") from None
        ex = meta.get("extra", {})
        self.version = max(self.version, int(ex.get("version", 0)))
        # the schedule's count: the updates the env steps earned (a warm start's are not)
        self._updates_done = int(ex.get("updates_done", self.learner.num_steps))
        self.get_logger().info(
            f"resumed from {path} at {self.learner.num_steps} updates, {self.mirror.mirrored} "
            f"rows ({self.mirror.online_seen} env steps, {self.mirror.n_demo} demo rows); policy "
            f"version continues above {self.version}")

    def _write_provenance(self) -> None:
        from robot_rl import provenance as prov
        from robot_rl.agents.checkpoint import write_atomic

        data = {**prov.provenance(), "command": sys.argv,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.t_start)),
                "node": self.get_fully_qualified_name(), "torch_threads": self.threads,
                "device": str(self.device), "niceness": os.nice(0),
                "resumed_from": str(self.checkpoint) if self.checkpoint else None,
                "learner": self.lcfg.to_dict(), "params": self.params,
                "config": self.cfg.model_dump(mode="json")}
        try:
            write_atomic(self.learner_dir / "provenance.json",
                         json.dumps(data, indent=1, default=str).encode(), fsync=False)
        except OSError as e:
            self.get_logger().warning(f"cannot write provenance.json: {e}")

    # ------------------------------------------------------------------ counters

    @property
    def env_steps(self) -> int:
        """Policy rows taken in from the store so far (the trainer's env steps)."""
        return self.loop.env_steps if self.loop is not None else 0

    # ------------------------------------------------------------------ the loop

    def allowance(self) -> int:
        """Env steps (policy rows) the sim may still take beyond the ``env_steps`` the learner
        has seen in the store, without the learner falling behind its UTD target:
        ``max(warmup, batch) + ceil(updates done / utd_ratio) + allowance_slack - env_steps``
        (at least 0); ``allowance_slack`` alone before the store is open; unlimited once
        ``total_updates`` is reached.

        A margin, not an absolute count: the sim counts the steps *it* made, which start at 0
        whenever it starts, while the store's count goes on across runs -- an absolute allowance
        let a resumed run's sim take as many ungated steps as the store already held (a
        ``--resume`` of a 12k-step run ran 12k steps at 8 updates/s). The sim adds the margin
        to its own count when it arrives; rows in flight (made but not yet mirrored) let it run
        that many steps ahead, never more."""
        total = self.params["total_updates"]
        if total and self.learner.num_steps >= total:
            return 2**63 - 1
        slack = self.params["allowance_slack"]
        if self.loop is None:
            return slack
        sched = self.loop.schedule
        ratio = sched.ratio
        done = sched.done
        steps = -(-done * ratio.denominator // ratio.numerator)  # ceil(done / ratio)
        limit = max(sched.warmup, self.lcfg.batch_size) + int(steps) + slack
        return max(0, limit - self.env_steps)

    def _publish_allowance(self) -> None:
        if self.allowance_pub is None:
            return
        a = self.allowance()
        now = time.monotonic()
        last, t = self._allowance_sent
        if (a != last and now - t >= 0.02) or now - t >= 0.5:
            self.allowance_pub.publish(self._UInt64(data=a))
            self._allowance_sent = (a, now)

    def on_tick(self) -> None:
        self._publish_allowance()
        if self.loop is None:
            self._try_open_store()
            return
        loop = self.loop
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + self.params["refresh_s"]
            loop.take_in(self.mirror.reader.commit().length, self.params["refresh_rows"])
            self._check_demo_sampling()
            if not self._meter_baseline:  # the rows already stored are no achieved UTD
                self._meter_baseline = True
                self.utd_meter.reset()
                self._record_utd(now)
        if self._eval_run is not None:
            self._eval_episode()
        elif loop.eval_due():
            self._start_eval()
        self._train_slice()
        if loop.checkpoint_due():
            self.save_checkpoint()
        now = time.monotonic()
        if now >= self._next_log:
            self._log_progress(now)

    def _check_demo_sampling(self) -> None:
        agent = self.cfg.agent
        if (not self._demo_warned and self.mirror.n_demo and agent.demo_sampling == "fixed"
                and agent.demo_fraction == 0):
            self._demo_warned = True
            self.get_logger().warning(
                f"the store holds {self.mirror.n_demo} demo/intervention rows but "
                "agent.demo_fraction is 0 with agent.demo_sampling=fixed: they are never "
                "sampled; set agent.demo_fraction (e.g. 0.5) or agent.demo_sampling=union")

    def _pretrain_slice(self) -> None:
        """Up to ``slice_s`` of the warm start; its end publishes the pretrained policy."""
        loop, log = self.loop, self.get_logger()
        if not self.mirror.n_demo:
            log.warning(f"agent.pretrain_updates={self.cfg.agent.pretrain_updates}: the store "
                        "holds no demo rows to pretrain on; training from scratch")
            self._pretrain_left = 0
            return
        self.state = "pretraining"
        done = loop.pretrain(self._pretrain_left,
                             deadline=time.perf_counter() + self.params["slice_s"])
        self._pretrain_left -= done
        if self._pretrain_left == 0:
            log.info(f"pretrained on {self.mirror.n_demo} demo rows: "
                     f"{self.cfg.agent.pretrain_updates} updates")
            self.publish_policy("pretrained")

    def _train_slice(self) -> None:
        loop = self.loop
        if self._pretrain_left > 0:
            self._pretrain_slice()
            return
        if loop.finished:
            if not self._done_logged:
                self._done_logged = True
                self.state = "done"
                if self.learner.num_steps != self.last_publish_updates:
                    self.publish_policy("total_updates")
                self.save_checkpoint()
                self.get_logger().info(f"reached total_updates={loop.total_updates}: training "
                                       "stopped; the policy stays published")
            return
        deadline = time.perf_counter() + self.params["slice_s"]
        while True:
            r = loop.train(deadline=deadline)
            if r.publish:
                self.publish_policy()
            if not r.publish or time.perf_counter() >= deadline:
                break
        if self.learner.num_steps > 0 or loop.target() > 0:
            self.state = "training"

    # ------------------------------------------------------------------ policy

    def _persist_version(self, version: int) -> None:
        from robot_rl.agents.checkpoint import write_atomic

        body = {"version": version, "updates": self.learner.num_steps, "time": time.time()}
        write_atomic(self.version_path, (json.dumps(body) + "\n").encode(), fsync=True)

    def publish_policy(self, why: str = "") -> int:
        """Export, persist the next version, then write policy.safetensors and publish."""
        from robot_rl.agents.checkpoint import export_policy, write_atomic

        version = self.version + 1
        self._persist_version(version)  # first: a crash after this never reuses the number
        self.version = version
        blob = export_policy(self.learner, version=version)
        write_atomic(self.policy_path, blob, fsync=self.cfg.replay.fsync)
        msg = PolicyWeights(version=version, config_hash=self.config_hash,
                            safetensors=array.array("B", blob), stamp_ns=time.time_ns())
        try:
            self.policy_pub.publish(msg)
        except Exception as e:  # noqa: BLE001 - at shutdown the context may be gone already
            self.get_logger().warning(f"policy version {version} not published ({e}); it is in "
                                      f"{self.policy_path}")
        else:
            self.published_version = version
        self.last_publish_updates = self.learner.num_steps
        if why:
            self.get_logger().info(f"published policy version {version} ({why}) at "
                                   f"{self.learner.num_steps} updates, {len(blob)} bytes")
        return version

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, final: bool = False) -> Path | None:
        from robot_rl.agents.checkpoint import save_checkpoint

        loop = self.loop
        if loop is None:  # the learner's state is valid (fresh or resumed) once the store is open
            return None
        loop.checkpoint_tried()
        n = self.learner.num_steps
        if n == loop.checkpoint_updates or (n == 0 and self.last_ckpt is None):
            return None
        path = loop.checkpoint_path(n)
        extra = {"updates": n, "updates_done": loop.schedule.done, "version": self.version,
                 "rows": self.mirror.mirrored, "env_steps": self.env_steps,
                 "demo_rows": self.mirror.n_demo, "node": "learner_node",
                 "config": self.cfg.model_dump(mode="json")}
        t0 = time.perf_counter()
        save_checkpoint(path, self.learner, sampler=self.sampler, extra=extra,
                        fsync=self.cfg.replay.fsync)
        self.last_ckpt = path
        self.get_logger().info(f"{'final ' if final else ''}checkpoint {path} ({n} updates, "
                               f"version {self.version}, {self.mirror.mirrored} rows) "
                               f"[{time.perf_counter() - t0:.2f} s]")
        for problem in loop.saved(path):  # prunes to the newest keep_checkpoints
            self.get_logger().warning(f"cannot remove old checkpoint {problem}")
        return path

    # ------------------------------------------------------------------ evaluation

    def _start_eval(self) -> None:
        from robot_rl.agents.checkpoint import export_policy, load_policy

        self._eval_run = {"policy": load_policy(export_policy(self.learner, self.version)),
                          "env_steps": self.env_steps, "updates": self.learner.num_steps,
                          "results": [], "t0": time.perf_counter(), "snapshot_unix": time.time()}
        self.loop.eval_started()

    def _eval_episode(self) -> None:
        from robot_rl.agents.trainer import evaluate

        run, ev = self.cfg.run, self._eval_run
        i = len(ev["results"])
        ev["results"].append(evaluate(ev["policy"], self.eval_env, 1, run.eval_seed + i))
        if len(ev["results"]) < run.eval_episodes:
            return
        self._eval_run = None
        res = ev["results"]
        success = float(np.mean([r.success_rate for r in res]))
        ret = float(np.mean([r.mean_return for r in res]))
        dist = float(np.mean([r.mean_final_distance for r in res]))
        row = {"env_steps": ev["env_steps"], "updates": ev["updates"],
               "wall_s": round(time.time() - self.t_start, 2), "success_rate": success,
               "mean_return": ret, "mean_final_distance": dist, "episodes": len(res),
               "first_seed": run.eval_seed,
               # wall clock of the policy snapshot and of the result (real-time benchmarks)
               "snapshot_unix": round(ev["snapshot_unix"], 3), "time_unix": round(time.time(), 3)}
        self.eval_csv.row(row)
        self.tb.scalars(ev["env_steps"], {"eval/success_rate": success, "eval/mean_return": ret,
                                          "eval/final_distance": dist})
        self.tb.flush()
        self.last_eval = row
        self.get_logger().info(
            f"eval @ {ev['env_steps']} env steps ({ev['updates']} updates): success "
            f"{success:.0%} ({len(res)} episodes, seeds {run.eval_seed}.."
            f"{run.eval_seed + len(res) - 1}), return {ret:.2f}, final distance {dist:.3f} m "
            f"[{time.perf_counter() - ev['t0']:.1f} s]")

    # ------------------------------------------------------------------ logging

    def _log_progress(self, now: float) -> None:
        self._next_log = now + self.params["log_every_s"]
        if self.sampler is None:
            return
        t, n = self._log_mark
        seen = (self.learner.num_steps, self.mirror.mirrored)
        if seen == self._log_seen:
            return  # idle (waiting for rows, or done): nothing new to say
        self._log_seen = seen
        rate = (self.learner.num_steps - n) / max(now - t, 1e-9)
        self._log_mark = (now, self.learner.num_steps)
        scalars = {"train/updates": self.learner.num_steps, "train/updates_per_s": rate,
                   "train/policy_version": self.version, "train/rows": self.mirror.mirrored,
                   "train/demo_rows": self.mirror.n_demo}
        losses = {k: float(v) for k, v in self.loop.last_metrics.items()
                  if k not in ("actor_updated", "actor_saturation")}
        scalars.update({f"train/{k}": v for k, v in losses.items()})
        self.tb.scalars(self.env_steps, scalars)
        self.tb.flush()
        loss_s = f" | critic {losses['critic_loss']:.4f}" if "critic_loss" in losses else ""
        sat = self.learner.actor_saturation
        if sat is not None:
            self.tb.scalars(self.env_steps, {"train/actor_saturation": float(sat)})
            from robot_rl.agents.learning import SATURATION_WARN, saturation_message

            if float(sat) > SATURATION_WARN:
                loss_s += f" | SATURATED {float(sat):.0%}"
                self.get_logger().warning(saturation_message(float(sat), self.cfg.agent),
                                          throttle_duration_sec=300.0)
        self.get_logger().info(
            f"{self.state} | updates {self.learner.num_steps} ({rate:.0f}/s, target "
            f"{self.loop.schedule.target(self.env_steps)}) | rows {self.mirror.mirrored} (env steps "
            f"{self.env_steps}, demo {self.mirror.n_demo}) | version {self.version}{loss_s}")

    def _record_utd(self, now: float) -> None:
        loop = self.loop
        self.utd_meter.record(now, updates=self.learner.num_steps, env_steps=loop.env_steps,
                              target=loop.target(), robot_steps=loop.robot_steps)

    def utd_values(self, now: float) -> tuple[dict[str, Any], str | None]:
        """The achieved-UTD diagnostics, and a warning when the learner falls behind in real time
        (None otherwise)."""
        agent = self.cfg.agent
        values: dict[str, Any] = {"utd": "", "utd_ratio": f"{agent.utd_ratio:g}",
                                  "utd_pacing": agent.utd_pacing, "utd_behind": "false"}
        if self.loop is None:
            return values, None
        self._record_utd(now)
        r = self.utd_meter.reading()
        if r.utd is not None:
            values["utd"] = f"{r.utd:.2f}"
        span = max(r.window_s, 1e-9)
        for rid, (steps, utd) in r.robots.items():
            values[f"utd.robot_{rid}"] = "" if utd is None else f"{utd:.2f}"
            values[f"env_steps_per_s.robot_{rid}"] = f"{steps / span:.1f}"
        if not (self.realtime and r.behind):
            return values, None
        values["utd_behind"] = "true"
        achieved = "-" if r.utd is None else f"{r.utd:.2f}"
        return values, (f"the learner falls behind agent.utd_ratio={agent.utd_ratio:g} in real "
                        f"time: {r.updates} updates for {r.env_steps} new env steps in the last "
                        f"{r.window_s:.0f} s (UTD {achieved}; the schedule asked for "
                        f"{r.expected}), {r.backlog} updates behind; a faster device "
                        "(agent.device), more agent.torch_threads, a smaller agent.batch_size "
                        "or agent.hidden, or a lower agent.utd_ratio would let it keep up")

    def publish_diagnostics(self) -> None:
        now = time.monotonic()
        t, n = self._diag_mark
        self.updates_per_s = (self.learner.num_steps - n) / max(now - t, 1e-9)
        self._diag_mark = (now, self.learner.num_steps)
        ev = self.last_eval or {}
        target = self.loop.target() if self.loop is not None else 0
        values = {
            "state": self.state,
            "updates": self.learner.num_steps,
            "updates_per_s": f"{self.updates_per_s:.1f}",
            "update_target": target,
            "updates_behind": max(0, target - self.learner.num_steps),
            "policy_version": self.published_version if self.published_version else "",
            "rows": self.mirror.mirrored if self.sampler else 0,
            "demo_rows": self.mirror.n_demo if self.sampler else 0,
            "env_steps": self.env_steps,
            "eval_success_rate": ev.get("success_rate", ""),
            "eval_env_steps": ev.get("env_steps", ""),
            "checkpoint": str(self.last_ckpt) if self.last_ckpt else "",
            "device": str(self.device),
            "torch_threads": self.threads,
        }
        utd, behind = self.utd_values(now)
        values.update(utd)
        level, message = ("warn" if self.sampler is None else "ok"), self.state
        if behind:
            level, message = "warn", f"{self.state}; behind the UTD ratio"
            self.get_logger().warning(behind, throttle_duration_sec=60.0)
        self.diag_pub.publish(status_message(self, level, message, values))

    # ------------------------------------------------------------------ shutdown

    def destroy_node(self) -> None:
        """Final progress line and TensorBoard scalars, final checkpoint (and the matching
        policy.safetensors) before the node goes."""
        try:
            if self.loop is not None:
                self._log_progress(time.monotonic())  # what came since the last line, if any
            if (self.loop is not None
                    and self.learner.num_steps != self.loop.checkpoint_updates):
                if self.learner.num_steps != self.last_publish_updates:
                    self.publish_policy("final")
                self.save_checkpoint(final=True)
        except Exception as e:  # noqa: BLE001 - say so, and still release everything
            self.get_logger().error(f"final checkpoint failed: {type(e).__name__}: {e}")
        finally:
            self.tb.close()
            if self.eval_csv is not None:
                self.eval_csv.close()
            if self.eval_env is not None:
                self.eval_env.close()
            super().destroy_node()


def main(args=None) -> int:
    return run_node(LearnerNode, "learner_node", args)


if __name__ == "__main__":
    sys.exit(main())
