"""Typed configuration: defaults, profiles, YAML loading, overrides and error messages."""
import pytest

from robot_rl.config import Config, ConfigError, RobotProfile, load_config, parse_overrides
from robot_rl.profiles import FR3, PANDA

pytestmark = pytest.mark.unit


def test_defaults_resolve_to_the_panda_published_table():
    cfg = Config()
    lim = cfg.robot.limits
    assert cfg.robot.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert lim.q_min == (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
    assert lim.q_max == (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
    assert lim.dq_max == (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
    assert lim.ddq_max == (15, 7.5, 10, 12.5, 15, 20, 20)
    assert lim.dddq_max == (7500, 3750, 5000, 6250, 7500, 10000, 10000)
    assert cfg.robot.ee_speed_max == 1.7
    assert cfg.task.max_steps == 50 and cfg.task.success_threshold == 0.05
    assert cfg.sim.control_hz == 20


def test_fr3_profile_takes_the_fr3_table():
    r = RobotProfile(name="fr3")
    assert r.joint_names[0] == "fr3_joint1"
    assert r.limits.q_min[5] == 0.5445 and r.limits.q_max[5] == 4.5169
    assert r.limits.ddq_max == (10.0,) * 7 and r.limits.dddq_max == (5000.0,) * 7
    assert r.limits.dq_max == (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26)


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"name": "fr3", "joint_names": list(PANDA.joint_names)}, "do not belong to the 'fr3'"),
        ({"name": "panda", "joint_names": list(FR3.joint_names)}, "do not belong to the 'panda'"),
        # FR3's joint-2 range is wider than the Panda's: FR3 limits on a Panda are refused.
        ({"name": "panda", "limits": {"q_min": list(FR3.limits.q_min), "q_max": list(FR3.limits.q_max)}},
         "robot.limits.q_min[1] (panda_joint2)"),
        ({"name": "fr3", "limits": {"ddq_max": list(PANDA.limits.ddq_max)}}, "limits.ddq_max[0]"),
        ({"name": "panda", "limits": {"dq_max": [3.0] * 7}}, "limits.dq_max[0]"),
        ({"name": "panda", "ee_speed_max": 2.0}, "ee_speed_max"),
        ({"name": "ur5"}, "name"),
    ],
)
def test_mismatched_profiles_are_refused(data, expected):
    with pytest.raises(ConfigError, match=None) as ei:
        from robot_rl.config import config_from_dict

        config_from_dict({"robot": data})
    assert expected in str(ei.value)


def test_tightened_limits_are_accepted():
    r = RobotProfile(name="panda", limits={"dq_max": [1.0] * 7})
    assert r.limits.dq_max == (1.0,) * 7
    assert r.limits.ddq_max == PANDA.limits.ddq_max  # untouched fields keep the table


def test_errors_name_the_field_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("task:\n  reward: shaped\n  max_steps: 0\nsim:\n  substeps: 2\n  gravity: 1\n"
                 "robot:\n  limits:\n    dq_max: [1, 2]\n")
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    msg = str(ei.value)
    assert str(f) in msg
    assert "task.reward: Input should be 'dense' or 'sparse' (got 'shaped')" in msg
    assert "task.max_steps: Input should be greater than 0 (got 0)" in msg
    assert "sim.gravity: unknown key" in msg
    assert "robot.limits.dq_max: expected 7 values (as many as q_min), got 2" in msg


def test_unknown_section_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="learner: unknown key"):
        from robot_rl.config import config_from_dict

        config_from_dict({"learner": {}})
    f = tmp_path / "x.yaml"
    f.write_text("task: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(f)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_round_trip_and_overrides(tmp_path):
    cfg = load_config(None, ["task.reward=sparse", "sim.num_robots=2", "robot.name=fr3"])
    assert cfg.task.reward == "sparse" and cfg.sim.num_robots == 2 and cfg.robot.name == "fr3"
    f = tmp_path / "c.yaml"
    f.write_text(cfg.to_yaml())
    assert load_config(f) == cfg
    assert parse_overrides(["a.b=1", "a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}
    with pytest.raises(ConfigError, match="expected KEY=VALUE") as e:
        parse_overrides(["task.reward"])
    assert "--config" not in str(e.value)
    with pytest.raises(ConfigError, match=r"c\.yaml'.*goes after --config"):
        parse_overrides(["c.yaml"])


def test_every_field_is_documented():
    from pydantic import BaseModel

    todo = [Config]
    seen = 0
    while todo:
        model = todo.pop()
        for name, f in model.model_fields.items():
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
                todo.append(f.annotation)
                continue
            seen += 1
            assert f.description, f"{model.__name__}.{name} has no description"
    assert seen > 40


def test_run_name_must_be_a_plain_directory_name():
    with pytest.raises(ConfigError, match="run.name"):
        load_config(None, ["run.name=../etc"])


def test_target_clip_auto_resolves_to_the_returns_range_of_the_reward():
    """Default ``agent.target_clip: auto``: sparse rewards (-1 / 0 per step) bound every return
    to [-1/(1-gamma), 0]; dense (-distance) and gamma 1 are unbounded, so no clipping. An
    explicit range or null wins; the resolved value survives a YAML round trip."""
    from robot_rl.agents.config import learner_config
    import yaml

    from robot_rl.config import AgentConfig, config_from_dict

    assert load_config(None, []).agent.target_clip is None  # dense
    sparse = load_config(None, ["task.reward=sparse"])
    assert sparse.agent.target_clip == (-100.0, 0.0)
    assert learner_config(sparse.agent).target_clip == (-100.0, 0.0)
    assert load_config(None, ["task.reward=sparse", "agent.gamma=0.98"]).agent.target_clip == \
        (-50.0, 0.0)
    assert load_config(None, ["task.reward=sparse", "agent.gamma=1"]).agent.target_clip is None
    assert load_config(None, ["task.reward=sparse", "agent.target_clip=null"]).agent.target_clip \
        is None
    assert load_config(None, ["agent.target_clip=[-5, 0]"]).agent.target_clip == (-5.0, 0.0)
    assert config_from_dict(yaml.safe_load(sparse.to_yaml())) == sparse
    assert learner_config(AgentConfig()).target_clip is None  # no task known: no clipping
    with pytest.raises(ConfigError, match="target_clip"):
        load_config(None, ["agent.target_clip=[0, -5]"])
    with pytest.raises(ConfigError, match="target_clip"):
        load_config(None, ["agent.target_clip=automatic"])
