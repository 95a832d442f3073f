"""robot-rl train / eval / plot: help, and clear errors (exit 2 naming the field or file)."""
import pytest

from robot_rl.cli import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("cmd", ["train", "eval", "plot"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert cmd in capsys.readouterr().out


def test_eval_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope.safetensors")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_plot_not_a_run(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "eval.csv" in capsys.readouterr().err


def test_train_refuses_unsampled_demos_naming_the_field(tmp_path, capsys):
    rc = main(["train", "--steps", "10", f"run.root={tmp_path}", "run.demo_episodes=3"])
    assert rc == 2
    assert "agent.demo_fraction" in capsys.readouterr().err


def test_train_refuses_bad_override(capsys):
    assert main(["train", "agent.algo=ppo"]) == 2
    assert "agent.algo" in capsys.readouterr().err


def test_train_refuses_existing_run_without_resume(tmp_path, capsys):
    (tmp_path / "r" / "replay.zarr").mkdir(parents=True)
    assert main(["train", "--name", "r", f"run.root={tmp_path}"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--name", "r", f"run.root={tmp_path}", "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
