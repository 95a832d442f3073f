"""The robot-rl command line: help, config show/check, clear errors with exit status 2."""
import json

import pytest
import yaml

from robot_rl.cli import main
from robot_rl.config import Config

pytestmark = pytest.mark.unit


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for word in ("config", "sim", "examples:", "KEY=VALUE"):
        assert word in out
    assert main([]) == 2  # no command: help, non-zero


def test_config_show_prints_the_resolved_config(capsys):
    assert main(["config", "show", "task.reward=sparse", "robot.name=fr3"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    cfg = Config.model_validate(data)
    assert cfg.task.reward == "sparse" and cfg.robot.joint_names[0] == "fr3_joint1"
    assert main(["config", "show", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["sim"]["control_hz"] == 20.0


def test_bad_input_exits_2_naming_the_field(capsys, tmp_path):
    assert main(["config", "check", "sim.substeps=0", "task.colour=red"]) == 2
    err = capsys.readouterr().err
    assert "robot-rl: error:" in err
    assert "sim.substeps: Input should be greater than or equal to 1 (got 0)" in err
    assert "task.colour: unknown key" in err
    assert main(["config", "check", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err
    assert main(["config", "check", "oops"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text("task: {reward: sparse}\n")
    assert main(["config", "check", "--config", str(good)]) == 0


@pytest.mark.sim
def test_sim_rollout_json(capsys):
    assert main(["sim", "rollout", "--policy", "scripted", "--episodes", "3", "--json",
                 "task.action_mode=ee_velocity"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["episodes"] == 3 and res["success_rate"] == 1.0 and res["steps_per_s"] > 0
    # push: the scripted pusher (100-step episodes: it needs about 45 steps)
    assert main(["sim", "rollout", "--policy", "scripted", "--episodes", "3", "--json",
                 "task.name=push", "task.max_steps=100", "task.action_mode=ee_velocity"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["episodes"] == 3 and res["success_rate"] == 1.0
    assert main(["sim", "rollout", "--episodes", "0"]) == 2
