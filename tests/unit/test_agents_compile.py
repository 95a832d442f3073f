"""agent.compile: the torch.compile'd update trains, matches the eager update to float rounding,
and saves / loads the same checkpoints (no ``_orig_mod.`` keys; eager <-> compiled resumes).

Compiling costs seconds per learner (tens on a cold inductor cache), so the networks are small
and each variant is compiled once per module (the fixtures below)."""
import pytest
import torch

from robot_rl.agents.checkpoint import load_checkpoint, save_checkpoint
from robot_rl.agents.config import LearnerConfig, learner_config
from robot_rl.agents.learning import Learner
from robot_rl.config import AgentConfig, ReplayConfig
from robot_rl.replay import ReplayMirror, ReplaySampler
from robot_rl.replay.synthetic import write_synthetic_store

pytestmark = pytest.mark.unit
torch.set_num_threads(1)

OBS, ACT = 6, 3

#: td3; ddpgfd (BC with the Q-filter, mixed n-step targets, DDPGfD priorities: the actor step's
#: grad_a Q_1 feeds them); the RLPD ensemble (LayerNorm critics, member subset, mean actor)
VARIANTS = {
    "td3": ("td3", {}),
    "ddpgfd": ("ddpgfd", {}),
    "sac_rlpd": ("sac", {"ensemble_size": 5, "target_subset": 2, "critic_norm": "layer",
                         "actor_q": "mean", "policy_delay": 2}),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("replay") / "replay.zarr",
                                 obs_dim=OBS, act_dim=ACT)


def cfg(algo, compile_, **kw):
    d = learner_config(AgentConfig(algo=algo, hidden=(32, 32), batch_size=16, n_step=3,
                                   compile=compile_)).to_dict()
    d.update(kw)
    return LearnerConfig.from_dict(d)


def sampler_of(store, c, seed=7):
    s = ReplaySampler(ReplayMirror(store, 10_000), gamma=c.gamma, n_step=c.n_step,
                      demo_fraction=None, config=ReplayConfig(prioritized=True), seed=seed)
    s.refresh()
    return s


def batches(store, c, n, seed=7):
    s = sampler_of(store, c, seed)
    return [s.sample(c.batch_size) for _ in range(n)]


@pytest.fixture(scope="module", params=list(VARIANTS))
def pair(request, store):
    """(variant, eager learner, compiled learner, their metrics over the same 6 batches)."""
    algo, kw = VARIANTS[request.param]
    eager = Learner(cfg(algo, False, **kw), OBS, ACT, seed=3)
    comp = Learner(cfg(algo, True, **kw), OBS, ACT, seed=3)
    got = {"eager": [], "compiled": []}
    for b in batches(store, eager.config, 6):
        for name, lr in (("eager", eager), ("compiled", comp)):
            got[name].append({k: float(v) for k, v in lr.step(b).items()})
    return request.param, eager, comp, got


def test_compiled_update_matches_eager(pair):
    variant, eager, comp, got = pair
    assert comp.config.compile and not eager.config.compile
    for me, mc in zip(got["eager"], got["compiled"]):
        assert me.keys() == mc.keys()
        for k in me:
            assert mc[k] == pytest.approx(me[k], rel=1e-4, abs=1e-5), (variant, k)
    assert any(m["actor_updated"] for m in got["compiled"])
    se, sc = eager.state_tensors(), comp.state_tensors()
    assert se.keys() == sc.keys()  # no _orig_mod. prefix: the modules are not wrapped
    assert not any("_orig_mod" in k for k in sc)
    for k in se:
        if se[k].is_floating_point():
            assert torch.allclose(se[k], sc[k], rtol=1e-3, atol=1e-5), (variant, k)
        else:
            assert torch.equal(se[k], sc[k]), (variant, k)
    assert torch.allclose(eager.last_priorities, comp.last_priorities, rtol=1e-3, atol=1e-5)


def test_compiled_checkpoint_round_trip(pair, store, tmp_path):
    variant, eager, comp, _ = pair
    algo, kw = VARIANTS[variant]
    path = save_checkpoint(tmp_path / "ckpt.safetensors", comp, fsync=False)
    more = batches(store, comp.config, 4, seed=11)
    # a fresh compiled learner (other seed) resumes exactly where the compiled one goes on
    resumed = Learner(cfg(algo, True, **kw), OBS, ACT, seed=99)
    load_checkpoint(path, resumed)
    # and an eager one loads the same file (compile is not part of the architecture)
    as_eager = Learner(cfg(algo, False, **kw), OBS, ACT, seed=99)
    load_checkpoint(path, as_eager)
    for b in more:
        comp.step(b), resumed.step(b), as_eager.step(b)
    want, got, ge = comp.state_tensors(), resumed.state_tensors(), as_eager.state_tensors()
    assert want.keys() == got.keys() == ge.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), (variant, k)
        if want[k].is_floating_point():
            assert torch.allclose(want[k], ge[k], rtol=1e-3, atol=1e-5), (variant, k)


@pytest.mark.parametrize("algo", ["svg0", "crossq"])
def test_compile_refused_where_not_implemented(algo):
    with pytest.raises(ValueError, match="compile"):
        learner_config(AgentConfig(algo=algo, compile=True))


def test_compile_is_off_by_default():
    assert AgentConfig().compile is False
    assert learner_config(AgentConfig()).compile is False
    assert learner_config(AgentConfig(compile=True)).compile is True
