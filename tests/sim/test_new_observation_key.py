"""Issue 17: a new observation key added in one place -- a task's ``observation_parts`` -- trains
through the store, the mirror, the sampler and the learner with no other module edited.

The key here is the goal relative to the end-effector (``goal_delta = goal - ee_pos``, a common
reach feature). The only code is the subclass below; the registry line (``TASKS["reach"]``) is
what a new task would add to ``robot_rl/tasks/__init__.py``. Everything else follows from the
parts: the observation spec and its hash, the env's observation space, one store array per field
(``data/obs/goal_delta``, ``data/next_obs/goal_delta``), the mirror's and sampler's flat
observation, the learner's input size, the checkpoint's recorded fields and the exported policy.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robot_rl.agents.trainer import train
from robot_rl.config import load_config
from robot_rl.specs import concat_names
from robot_rl.tasks import TASKS, ReachTask
from robot_rl.tasks.base import XYZ, ObsPart

pytestmark = pytest.mark.sim


class ReachWithGoalDelta(ReachTask):
    """reach, observing also where the goal is from the end-effector."""

    def observation_parts(self) -> list[ObsPart]:
        return super().observation_parts() + [
            ObsPart("goal_delta", "task", concat_names(("goal_delta", XYZ)), -4.0, 4.0,
                    lambda s: np.asarray(s.goal) - np.asarray(s.ee_pos))]


def test_a_key_added_in_one_place_trains_through_store_mirror_sampler_and_learner(
        tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "reach", ReachWithGoalDelta)  # a new task's one registry line
    torch.set_num_threads(1)
    cfg = load_config(None, [
        "agent.algo=td3", "agent.hidden=[32, 32]", "agent.batch_size=64",
        "agent.warmup_steps=100", "agent.torch_threads=1", "task.action_mode=ee_velocity",
        "run.total_steps=300", "run.eval_every=300", "run.eval_episodes=2", "run.seed=1",
        "replay.fsync=false", f"run.root={tmp_path}", "run.name=delta"])
    res = train(cfg, log=lambda _s: None)
    assert res.env_steps == 300 and res.updates == 200  # the learner trained on the rows

    from robot_rl.replay import ReplayReader
    from robot_rl.replay.mirror import ReplayMirror
    from robot_rl.replay.sampler import ReplaySampler

    run = tmp_path / "delta"
    store = run / "replay.zarr"
    r = ReplayReader(store)
    fields = r.observation_fields
    assert fields.keys == ("q", "dq", "ee_pos", "goal", "goal_delta")
    assert fields["goal_delta"].role == "task" and r.observation_spec.dim == 23
    for group in ("obs", "next_obs"):
        assert (store / "data" / group / "goal_delta" / "zarr.json").is_file()
    # what the store holds for the new key is what the part computed, row by row
    cols = r.read(0, len(r))
    parts = fields.split(cols["next_observation"])
    np.testing.assert_allclose(parts["goal_delta"], parts["goal"] - parts["ee_pos"], atol=1e-6)

    mirror = ReplayMirror(store, 10_000)
    sampler = ReplaySampler(mirror, gamma=0.99, seed=0)
    sampler.refresh()
    batch = sampler.sample(32)
    assert tuple(batch.observation.shape) == (32, 23)
    assert tuple(batch.next_observation.shape) == (32, 23)

    ck = sorted((run / "checkpoints").glob("*.json"))[-1]
    arch = json.loads(ck.read_text())["architecture"]
    assert arch["obs_dim"] == 23 and arch["observation"][-1] == "goal_delta:3:float32:task"
    assert arch["observation_hash"] == fields.hash
