"""Checkpoints: bit-identical continuation, atomic files, architecture check, policy export."""
import json

import numpy as np
import pytest
import torch

from robot_rl.agents.checkpoint import (
    CheckpointMismatchError,
    export_policy,
    latest_checkpoint,
    load_checkpoint,
    load_policy,
    read_checkpoint,
    save_checkpoint,
)
from robot_rl.agents.config import LearnerConfig, config_hash, learner_config
from robot_rl.agents.learning import Learner
from robot_rl.config import AgentConfig, ReplayConfig
from robot_rl.replay import ReplayMirror, ReplaySampler
from robot_rl.replay.synthetic import write_synthetic_store

pytestmark = pytest.mark.unit
torch.set_num_threads(1)

OBS, ACT = 6, 3


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("replay") / "replay.zarr",
                                 obs_dim=OBS, act_dim=ACT)


def cfg(algo="ddpgfd", **kw):
    d = learner_config(AgentConfig(algo=algo, hidden=(32, 32), batch_size=16, n_step=3)).to_dict()
    d.update(kw)
    return LearnerConfig.from_dict(d)


def make(store, c, seed=7):
    sampler = ReplaySampler(ReplayMirror(store, 10_000), gamma=c.gamma, n_step=c.n_step,
                            demo_fraction=None, config=ReplayConfig(prioritized=True), seed=seed)
    return Learner(c, OBS, ACT, seed=seed), sampler


def train(learner, sampler, n):
    for _ in range(n):
        b = sampler.sample(learner.config.batch_size)
        learner.step(b)
        sampler.update_priorities(b.indices, learner.last_priorities, rows=b.rows)


def snapshot(learner):
    return {k: v.clone() for k, v in learner.state_tensors().items()}


#: the algorithms, and the RLPD / CrossQ variants whose extra state (temperature, its optimiser,
#: the member-subset generator, batch-norm running statistics) must survive a resume too
VARIANTS = {
    "ddpgfd": ("ddpgfd", {}),
    "td3": ("td3", {}),
    "svg0": ("svg0", {}),
    "sac": ("sac", {}),
    "sac_rlpd": ("sac", {"ensemble_size": 5, "target_subset": 2, "critic_norm": "layer",
                         "actor_q": "mean", "policy_delay": 2}),
    "crossq": ("crossq", {}),
    "crossq_renorm": ("crossq", {"renorm_warmup": 3}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_resume_continues_bit_identically(store, tmp_path, variant):
    algo, kw = VARIANTS[variant]
    c = cfg(algo, **kw)
    a, sa = make(store, c)
    sa.refresh()
    train(a, sa, 5)
    path = save_checkpoint(tmp_path / "ckpt_5.safetensors", a, sampler=sa,
                           extra={"env_steps": 123}, fsync=False)
    train(a, sa, 6)
    want = snapshot(a)

    b, sb = make(store, c, seed=99)  # other seed: everything must come from the checkpoint
    meta = load_checkpoint(path, b, sampler=sb)
    assert meta["extra"] == {"env_steps": 123}
    train(b, sb, 6)
    got = snapshot(b)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert a.num_steps == b.num_steps == 11
    assert np.array_equal(sa.priorities(np.arange(50)), sb.priorities(np.arange(50)))


def test_files_sidecar_and_no_temp_left(store, tmp_path):
    a, sa = make(store, cfg())
    sa.refresh()
    train(a, sa, 2)
    p = save_checkpoint(tmp_path / "ckpt_000002.safetensors", a, sampler=sa, fsync=False)
    save_checkpoint(tmp_path / "ckpt_000010.safetensors", a, fsync=False)
    side = json.loads(p.with_suffix(".json").read_text())
    assert side["format"] == "robot_rl.agents.checkpoint/1"
    assert side["architecture"]["hidden"] == [32, 32]
    assert side["learner"]["num_steps"] == 2
    assert "learner.critic_opt.0.exp_avg" in side["tensors"]
    assert "sampler.online_priorities" in side["tensors"]
    assert "learner.actor.normalizer.mean" in side["tensors"]
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".")) == []
    assert latest_checkpoint(tmp_path).name == "ckpt_000010.safetensors"
    # the file never needs pickle: plain safetensors
    from safetensors.torch import load_file
    assert "learner.rng.update" in load_file(str(p))


def test_damaged_checkpoint_is_refused(store, tmp_path):
    a, sa = make(store, cfg())
    p = save_checkpoint(tmp_path / "c.safetensors", a, fsync=False)
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        read_checkpoint(p)
    with pytest.raises(ValueError, match="safetensors"):
        save_checkpoint(tmp_path / "c.pt", a)


def test_other_architecture_fails_clearly(store, tmp_path):
    a, _ = make(store, cfg("td3"))
    p = save_checkpoint(tmp_path / "c.safetensors", a, fsync=False)
    other = Learner(cfg("td3", hidden=(16, 16)), OBS, ACT)
    with pytest.raises(CheckpointMismatchError, match=r"hidden: checkpoint has \[32, 32\], this learner has \[16, 16\]"):
        load_checkpoint(p, other)
    ddpg = Learner(cfg("ddpg"), OBS, ACT)
    with pytest.raises(CheckpointMismatchError, match="algo"):
        load_checkpoint(p, ddpg)


@pytest.mark.parametrize("algo", ["td3", "svg0", "sac", "crossq"])
def test_policy_export_round_trip(store, algo):
    a, sa = make(store, cfg(algo))
    sa.refresh()
    train(a, sa, 3)
    blob = export_policy(a, version=42)
    assert len(blob) < 200_000  # 6 -> 32 -> 32 -> 3: a few KB
    pol = load_policy(blob)
    assert pol.version == 42 and pol.architecture["obs_dim"] == OBS
    assert pol.config_hash == config_hash(pol.architecture) and len(pol.config_hash) == 16
    obs = np.random.default_rng(0).normal(size=(5, OBS)).astype(np.float32)
    assert np.array_equal(pol(obs), a.act(obs))
    assert np.array_equal(pol(obs[0]), a.act(obs[0]))
    with pytest.raises(ValueError, match="config_hash"):
        load_policy(blob, expect_hash="0" * 16)
    with pytest.raises(ValueError, match="safetensors"):
        load_policy(b"not safetensors")
