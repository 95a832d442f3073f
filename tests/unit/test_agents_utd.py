"""The achieved update-to-data ratio (robot_rl.agents.schedule.UtdMeter): overall, per robot, and
when a learner falls behind the configured one."""
import pytest

from robot_rl.agents.schedule import UtdMeter

pytestmark = pytest.mark.unit


def test_utd_over_the_window_per_robot_and_behind():
    m = UtdMeter(1.0, window_s=10.0)
    assert m.reading().utd is None and not m.reading().behind
    m.record(0.0, updates=0, env_steps=0, target=0)
    m.record(5.0, updates=40, env_steps=50, target=50, robot_steps={0: 25, 1: 25})
    r = m.reading()
    # half a window: enough to report, 10 behind and growing, 40 of 50 due: behind
    assert (r.utd, r.updates, r.env_steps, r.expected, r.backlog, r.behind) == (
        0.8, 40, 50, 50, 10, True)
    m.record(10.0, updates=80, env_steps=100, target=100, robot_steps={0: 50, 1: 50})
    r = m.reading()
    assert (r.utd, r.backlog, r.behind, r.window_s) == (0.8, 20, True, 10.0)
    # two robots stepping alike: each robot's steps got twice the overall updates per step
    assert r.robots == {0: (50, 1.6), 1: (50, 1.6)}
    # it keeps up from t=5 on (100 updates for 100 steps; the backlog stays 10): not behind
    m.record(15.0, updates=140, env_steps=150, target=150, robot_steps={0: 100, 1: 50})
    r = m.reading()
    assert (r.utd, r.expected, r.backlog, r.behind, r.window_s) == (1.0, 100, 10, False, 10.0)
    assert r.robots == {0: (75, 100 / 75), 1: (25, 4.0)}
    # robot 1 stopped: no steps of its own, no ratio of its own
    m.record(25.0, updates=240, env_steps=250, target=250, robot_steps={0: 200, 1: 50})
    assert m.reading().robots == {0: (100, 1.0), 1: (0, None)}


def test_catching_up_or_running_ahead_is_not_behind():
    m = UtdMeter(0.5, window_s=4.0)
    m.record(0.0, updates=0, env_steps=1000, target=450)  # resumed with a backlog of 450
    m.record(4.0, updates=300, env_steps=1100, target=500)
    r = m.reading()
    assert (r.utd, r.backlog, r.behind) == (3.0, 200, False)
    m.reset()  # floor pacing: more updates than the schedule asks for
    m.record(0.0, updates=0, env_steps=0, target=0)
    m.record(4.0, updates=900, env_steps=100, target=50)
    assert (m.reading().utd, m.reading().backlog, m.reading().behind) == (9.0, 0, False)
    m.reset()  # too short a span says nothing about falling behind
    m.record(0.0, updates=0, env_steps=0, target=0)
    m.record(1.0, updates=0, env_steps=100, target=50)
    assert not m.reading().behind and m.reading().utd == 0.0


@pytest.mark.parametrize("args, field", [((0.0,), "agent.utd_ratio"),
                                         ((1.0, 0.0), "utd_window_s"),
                                         ((1.0, 10.0, 1.0), "tolerance")])
def test_bad_settings_name_the_field(args, field):
    with pytest.raises(ValueError, match=field):
        UtdMeter(*args)
