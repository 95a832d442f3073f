"""The observation keyed by name (robot_rl.specs.ObservationSpec, issue 17 item 1): fields with
shape, dtype and role built by the task; the spec's hash is part of the replay store's and the
checkpoint's identity, and a mismatch is refused naming the field."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from robot_rl.agents.checkpoint import (
    CheckpointMismatchError,
    export_policy,
    load_checkpoint,
    save_checkpoint,
)
from robot_rl.agents.config import learner_config
from robot_rl.agents.learning import Learner
from robot_rl.config import ReplayConfig, config_from_dict
from robot_rl.replay.store import ReplayReader, ReplayWriter, StoreError
from robot_rl.replay.synthetic import make_specs
from robot_rl.specs import BoxSpec, ObservationSpec, ObsField
from robot_rl.tasks import make_task

pytestmark = pytest.mark.unit


def _task(name: str = "reach", **task):
    cfg = config_from_dict({"task": {"name": name, **task}})
    return make_task(cfg.task, cfg.robot), cfg


def _with_role(spec: ObservationSpec, key: str, role: str) -> ObservationSpec:
    return ObservationSpec(tuple(dataclasses.replace(f, role=role) if f.key == key else f
                                 for f in spec.fields))


@pytest.mark.parametrize("name, keys, roles", [
    ("reach", ("q", "dq", "ee_pos", "goal"),
     ("proprio", "proprio", "achieved_goal", "desired_goal")),
    ("push", ("q", "dq", "ee_pos", "object_pos", "object_quat", "goal"),
     ("proprio", "proprio", "proprio", "achieved_goal", "task", "desired_goal")),
])
def test_the_task_builds_named_fields_whose_flat_vector_is_todays(name, keys, roles):
    task, _ = _task(name)
    spec = task.obs_spec
    assert spec.keys == keys and tuple(f.role for f in spec.fields) == roles
    # today's flat vector, element for element: stores and checkpoints of today stay valid
    assert spec.flat == task.observation_spec
    assert spec.dim == task.observation_spec.dim and spec.image_fields == ()
    assert [f.size for f in spec.fields] == [s.stop - s.start for s in spec.slices.values()]
    ag, dg = spec.by_role("achieved_goal")[0], spec.by_role("desired_goal")[0]
    assert task.goal_slices == {"achieved_goal": spec.slices[ag.key],
                                "desired_goal": spec.slices[dg.key]}
    assert all(f.dtype == "float32" for f in spec.fields)
    # the identity: stable across instances, different between tasks
    assert _task(name)[0].obs_spec.hash == spec.hash and len(spec.hash) == 16
    assert spec.signature()[0] == "q:7:float32:proprio"


def test_the_flat_vectors_are_the_ones_stores_of_earlier_versions_hold():
    """reach: the observation spec a schema 1 store recorded (tests/data/replay_v1, written at
    5416070 by the reach env); push: its element names and bounds written out."""
    from pathlib import Path

    from robot_rl.replay.store import ReplayReader

    fixture = Path(__file__).resolve().parents[1] / "data" / "replay_v1" / "replay.zarr"
    reach = _task("reach")[0].observation_spec
    assert ReplayReader(fixture).observation_spec == reach
    push = _task("push")[0].observation_spec
    assert push.names == reach.names[:17] + (
        "obj_x", "obj_y", "obj_z", "obj_qx", "obj_qy", "obj_qz", "obj_qw",
        "goal_x", "goal_y", "goal_z")
    np.testing.assert_array_equal(push.low, np.concatenate([reach.low[:17], [-2] * 3, [-1] * 4,
                                                            [-2] * 3]))
    np.testing.assert_array_equal(push.high, np.concatenate([reach.high[:17], [2] * 3, [1] * 4,
                                                             [2] * 3]))


def test_hashes_differ_between_tasks_and_with_any_field_change():
    reach, push = _task("reach")[0].obs_spec, _task("push")[0].obs_spec
    assert reach.hash != push.hash
    assert _with_role(reach, "ee_pos", "proprio").hash != reach.hash
    other_goal = _task("reach", goal_box={"low": [0.3, -0.3, 0.1], "high": [0.6, 0.3, 0.5]})
    assert other_goal[0].obs_spec.hash == reach.hash  # goals drawn elsewhere: same observation


def test_split_join_and_a_new_field_in_one_place():
    task, _ = _task("push")
    spec = task.obs_spec
    x = np.random.default_rng(0).uniform(-1, 1, (5, spec.dim)).astype(np.float32)
    parts = spec.split(x)
    assert list(parts) == list(spec.keys) and parts["object_quat"].shape == (5, 4)
    np.testing.assert_array_equal(spec.join(parts), x)
    with pytest.raises(ValueError, match="missing fields \\['goal'\\]"):
        spec.join({k: v for k, v in parts.items() if k != "goal"})
    with pytest.raises(ValueError, match="'q': expected shape \\(..., 7\\)"):
        spec.join({**parts, "q": parts["q"][:, :6]})
    with pytest.raises(ValueError, match="expected shape \\(..., 27\\)"):
        spec.split(x[:, :5])
    quat = ObsField("ee_quat", (4,), "float32", "proprio", ("ee_qx", "ee_qy", "ee_qz", "ee_qw"),
                    -np.ones(4), np.ones(4))
    more = spec.with_field(quat, after="ee_pos")
    assert more.keys[:4] == ("q", "dq", "ee_pos", "ee_quat") and more.dim == spec.dim + 4
    assert more.slices["ee_quat"] == slice(17, 21) and more.hash != spec.hash
    assert "ee_quat" in more and "ee_quat" not in spec


def test_fields_are_checked_with_messages_that_name_them():
    box = dict(names=("a1", "a2"), low=-np.ones(2), high=np.ones(2))
    with pytest.raises(ValueError, match="role 'goalish'"):
        ObsField("a", (2,), "float32", "goalish", **box)
    with pytest.raises(ValueError, match="'a'.*2 element names for shape \\(3,\\)"):
        ObsField("a", (3,), "float32", "proprio", **box)
    with pytest.raises(ValueError, match="identifier"):
        ObsField("a b", (2,), "float32", "proprio", **box)
    with pytest.raises(ValueError, match="an image is uint8"):
        ObsField("cam", (84, 84, 3), "float32", "image")
    with pytest.raises(ValueError, match="an image is uint8"):
        ObsField("cam", (84, 84, 3), "uint8", "proprio")
    cam = ObsField("wrist_rgb", (84, 84, 3), "uint8", "image")
    assert cam.nbytes == 84 * 84 * 3 and cam.signature() == "wrist_rgb:84x84x3:uint8:image"
    a = ObsField("a", (2,), "float32", "proprio", **box)
    with pytest.raises(ValueError, match="repeated: \\['a'\\]"):
        ObservationSpec((a, a))
    spec = ObservationSpec((a, cam))
    assert spec.dim == 2 and spec.image_fields == (cam,) and list(spec.slices) == ["a"]
    assert ObservationSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(KeyError, match="no field 'b'"):
        spec["b"]


def test_round_trip_and_a_tampered_description_is_refused():
    spec = _task("push")[0].obs_spec
    d = spec.to_dict()
    again = ObservationSpec.from_dict(d)
    assert again == spec and again.hash == spec.hash
    d["fields"][0]["high"][0] = 9.0
    with pytest.raises(ValueError, match="does not match its fields"):
        ObservationSpec.from_dict(d)
    with pytest.raises(ValueError, match="not a valid observation"):
        ObservationSpec.from_dict({"fields": [{"key": "q"}]})


def test_difference_names_the_field():
    spec = _task("reach")[0].obs_spec
    assert spec.difference(spec) is None
    why = spec.difference(_with_role(spec, "goal", "task"), mine="the store", theirs="the config")
    assert why == "observation field 'goal': role 'desired_goal' vs 'task' (the store vs the config)"
    q = spec["q"]
    wider = dataclasses.replace(q, high=q.high + 0.5)
    why = spec.difference(ObservationSpec((wider, *spec.fields[1:])))
    assert why.startswith("observation field 'q': bound high[0] (q1)")
    fewer = ObservationSpec(spec.fields[:3])
    assert "['goal'] only in this" in spec.difference(fewer)
    swapped = ObservationSpec((spec["dq"], spec["q"], *spec.fields[2:]))
    assert "field order" in spec.difference(swapped)


# --------------------------------------------------------------------------- the replay store


def test_a_store_records_the_fields_and_refuses_another_spec_naming_the_field(tmp_path):
    task, cfg = _task("reach")
    spec, act = task.obs_spec, make_specs(spec_dim := task.obs_spec.dim, 3)[1]
    path = tmp_path / "replay.zarr"
    ReplayWriter(path, spec, act, ReplayConfig()).close()
    r = ReplayReader(path)
    assert r.observation_fields == spec and r.observation_spec == spec.flat
    ReplayWriter(path, spec, act, ReplayConfig()).close()  # the same spec reopens
    with pytest.raises(StoreError, match="observation field 'ee_pos': role 'achieved_goal' vs "
                                         "'proprio' \\(the store vs the config\\)"):
        ReplayWriter(path, _with_role(spec, "ee_pos", "proprio"), act, ReplayConfig())
    with pytest.raises(StoreError, match="'ee_pos'"):
        r.layout.check_matches(_with_role(spec, "ee_pos", "proprio"), act, str(path))
    assert spec_dim == 20


def test_a_store_written_before_fields_were_recorded_still_opens(tmp_path):
    task, _ = _task("reach")
    path = tmp_path / "old.zarr"
    obs_box, act = task.observation_spec, make_specs(20, 3)[1]
    ReplayWriter(path, obs_box, act, ReplayConfig()).close()  # a BoxSpec: no fields recorded
    r = ReplayReader(path)
    assert r.observation_fields is None
    ReplayWriter(path, task.obs_spec, act, ReplayConfig()).close()  # compared by the flat spec
    r.layout.check_matches(task.obs_spec, act, str(path))
    other = BoxSpec("observation", obs_box.names, obs_box.low, obs_box.high + 1)
    with pytest.raises(StoreError, match="bound high\\[0\\] \\(q1\\)"):
        ReplayWriter(path, other, act, ReplayConfig())


def test_fields_that_disagree_with_the_flat_spec_make_the_store_unreadable(tmp_path):
    import zarr

    task, _ = _task("reach")
    path = tmp_path / "replay.zarr"
    ReplayWriter(path, task.obs_spec, make_specs(20, 3)[1], ReplayConfig()).close()
    g = zarr.open_group(str(path), mode="r+")
    attrs = dict(g.attrs["robot_rl_replay"])
    attrs["observation_fields"] = _task("push")[0].obs_spec.to_dict()
    g.attrs["robot_rl_replay"] = attrs
    with pytest.raises(StoreError, match="observation_fields disagrees with observation_spec"):
        ReplayReader(path)


# --------------------------------------------------------------------------- checkpoints


def _learner(spec, cfg, seed=0):
    return Learner(learner_config(cfg.agent, cfg.replay), 20, 3, device=torch.device("cpu"),
                   seed=seed, observation=spec)


def test_a_checkpoint_of_another_observation_layout_is_refused_naming_the_field(tmp_path):
    task, cfg = _task("reach")
    spec = task.obs_spec
    path = save_checkpoint(tmp_path / "ckpt_000000001.safetensors", _learner(spec, cfg))
    load_checkpoint(path, _learner(spec, cfg, seed=1))  # same layout: loads
    with pytest.raises(CheckpointMismatchError,
                       match="observation field 'goal': role 'desired_goal' vs 'task' \\(the "
                             "checkpoint vs this learner\\)"):
        load_checkpoint(path, _learner(_with_role(spec, "goal", "task"), cfg))
    # a checkpoint written before the spec was recorded loads (it cannot say)
    old = save_checkpoint(tmp_path / "ckpt_000000002.safetensors", _learner(None, cfg))
    load_checkpoint(old, _learner(spec, cfg))
    with pytest.raises(ValueError, match="observation spec: 27 elements"):
        Learner(learner_config(cfg.agent, cfg.replay), 20, 3,
                observation=_task("push")[0].obs_spec)


def test_the_policy_hash_covers_the_observation_layout():
    from robot_rl.actor import ActorCore
    from robot_rl.agents.checkpoint import _safetensors_metadata

    task, cfg = _task("reach", action_mode="ee_velocity")
    core = ActorCore(cfg, 0, 5, seed=0)
    blob = export_policy(_learner(task.obs_spec, cfg), 1)
    h = _safetensors_metadata(blob)["config_hash"]
    assert h == core.config_hash
    core.load_policy(blob, 1, h)
    other = export_policy(_learner(_with_role(task.obs_spec, "ee_pos", "proprio"), cfg), 2)
    h2 = _safetensors_metadata(other)["config_hash"]
    assert h2 != h
    with pytest.raises(ValueError, match="config_hash"):
        core.load_policy(other, 2, h2)
