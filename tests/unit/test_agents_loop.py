"""The one training loop (robot_rl.agents.loop): the trainer's way of driving it and the learner
node's way make the same updates; pacing, intake, publication, evaluation and checkpoint cadences."""
import numpy as np
import pytest
import torch

from robot_rl.agents.config import learner_config
from robot_rl.agents.learning import Learner
from robot_rl.agents.loop import Every, TrainingLoop, prune_checkpoints
from robot_rl.config import AgentConfig, ReplayConfig
from robot_rl.replay import ReplayMirror, ReplaySampler, ReplayWriter, Source
from robot_rl.replay.synthetic import make_specs, synthetic_rows

pytestmark = pytest.mark.unit
torch.set_num_threads(1)

OBS, ACT, L = 6, 3, 25  # episode length L
DEMO_ROWS, EPISODES = 100, 8


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """100 demo rows, then 8 policy episodes of 25 steps (robot 0), then 2 of robot 3."""
    path = tmp_path_factory.mktemp("replay") / "replay.zarr"
    obs, act = make_specs(OBS, ACT)
    with ReplayWriter(path, obs, act, ReplayConfig(fsync=False, chunk_rows=64)) as w:
        w.append_batch(synthetic_rows(range(DEMO_ROWS), obs_dim=OBS, act_dim=ACT, episode_len=L,
                                      actor_session=9, source=Source.DEMO, episode_base=10_000))
        w.append_batch(synthetic_rows(range(EPISODES * L), obs_dim=OBS, act_dim=ACT,
                                      episode_len=L))
        w.append_batch(synthetic_rows(range(2 * L), obs_dim=OBS, act_dim=ACT, episode_len=L,
                                      robot_id=3, actor_session=5))
        w.flush()
    return path


ARMS = {
    # algo, utd, warm-up, PER, n-step, demo fraction (None: union)
    "td3-per": ("td3", 1.0, 40, True, 1, None),
    "sac-demos": ("sac", 2.0, 30, False, 3, 0.25),
    "svg0-utd-half": ("svg0", 0.5, 20, True, 3, None),
}


def make(store, arm, **loop_kw):
    algo, utd, warmup, per, n_step, demo_fraction = ARMS[arm]
    agent = AgentConfig(algo=algo, hidden=(32, 32), batch_size=16, n_step=n_step,
                        utd_ratio=utd, warmup_steps=warmup)
    lc = learner_config(agent)
    learner = Learner(lc, OBS, ACT, seed=11)
    sampler = ReplaySampler(ReplayMirror(store, 10_000), gamma=lc.gamma, n_step=n_step,
                            demo_fraction=demo_fraction, config=ReplayConfig(prioritized=per),
                            seed=14)
    loop = TrainingLoop(learner, sampler, utd_ratio=utd, warmup_steps=warmup,
                        device=torch.device("cpu"), **loop_kw)
    return loop


def drive_like_the_trainer(loop):
    """trainer.py: the pool starts with what the store holds; every env step earns its updates
    at once; an episode joins the pool when it ends (its rows are committed then)."""
    loop.join(DEMO_ROWS)
    seen = []
    for k in range(EPISODES):
        for _ in range(L):
            loop.env_step()
        loop.join(DEMO_ROWS + (k + 1) * L)
        seen.append((loop.learner.num_steps, dict(loop.last_metrics)))
    return seen


def drive_like_the_node(loop, slice_updates):
    """learner_node.py: each tick takes in what the store has committed (here: one more episode
    every few ticks) and runs a slice of updates -- ``slice_updates`` at most, or one past an
    expired deadline -- publishing whenever the loop says so."""
    seen, published = [], []
    loop.take_in(DEMO_ROWS, max_rows=65536)
    for k in range(EPISODES):
        loop.take_in(DEMO_ROWS + (k + 1) * L, max_rows=65536)
        while loop.due():
            if slice_updates:
                r = loop.train(max_updates=slice_updates)
            else:
                r = loop.train(deadline=0.0)  # already past: exactly one update
            if r.publish:
                published.append(loop.learner.num_steps)
        loop.take_in(DEMO_ROWS + (k + 1) * L, max_rows=65536)  # an idle tick
        seen.append((loop.learner.num_steps, dict(loop.last_metrics)))
    return seen, published


@pytest.mark.parametrize("arm", list(ARMS))
@pytest.mark.parametrize("slice_updates", [0, 3])
def test_trainer_and_node_drive_the_loop_to_the_same_updates(store, arm, slice_updates):
    a = make(store, arm)
    b = make(store, arm, publish_every=7)
    seen_a = drive_like_the_trainer(a)
    seen_b, published = drive_like_the_node(b, slice_updates)
    _, utd, warmup, *_ = ARMS[arm]
    total = int((EPISODES * L - warmup) * utd)
    assert a.learner.num_steps == b.learner.num_steps == total
    assert a.env_steps == b.env_steps == EPISODES * L
    assert published == list(range(7, total + 1, 7))
    # the same losses after every episode, bit for bit
    assert [n for n, _ in seen_a] == [n for n, _ in seen_b]
    for (n, ma), (_, mb) in zip(seen_a, seen_b):
        assert ma.keys() == mb.keys()
        for k in ma:
            assert torch.equal(ma[k], mb[k]), (n, k, ma[k], mb[k])
    # and the same learner (weights, optimiser moments, generators) and sampler at the end
    sa, sb = a.learner.state_tensors(), b.learner.state_tensors()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a.sampler.mirror.mirrored == b.sampler.mirror.mirrored == DEMO_ROWS + EPISODES * L
    if a.sampler.prioritized:
        pos = np.arange(EPISODES * L)
        np.testing.assert_array_equal(a.sampler.priorities(pos), b.sampler.priorities(pos))


def test_rows_earn_their_updates_before_they_join_the_pool_unless_newer_rows_wait(store):
    loop = make(store, "td3-per")  # warm-up 40, UTD 1, batch 16
    assert loop.take_in(DEMO_ROWS, max_rows=65536) == 0
    assert loop.sampler.mirror.mirrored == 100  # nothing earned: joined at once
    assert loop.take_in(150, max_rows=65536) == 50
    # 50 env steps: 10 updates earned; the 50 rows wait until they are done
    assert (loop.env_steps, loop.due(), loop.sampler.mirror.mirrored) == (50, 10, 100)
    r = loop.train(max_updates=4)
    assert (r.updates, loop.due(), loop.sampler.mirror.mirrored) == (4, 6, 100)
    loop.take_in(150, max_rows=65536)  # nothing new: they keep waiting
    assert loop.sampler.mirror.mirrored == 100
    # newer rows committed while updates are still due: the learner is behind the data, the
    # rows it holds join at once (the pool stays fresh), the new ones earn theirs
    assert loop.take_in(175, max_rows=10) == 10  # at most max_rows rows per intake
    assert (loop.env_steps, loop.taken, loop.sampler.mirror.mirrored) == (60, 160, 150)
    assert loop.due() == 16
    assert loop.train().updates == 16
    assert (loop.due(), loop.sampler.mirror.mirrored) == (0, 160)  # done: joined
    # rows of robot 3 (store rows 300..349) are counted per robot
    loop.take_in(350, max_rows=65536)
    assert loop.robot_steps == {0: 200, 3: 50}
    assert loop.env_steps == 250


def test_no_update_before_the_pool_holds_a_batch(tmp_path):
    path = tmp_path / "replay.zarr"
    obs, act = make_specs(OBS, ACT)
    with ReplayWriter(path, obs, act, ReplayConfig(fsync=False)) as w:
        w.append_batch(synthetic_rows(range(12), obs_dim=OBS, act_dim=ACT, episode_len=6))
        w.flush()
    agent = AgentConfig(algo="td3", hidden=(8,), batch_size=16, warmup_steps=0)
    lc = learner_config(agent)
    loop = TrainingLoop(Learner(lc, OBS, ACT), ReplaySampler(ReplayMirror(path, 100)),
                        utd_ratio=1, warmup_steps=0)
    loop.take_in(12)
    assert (loop.env_steps, loop.schedule.target(12), loop.due()) == (12, 12, 0)
    assert loop.train().updates == 0 and loop.sampler.mirror.mirrored == 12


@pytest.mark.parametrize("pacing, expect", [("cap", 0), ("floor", 5)])
def test_floor_pacing_trains_beyond_the_schedule_only_when_bounded(store, pacing, expect):
    loop = TrainingLoop(*_parts(store), utd_ratio=1.0, warmup_steps=40, pacing=pacing)
    loop.take_in(DEMO_ROWS + 30)  # 30 env steps: still warming up
    assert loop.train(max_updates=5).updates == 0
    loop.take_in(DEMO_ROWS + 50)  # 50: 10 due
    assert loop.train().updates == 10
    assert loop.train().updates == 0  # nothing due and no bound: never an endless run
    assert loop.train(max_updates=5).updates == expect
    assert loop.schedule.done == 10 + expect and loop.due() == 0


def _parts(store):
    lc = learner_config(AgentConfig(algo="td3", hidden=(8,), batch_size=16))
    return Learner(lc, OBS, ACT, seed=0), ReplaySampler(ReplayMirror(store, 10_000), seed=0)


def test_total_updates_stop_training(store):
    loop = TrainingLoop(*_parts(store), utd_ratio=1.0, warmup_steps=0, total_updates=7,
                        pacing="floor")
    loop.take_in(DEMO_ROWS + 50)
    assert loop.target() == 7 and loop.due() == 7
    assert loop.train().updates == 7 and loop.finished
    assert loop.train(max_updates=3).updates == 0


def test_publish_eval_and_checkpoint_cadences(store, tmp_path):
    now = [100.0]
    loop = TrainingLoop(*_parts(store), utd_ratio=1.0, warmup_steps=0, publish_every=4,
                        eval_every=30, checkpoint_dir=tmp_path, checkpoint_every_s=60.0,
                        keep_checkpoints=2, clock=lambda: now[0])
    loop.take_in(DEMO_ROWS + 10)
    reports = [loop.train() for _ in range(4)]
    assert [(r.updates, r.publish) for r in reports] == [(4, True), (4, True), (2, False),
                                                         (0, False)]
    assert not loop.eval_due()
    loop.take_in(DEMO_ROWS + 30)
    assert loop.eval_due()
    loop.eval_started()
    assert not loop.eval_due() and Every(30, 30).next == 60
    assert not loop.checkpoint_due()  # 60 s have not passed
    now[0] += 60
    assert loop.checkpoint_due()  # 60 s, and updates since the last (none yet)
    paths = []
    for n in (5, 6, 7):
        p = loop.checkpoint_path(n)
        p.write_bytes(b"x")
        p.with_suffix(".json").write_text("{}")
        paths.append(p)
        assert loop.saved(p) == []
    assert sorted(tmp_path.iterdir()) == sorted([*paths[1:], *(p.with_suffix(".json")
                                                                for p in paths[1:])])
    assert paths[1].name == "ckpt_000000006.safetensors"
    assert not loop.checkpoint_due()
    now[0] += 61
    assert not loop.checkpoint_due()  # no update since the last checkpoint
    loop.train(max_updates=1)
    assert loop.checkpoint_due()


def test_resume_restores_the_clock_and_the_cadences(store, tmp_path):
    loop = TrainingLoop(*_parts(store), utd_ratio=0.5, warmup_steps=10, publish_every=20,
                        eval_every=100, checkpoint_dir=tmp_path, checkpoint_every_steps=50)
    loop.learner.num_steps = 45  # as a restored learner would have it
    loop.restore(env_steps=120, updates_done=45)
    assert (loop.schedule.target(120), loop.schedule.done) == (55, 45)
    assert loop._publish.next == 60 and loop._eval.next == 200 and loop._ckpt_steps.next == 150


def test_prune_keeps_the_newest_and_never_the_protected(tmp_path):
    names = [tmp_path / f"ckpt_{i:09d}.safetensors" for i in (1, 2, 3, 4)]
    for p in names:
        p.write_bytes(b"")
        p.with_suffix(".json").write_text("{}")
    assert prune_checkpoints(tmp_path, 2, protect=names[0]) == []
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "ckpt_000000001.safetensors", "ckpt_000000003.safetensors", "ckpt_000000004.safetensors"]
    assert not names[1].with_suffix(".json").exists()
    assert prune_checkpoints(tmp_path, 0) == []  # 0 keeps all
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


@pytest.mark.parametrize("kw, field", [
    ({"pacing": "max"}, "agent.utd_pacing"),
    ({"total_updates": -1}, "total_updates"),
    ({"keep_checkpoints": -1}, "keep_checkpoints"),
    ({"checkpoint_every_s": 0.0, "checkpoint_dir": "."}, "checkpoint_every_s"),
    ({"checkpoint_every_steps": 10}, "checkpoint_dir"),
    ({"publish_every": -3}, "publish_every"),
    ({"utd_ratio": 0.0}, "agent.utd_ratio"),
])
def test_bad_settings_are_refused_naming_the_field(store, kw, field):
    args = {"utd_ratio": 1.0, "warmup_steps": 0, **kw}
    with pytest.raises(ValueError, match=field):
        TrainingLoop(*_parts(store), **args)


def test_pretrain_runs_on_demo_rows_outside_the_schedule(store, tmp_path):
    """agent.pretrain_updates: updates on a fresh run's demo rows before its first policy,
    outside the schedule, in slices if a deadline says so; nothing without demo rows."""
    import time

    loop = make(store, "sac-demos")
    loop.join(DEMO_ROWS)  # the 100 demo rows only, as a fresh run's store after recording
    assert loop.pretrain(7) == 7
    assert loop.learner.num_steps == 7 and loop.schedule.done == 0  # the schedule is untouched
    assert "critic_loss" in loop.last_metrics
    assert loop.pretrain(5, deadline=time.perf_counter() - 1) == 1  # a slice: at least one
    obs, act = make_specs(OBS, ACT)
    empty = tmp_path / "no_demos.zarr"
    with ReplayWriter(empty, obs, act, ReplayConfig(fsync=False)) as w:
        w.append_batch(synthetic_rows(range(10), obs_dim=OBS, act_dim=ACT, episode_len=5))
        w.flush()
    loop2 = make(empty, "sac-demos")
    loop2.join()
    assert loop2.pretrain(3) == 0  # policy rows only: nothing to warm-start from
    with pytest.raises(ValueError, match="pretrain_updates"):
        loop.pretrain(-1)
