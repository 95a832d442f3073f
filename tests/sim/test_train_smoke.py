"""CI smoke of the in-process trainer: TD3 on dense reach, a few thousand steps, fixed seed.

It must clearly beat the random policy on the same fixed list of evaluation episodes, and leave
a complete run directory (config, provenance, CSVs, TensorBoard events, checkpoint, policy) that
``robot-rl eval`` / ``plot`` and ``--resume`` can use. The full learning runs (>= 95% success)
are in bench/learning.py and the ``slow`` test below.
"""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from robot_rl.agents.checkpoint import load_policy
from robot_rl.agents.tblog import read_scalars
from robot_rl.agents.trainer import evaluate, load_for_eval, train
from robot_rl.config import load_config

pytestmark = pytest.mark.sim

SMOKE = ["agent.algo=td3", "agent.hidden=[64, 64]", "agent.batch_size=128",
         "agent.warmup_steps=500", "agent.torch_threads=1", "agent.device=cpu",
         "run.total_steps=3000", "run.eval_every=3000", "run.eval_episodes=50",
         "run.log_every=1000", "run.seed=0", "replay.fsync=false"]


def random_baseline(cfg):
    from robot_rl.sim.env import PandaEnv

    env = PandaEnv(cfg)
    rng = np.random.default_rng(123)
    try:
        dim = env.action_space.shape[0]
        return evaluate(lambda _o: rng.uniform(-1, 1, dim).astype(np.float32), env,
                        cfg.run.eval_episodes, cfg.run.eval_seed)
    finally:
        env.close()


def test_td3_smoke_beats_random_and_writes_a_complete_run(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(None, SMOKE + [f"run.root={tmp_path}", "run.name=smoke"])
    lines = []
    res = train(cfg, log=lines.append)
    rand = random_baseline(cfg)
    ev = res.final_eval
    print("\n".join(lines))
    print(f"random: return {rand.mean_return:.2f} success {rand.success_rate:.0%}; "
          f"td3: return {ev['mean_return']:.2f} success {ev['success_rate']:.0%}")
    assert res.env_steps == 3000 and res.updates == 2500  # UTD 1 after 500 warm-up steps
    # clearly better than random on the same 50 seeded episodes
    assert ev["mean_return"] > rand.mean_return + 3.0
    assert ev["success_rate"] >= rand.success_rate + 0.04  # at least 2 more of the 50

    run = tmp_path / "smoke"
    for name in ("config.yaml", "provenance.json", "progress.csv", "eval.csv",
                 "policy.safetensors", "checkpoints/ckpt_000003000.safetensors",
                 "checkpoints/ckpt_000003000.json"):
        assert (run / name).exists(), name
    prov = json.loads((run / "provenance.json").read_text())
    assert {"git_commit", "packages", "machine", "command", "learner"} <= prov.keys()
    assert prov["packages"]["torch"].startswith("2.")
    rows = list(csv.DictReader(open(run / "progress.csv")))
    assert [int(r["env_steps"]) for r in rows] == [1000, 2000, 3000]
    assert float(rows[-1]["updates_per_s"]) > 0
    (tb,) = (run / "tb").glob("events.out.tfevents.*")
    tags = {t for _, t, _ in read_scalars(tb)}
    assert {"eval/success_rate", "train/episode_return", "train/critic_loss"} <= tags
    assert any(line.startswith("eval @ 3000 steps") for line in lines)

    # the exported policy is the checkpoint's actor
    learner, _ = load_for_eval(run / "checkpoints/ckpt_000003000.safetensors")
    pol = load_policy((run / "policy.safetensors").read_bytes())
    obs = np.random.default_rng(0).normal(size=(4, 20)).astype(np.float32)
    assert np.array_equal(pol(obs), learner.act(obs))

    # robot-rl eval reproduces the trainer's final evaluation (same seeds, deterministic policy)
    out = subprocess.run([sys.executable, "-m", "robot_rl.cli", "eval",
                          str(run / "checkpoints/ckpt_000003000.safetensors"), "--episodes", "10",
                          "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["episodes"] == 10 and 0 <= got["success_rate"] <= 1

    # resume continues from the checkpoint's counters
    cfg2 = load_config(None, SMOKE + [f"run.root={tmp_path}", "run.name=smoke",
                                      "run.total_steps=3200", "run.eval_episodes=5"])
    res2 = train(cfg2, resume=True, log=lines.append)
    assert res2.env_steps == 3200 and res2.updates == 2700
    with pytest.raises(ValueError, match="already holds a run"):
        train(cfg2, log=lines.append)

    pytest.importorskip("matplotlib")
    out = subprocess.run([sys.executable, "-m", "robot_rl.cli", "plot", str(run)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



@pytest.mark.parametrize("algo, extra", [
    ("ddpgfd", ["task.reward=sparse", "run.demo_episodes=3", "agent.n_step=5",
                "agent.demo_sampling=union", "replay.prioritized=true", "agent.critic_l2=1e-5"]),
    ("svg0", ["agent.demo_fraction=0.5", "run.demo_episodes=2"]),
    ("ddpgfd", ["task.name=push", "task.max_steps=100", "task.reward=sparse",
                "run.demo_episodes=2", "agent.demo_sampling=union"]),
    ("ddpg", ["agent.exploration=ou", "agent.target_update=hard", "agent.target_update_period=50",
              "agent.utd_ratio=0.5"]),
    # the RLPD recipe's switches: LayerNorm ensemble of 5, min over 2, G = UTD = 2, 50/50 demos
    ("sac", ["task.reward=sparse", "run.demo_episodes=2", "agent.demo_fraction=0.5",
             "agent.ensemble_size=5", "agent.critic_norm=layer", "agent.utd_ratio=2",
             "agent.policy_delay=2"]),
    ("crossq", ["agent.n_step=3"]),
])
def test_every_algorithm_runs_through_the_trainer(tmp_path, algo, extra):
    """Short runs of the other algorithms: demos in the store, PER priorities, n-step, OU noise,
    hard targets, UTD 0.5 -- the wiring, not the learning."""
    from robot_rl.agents.checkpoint import read_checkpoint
    from robot_rl.replay import ReplayReader

    torch.set_num_threads(1)
    cfg = load_config(None, [
        "agent.hidden=[32, 32]", "agent.batch_size=64", "agent.warmup_steps=200",
        "run.total_steps=400", "run.eval_every=400", "run.eval_episodes=2", "run.log_every=200",
        "agent.torch_threads=1", "agent.device=cpu", "replay.fsync=false",
        f"run.root={tmp_path}", f"run.name={algo}", f"agent.algo={algo}"] + extra)
    res = train(cfg, log=lambda _s: None)
    utd = cfg.agent.utd_ratio
    assert res.env_steps == 400 and res.updates == int(200 * utd)
    store = ReplayReader(tmp_path / algo / "replay.zarr")
    src = store.read(0, len(store), ("source",))["source"]
    assert (src == 0).sum() == 400
    assert (src == 1).sum() > 0 if cfg.run.demo_episodes else (src == 1).sum() == 0
    tensors, meta = read_checkpoint(tmp_path / algo / "checkpoints" / "ckpt_000000400.safetensors")
    assert meta["learner"]["config"]["algo"] == algo
    if cfg.replay.prioritized:
        pri = tensors["sampler.demo_priorities"]
        assert len(pri) == (src == 1).sum() and float(pri.max()) > 0
        assert meta["learner"]["config"]["priority_formula"] == "ddpgfd"
        assert meta["learner"]["config"]["critic_targets"] == "mixed"
    assert meta["extra"]["noise"]["kind"] == cfg.agent.exploration
    if algo in ("sac", "crossq"):
        assert "learner.temperature.log_alpha" in tensors
        assert ("learner.target_critic.weight.0" in tensors) == (algo == "sac")


@pytest.mark.parametrize("algo, extra", [
    ("sac", ["agent.ensemble_size=5", "agent.critic_norm=layer", "agent.utd_ratio=2",
             "agent.policy_delay=2"]),
    ("crossq", []),
])
def test_sac_and_crossq_learn_dense_reach_a_little(tmp_path, algo, extra):
    """CI smoke of the new families' learning: 3,000 env steps of dense reach with small
    networks beat the random policy's return on the same 20 evaluation episodes clearly (at
    this budget TD3 does too: the full results are bench/learning.py's, docs/results.md)."""
    torch.set_num_threads(1)
    cfg = load_config(None, [
        f"agent.algo={algo}", "agent.hidden=[64, 64]", "agent.batch_size=128",
        "agent.warmup_steps=500", "agent.init_temperature=0.05", "task.action_mode=ee_velocity",
        "agent.torch_threads=1", "agent.device=cpu", "run.total_steps=3000",
        "run.eval_every=3000", "run.eval_episodes=20", "run.log_every=1000", "run.seed=0",
        "replay.fsync=false", f"run.root={tmp_path}", f"run.name={algo}"] + extra)
    res = train(cfg, log=lambda _s: None)
    rand = random_baseline(cfg)
    assert res.env_steps == 3000
    # measured here (seed 0, 1 thread): sac -7.6, crossq -10.5, random -15.8
    assert res.final_eval["mean_return"] > rand.mean_return + 3.0, (res.final_eval, rand)

def _success_curve(bench, arm: str, tmp_path, seed: int = 0) -> list[float]:
    bench.run_ours(arm, seed, str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / f"{arm}_s{seed}" / "eval.csv")))
    assert int(rows[-1]["env_steps"]) == bench.ARMS[arm]["budget"], rows[-1]
    return [float(r["success_rate"]) for r in rows]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~10 min each on 2 idle cores; the suite's 300 s would cut it
@pytest.mark.parametrize("arm", ["td3_ee", "svg0"])
def test_dense_reach_is_solved_within_the_fixed_budget(arm, tmp_path, bench_learning):
    """The full versions of the smoke (bench/learning.py, seed 0, 30k env steps, ee_velocity
    actions): some evaluation on the 50 fixed seeds reaches >= 95 % success. About 10 minutes
    each on 2 cores."""
    curve = _success_curve(bench_learning, arm, tmp_path)
    assert max(curve) >= 0.95, curve


@pytest.mark.slow
@pytest.mark.timeout(7200)  # ~30 min on 2 idle cores
def test_demos_make_sparse_reach_learnable(tmp_path, bench_learning):
    """bench/learning.py's sparse-reach pair with TD targets clipped to the returns' range
    (``agent.target_clip`` auto, the default for sparse rewards since session 5), seed 0, 40k
    env steps, evaluations every 2k: DDPGfD with 10 scripted demo episodes is at >= 90 % by 16k
    and ends >= 90 %; the same learner with no demo rows stays < 30 % through 20k. (With the
    clip, the no-demo learner of seed 0 does learn later -- 54-70 % from 34k on, docs/
    results.md -- so the bound covers the first half of the budget; set after that run.)
    About 30 minutes on 2 cores."""
    bench = bench_learning
    with_demos = _success_curve(bench, "ddpgfd_clip", tmp_path)
    without = _success_curve(bench, "ddpg_nodemo_clip", tmp_path)
    every = bench.EVAL_EVERY
    assert max(with_demos[:16_000 // every]) >= 0.9, with_demos
    assert with_demos[-1] >= 0.9, with_demos
    assert max(without[:20_000 // every]) < 0.3, without


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~12 min on 2 idle cores
def test_crossq_reaches_95_percent_on_dense_reach_within_6k_env_steps(tmp_path, bench_learning):
    """Issue 16's headline arm (bench/learning.py ``crossq_u3_g95_dense``: CrossQ, UTD 3, gamma
    0.95, 10k env steps, evaluations every 500) on its first seed, 10: some evaluation by 6k
    env steps reaches >= 95 % (measured in session 9: 98 % at 5k; TD3 and SB3 TD3 need 16-26k).
    About 12 minutes on 2 cores."""
    bench = bench_learning
    curve = _success_curve(bench, "crossq_u3_g95_dense", tmp_path, seed=10)
    every = bench.ARMS["crossq_u3_g95_dense"]["eval_every"]
    assert max(curve[:6_000 // every]) >= 0.95, curve


@pytest.mark.parametrize("which", ["applied", "proposed"])
def test_training_through_the_safety_filter_stores_what_the_arm_did(tmp_path, which):
    """run.train_through_safety: the trainer's env acts through the safety node's filter, as the
    graph does, and the store holds the applied command in the action space (an actor node's
    applied_action) with the rules that changed it. Warm-up's uniform actions jump by more
    than the acceleration limits allow at 20 Hz: those rows are clamped and marked; the rows the
    filter left alone hold the proposed action (to the damped least-squares map's round trip).
    replay.policy_action=proposed stores the proposals (the rules still marked)."""
    from robot_rl.agents.acting import BehaviourPolicy
    from robot_rl.replay import ReplayReader
    from robot_rl.safety import Rule

    n = 150
    cfg = load_config(None, [
        "agent.algo=crossq", "agent.hidden=[16, 16]", "agent.warmup_steps=150",
        "task.action_mode=ee_velocity", "safety.ee_speed_max=0.55", "agent.torch_threads=1",
        f"run.total_steps={n}", "run.eval_every=150", "run.eval_episodes=1", "run.seed=2",
        "run.train_through_safety=true", "replay.fsync=false", f"run.root={tmp_path}",
        "run.name=safe", f"replay.policy_action={which}"])
    res = train(cfg, log=lambda _s: None)
    assert res.env_steps == n
    cols = ReplayReader(tmp_path / "safe" / "replay.zarr").read(
        0, n, ("action", "safety_rules", "step_index"))
    rules = cols["safety_rules"].astype(np.int64)
    stored = cols["action"].astype(np.float64)
    # the behaviour policy's warm-up draws, regenerated (seed run.seed + 4, uniform: seed + 5)
    lo, hi = -np.ones(3, np.float32), np.ones(3, np.float32)
    bp = BehaviourPolicy(cfg.agent, lo, hi, seed=cfg.run.seed + 4, warmup=n)
    proposed = np.stack([bp(np.zeros(9, np.float32), None, t) for t in range(n)]).astype(float)
    acc = (rules & int(Rule.ACCELERATION | Rule.JERK)) != 0
    assert acc.mean() > 0.3, acc.mean()  # uniform jumps at 20 Hz: mostly clamped
    if which == "proposed":
        np.testing.assert_array_equal(stored, proposed)
        return
    free = rules == 0
    assert free.sum() >= 3, rules
    np.testing.assert_allclose(stored[free], proposed[free], atol=0.05)
    assert np.abs(stored[acc] - proposed[acc]).max() > 0.3
    assert np.all(stored >= -1) and np.all(stored <= 1)
