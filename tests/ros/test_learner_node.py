"""learner_node as a real process over real DDS, tailing a real zarr store on disk.

The test process plays the replay node: it writes the store with :class:`ReplayWriter`
(random reach transitions with the task's specs) while the learner runs. Checked: waiting for a
store that does not exist yet, the update-to-data ratio as rows arrive, PolicyWeights (strictly
rising versions, loadable blobs, latched for a late subscriber), resume after SIGKILL with
versions above everything published before the kill, the final checkpoint on SIGINT, the
evaluation in the node's own PyBullet env, the UTD it achieves (and the warning when it falls
behind in real time, or trains beyond it with ``agent.utd_pacing=floor``), and the refusal of
another architecture's checkpoint.

Small nets and batches keep the updates cheap: one learner process trains a few hundred updates
a second here on one thread.
"""
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import UInt64

from robot_rl.actions import ActionMapper
from robot_rl.agents.checkpoint import load_policy
from robot_rl.config import load_config
from robot_rl.replay import ReplayWriter
from robot_rl.ros_nodes.common import LATCHED_QOS
from robot_rl.tasks import make_task
from robot_rl_interfaces.msg import PolicyWeights

PROBE_POLICY_QOS = QoSProfile(depth=200, reliability=LATCHED_QOS.reliability,
                              history=LATCHED_QOS.history, durability=LATCHED_QOS.durability)

LEARNER = str(Path(sys.executable).parent / "learner_node")
WARMUP = 100
EPISODE = 50
CFG = load_config(None)
OBS_SPEC = make_task(CFG.task, CFG.robot).observation_spec
ACT_SPEC = ActionMapper(CFG.task, CFG.robot).spec


def _args(run_dir: Path, **extra) -> list[str]:
    params = {"run_dir": str(run_dir), "agent.hidden": "[32,32]", "agent.batch_size": 32,
              "agent.warmup_steps": WARMUP, "agent.utd_ratio": 1.0, "agent.device": "cpu",
              "publish_every": 50, "checkpoint_every_s": 1000, "log_every_s": 2, "nice": 0,
              **extra}
    out = [LEARNER, "--ros-args"]
    for k, v in params.items():
        out += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    return out


class Store:
    """The test's replay writer: random reach transitions, episodes of 50 steps."""

    def __init__(self, path: Path):
        self.writer = ReplayWriter(path, OBS_SPEC, ACT_SPEC, CFG.replay)
        self.rng = np.random.default_rng(0)
        self.seq = 0

    def append(self, n: int, source: int = 0) -> int:
        low, high = OBS_SPEC.low, OBS_SPEC.high
        for _ in range(n):
            ep, t = divmod(self.seq, EPISODE)
            obs = self.rng.uniform(low, high).astype(np.float32)
            nobs = self.rng.uniform(low, high).astype(np.float32)
            act = self.rng.uniform(-1, 1, ACT_SPEC.dim).astype(np.float32)
            self.writer.append(observation=obs, action=act, next_observation=nobs,
                               reward=-float(self.rng.uniform()), terminated=False,
                               truncated=t == EPISODE - 1, source=source, robot_id=0,
                               actor_session=1, seq=self.seq, episode_id=ep, step_index=t)
            self.seq += 1
        self.writer.flush()
        return self.writer.committed_length

    def close(self):
        self.writer.close()


class Probe:
    """The test's node: PolicyWeights (latched) and the learner's /diagnostics."""

    def __init__(self):
        self.node = rclpy.create_node("learner_probe")
        self.policies: list[PolicyWeights] = []
        # the latched profile, but a deep reader queue: while the test waits on a process's log
        # the probe does not spin, and a learner may publish several versions meanwhile (a
        # depth-1 reader keeps only the newest, and a test that counts versions misses some)
        self.node.create_subscription(PolicyWeights, "/rl/policy", self.policies.append,
                                      PROBE_POLICY_QOS)
        self.diag: list[dict[str, str]] = []
        self.levels: list[int] = []  # the status level of each entry of diag
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diag, 10)
        self.allowance: list[int] = []
        self.node.create_subscription(UInt64, "/rl/env_step_allowance",
                                      lambda m: self.allowance.append(m.data), 10)

    def on_diag(self, msg):
        for st in msg.status:
            if st.name == "/learner_node":
                self.diag.append({kv.key: kv.value for kv in st.values})
                self.levels.append(st.level[0] if isinstance(st.level, bytes) else st.level)

    def spin_until(self, cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.02)
            if cond():
                return True
        return False

    def versions(self):
        return [m.version for m in self.policies]

    def caught_up(self, env_steps: int):
        """The learner has mirrored ``env_steps`` policy rows and done the UTD-due updates."""
        def cond():
            d = self.diag[-1] if self.diag else {}
            return (d.get("env_steps") == str(env_steps)
                    and d.get("updates") == str(env_steps - WARMUP))
        return cond


@pytest.fixture
def probe():
    rclpy.init()
    p = Probe()
    yield p
    p.node.destroy_node()
    rclpy.shutdown()


def _check_blob(msg: PolicyWeights):
    pol = load_policy(bytes(msg.safetensors), expect_hash=msg.config_hash)
    assert pol.version == msg.version
    a = pol(np.zeros(OBS_SPEC.dim, np.float32))
    assert a.shape == (ACT_SPEC.dim,) and np.all(np.abs(a) <= 1)


def test_waits_for_store_trains_at_utd_and_publishes_latched(ros_process, probe, tmp_path):
    t0 = time.monotonic()
    run = tmp_path / "run"
    proc = ros_process(_args(run), name="learner")
    proc.wait_for_line(r"waiting for the replay store .*replay\.zarr", timeout=60)
    # matched before the first publication, so every version reaches the probe
    assert probe.spin_until(lambda: probe.node.count_publishers("/rl/policy") == 1, 20)
    store = Store(run / "replay.zarr")
    try:
        assert store.append(400) == 400
        proc.wait_for_line(r"replay store .*: 400 rows committed; training from 0 updates", 30)
        # 400 env steps, warm-up 100, UTD 1 -> 300 updates -> versions 1..6 (every 50 updates)
        assert probe.spin_until(probe.caught_up(400), 60), (probe.diag[-1:], proc.tail())
        assert probe.spin_until(lambda: len(probe.policies) >= 2 and
                                probe.policies[-1].version == 6, 10), (probe.versions(),
                                                                       proc.tail())
        v = probe.versions()
        assert v == sorted(set(v)) and v[-1] == 6, v
        for m in probe.policies:
            _check_blob(m)
        d = probe.diag[-1]
        assert d["policy_version"] == "6" and d["rows"] == "400" and d["demo_rows"] == "0"
        for key in ("updates_per_s", "eval_success_rate", "eval_env_steps", "checkpoint", "utd",
                    "utd.robot_0", "env_steps_per_s.robot_0"):
            assert key in d
        assert (d["utd_ratio"], d["utd_pacing"], d["utd_behind"]) == ("1", "cap", "false")

        # A late subscriber (transient_local) gets the newest policy at once.
        late: list[PolicyWeights] = []
        probe.node.create_subscription(PolicyWeights, "/rl/policy", late.append, LATCHED_QOS)
        assert probe.spin_until(lambda: late, 5)
        assert [m.version for m in late] == [6]
        _check_blob(late[0])

        # Rows keep arriving while it trains: it follows them at the UTD ratio.
        lags, done = [], []
        for _ in range(6):
            store.append(100)  # 100 rows/s: 100 updates/s due
            probe.spin_until(lambda: False, 1.0)
            lags.append(int(probe.diag[-1]["updates_behind"]))
            done.append(int(probe.diag[-1]["updates"]))
        assert probe.spin_until(probe.caught_up(1000), 30), (probe.diag[-1:], proc.tail())
        assert probe.spin_until(lambda: probe.versions()[-1] == 18, 10), probe.versions()
        v = probe.versions()
        assert v == sorted(set(v)), v
        _check_blob(probe.policies[-1])
        rates = [float(d["updates_per_s"]) for d in probe.diag]
        print(f"\nlearner: UTD lag while rows arrived (updates behind target): {lags}; "
              f"updates/s peak {max(rates):.0f}; test {time.monotonic() - t0:.1f} s")
        # it trained while the rows arrived (not only afterwards), and never ran ahead of UTD
        assert done == sorted(set(done)), done
        assert all(int(d["updates"]) <= int(d["update_target"]) for d in probe.diag)
        assert (run / "policy.safetensors").exists()
        assert json.loads((run / "learner" / "policy_version.json").read_text())["version"] == 18
    finally:
        store.close()


def test_sigkill_resumes_from_checkpoint_and_versions_keep_rising(ros_process, probe, tmp_path):
    t0 = time.monotonic()
    run = tmp_path / "run"
    store = Store(run / "replay.zarr")
    try:
        store.append(100, source=1)  # two demo episodes: sampled, kept, but earn no updates
        store.append(400)
        # DDPGfD with 3-step returns, prioritized replay and a demo fraction: the sampler's
        # priorities and pools go through the checkpoint too
        args = _args(run, publish_every=20, checkpoint_every_s=4, **{
            "agent.algo": "ddpgfd", "agent.n_step": 3, "agent.demo_fraction": 0.25,
            "replay.prioritized": True})
        first = ros_process(args, name="learner-1")
        m = first.wait_for_line(r"checkpoint (\S+ckpt_(\d+)\.safetensors) \((\d+) updates, "
                                r"version (\d+),", 60)
        ckpt, ckpt_updates, ckpt_version = m.group(1), int(m.group(3)), int(m.group(4))
        assert int(m.group(2)) == ckpt_updates and ckpt_version == ckpt_updates // 20
        # Newer policies than the checkpoint holds, then a real SIGKILL before the next one.
        store.append(200)
        assert probe.spin_until(lambda: probe.versions() and
                                probe.versions()[-1] >= ckpt_version + 3, 20), probe.versions()
        first.popen.send_signal(signal.SIGKILL)
        first.popen.wait(10)
        before = probe.versions()
        persisted = json.loads((run / "learner" / "policy_version.json").read_text())["version"]
        assert ckpt_version < max(before) <= persisted
        assert sorted((run / "checkpoints").glob("*.safetensors"))[-1] == Path(ckpt)
        n_before = len(probe.policies)

        second = ros_process(args, name="learner-2")
        second.wait_for_line(rf"resumed from {ckpt} at {ckpt_updates} updates, \d+ rows "
                             rf"\(\d+ env steps, 100 demo rows\)", 60)
        assert probe.spin_until(lambda: len(probe.policies) > n_before, 20), second.tail()
        after = probe.versions()[n_before:]
        assert after[0] > max(before), (before, after)
        assert after[0] == persisted + 1  # continues from the persisted version, not the ckpt's
        second.wait_for_line(rf"published policy version {after[0]} \(resume\) at "
                             rf"{ckpt_updates} updates", 5)
        _check_blob(probe.policies[n_before])
        # and it trains on: 600 env steps -> 500 updates
        assert probe.spin_until(probe.caught_up(600), 30), (probe.diag[-1:], second.tail())
        assert probe.diag[-1]["rows"] == "700" and probe.diag[-1]["demo_rows"] == "100"
        # caught up, the env-step allowance is the slack beyond the 600 rows it has seen --
        # a margin, the same after a resume as in a fresh run (an absolute count would let a
        # freshly started sim run 600 + 500 steps ungated)
        slack = 500
        assert probe.spin_until(lambda: probe.allowance and probe.allowance[-1] == slack, 5), \
            probe.allowance[-5:]
        v = probe.versions()[n_before:]
        assert v == sorted(set(v)) and v[-1] > after[0]
        print(f"\nlearner: versions before kill {before[-3:]}, checkpoint at version "
              f"{ckpt_version}, after restart {v[:3]}...{v[-1]}; test "
              f"{time.monotonic() - t0:.1f} s")
    finally:
        store.close()


def test_sigint_final_checkpoint_and_eval_in_sim(ros_process, probe, tmp_path):
    run = tmp_path / "run"
    store = Store(run / "replay.zarr")
    try:
        store.append(400)
        proc = ros_process(_args(run, eval_in_sim=True, nice=10, **{
            "run.eval_every": 200, "run.eval_episodes": 2}), name="learner")
        proc.wait_for_line(r"niceness (\d+ -> 10 |\d+ kept)", 60)
        proc.wait_for_line(r"eval @ 400 env steps \(\d+ updates\): success \d+% \(2 episodes, "
                           r"seeds 1000000\.\.1000001\)", 60)
        store.append(200)
        proc.wait_for_line(r"eval @ 600 env steps", 60)
        assert probe.spin_until(probe.caught_up(600), 30), (probe.diag[-1:], proc.tail())
        assert probe.diag[-1]["eval_env_steps"] == "600"
        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, proc.tail()
        m = proc.wait_for_line(r"final checkpoint (\S+) \(500 updates, version (\d+),", 1)
        ckpt = Path(m.group(1))
        assert ckpt == run / "checkpoints" / "ckpt_000000500.safetensors" and ckpt.exists()
        side = json.loads(ckpt.with_suffix(".json").read_text())
        assert side["extra"]["updates"] == 500 and side["extra"]["rows"] == 600
        assert side["extra"]["version"] == int(m.group(2))
        # policy.safetensors holds the final weights under the final version
        pol = load_policy((run / "policy.safetensors").read_bytes())
        assert pol.version == int(m.group(2))
        rows = (run / "eval.csv").read_text().splitlines()
        assert rows[0].startswith("env_steps,updates,wall_s,success_rate")
        assert [r.split(",")[0] for r in rows[1:]] == ["400", "600"]
        # episodes, first seed, then the wall clock of the policy snapshot and of the result
        assert all(r.split(",")[-4:-2] == ["2", "1000000"] for r in rows[1:])
        for r in rows[1:]:
            snap, done = (float(x) for x in r.split(",")[-2:])
            assert time.time() - 600 < snap <= done <= time.time()
        from robot_rl.agents.tblog import read_scalars

        tags = {tag for f in (run / "tb").glob("events.out.tfevents.*")
                for _, tag, _ in read_scalars(f)}
        assert {"eval/success_rate", "train/critic_loss", "train/updates_per_s",
                "train/policy_version"} <= tags, tags
    finally:
        store.close()


def test_realtime_learner_reports_its_utd_and_warns_when_behind(ros_process, probe, tmp_path):
    # UTD 200 on this CPU: every 50 new rows ask for 10,000 updates, far more than it can do
    run = tmp_path / "run"
    store = Store(run / "replay.zarr")
    try:
        store.append(400)
        proc = ros_process(_args(run, **{"agent.utd_ratio": 200, "sim.clock": "realtime",
                                         "utd_window_s": 2.0}), name="learner")
        proc.wait_for_line(r"replay store .*: 400 rows committed", 60)
        for _ in range(8):
            store.append(50)
            probe.spin_until(lambda: False, 0.5)
        assert probe.spin_until(lambda: probe.diag and probe.diag[-1]["utd_behind"] == "true",
                                10), (probe.diag[-1:], proc.tail())
        d, level = probe.diag[-1], probe.levels[-1]
        assert level == 1 and d["utd_ratio"] == "200"  # DiagnosticStatus.WARN
        assert 0 < float(d["utd"]) < 180 and float(d["utd.robot_0"]) == float(d["utd"])
        proc.wait_for_line(r"the learner falls behind agent\.utd_ratio=200 in real time", 5)
    finally:
        store.close()


def test_floor_pacing_trains_beyond_the_utd_ratio(ros_process, probe, tmp_path):
    run = tmp_path / "run"
    store = Store(run / "replay.zarr")
    try:
        store.append(400)  # 300 updates due; with utd_pacing=floor it goes on
        proc = ros_process(_args(run, **{"agent.utd_pacing": "floor"}), name="learner")
        assert probe.spin_until(lambda: probe.diag and int(probe.diag[-1]["updates"]) > 400,
                                60), (probe.diag[-1:], proc.tail())
        d = probe.diag[-1]
        assert d["update_target"] == "300" and d["utd_pacing"] == "floor"
        assert d["updates_behind"] == "0" and d["utd_behind"] == "false"
        store.append(100)  # new rows: it achieves more than one update per env step
        assert probe.spin_until(lambda: probe.diag[-1]["env_steps"] == "500" and
                                probe.diag[-1]["utd"] not in ("", None), 20), probe.diag[-1:]
        assert float(probe.diag[-1]["utd"]) > 1.0
    finally:
        store.close()


def test_hindsight_relabelling_in_the_learner_node(ros_process, probe, tmp_path):
    """agent.her: the learner node builds the trainer's relabelling sampler (the same
    robot_rl.replay.her, tests/unit/test_replay_her.py) and trains on it at its UTD."""
    run = tmp_path / "run"
    store = Store(run / "replay.zarr")
    try:
        store.append(WARMUP + 60)
        proc = ros_process(_args(run, **{"agent.her": "future", "agent.her_k": 4,
                                         "task.reward": "sparse"}), name="learner")
        proc.wait_for_line(r"hindsight relabelling: her=future k=4 \(80% of each batch", 60)
        assert probe.spin_until(lambda: probe.diag and probe.diag[-1]["updates"] == "60", 60), (
            probe.diag[-1:], proc.tail())
    finally:
        store.close()


def test_pretrain_on_demo_rows_then_publish_then_the_schedule(ros_process, probe, tmp_path):
    """agent.pretrain_updates: a fresh learner whose store holds demo rows warm-starts on them
    (in slices of slice_s, tests/unit/test_agents_loop.py), publishes that policy, and then its
    env steps earn their updates as usual (the warm start is outside the UTD count)."""
    run = tmp_path / "run"
    store = Store(run / "replay.zarr")
    try:
        store.append(60, source=1)  # demo rows only (batches are drawn with replacement)
        proc = ros_process(_args(run, **{"agent.pretrain_updates": 300, "slice_s": 0.02,
                                         "publish_every": 10_000}), name="learner")
        proc.wait_for_line(r"pretrained on 60 demo rows: 300 updates", 60)
        assert probe.spin_until(lambda: probe.versions() == [1], 10), probe.versions()
        store.append(WARMUP + 40)  # policy rows: 40 updates due after the warm-up
        assert probe.spin_until(lambda: probe.diag and probe.diag[-1]["updates"] == "340"
                                and probe.diag[-1]["update_target"] == "40", 30), probe.diag[-1:]
    finally:
        store.close()


def test_refusals_exit_2_naming_the_cause(ros_process, tmp_path):
    from robot_rl.agents.checkpoint import save_checkpoint
    from robot_rl.agents.config import learner_config
    from robot_rl.agents.learning import Learner
    from robot_rl.replay.synthetic import make_specs

    bad = ros_process(_args(tmp_path / "bad", publish_every=0), name="bad-param")
    # a checkpoint written for another architecture
    run = tmp_path / "run"
    other = CFG.agent.model_copy(update={"hidden": (16,)})
    learner = Learner(learner_config(other), OBS_SPEC.dim, ACT_SPEC.dim)
    save_checkpoint(run / "checkpoints" / "ckpt_000000010.safetensors", learner)
    arch = ros_process(_args(run), name="other-arch")
    # a store made for another observation spec
    ReplayWriter(tmp_path / "spec" / "replay.zarr", *make_specs(OBS_SPEC.dim, ACT_SPEC.dim),
                 CFG.replay).close()
    spec = ros_process(_args(tmp_path / "spec"), name="other-spec")

    assert bad.wait(60) == 2, bad.tail()
    assert "publish_every: expected an integer >= 1, got 0" in bad.output, bad.tail()
    assert arch.wait(60) == 2, arch.tail()
    assert "written for another architecture" in arch.output, arch.tail()
    assert "hidden: checkpoint has [16], this learner has [32, 32]" in arch.output, arch.tail()
    assert spec.wait(60) == 2, spec.tail()
    assert "created for another observation/action spec" in spec.output, spec.tail()
