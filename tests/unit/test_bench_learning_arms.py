"""bench/learning.py's arms: every one resolves to a valid config, and each demo comparison
differs from its no-demo arm by the demo episodes alone (a typo here costs hours of runs)."""
import pytest

from robot_rl.config import load_config

pytestmark = pytest.mark.unit


@pytest.fixture
def bench(bench_learning):
    return bench_learning


def _cfg(bench, arm, seed=0):
    spec = bench.ARMS[arm]
    return load_config(None, bench.COMMON + spec["overrides"] + [
        f"run.total_steps={spec['budget']}", f"run.seed={seed}", f"run.name={arm}_s{seed}"])


def test_every_arm_resolves(bench):
    for arm in bench.ARMS:
        cfg = _cfg(bench, arm)
        assert cfg.run.total_steps == bench.ARMS[arm]["budget"] > 0, arm


@pytest.mark.parametrize("demos,nodemo", [("ddpgfd", "ddpg_nodemo"), ("push_demos", "push_nodemo"),
                                          ("ddpgfd_clip", "ddpg_nodemo_clip"),
                                          ("push_demos_v2", "push_nodemo_v2"),
                                          ("ddpgfd_clip_20k", "ddpg_nodemo_clip_20k")])
def test_demo_arms_differ_only_by_the_demos(bench, demos, nodemo):
    a = _cfg(bench, demos).model_dump(mode="json")
    b = _cfg(bench, nodemo).model_dump(mode="json")
    assert a["run"].pop("demo_episodes") > 0 and b["run"].pop("demo_episodes") == 0
    a["run"].pop("name"), b["run"].pop("name")
    assert a == b
    assert bench.ARMS[demos]["budget"] == bench.ARMS[nodemo]["budget"]


@pytest.mark.parametrize("ours,sb3", [("td3", "sb3_td3"), ("td3_ee", "sb3_td3_ee")])
def test_sb3_arms_match_ours(bench, ours, sb3):
    a, b = _cfg(bench, ours), _cfg(bench, sb3)
    assert bench.ARMS[sb3].get("sb3") and not bench.ARMS[ours].get("sb3")
    assert a.task == b.task and a.agent.hidden == b.agent.hidden
    assert a.agent.obs_normalization is False  # SB3 has none
    assert bench.ARMS[ours]["budget"] == bench.ARMS[sb3]["budget"]


def test_clip_arms_are_the_default_sparse_configuration(bench):
    """The clipped sparse pair is what ``agent.target_clip: auto`` gives a sparse task now; the
    arms that ran before that default pin ``null``, so re-running them repeats what ran."""
    for arm in ("ddpgfd_clip", "ddpg_nodemo_clip"):
        pinned = _cfg(bench, arm)
        auto = load_config(None, bench.COMMON + [o for o in bench.ARMS[arm]["overrides"]
                                                 if not o.startswith("agent.target_clip")])
        assert pinned.agent.target_clip == auto.agent.target_clip == (-100.0, 0.0)
    for arm in ("ddpgfd", "ddpg_nodemo", "push_demos", "push_nodemo"):
        assert _cfg(bench, arm).agent.target_clip is None, arm
    for arm in ("push_demos_v2", "push_nodemo_v2"):
        cfg = _cfg(bench, arm)
        assert cfg.agent.target_clip == (-100.0, 0.0), arm
        assert cfg.agent.demo_sampling == "fixed" and cfg.agent.demo_fraction == 0.25


def test_summary_counts_only_runs_that_reached_the_budget(bench, tmp_path):
    head = "env_steps,updates,wall_s,success_rate,mean_return,mean_final_distance,episodes,first_seed\n"

    def run(name, rows):
        d = tmp_path / name
        d.mkdir()
        (d / "eval.csv").write_text(head + "".join(
            f"{n},{n},{n / 100},{s},-10,0.1,50,1000000\n" for n, s in rows))

    budget = bench.ARMS["td3"]["budget"]
    run("td3_s0", [(budget // 2, 0.9), (budget, 0.8)])
    run("td3_s1", [(budget // 2, 1.0), (budget, 0.96)])
    run("td3_s2", [(budget // 2, 0.5)])  # still running: its last evaluation is no final
    (row,) = [r for r in bench.summary(str(tmp_path)) if r["arm"] == "td3"]
    assert row["seeds"] == 2 and row["unfinished"] == ["td3_s2"]
    assert row["final_success"]["mean"] == pytest.approx(0.88)
    assert row["steps_to_90"] == {"mean": budget / 2, "min": budget // 2, "max": budget // 2,
                                  "n": 2, "reached": 2}
    assert row["steps_to_95"]["reached"] == 1 and row["wall_s"]["max"] == budget / 100


def test_permutation_p_written_out(bench):
    # completely separated 3 vs 3: U = 0, and 2 of the C(6, 3) = 20 splits are as extreme
    r = bench.permutation_p([1, 2, 3], [4, 5, 6])
    assert (r["u"], r["p"], r["method"], r["splits"]) == (0.0, 0.1, "exact", 20)
    # session 7's TD3 vs SB3 steps to 95 % (one run never got there: inf, ranked last);
    # ties count half: U = 17.5 of 25, and 84 of the 252 splits are as far from 12.5
    r = bench.permutation_p([26, 26, 26, float("inf"), 28], [18, 30, 22, 14, 28])
    assert r["u"] == 17.5 and r["splits"] == 252 and r["p"] == pytest.approx(84 / 252)
    # identical samples: every split is at least as extreme
    assert bench.permutation_p([1, 1], [1, 1])["p"] == 1.0
    # the random path agrees with the exact one (seeded; 3 sigma of 100k draws is 0.003)
    mc = bench.permutation_p([1, 2, 3], [4, 5, 6], exact_limit=0)
    assert mc["method"] == "random" and mc["p"] == pytest.approx(0.1, abs=0.003)
    with pytest.raises(ValueError, match="both samples"):
        bench.permutation_p([], [1.0])


def test_compare_reads_finished_runs(bench, tmp_path):
    budget = bench.ARMS["td3_ee"]["budget"]

    def run(arm, seed, rates, last=budget):
        d = tmp_path / f"{arm}_s{seed}"
        d.mkdir()
        steps = [last * (i + 1) // len(rates) for i in range(len(rates))]
        (d / "eval.csv").write_text("env_steps,success_rate\n" + "".join(
            f"{x},{r}\n" for x, r in zip(steps, rates)))

    run("td3_ee", 0, [0.5, 0.96, 1.0])
    run("td3_ee", 1, [0.2, 0.5, 0.9])           # never 95 %
    run("sb3_td3_ee", 0, [0.95, 1.0, 1.0])
    run("sb3_td3_ee", 1, [0.1, 0.2], last=4000)  # unfinished: left out
    out = bench.compare(str(tmp_path), "td3_ee", "sb3_td3_ee")
    assert out["seeds"] == {"td3_ee": [0, 1], "sb3_td3_ee": [0]}
    s95 = out["steps_to_95"]
    assert s95["td3_ee"]["per_seed"] == [20000, None] and s95["td3_ee"]["reached"] == 1
    assert s95["td3_ee"]["mean"] == 20000 and s95["td3_ee"]["median"] is None
    assert s95["sb3_td3_ee"]["per_seed"] == [10000] and s95["sb3_td3_ee"]["median"] == 10000
    assert s95["u"] == 2.0 and s95["p"] == pytest.approx(2 / 3)
    assert out["mean_success"]["td3_ee"]["per_seed"] == pytest.approx([2.46 / 3, 1.6 / 3])


def test_crossq_g90_arm_differs_from_g95_by_the_discount_alone(bench):
    """Issue 16's gamma-0.9 arm is crossq_u3_g95_dense with gamma 0.9: same budget, seeds,
    evaluation cadence and every other setting (its comparison is the discount's alone)."""
    a = _cfg(bench, "crossq_u3_g90_dense").model_dump(mode="json")
    b = _cfg(bench, "crossq_u3_g95_dense").model_dump(mode="json")
    assert (a["agent"].pop("gamma"), b["agent"].pop("gamma")) == (0.9, 0.95)
    a["run"].pop("name"), b["run"].pop("name")
    assert a == b
    for key in ("budget", "seeds", "eval_every"):
        assert bench.ARMS["crossq_u3_g90_dense"][key] == bench.ARMS["crossq_u3_g95_dense"][key]
