"""bench/demos_graph.py's read-back: the summary table and the plot, on run directories written
here in its layout (done.json + eval.csv), with written-out numbers."""
import json

import pytest

pytestmark = pytest.mark.unit


@pytest.fixture
def dg(bench_demos_graph):
    return bench_demos_graph


def _run(root, name, successes, budget=6000, demo=(0, 0)):
    d = root / name
    d.mkdir(parents=True)
    rows = "".join(f"{2000 * (i + 1)},{2000 * i},1.0,{s},-50,0.1,50,1000000\n"
                   for i, s in enumerate(successes))
    (d / "eval.csv").write_text("env_steps,updates,wall_s,success_rate,mean_return,"
                                "mean_final_distance,episodes,first_seed\n" + rows)
    (d / "done.json").write_text(json.dumps({
        "arm": name.split("_")[0], "seed": 0, "budget": budget, "online_env_steps": budget,
        "demo_rows": demo[1], "demo_episodes": demo[0], "record_s": 1.0, "train_s": 10.0}))


def test_summary_and_plot_with_a_reference_experiment(dg, tmp_path):
    root, ref = tmp_path / "exp", tmp_path / "ref"
    _run(root, "demos_s0", [0.2, 0.9, 0.8], demo=(15, 400))
    _run(root, "demos_s1", [0.4, 0.6, 1.0], demo=(15, 350))
    _run(root, "nodemo_s0", [0.0, 0.1, 0.2])
    _run(root, "demos_s2", [0.5, 0.5], budget=4000)  # unfinished at this budget: left out
    s = dg.summary(root, 6000)
    assert s["demos"]["runs"] == 2
    assert s["demos"]["final_success_mean"] == pytest.approx(0.9)
    assert (s["demos"]["final_success_min"], s["demos"]["final_success_max"]) == (0.8, 1.0)
    assert s["demos"]["env_steps_to_90"] == [4000, 6000]
    assert s["demos"]["demo_episodes_rows"] == [(15, 400), (15, 350)]
    assert s["nodemo"]["best_success"] == [0.2] and s["nodemo"]["env_steps_to_90"] == [None]
    # the reference: another experiment's root (the mean of its demo runs) or one run directory
    _run(ref, "demos_s0", [0.1, 0.2, 0.3])
    _run(ref, "demos_s1", [0.3, 0.4, 0.5])
    for reference in (ref, ref / "demos_s0"):
        out = dg.plot(root, 6000, tmp_path / "curve.png", reference, "reference")
        assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="--reference: no eval.csv"):
        dg.plot(root, 6000, tmp_path / "x.png", tmp_path / "nothing_here")
