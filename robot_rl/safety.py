"""Safety core: the maths of the safety-compliance node (DESIGN §5), pure and ROS-free.

Everything a command must satisfy before it reaches the robot, per joint ``i`` at the output
period ``dt`` (the rate the driver sees: the control rate in sim, up to 1 kHz on a real arm),
with ``V = limit_scale * dq_max``, ``A = limit_scale * ddq_max``, ``J = limit_scale * dddq_max``
from the robot profile:

* **hard** (every output ``v_k`` satisfies them, exactly up to float rounding):
  ``|v_k| <= V``; ``|a_k| <= A`` with ``a_k = (v_k - v_{k-1}) / dt``;
  ``|a_k - a_{k-1}| <= J dt``.
* **targets** (reached as fast as the hard limits allow): the proposal itself; zero when the
  proposal or the robot state cannot be trusted (non-finite values, wrong length, unknown joint
  names, stale or missing state, watchdog, e-stop); a stop before
  ``q_min + position_margin`` / ``q_max - position_margin``; the end effector inside the
  workspace box; ``||J_p v|| <= ee_speed_max``.

A proposal that breaks no rule is returned **bit for bit** (the same float64 values, in profile
joint order). A clamped value sits **on** the bound that stopped it (e.g. exactly ``+V`` for a
proposal above the velocity limit once acceleration and jerk allow it). Each call returns
``(command, report)``; the report names every rule that fired (:class:`Rule`, the same bits as
``robot_rl_interfaces/msg/AppliedCommand``) and by how much. Nothing here mutates its inputs
and nothing is random: equal inputs give equal outputs.

Typical use (the safety node, every output period)::

    filt = SafetyFilter(profile, config.safety, control_hz=config.sim.control_hz)
    cmd, report = filt.step(now, proposal=msg_velocities_or_None, q=joint_positions,
                            state_names=joint_names, state_stamp=stamp_s, estop=latched)
    publish(cmd); publish_applied(seq, cmd, int(report.rules))

The stateless core (:class:`SafetyCore`, ``step(proposal, v_prev=..., a_prev=..., q=...)``) is
what the filter calls; :meth:`SafetyCore.step_batch` is the same maths over a batch (rows of
states and proposals), used by the fuzz and benchmarks.

The maths
=========

Notation per joint: ``v, a`` the previous output's velocity and acceleration, ``tau = J dt``
the largest change of acceleration per step, ``v' = v + a' dt`` the new output.

**Jerk look-ahead for the velocity limit.** With a jerk limit the acceleration cannot be zeroed
in one step: from ``a' > 0`` the fastest ramp-down is ``a' - tau, a' - 2 tau, ...``, during
which the velocity still grows by::

    P(a') = dt * sum_{i>=1} max(a' - i tau, 0) = dt * (m a' - tau m (m + 1) / 2),
    m = ceil(a' / tau) - 1   (the number of positive terms)

so ``v'`` is *safe above* iff ``v' + P(a') <= V``. Substituting ``v' = v + a' dt`` this is
``F(a') <= (V - v) / dt`` with the increasing, piecewise-linear
``F(a) = a + sum_{i>=1} max(a - i tau, 0)``, whose inverse is closed-form: for
``R in [tau m (m+1)/2, tau (m+1)(m+2)/2]``, ``F^{-1}(R) = (R + tau m (m+1)/2) / (m + 1)``
(``m = floor((sqrt(1 + 8 R / tau) - 1) / 2)``), and ``F^{-1}(R) = R`` for ``R <= tau``. Hence the
exact discrete-time bound ``a' <= F^{-1}((V - v) / dt)``, and by symmetry
``a' >= -F^{-1}((V + v) / dt)``. The output interval of a joint is::

    hi = v + dt * min(a + tau, A, F^{-1}((V - v) / dt))      (jerk, acceleration, velocity)
    lo = v - dt * min(tau - a, A, F^{-1}((V + v) / dt))

(``hi`` is exactly ``V`` when ``(V - v)/dt <= tau``; this is libfranka's ``limitRate`` idea made
exact for the discrete jerk ramp, not a copy of it.)

*Feasibility (the interval is never empty).* Call ``(v, a)`` viable when ``|a| <= A``,
``v + P(a) <= V`` and ``-v + P(-a) <= V``. The start ``(0, 0)`` is viable, and every output
chosen inside ``[lo, hi]`` is viable by construction. From a viable state the output with
``a' = a - tau`` (if ``a > tau``), ``a' = 0`` (if ``|a| <= tau``) or ``a' = a + tau`` (if
``a < -tau``) respects the jerk and acceleration limits and is viable again (e.g. for
``a > tau``: ``v' + P(a') = v + (a - tau) dt + P(a - tau) = v + P(a) <= V``, and ``v' >= v >=
-V``). So ``lo <= hi`` always, and the hard limits are never traded against anything: every
other rule only narrows the target inside ``[lo, hi]``. (Float rounding can leave ``lo`` a few
ulps above ``hi``; both are then set to their midpoint.)

**Braking before the joint position limits.** The stopping plan from a state is the greedy
one: ramp the acceleration down at the jerk limit to ``-A``, hold ``-A``, and ramp back up
(the look-ahead above with floor 0) so the velocity lands on exactly zero. For an output
``v'`` whose velocity after the ramp-down of a positive ``a'`` is ``w = v' + P(a') <= c``, the
distance covered from the measured ``q`` until the joint stands still is at most::

    D(c) = n_r c dt  +  (c + U')^2 / (2 A)  +  n_r dt min(c, U)

* ``n_r c dt`` (``n_r = ceil(A / tau)``): this period plus at most ``n_r - 1`` periods of
  positive acceleration (the jerk ramp up to the peak), each at a speed ``<= c``;
* ``(c + U')^2 / (2 A)``: braking from the peak — the plain ``v^2 / 2a`` with the speed raised
  by ``U' = dt * sum_{l>=0} max(A - r - l tau, 0)``, ``r = max(0, tau - A)``
  (:func:`brake_gain`), the most speed still gained, relative to braking at ``-A`` from the
  peak, while the deceleration ramps in at the jerk limit. The ``j``-th speed after the peak is
  at most ``c + U' - j A dt``, and the sum of such a sequence is at most ``(c + U')^2 / 2A``
  (a right Riemann sum of a falling line is at most its integral);
* ``n_r dt min(c, U)``, ``U = P(A)``: the final ramp of the deceleration back to zero, at most
  ``n_r`` periods at a speed ``<= U``.

In continuous-time terms this is the S-curve stop ``v^2/(2A) + v A/(2J)`` plus a period of
reaction ``v dt`` plus terms of order ``A dt``: for Panda joint 1 at ``V`` and 1 kHz,
``D = 0.1488 rad`` against ``0.1458`` (2 % conservative). At low rates (``tau >= 2A``, e.g.
20 Hz: no jerk ramp, ``U = U' = 0``, ``n_r = 1``) it is exactly the zero-order-hold bound
``v dt + v^2/(2A)``. With ``d = (q_max - margin) - q`` the largest admissible peak speed ``c(d)``
solves ``D(c) = d`` (a quadratic per branch of the ``min``, :func:`braking_speed`; ``c = 0`` once
``d < D(0) = U'^2/2A``, i.e. a joint at or beyond its margin may not move further out), and the
output must satisfy ``v' + P(a') <= c(d)``: the same look-ahead as for ``V``, with ``V``
replaced by ``c``. Mirror for the lower limit. If even the hard interval cannot satisfy that
(the measured ``q`` jumped, e.g. the arm was pushed by hand past the braking curve), the joint
brakes at the hard limits along the greedy plan (never reversing on its own) and ``POSITION``
is reported. The argument that the joint then still stops before the margin: while a state's
greedy plan fits in ``d``, either a target-satisfying output exists (its own plan fits, by the
bound above) or the greedy step is taken (the rest of the same plan fits). Assumptions: the
robot tracks the command (``q`` advances by ``v dt`` per period; tracking lag is what the
margin is for), and the plan's small undershoot below zero speed stays inside ``V``
(``A dt + U <= V``: rates above ~10 Hz for the Panda).

**Workspace box** (first order in the EE displacement). ``p, J_p`` from forward kinematics at the
measured ``q``. Joint ``i`` moving at ``v_i`` travels at most ``D_i(|v_i| + U_i)`` (its own braking
distance, peak speed bounded by ``|v_i| + P(A)``) before it stops, which moves the EE along a
face's outward normal ``n`` by at most ``(n . J_p[:, i]) sign(v_i) D_i``. Only joints with a
positive contribution count (each joint's displacement is monotone while it brakes, so the sum of
positive parts bounds the EE's excursion at every instant, not only at rest)::

    h_n(v) = sum_i max(n . J_p[:, i] sign(v_i), 0) * D_i(|v_i| + U_i)   <=   distance to the face

When a face is violated, the joints that carry the EE toward it are slowed along
``v_i(s) = b_i + s (v_i - b_i)``, ``s in [0, 1]``, where ``b_i`` is the joint's most-braking
admissible output (the point of ``[lo_i, hi_i]`` closest to zero): ``h_n`` is then a quadratic
in ``s`` and its largest admissible root is closed-form; other joints keep their value (motion
along or away from the face is not touched). ``s = 0`` (brake those joints at the hard limits)
when even that is not enough, e.g. the EE is already outside. Conservatism: every contributing
joint is assumed to travel its full stopping distance and the Jacobian is frozen at ``q``; the
second-order error is ``O(|dq|^2)`` (sub-millimetre at the 0.2 m/s default EE speed), which
the box should leave room for.

**EE speed limit.** When ``||J_p t|| > ee_speed_max`` for the target ``t``, the target is
scaled to ``t * ee_speed_max / ||J_p t||`` (direction kept) and then approached without
overshoot like a held target. As a last guard, an output that would still exceed the limit
(while approaching from another velocity) is moved along ``b + s (v - b)`` to the ``s`` with
``||J_p v(s)|| = ee_speed_max`` (a quadratic), joints speeding up being kept from overshooting;
``s = 0`` if the hard limits cannot slow it down that much in one period. It is a target: at
1 kHz brief overshoots remain (measured in ``docs/safety.md``).

**Interpolation.** When the same proposal is applied for several output periods (the node
outputs at up to 1 kHz between 20 Hz policy steps, or a proposal is late), the target is held
and approached without overshoot: the output additionally satisfies ``v' + P(a') <= t`` when
below the target ``t`` (mirror above it), i.e. the jerk-limited, time-optimal approach, which
lands on ``t`` exactly; targets set by a rule (zero, a scaled EE speed) are always approached
this way. A fresh proposal is judged on its own (so a policy running at the output rate keeps
its bit-exact pass-through).

**Two implementations, one maths.** :meth:`SafetyCore.step` runs on Python floats (a few tens
of µs, fit for a 1 kHz loop); :meth:`SafetyCore.step_batch` runs the same operations, in the
same order (sums left to right), with numpy over a batch for the fuzz. The two agree bit for
bit (``tests/unit/test_safety.py``).
"""
from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from robot_rl.config import RobotProfile, SafetyConfig
    from robot_rl.kinematics import Kinematics

__all__ = [
    "Rule",
    "SafetyParams",
    "SafetyReport",
    "BatchReport",
    "SafetyCore",
    "SafetyFilter",
    "ramp_gain",
    "inverse_ramp",
    "brake_gain",
    "stopping_distance",
    "braking_speed",
]


class Rule(enum.IntFlag):
    """Safety rules; the values are ``AppliedCommand.RULE_*`` (and ``Transition.safety_rules``)."""

    NONFINITE = 1  #: a proposal (or state) value is NaN or infinite -> target zero
    BAD_LENGTH = 2  #: a proposal (or state) has the wrong number of values -> target zero
    STALE_STATE = 4  #: robot state missing or older than ``state_timeout`` -> target zero
    WATCHDOG = 8  #: no fresh proposal within ``watchdog_timeout`` -> target zero
    ESTOP = 16  #: the e-stop is latched -> target zero
    VELOCITY = 32  #: velocity limit (with its jerk look-ahead) clamped the target
    ACCELERATION = 64  #: acceleration limit clamped the target
    JERK = 128  #: jerk limit (or the overshoot-free approach of a held target) clamped it
    POSITION = 256  #: braking before a joint position limit (+ margin) clamped it
    WORKSPACE = 512  #: braking before a workspace-box face slowed joints down
    EE_SPEED = 1024  #: the end-effector speed limit slowed joints down
    JOINT_ORDER = 2048  #: joint names unknown, missing or duplicated -> target zero


#: Rules in bit order (the column order of :attr:`BatchReport.amounts`).
RULES: tuple[Rule, ...] = tuple(Rule(1 << i) for i in range(12))

#: What :attr:`SafetyReport.amounts` holds per rule.
AMOUNT_UNITS: Mapping[Rule, str] = MappingProxyType(
    {
        Rule.NONFINITE: "number of non-finite values",
        Rule.BAD_LENGTH: "|given length - expected length|",
        Rule.STALE_STATE: "state age (s); inf when missing or unusable",
        Rule.WATCHDOG: "seconds since the last proposal; inf when none yet",
        Rule.ESTOP: "1.0",
        Rule.VELOCITY: "largest excess of the target over V, or over the jerk look-ahead bound "
        "where that is stricter than the acceleration bound (rad/s)",
        Rule.ACCELERATION: "largest excess of the target over the bound (rad/s)",
        Rule.JERK: "largest excess of the target over the bound (rad/s)",
        Rule.POSITION: "largest excess of the target over the braking bound, where that is "
        "stricter than the velocity bound (rad/s)",
        Rule.WORKSPACE: "largest joint-velocity change (rad/s)",
        Rule.EE_SPEED: "largest joint-velocity change (rad/s)",
        Rule.JOINT_ORDER: "number of unknown, missing or duplicated names",
    }
)

_TARGET_ZERO = (
    Rule.NONFINITE | Rule.BAD_LENGTH | Rule.STALE_STATE | Rule.WATCHDOG | Rule.ESTOP
    | Rule.JOINT_ORDER
)
_I_VEL, _I_ACC, _I_JERK, _I_POS, _I_WS, _I_EE = 5, 6, 7, 8, 9, 10

# --------------------------------------------------------------------------- scalar maths


def ramp_gain(a: Any, tau: Any, dt: float) -> np.ndarray:
    """``P(a) = dt * sum_{i>=1} max(a - i tau, 0)``: velocity still gained from acceleration ``a``
    while it ramps down to zero at the jerk limit (``tau = J dt`` per step); 0 for ``a <= 0``.

    Closed form ``dt * (m a - tau m (m + 1) / 2)`` with ``m = ceil(a / tau) - 1``.
    """
    a = np.maximum(np.asarray(a, dtype=float), 0.0)
    m = np.maximum(np.ceil(a / tau) - 1.0, 0.0)
    return dt * (m * a - 0.5 * tau * m * (m + 1.0))


def inverse_ramp(r: Any, tau: Any) -> np.ndarray:
    """``F^{-1}(r)`` for ``F(a) = a + sum_{i>=1} max(a - i tau, 0)`` (increasing, piecewise linear).

    ``F^{-1}(r) = r`` for ``r <= tau``; for ``r`` in ``[tau m(m+1)/2, tau (m+1)(m+2)/2]`` it is
    ``(r + tau m (m+1)/2) / (m+1)``. The largest acceleration ``a'`` that keeps
    ``v' + P(a') <= W`` is ``F^{-1}((W - v) / dt)``.
    """
    r = np.asarray(r, dtype=float)
    rp = np.maximum(r, 0.0)
    m = np.floor((np.sqrt(1.0 + 8.0 * rp / tau) - 1.0) * 0.5)
    # Round-off guard: make tau m(m+1)/2 <= rp < tau (m+1)(m+2)/2 hold exactly.
    m = np.where(0.5 * tau * m * (m + 1.0) > rp, m - 1.0, m)
    m = np.where(0.5 * tau * (m + 1.0) * (m + 2.0) <= rp, m + 1.0, m)
    out = (rp + 0.5 * tau * m * (m + 1.0)) / (m + 1.0)
    return np.where(r <= tau, r, out)


def brake_gain(a_max: Any, tau: Any, dt: float) -> np.ndarray:
    """``U' = dt * sum_{l>=0} max(A - r - l tau, 0)`` with ``r = max(0, tau - A)``: the most
    velocity a joint can still gain (relative to braking at ``-A`` from its peak) while its
    deceleration ramps in at the jerk limit. 0 when ``tau >= 2A`` (no jerk ramp at all)."""
    a_max = np.asarray(a_max, dtype=float)
    a2 = a_max - np.maximum(tau - a_max, 0.0)
    return np.where(a2 > 0.0, dt * a2 + ramp_gain(a2, tau, dt), 0.0)


def stopping_distance(c: Any, a_max: Any, tau: Any, dt: float) -> np.ndarray:
    """``D(c)``: upper bound on the distance (rad) from the measured position until a joint
    whose output peaks at speed ``c`` (after the jerk ramp) stands still — see the module
    docstring::

        D(c) = n_r c dt + (c + U')^2 / (2 A) + n_r dt min(c, U)

    with ``U = P(A)``, ``U'`` = :func:`brake_gain`, ``n_r = ceil(A / tau)``.
    """
    c = np.asarray(c, dtype=float)
    a_max = np.asarray(a_max, dtype=float)
    u = ramp_gain(a_max, tau, dt)
    u2 = brake_gain(a_max, tau, dt)
    n_r = np.ceil(a_max / tau)
    return n_r * c * dt + (c + u2) ** 2 / (2.0 * a_max) + n_r * dt * np.minimum(c, u)


def braking_speed(d: Any, a_max: Any, tau: Any, dt: float) -> np.ndarray:
    """``c(d)``: the largest peak speed ``c >= 0`` with ``stopping_distance(c) <= d``; 0 when even
    ``c = 0`` does not fit (``d < U^2 / 2A``, e.g. ``d < 0``: at or beyond the margin)."""
    a_max = np.asarray(a_max, dtype=float)
    u = ramp_gain(a_max, tau, dt)
    n_r = np.ceil(a_max / tau)
    return _braking_speed(np.asarray(d, dtype=float), a_max, u, brake_gain(a_max, tau, dt),
                          n_r * dt, 2.0 * n_r * dt, n_r * u * dt)


def _braking_speed(d, A, U, U2, k1, k2, nr_u_dt):
    # Branch c >= U: k1 c + (c+U')^2/2A + n_r U dt = d; with x = c + U':
    # x^2/2A + k1 x - r1 = 0, r1 = d + k1 U' - n_r U dt; x = 2 r1 / (k1 + sqrt(k1^2 + 2 r1/A)).
    r1 = np.maximum(d + k1 * U2 - nr_u_dt, 0.0)
    c1 = 2.0 * r1 / (k1 + np.sqrt(k1 * k1 + 2.0 * r1 / A)) - U2
    # Branch c < U: k2 c + (c+U')^2/2A = d, k2 = k1 + n_r dt.
    r2 = np.maximum(d + k2 * U2, 0.0)
    c2 = 2.0 * r2 / (k2 + np.sqrt(k2 * k2 + 2.0 * r2 / A)) - U2
    return np.maximum(np.where(c1 >= U, c1, c2), 0.0)


def _upper_bound(w, v, dt, tau, r_cap):
    """Largest ``v'`` with ``v' + P((v' - v)/dt) <= w``: ``v + dt F^{-1}((w - v)/dt)``, exactly
    ``w`` when no look-ahead is needed (``(w - v)/dt <= tau``)."""
    r = (w - v) / dt
    ahead = r > tau
    if not ahead.any():
        return np.broadcast_to(w, np.shape(r)).astype(float, copy=True)
    return np.where(ahead, v + dt * inverse_ramp(np.minimum(r, r_cap), tau), w)


def _between(x, p, r):
    """``x`` clipped to the segment between ``p`` and ``r`` (guards the last ulp of a blend)."""
    return np.minimum(np.maximum(x, np.minimum(p, r)), np.maximum(p, r))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _between_s(x: float, p: float, r: float) -> float:
    """:func:`_between` for one float."""
    return min(max(x, min(p, r)), max(p, r))


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class SafetyParams:
    """Resolved numbers the safety maths runs on (arrays per joint, profile order).

    Build with :meth:`from_config`; every array is read-only.
    """

    joint_names: tuple[str, ...]
    dt: float  #: output period (s)
    v_max: np.ndarray  #: V = limit_scale * dq_max (rad/s)
    a_max: np.ndarray  #: A = limit_scale * ddq_max (rad/s^2)
    j_max: np.ndarray  #: J = limit_scale * dddq_max (rad/s^3)
    q_lower: np.ndarray  #: q_min + position_margin (rad)
    q_upper: np.ndarray  #: q_max - position_margin (rad)
    workspace_low: np.ndarray  #: workspace box lower corner (m), or None when disabled
    workspace_high: np.ndarray  #: upper corner (m)
    workspace_enabled: bool
    ee_speed_max: float | None  #: m/s, None: no EE speed limit
    watchdog_timeout: float  #: s
    state_timeout: float  #: s
    # derived
    tau: np.ndarray = field(init=False)  #: J dt: largest acceleration change per period
    ramp: np.ndarray = field(init=False)  #: U = P(A): speed lost while -A ramps out (rad/s)
    brake_ramp: np.ndarray = field(init=False)  #: U' (brake_gain): speed gained while -A ramps in
    n_ramp: np.ndarray = field(init=False)  #: n_r = ceil(A / tau)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        for name in ("v_max", "a_max", "j_max", "q_lower", "q_upper"):
            arr = np.array(getattr(self, name), dtype=float)
            if arr.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"{name}: must be finite, got {arr.tolist()}")
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt: expected a positive output period (s), got {self.dt}")
        for name in ("v_max", "a_max", "j_max"):
            if (getattr(self, name) <= 0).any():
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name).tolist()}")
        bad = self.q_lower >= self.q_upper
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"position_margin: leaves no room for joint {self.joint_names[j]} "
                f"(q_min + margin = {self.q_lower[j]} >= q_max - margin = {self.q_upper[j]})"
            )
        for name in ("workspace_low", "workspace_high"):
            arr = np.array(getattr(self, name), dtype=float)
            if arr.shape != (3,) or not np.isfinite(arr).all():
                raise ValueError(f"{name}: expected 3 finite values (m), got {arr.tolist()}")
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        tau = self.j_max * self.dt
        derived = {
            "tau": tau,
            "ramp": ramp_gain(self.a_max, tau, self.dt),
            "brake_ramp": brake_gain(self.a_max, tau, self.dt),
            "n_ramp": np.ceil(self.a_max / tau),
        }
        for k, arr in derived.items():
            arr = np.array(arr, dtype=float)
            arr.flags.writeable = False
            object.__setattr__(self, k, arr)

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @classmethod
    def from_config(
        cls,
        profile: RobotProfile,
        config: SafetyConfig,
        *,
        control_hz: float,
        output_hz: float | None = None,
    ) -> SafetyParams:
        """Numbers for ``profile`` under ``config``.

        The output rate is ``output_hz`` if given, else ``config.output_hz``, else ``control_hz``;
        the watchdog timeout is ``config.watchdog_timeout`` or two control periods. With
        ``config.missed_period_safe`` the acceleration limit is ``min(A, J dt)``: a period the
        node misses is seen by the driver as one of zero acceleration, and only accelerations
        within ``J dt`` may jump to and from zero inside the jerk limit.
        """
        if not (isinstance(control_hz, (int, float)) and math.isfinite(control_hz)
                and control_hz > 0):
            raise ValueError(f"control_hz: expected a positive rate (Hz), got {control_hz!r}")
        rate = output_hz if output_hz is not None else (config.output_hz or control_hz)
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"output_hz: expected a positive rate (Hz), got {rate!r}")
        lim = profile.limits
        s = config.limit_scale
        m = config.position_margin
        wd = config.watchdog_timeout if config.watchdog_timeout is not None else 2.0 / control_hz
        dt = 1.0 / float(rate)
        a_max = s * np.asarray(lim.ddq_max, dtype=float)
        j_max = s * np.asarray(lim.dddq_max, dtype=float)
        if getattr(config, "missed_period_safe", False):
            # A missed output period is a period of zero acceleration as the driver samples
            # it; with |a| <= J dt the jump to and from it stays inside the jerk limit.
            a_max = np.minimum(a_max, j_max * dt)
        return cls(
            joint_names=tuple(profile.joint_names),
            dt=dt,
            v_max=s * np.asarray(lim.dq_max, dtype=float),
            a_max=a_max,
            j_max=j_max,
            q_lower=np.asarray(lim.q_min, dtype=float) + m,
            q_upper=np.asarray(lim.q_max, dtype=float) - m,
            workspace_low=np.asarray(config.workspace.low, dtype=float),
            workspace_high=np.asarray(config.workspace.high, dtype=float),
            workspace_enabled=bool(config.workspace_enabled),
            ee_speed_max=config.ee_speed_max,
            watchdog_timeout=float(wd),
            state_timeout=float(config.state_timeout),
        )


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class SafetyReport:
    """What one command is and why it differs from the proposal.

    ``rules`` has a bit for every rule that fired (``int(rules)`` goes to
    ``AppliedCommand.rules_fired``);
    ``amounts[rule]`` says by how much (units in :data:`AMOUNT_UNITS`); ``target`` is what the
    command was steered toward (the proposal in profile order, or zeros); ``lower``/``upper`` the
    admissible joint velocities of this period (hard limits and position braking), inside which
    the command lies — a target outside them is clamped onto them, except that a held target is
    approached without overshoot and the workspace / EE-speed rules may brake further inside;
    ``reasons`` are human-readable notes.
    """

    rules: Rule
    amounts: Mapping[Rule, float]
    target: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    reasons: tuple[str, ...] = ()
    reordered: bool = False  #: the proposal came in another joint order and was reordered

    @property
    def modified(self) -> bool:
        """True when any rule fired (the command may differ from the proposal)."""
        return bool(self.rules)


@dataclass(frozen=True)
class BatchReport:
    """:class:`SafetyReport` for a batch: ``rules`` (B,) int64 bitmasks, ``amounts`` (B, 12) in
    :data:`RULES` column order, ``lower``/``upper`` (B, n)."""

    rules: np.ndarray
    amounts: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def counts(self) -> dict[str, int]:
        """How many rows each rule fired in, by rule name (plus ``total`` and ``modified``)."""
        out = {r.name: int(np.count_nonzero(self.rules & int(r))) for r in RULES}
        out["modified"] = int(np.count_nonzero(self.rules))
        out["total"] = int(self.rules.shape[0])
        return out


@dataclass(frozen=True)
class _Checked:
    """A proposal or state vector after the input checks: values in profile order or None."""

    values: np.ndarray | None
    rules: Rule = Rule(0)
    amounts: tuple[tuple[Rule, float], ...] = ()
    reasons: tuple[str, ...] = ()
    reordered: bool = False


# --------------------------------------------------------------------------- core


def _finv_s(r: float, tau: float) -> float:
    """:func:`inverse_ramp` for one float, the same operations in the same order."""
    if r <= tau:
        return r
    rp = r if r > 0.0 else 0.0
    m = float(math.floor((math.sqrt(1.0 + 8.0 * rp / tau) - 1.0) * 0.5))
    if 0.5 * tau * m * (m + 1.0) > rp:
        m = m - 1.0
    if 0.5 * tau * (m + 1.0) * (m + 2.0) <= rp:
        m = m + 1.0
    return (rp + 0.5 * tau * m * (m + 1.0)) / (m + 1.0)


def _ub_s(w: float, v: float, dt: float, tau: float, cap: float, fcap: float) -> float:
    """:func:`_upper_bound` for one float (``fcap`` = ``F^{-1}(cap)``, precomputed)."""
    r = (w - v) / dt
    if r > tau:
        if r >= cap:
            return v + dt * fcap
        return v + dt * _finv_s(r, tau)
    return w


def _bspeed_s(d, A, U, U2, k1, k2, nr_u_dt):
    """:func:`_braking_speed` for one float."""
    r1 = d + k1 * U2 - nr_u_dt
    if not r1 >= 0.0:
        r1 = 0.0
    c1 = 2.0 * r1 / (k1 + math.sqrt(k1 * k1 + 2.0 * r1 / A)) - U2
    if c1 >= U:
        return c1 if c1 >= 0.0 else 0.0
    r2 = d + k2 * U2
    if not r2 >= 0.0:
        r2 = 0.0
    c2 = 2.0 * r2 / (k2 + math.sqrt(k2 * k2 + 2.0 * r2 / A)) - U2
    return c2 if c2 >= 0.0 else 0.0


def _seqsum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis strictly left to right (what the scalar path does), so the two
    paths round identically."""
    s = x[..., 0]
    for i in range(1, x.shape[-1]):
        s = s + x[..., i]
    return s


_INF = math.inf
_HUGE = 1e150
_TINY_SCALE = math.ldexp(1.0, -600)


class SafetyCore:
    """The stateless safety maths for one robot profile (see the module docstring).

    :meth:`step` judges one proposal given the previous output ``(v_prev, a_prev)`` and the
    robot state, in plain Python floats (a few tens of µs: fit for a 1 kHz loop);
    :meth:`step_batch` runs the same operations in the same order with numpy over rows of a batch
    (fuzzing, benchmarks) and gives the same numbers. Holds only constants and a
    :class:`~robot_rl.kinematics.Kinematics` workspace (so, like it, one instance per thread).
    """

    def __init__(self, params: SafetyParams, kinematics: Kinematics | None = None,
                 profile: RobotProfile | None = None) -> None:
        """``kinematics`` is needed for the workspace box and EE speed rules; when it is None and
        one of them is enabled, it is built from ``profile``."""
        if not isinstance(params, SafetyParams):
            raise ValueError(f"params: expected SafetyParams, got {type(params).__name__}")
        self.params = params
        self.n = params.n_joints
        self._names = params.joint_names
        self._index = {nm: i for i, nm in enumerate(params.joint_names)}
        needs_kin = params.workspace_enabled or params.ee_speed_max is not None
        if needs_kin and kinematics is None:
            if profile is None:
                raise ValueError(
                    "kinematics: the workspace/EE-speed rules need forward kinematics; pass "
                    "kinematics= or profile= (or disable workspace_enabled and ee_speed_max)"
                )
            from robot_rl.kinematics import Kinematics

            kinematics = Kinematics.from_profile(profile)
        if kinematics is not None and tuple(kinematics.joint_names) != params.joint_names:
            raise ValueError(
                f"kinematics: joint names {list(kinematics.joint_names)} differ from the "
                f"profile's {list(params.joint_names)}"
            )
        self.kinematics = kinematics if needs_kin else None
        p = params
        self._dt = p.dt
        # numpy constants (batch path)
        self._tau = p.tau
        self._A = p.a_max
        self._V = p.v_max
        self._U = p.ramp
        self._U2 = p.brake_ramp
        self._k1 = p.n_ramp * p.dt  # (1 + m_max) dt = n_r dt
        self._k2 = 2.0 * p.n_ramp * p.dt
        self._nr_u_dt = p.n_ramp * p.ramp * p.dt
        # F(A) = A + U/dt; any larger argument of F^{-1} only matters through min(., A).
        self._r_cap = 2.0 * (p.a_max + p.ramp / p.dt) + p.tau
        # the same constants as Python floats, one tuple per joint (scalar path)
        self._joint_consts = tuple(
            zip(*(arr.tolist() for arr in (
                self._tau, self._A, self._V, self._r_cap, self._U, self._U2, self._k1,
                self._k2, self._nr_u_dt, p.q_lower, p.q_upper,
                inverse_ramp(self._r_cap, self._tau))))
        )
        self._ws_high = p.workspace_high.tolist()
        self._ws_low = p.workspace_low.tolist()
        self._zeros = np.zeros(self.n)
        self._zeros.flags.writeable = False

    @classmethod
    def from_config(cls, profile: RobotProfile, config: SafetyConfig, *, control_hz: float,
                    output_hz: float | None = None,
                    kinematics: Kinematics | None = None) -> SafetyCore:
        """Core for ``profile`` under ``config`` (see :meth:`SafetyParams.from_config`)."""
        params = SafetyParams.from_config(profile, config, control_hz=control_hz,
                                          output_hz=output_hz)
        return cls(params, kinematics=kinematics, profile=profile)

    # ------------------------------------------------------------------ input checks

    def check_proposal(self, proposal: Any, names: Sequence[str] | None = None) -> _Checked:
        """Validate a proposal (rad/s) and bring it into profile joint order (a copy).

        Data problems are reported as rules (the target becomes zero): ``NONFINITE``,
        ``BAD_LENGTH``, ``JOINT_ORDER`` (names must be exactly the profile's, in any order).
        Programmer errors raise ``ValueError``: not a 1-D sequence of numbers, names not strings.
        """
        return self._check(proposal, names, field_name="proposal", allow_extra=False)

    def check_state(self, q: Any, names: Sequence[str] | None = None,
                    age: float | None = 0.0) -> _Checked:
        """Validate measured joint positions (rad) and their age (s; None: unknown, taken as
        fresh).

        The state may name extra joints (a ``JointState`` often carries the gripper fingers);
        they are ignored. Missing, stale (``age > state_timeout``, or NaN), non-finite,
        wrongly sized or wrongly named states are reported as rules; only a stale state keeps
        its ``values`` (the position and workspace rules still use it: they can only brake).
        """
        if q is None:
            return _Checked(None, Rule.STALE_STATE, ((Rule.STALE_STATE, math.inf),),
                            ("state: missing",))
        c = self._check(q, names, field_name="state", allow_extra=True)
        if c.values is None:
            return _Checked(None, c.rules | Rule.STALE_STATE,
                            c.amounts + ((Rule.STALE_STATE, math.inf),), c.reasons, c.reordered)
        if age is not None:
            age = float(age)
            if not age <= self.params.state_timeout:  # NaN counts as stale
                return _Checked(c.values, Rule.STALE_STATE, ((Rule.STALE_STATE, age),),
                                (f"state: {age:.3g} s old (timeout "
                                 f"{self.params.state_timeout:g} s)",), c.reordered)
        return c

    def _check(self, x: Any, names: Sequence[str] | None, *, field_name: str,
               allow_extra: bool) -> _Checked:
        try:
            arr = np.array(x, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(
                f"{field_name}: expected a 1-D sequence of {self.n} floats, got "
                f"{type(x).__name__}"
            ) from None
        if arr.ndim != 1:
            raise ValueError(
                f"{field_name}: expected a 1-D sequence of {self.n} floats, got shape {arr.shape}"
            )
        reordered = False
        if names is None:
            if arr.shape[0] != self.n:
                d = abs(arr.shape[0] - self.n)
                return _Checked(None, Rule.BAD_LENGTH, ((Rule.BAD_LENGTH, float(d)),),
                                (f"{field_name}: {arr.shape[0]} values, expected {self.n}",))
            values = arr
        else:
            if isinstance(names, str) or not all(isinstance(s, str) for s in names):
                raise ValueError(f"{field_name}_names: expected a sequence of joint-name strings, "
                                 f"got {names!r}")
            names = tuple(names)
            if len(names) != arr.shape[0]:
                d = abs(len(names) - arr.shape[0])
                return _Checked(None, Rule.BAD_LENGTH, ((Rule.BAD_LENGTH, float(d)),),
                                (f"{field_name}: {arr.shape[0]} values for {len(names)} names",))
            if names == self._names:
                values = arr
            else:
                pos: dict[str, int] = {}
                dup = 0
                for i, nm in enumerate(names):
                    if nm in pos:
                        dup += 1
                    else:
                        pos[nm] = i
                missing = [nm for nm in self._names if nm not in pos]
                unknown = [nm for nm in pos if nm not in self._index]
                bad = dup + len(missing) + (0 if allow_extra else len(unknown))
                if bad:
                    why = []
                    if missing:
                        why.append(f"missing {missing}")
                    if unknown and not allow_extra:
                        why.append(f"unknown {unknown}")
                    if dup:
                        why.append(f"{dup} duplicated")
                    return _Checked(None, Rule.JOINT_ORDER, ((Rule.JOINT_ORDER, float(bad)),),
                                    (f"{field_name}: joint names " + ", ".join(why),))
                values = arr[[pos[nm] for nm in self._names]]
                reordered = True
        finite = np.isfinite(values)
        if not finite.all():
            bad_j = np.flatnonzero(~finite)
            return _Checked(None, Rule.NONFINITE, ((Rule.NONFINITE, float(bad_j.size)),),
                            (f"{field_name}: non-finite values at joints "
                             f"{[self._names[j] for j in bad_j]}",), reordered)
        values.flags.writeable = False
        return _Checked(values, reordered=reordered)

    def _check_previous(self, v_prev: Any, a_prev: Any) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for nm, x in (("v_prev", v_prev), ("a_prev", a_prev)):
            try:
                arr = np.array(x, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{nm}: expected {self.n} floats, got {type(x).__name__}") from None
            if arr.shape != (self.n,) or not np.isfinite(arr).all():
                raise ValueError(f"{nm}: expected {self.n} finite floats (profile order), got "
                                 f"{arr.tolist() if arr.ndim <= 1 else arr.shape}")
            out.append(arr)
        v, a = out
        tol_v = 1e-9 * self._V + 1e-12
        tol_a = 1e-9 * self._A + 1e-12
        if (np.abs(a) > self._A + tol_a).any():
            raise ValueError(f"a_prev: {a.tolist()} exceeds the acceleration limit "
                             f"{self._A.tolist()}; pass the previous outputs of this filter")
        up = v + ramp_gain(a, self._tau, self._dt)
        dn = -v + ramp_gain(-a, self._tau, self._dt)
        if (up > self._V + tol_v).any() or (dn > self._V + tol_v).any():
            raise ValueError(
                f"v_prev/a_prev: ({v.tolist()}, {a.tolist()}) cannot come from this filter: the "
                f"velocity limit {self._V.tolist()} could not be kept under the jerk limit; pass "
                f"the previous outputs of this filter (or a state at rest)"
            )
        return v, a

    # ------------------------------------------------------------------ one command

    def step(
        self,
        proposal: Any,
        *,
        v_prev: Any,
        a_prev: Any,
        q: Any = None,
        proposal_names: Sequence[str] | None = None,
        state_names: Sequence[str] | None = None,
        state_age: float | None = 0.0,
        proposal_age: float = 0.0,
        estop: bool = False,
        held: bool = False,
    ) -> tuple[np.ndarray, SafetyReport]:
        """One output period: ``(command, report)``.

        ``proposal``: joint velocities (rad/s), profile order unless ``proposal_names`` say
        otherwise; None: no proposal (``WATCHDOG``). ``v_prev``/``a_prev``: this filter's previous
        output velocity and its acceleration ``(v_prev - v_prevprev)/dt`` (zeros at rest; a pair
        no filter output can have raises ``ValueError``). ``q``: measured joint positions (rad)
        of age ``state_age`` (s). ``proposal_age``: seconds since the proposal arrived
        (``WATCHDOG`` beyond ``watchdog_timeout``). ``held``: this proposal was already applied in
        an earlier output period (approach it without overshoot).
        """
        prop = None if proposal is None else self.check_proposal(proposal, proposal_names)
        state = self.check_state(q, state_names, state_age)
        return self.command(prop, state, v_prev=v_prev, a_prev=a_prev,
                            proposal_age=proposal_age, estop=estop, held=held)

    def command(
        self,
        proposal: _Checked | None,
        state: _Checked,
        *,
        v_prev: Any,
        a_prev: Any,
        proposal_age: float = 0.0,
        estop: bool = False,
        held: bool = False,
        _trusted: bool = False,
    ) -> tuple[np.ndarray, SafetyReport]:
        """:meth:`step` on already checked inputs (:meth:`check_proposal`, :meth:`check_state`)."""
        if not _trusted:
            v_prev, a_prev = self._check_previous(v_prev, a_prev)
        v = v_prev.tolist()
        a = a_prev.tolist()
        rules = int(state.rules)
        amounts: dict[int, float] = {int(k): x for k, x in state.amounts}
        reasons = list(state.reasons)
        reordered = False
        wd = self.params.watchdog_timeout
        if proposal is None:
            rules |= 8
            amounts[8] = math.inf
            reasons.append("no proposal yet")
        else:
            rules |= int(proposal.rules)
            for k, x in proposal.amounts:
                amounts[int(k)] = max(amounts.get(int(k), 0.0), x)
            reasons.extend(proposal.reasons)
            reordered = proposal.reordered
            age = float(proposal_age)
            if not age <= wd:
                rules |= 8
                amounts[8] = age
                reasons.append(f"watchdog: last proposal {age:.3g} s ago (timeout {wd:g} s)")
        if estop:
            rules |= 16
            amounts[16] = 1.0
            reasons.append("e-stop latched")
        if rules & _TARGET_ZERO or proposal is None or proposal.values is None:
            target = self._zeros
            held = True  # zero is approached without overshoot
        else:
            target = proposal.values
        t = target.tolist()
        q = None if state.values is None else state.values.tolist()
        cart = q is not None and self.kinematics is not None
        ee0 = 0.0
        if cart:
            p_arr, jac = self.kinematics.ee_position_and_jacobian(state.values)
            p = p_arr.tolist()
            jp = jac[:3].tolist()
            t, ee0, scaled = self._ee_target_s(t, jp)
            held = held or scaled
        out, lo, hi, ex = self._joint_stage_s(t, v, a, q, bool(held))
        ws = ee = 0.0
        if cart:
            out, ws, ee = self._cartesian_stage_s(out, v, lo, hi, p, jp)
        ex = ex + [ws, max(ee0, ee)]
        for x, bit in zip(ex, (32, 64, 128, 256, 512, 1024)):
            if x > 0.0:
                rules |= bit
                amounts[bit] = x
        if rules & 256 and q is not None:
            P = self.params
            for j in range(self.n):
                over = max(q[j] - P.q_upper[j], P.q_lower[j] - q[j])
                if over > 0.0:
                    reasons.append(f"{self._names[j]} is {over:.4g} rad beyond its margin")
        lo_a = np.array(lo)
        hi_a = np.array(hi)
        lo_a.flags.writeable = False
        hi_a.flags.writeable = False
        report = SafetyReport(
            rules=Rule(rules),
            amounts=MappingProxyType({r: amounts[int(r)] for r in RULES if int(r) & rules}),
            target=target if target is self._zeros else _readonly(target.copy()),
            lower=lo_a,
            upper=hi_a,
            reasons=tuple(reasons),
            reordered=reordered,
        )
        return np.array(out), report

    # ------------------------------------------------------------------ scalar stages

    def _joint_stage_s(self, t, v, a, q, held):
        """Per joint (Python floats): the clamped target, the admissible interval (hard limits
        and position braking; a held target's approach narrows the clamp, not the interval) and
        the largest excess of the target per rule [vel, acc, jerk, pos].

        ``x if x >= y else y`` is numpy's ``maximum`` (and ``<=`` its ``minimum``), written out
        because builtin calls dominate the cost at this size.
        """
        dt = self._dt
        out = []
        los = []
        his = []
        xv = xa = xj = xp = 0.0
        for i, (tau, A, V, cap, U, U2, k1, k2, nru, qlo, qhi, fcap) in enumerate(
                self._joint_consts):
            ti = t[i]
            vi = v[i]
            ai = a[i]
            up_v = _ub_s(V, vi, dt, tau, cap, fcap)
            if not up_v <= V:
                up_v = V
            dn_v = -_ub_s(V, -vi, dt, tau, cap, fcap)
            if not dn_v >= -V:
                dn_v = -V
            up_a = vi + dt * A
            dn_a = vi - dt * A
            up_j = vi + dt * (ai + tau)
            dn_j = vi + dt * (ai - tau)
            hi_h = up_v if up_v <= up_a else up_a
            if not hi_h <= up_j:
                hi_h = up_j
            if not hi_h >= -V:
                hi_h = -V
            lo_h = dn_v if dn_v >= dn_a else dn_a
            if not lo_h >= dn_j:
                lo_h = dn_j
            if not lo_h <= V:
                lo_h = V
            if lo_h > hi_h:
                lo_h = hi_h = 0.5 * (lo_h + hi_h)
            # where round-off made the interval a few ulps wider than a rule's bound, that rule
            # is not "fired" by a target inside the interval
            if not up_v >= hi_h:
                up_v = hi_h
            if not up_a >= hi_h:
                up_a = hi_h
            if not up_j >= hi_h:
                up_j = hi_h
            if not dn_v <= lo_h:
                dn_v = lo_h
            if not dn_a <= lo_h:
                dn_a = lo_h
            if not dn_j <= lo_h:
                dn_j = lo_h
            conflict = False
            if q is not None:
                qi = q[i]
                c_hi = _bspeed_s(qhi - qi, A, U, U2, k1, k2, nru)
                c_lo = _bspeed_s(qi - qlo, A, U, U2, k1, k2, nru)
                up_p = _ub_s(c_hi, vi, dt, tau, cap, fcap)
                dn_p = -_ub_s(c_lo, -vi, dt, tau, cap, fcap)
                hi2 = hi_h if hi_h <= up_p else up_p
                lo2 = lo_h if lo_h >= dn_p else dn_p
                if lo2 > hi2:
                    conflict = True
                    up_bad = up_p < lo_h
                    dn_bad = dn_p > hi_h
                    use_up = True if (up_bad and not dn_bad) else (
                        False if (dn_bad and not up_bad) else vi >= 0.0)
                    if use_up:
                        f = vi + dt * max(max(ai - tau, -A), -_finv_s(
                            min(max(vi, 0.0) / dt, cap), tau))
                    else:
                        f = vi + dt * min(min(ai + tau, A), _finv_s(
                            min(max(-vi, 0.0) / dt, cap), tau))
                    f = min(max(f, lo_h), hi_h)
                    lo2 = hi2 = f
            else:
                up_p = _INF
                dn_p = -_INF
                hi2 = hi_h
                lo2 = lo_h
            hi = hi2
            lo = lo2
            ej = ti - up_j if ti - up_j >= dn_j - ti else dn_j - ti
            if ej < 0.0:
                ej = 0.0
            if held:
                if ti >= vi:
                    up_t = _ub_s(ti, vi, dt, tau, cap, fcap)
                    x = up_t if up_t >= lo2 else lo2
                    if not hi <= x:
                        hi = x
                    x = ti - up_t  # (dn_t = -inf)
                else:
                    dn_t = -_ub_s(-ti, -vi, dt, tau, cap, fcap)
                    x = dn_t if dn_t <= hi2 else hi2
                    if not lo >= x:
                        lo = x
                    x = dn_t - ti
                if x > ej:
                    ej = x
            o = ti if ti >= lo else lo
            if not o <= hi:
                o = hi
            out.append(o)
            los.append(lo2)
            his.append(hi2)
            # VELOCITY: beyond V, or beyond the look-ahead bound where that is stricter than the
            # acceleration bound (else the look-ahead is not what limits this period)
            x = abs(ti) - V
            y = ti - up_v if up_v < up_a else 0.0
            if y > x:
                x = y
            y = dn_v - ti if dn_v > dn_a else 0.0
            if y > x:
                x = y
            if x > xv:
                xv = x
            x = ti - up_a if ti - up_a >= dn_a - ti else dn_a - ti
            if x > xa:
                xa = x
            if ej > xj:
                xj = ej
            x = ti - up_p if up_p < up_v else 0.0
            y = dn_p - ti if dn_p > dn_v else 0.0
            if y > x:
                x = y
            if conflict:
                y = abs(ti - o)
                if y < 1e-300:
                    y = 1e-300
                if y > x:
                    x = y
            if x > xp:
                xp = x
        return out, los, his, [xv, xa, xj, xp]

    def _ee_target_s(self, t, jp):
        """EE speed limit on the target (Python floats): ``t * E / ||J_p t||`` when above ``E``."""
        emax = self.params.ee_speed_max
        if emax is None:
            return t, 0.0, False
        n = self.n
        # a huge proposal is scaled down by 2^-600 (exact) first so that |J t|^2 cannot overflow
        huge = max(abs(x) for x in t) > _HUGE
        tt = [x * _TINY_SCALE for x in t] if huge else t
        sq = 0.0
        for k in range(3):
            row = jp[k]
            e = row[0] * tt[0]
            for i in range(1, n):
                e = e + row[i] * tt[i]
            sq = e * e if k == 0 else sq + e * e
        if not (sq > emax * emax or (huge and sq > 0.0)):
            return t, 0.0, False
        s = emax / math.sqrt(sq)
        ts = [x * s for x in tt]
        return ts, max(abs(x - y) for x, y in zip(t, ts)), True

    def _cartesian_stage_s(self, vh, v, lo, hi, p, jp):
        """Workspace braking then the EE speed guard (Python floats; module docstring).
        Returns (command, workspace change, EE-speed change)."""
        P = self.params
        n = self.n
        dt = self._dt
        vb = [min(max(0.0, lo[i]), hi[i]) for i in range(n)]
        out = vh
        ws_amt = 0.0
        if P.workspace_enabled:
            q0 = []
            q1 = []
            q2 = []
            tot = []
            sg = []
            for i, (tau, A, V, cap, U, U2, k1, k2, nru, qlo, qhi, fcap) in enumerate(
                    self._joint_consts):
                b = abs(vb[i]) + U
                gam = abs(vh[i]) - abs(vb[i])
                bu = b + U2
                x2 = gam * gam / (2.0 * A)
                x1 = k1 * gam + gam * bu / A
                x0 = k1 * b + bu * bu / (2.0 * A) + nru
                q2.append(x2)
                q1.append(x1)
                q0.append(x0)
                tot.append(x0 + x1 + x2)
                x = vh[i]
                sg.append(1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0))
            # h = sum_i w_i tot_i per face (zero weights skipped: adding +0.0 changes nothing)
            s_j = None
            for k in range(3):
                row = jp[k]
                g = [row[i] * sg[i] for i in range(n)]
                h_up = 0.0
                h_dn = 0.0
                for i in range(n):
                    gi = g[i]
                    if gi > 0.0:
                        h_up = h_up + gi * tot[i]
                    elif gi < 0.0:
                        h_dn = h_dn + (-gi) * tot[i]
                for f, h, d in ((k, h_up, self._ws_high[k] - p[k]),
                                (k + 3, h_dn, p[k] - self._ws_low[k])):
                    if not h > d:
                        continue
                    w = [(gi if gi > 0.0 else 0.0) for gi in g] if f < 3 else \
                        [(-gi if gi < 0.0 else 0.0) for gi in g]
                    s_f = self._face_scale_s(w, q0, q1, q2, d)
                    if s_j is None:
                        s_j = [1.0] * n
                    for i in range(n):
                        if w[i] > 0.0 and s_f < s_j[i]:
                            s_j[i] = s_f
            if s_j is not None:
                out = [
                    _between_s(vb[i] + s_j[i] * (vh[i] - vb[i]), vb[i], vh[i]) if s_j[i] < 1.0
                    else vh[i]
                    for i in range(n)
                ]
                ws_amt = max(abs(x - y) for x, y in zip(vh, out))
        ee_amt = 0.0
        emax = P.ee_speed_max
        if emax is not None:
            e = []
            for k in range(3):
                row = jp[k]
                x = row[0] * out[0]
                for i in range(1, n):
                    x = x + row[i] * out[i]
                e.append(x)
            sq = e[0] * e[0] + e[1] * e[1] + e[2] * e[2]
            if sq > emax * emax:
                e0 = []
                for k in range(3):
                    row = jp[k]
                    y = row[0] * vb[0]
                    for i in range(1, n):
                        y = y + row[i] * vb[i]
                    e0.append(y)
                out, ee_amt = self._ee_guard_s(out, v, vb, lo, hi, e, e0, emax)
        return out, ws_amt, ee_amt

    @staticmethod
    def _face_scale_s(w, q0, q1, q2, d):
        """Largest ``s`` in [0, 1] with ``a2 s^2 + a1 s + a0 <= d`` (``a_k = sum_i w_i q_k,i``)."""
        a0 = a1 = a2 = 0.0
        for i, wi in enumerate(w):
            if wi > 0.0:
                a0 = a0 + wi * q0[i]
                a1 = a1 + wi * q1[i]
                a2 = a2 + wi * q2[i]
        slack = d - a0
        if slack > 0.0:
            den = a1 + math.sqrt(a1 * a1 + 4.0 * a2 * slack)
            return min(2.0 * slack / den, 1.0) if den > 0.0 else 1.0
        return 0.0

    def _ee_guard_s(self, out, v, vb, lo, hi, e, e0, emax):
        """Scale ``out`` toward ``vb`` until ``||J_p out|| = emax`` (one quadratic), then keep
        speeding-up joints from overshooting (jerk look-ahead). Returns (command, change)."""
        dt = self._dt
        e1 = [e[k] - e0[k] for k in range(3)]
        c2 = e1[0] * e1[0] + e1[1] * e1[1] + e1[2] * e1[2]
        c1 = 2.0 * (e0[0] * e1[0] + e0[1] * e1[1] + e0[2] * e1[2])
        c0 = e0[0] * e0[0] + e0[1] * e0[1] + e0[2] * e0[2] - emax * emax
        if c0 >= 0.0:
            s = 0.0
        else:
            den = c1 + math.sqrt(max(c1 * c1 - 4.0 * c2 * c0, 0.0))
            s = min(-2.0 * c0 / den, 1.0) if den > 0.0 else 1.0
        new = []
        for i, (tau, A, V, cap, *_rest, fcap) in enumerate(self._joint_consts):
            x = _between_s(vb[i] + s * (out[i] - vb[i]), vb[i], out[i])
            vi = v[i]
            if x > vi and x > 0.0:  # speeding up: no overshoot of x (jerk look-ahead)
                x = min(max(min(x, _ub_s(x, vi, dt, tau, cap, fcap)), lo[i]), hi[i])
            elif x < vi and x < 0.0:
                x = min(max(max(x, -_ub_s(-x, -vi, dt, tau, cap, fcap)), lo[i]), hi[i])
            new.append(x)
        return new, max(abs(x - y) for x, y in zip(out, new))

    # ------------------------------------------------------------------ batch

    def step_batch(
        self,
        proposals: Any,
        v_prev: Any,
        a_prev: Any,
        q: Any = None,
        *,
        estop: Any = False,
        held: Any = False,
    ) -> tuple[np.ndarray, BatchReport]:
        """The same maths for ``B`` rows at once with numpy (the fuzz / benchmark path).

        ``proposals``, ``v_prev``, ``a_prev``, ``q``: ``(B, n)`` float arrays (``q`` None: no
        state, as ``STALE_STATE``); ``estop`` and ``held``: bools or ``(B,)`` bool arrays. Rows with
        a non-finite proposal get ``NONFINITE`` and target zero; rows with a non-finite ``q`` get
        ``STALE_STATE`` (their position/workspace rules are skipped). Names, lengths and ages
        are the scalar path's business. The previous outputs are trusted (not re-validated).
        Returns ``(commands (B, n), BatchReport)``; row ``b`` equals :meth:`step` on row ``b``.
        """
        t = np.array(proposals, dtype=float)
        v = np.asarray(v_prev, dtype=float)
        a = np.asarray(a_prev, dtype=float)
        if t.ndim != 2 or t.shape[1] != self.n:
            raise ValueError(f"proposals: expected shape (B, {self.n}), got {t.shape}")
        for nm, arr in (("v_prev", v), ("a_prev", a)):
            if arr.shape != t.shape:
                raise ValueError(f"{nm}: expected shape {t.shape}, got {arr.shape}")
        B = t.shape[0]
        rules = np.zeros(B, dtype=np.int64)
        amounts = np.zeros((B, len(RULES)))
        bad_t = ~np.isfinite(t).all(axis=1)
        if bad_t.any():
            rules[bad_t] |= int(Rule.NONFINITE)
            amounts[bad_t, 0] = (~np.isfinite(t[bad_t])).sum(axis=1)
        if q is None:
            qq = None
            bad_q = np.ones(B, dtype=bool)
        else:
            qq = np.asarray(q, dtype=float)
            if qq.shape != t.shape:
                raise ValueError(f"q: expected shape {t.shape}, got {qq.shape}")
            bad_q = ~np.isfinite(qq).all(axis=1)
        if bad_q.any():
            rules[bad_q] |= int(Rule.STALE_STATE)
            amounts[bad_q, 2] = math.inf
        est = np.broadcast_to(np.asarray(estop, dtype=bool), (B,))
        if est.any():
            rules[est] |= int(Rule.ESTOP)
            amounts[est, 4] = 1.0
        zero = rules != 0
        t = np.where(zero[:, None], 0.0, t)  # (a fresh array)
        hld = np.broadcast_to(np.asarray(held, dtype=bool), (B,)) | zero
        q_use = None
        if qq is not None:
            q_use = np.where(bad_q[:, None], np.nan, qq)  # NaN q: no position constraint
        ws = np.zeros(B)
        ee = np.zeros(B)
        rows = np.zeros(0, dtype=np.intp)
        if qq is not None and self.kinematics is not None:
            rows = np.flatnonzero(~bad_q)
        if rows.size:
            P = np.empty((rows.size, 3))
            Jp = np.empty((rows.size, 3, self.n))
            kin = self.kinematics
            for k, b in enumerate(rows):
                p, jac = kin.ee_position_and_jacobian(qq[b])
                P[k] = p
                Jp[k] = jac[:3]
            t_r, ee0, scaled = self._ee_target_b(t[rows], Jp)
            t[rows] = t_r
            ee[rows] = ee0
            hld = hld.copy()
            hld[rows] |= scaled
        out, lo, hi, ex = self._joint_stage_b(t, v, a, q_use, hld[:, None])
        if rows.size:
            o2, ws_r, ee_r = self._cartesian_stage_b(out[rows], v[rows], lo[rows], hi[rows], P, Jp)
            out[rows] = o2
            ws[rows] = ws_r
            ee[rows] = np.maximum(ee[rows], ee_r)
        ex_all = np.concatenate([ex, ws[:, None], ee[:, None]], axis=1)
        for i, idx in enumerate((_I_VEL, _I_ACC, _I_JERK, _I_POS, _I_WS, _I_EE)):
            fired = ex_all[:, i] > 0.0
            rules[fired] |= int(RULES[idx])
            amounts[:, idx] = np.where(fired, ex_all[:, i], amounts[:, idx])
        return out, BatchReport(rules=rules, amounts=amounts, lower=lo, upper=hi)

    def _joint_stage_b(self, t, v, a, q, held):
        """:meth:`_joint_stage_s` over a batch (numpy, the same operations)."""
        dt, tau, A, V, cap = self._dt, self._tau, self._A, self._V, self._r_cap
        up_v = np.minimum(_upper_bound(V, v, dt, tau, cap), V)
        dn_v = np.maximum(-_upper_bound(V, -v, dt, tau, cap), -V)
        up_a = v + dt * A
        dn_a = v - dt * A
        up_j = v + dt * (a + tau)
        dn_j = v + dt * (a - tau)
        # (the outer min/max keep |v'| <= V exact when round-off pushes a jerk bound past V)
        hi_h = np.maximum(np.minimum(np.minimum(up_v, up_a), up_j), -V)
        lo_h = np.minimum(np.maximum(np.maximum(dn_v, dn_a), dn_j), V)
        gap = lo_h > hi_h  # float round-off only (see the feasibility argument)
        if gap.any():
            mid = 0.5 * (lo_h + hi_h)
            lo_h = np.where(gap, mid, lo_h)
            hi_h = np.where(gap, mid, hi_h)
        # (round-off: a target inside the interval fires no rule)
        up_v = np.maximum(up_v, hi_h)
        up_a = np.maximum(up_a, hi_h)
        up_j = np.maximum(up_j, hi_h)
        dn_v = np.minimum(dn_v, lo_h)
        dn_a = np.minimum(dn_a, lo_h)
        dn_j = np.minimum(dn_j, lo_h)
        conflict = None
        if q is not None:
            P = self.params
            c_hi = _braking_speed(P.q_upper - q, A, self._U, self._U2, self._k1, self._k2,
                                  self._nr_u_dt)
            c_lo = _braking_speed(q - P.q_lower, A, self._U, self._U2, self._k1, self._k2,
                                  self._nr_u_dt)
            up_p = _upper_bound(c_hi, v, dt, tau, cap)
            dn_p = -_upper_bound(c_lo, -v, dt, tau, cap)
            nanq = np.isnan(q)  # rows without a usable state: no position rule
            if nanq.any():
                up_p = np.where(nanq, np.inf, up_p)
                dn_p = np.where(nanq, -np.inf, dn_p)
            hi2 = np.minimum(hi_h, up_p)
            lo2 = np.maximum(lo_h, dn_p)
            conflict = lo2 > hi2
            if conflict.any():
                up_bad = up_p < lo_h
                dn_bad = dn_p > hi_h
                use_up = np.where(up_bad & ~dn_bad, True,
                                  np.where(dn_bad & ~up_bad, False, v >= 0.0))
                # greedy stop without reversing: floor-0 look-ahead (mirror for the lower side)
                f_up = v + dt * np.maximum(np.maximum(a - tau, -A), -inverse_ramp(
                    np.minimum(np.maximum(v, 0.0) / dt, cap), tau))
                f_dn = v + dt * np.minimum(np.minimum(a + tau, A), inverse_ramp(
                    np.minimum(np.maximum(-v, 0.0) / dt, cap), tau))
                f = np.minimum(np.maximum(np.where(use_up, f_up, f_dn), lo_h), hi_h)
                lo2 = np.where(conflict, f, lo2)
                hi2 = np.where(conflict, f, hi2)
        else:
            up_p = np.full_like(v, np.inf)
            dn_p = np.full_like(v, -np.inf)
            hi2, lo2 = hi_h, lo_h
        up_t = dn_t = None
        if np.any(held):
            above = t >= v
            up_t = np.where(held & above, _upper_bound(t, v, dt, tau, cap), np.inf)
            dn_t = np.where(held & ~above, -_upper_bound(-t, -v, dt, tau, cap), -np.inf)
            hi = np.minimum(hi2, np.maximum(up_t, lo2))
            lo = np.maximum(lo2, np.minimum(dn_t, hi2))
        else:
            hi, lo = hi2, lo2
        out = np.minimum(np.maximum(t, lo), hi)
        z = 0.0
        ex_v = np.maximum(np.maximum(np.maximum(np.abs(t) - V, np.where(up_v < up_a, t - up_v, z)),
                                     np.where(dn_v > dn_a, dn_v - t, z)), z)
        ex_a = np.maximum(np.maximum(t - up_a, dn_a - t), z)
        ex_j = np.maximum(np.maximum(t - up_j, dn_j - t), z)
        if up_t is not None:
            ex_j = np.where(held, np.maximum(ex_j, np.maximum(t - up_t, dn_t - t)), ex_j)
        # POSITION counts only where braking is tighter than the velocity rule itself.
        ex_p = np.maximum(np.maximum(np.where(up_p < up_v, t - up_p, z),
                                     np.where(dn_p > dn_v, dn_p - t, z)), z)
        if conflict is not None and conflict.any():
            ex_p = np.where(conflict, np.maximum(ex_p, np.maximum(np.abs(t - out), 1e-300)), ex_p)
        ex = np.stack([ex_v.max(axis=-1), ex_a.max(axis=-1), ex_j.max(axis=-1),
                       ex_p.max(axis=-1)], axis=-1)
        return out, lo2, hi2, ex

    def _ee_target_b(self, t, jp):
        """:meth:`_ee_target_s` over a batch."""
        emax = self.params.ee_speed_max
        B = t.shape[0]
        if emax is None:
            return t, np.zeros(B), np.zeros(B, dtype=bool)
        huge = np.abs(t).max(axis=-1) > _HUGE
        tt = np.where(huge[:, None], t * _TINY_SCALE, t)
        e = _seqsum(jp * tt[:, None, :])  # (B, 3)
        sq = e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1] + e[:, 2] * e[:, 2]
        fast = (sq > emax * emax) | (huge & (sq > 0.0))
        if not fast.any():
            return t, np.zeros(B), fast
        s = emax / np.sqrt(np.where(fast, sq, 1.0))
        ts = np.where(fast[:, None], tt * s[:, None], t)
        return ts, np.abs(t - ts).max(axis=-1), fast

    def _cartesian_stage_b(self, vh, v, lo, hi, p, jp):
        """:meth:`_cartesian_stage_s` over a batch: ``vh, v, lo, hi`` (B, n), ``p`` (B, 3),
        ``jp`` (B, 3, n)."""
        P = self.params
        A, U, U2, k1 = self._A, self._U, self._U2, self._k1
        dt, tau, cap = self._dt, self._tau, self._r_cap
        B = vh.shape[0]
        vb = np.minimum(np.maximum(0.0, lo), hi)  # most-braking admissible output
        out = vh
        ws_amt = np.zeros(B)
        if P.workspace_enabled:
            # joint i's peak speed <= |v_i(s)| + U = b + s gam; its travel <= D_i(b + s gam)
            # (with min(c, U) <= U): a quadratic in s per face.
            b = np.abs(vb) + U
            gam = np.abs(vh) - np.abs(vb)
            bu = b + U2
            q2 = gam * gam / (2.0 * A)
            q1 = k1 * gam + gam * bu / A
            q0 = k1 * b + bu * bu / (2.0 * A) + self._nr_u_dt
            g = jp * np.sign(vh)[:, None, :]  # (B, 3, n)
            w = np.concatenate([np.maximum(g, 0.0), np.maximum(-g, 0.0)], axis=1)  # (B, 6, n)
            d = np.concatenate([P.workspace_high - p, p - P.workspace_low], axis=1)  # (B, 6)
            viol = _seqsum(w * (q0 + q1 + q2)[:, None, :]) > d
            if viol.any():
                a0 = _seqsum(w * q0[:, None, :])
                a1 = _seqsum(w * q1[:, None, :])
                a2 = _seqsum(w * q2[:, None, :])
                slack = d - a0
                with np.errstate(divide="ignore", invalid="ignore"):
                    den = a1 + np.sqrt(a1 * a1 + 4.0 * a2 * slack)
                    s_f = np.where(den > 0.0, np.minimum(2.0 * slack / den, 1.0), 1.0)
                s_f = np.where(viol, np.where(slack > 0.0, s_f, 0.0), 1.0)
                s_j = np.where(w > 0.0, s_f[:, :, None], 1.0).min(axis=1)  # (B, n)
                out = np.where(s_j < 1.0, _between(vb + s_j * (vh - vb), vb, vh), vh)
                ws_amt = np.abs(vh - out).max(axis=-1)
        ee_amt = np.zeros(B)
        emax = P.ee_speed_max
        if emax is not None:
            e = _seqsum(jp * out[:, None, :])
            sq = e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1] + e[:, 2] * e[:, 2]
            fast = sq > emax * emax
            if fast.any():
                e0 = _seqsum(jp * vb[:, None, :])
                e1 = e - e0
                c2 = e1[:, 0] * e1[:, 0] + e1[:, 1] * e1[:, 1] + e1[:, 2] * e1[:, 2]
                c1 = 2.0 * (e0[:, 0] * e1[:, 0] + e0[:, 1] * e1[:, 1] + e0[:, 2] * e1[:, 2])
                c0 = e0[:, 0] * e0[:, 0] + e0[:, 1] * e0[:, 1] + e0[:, 2] * e0[:, 2] - emax * emax
                with np.errstate(divide="ignore", invalid="ignore"):
                    den = c1 + np.sqrt(np.maximum(c1 * c1 - 4.0 * c2 * c0, 0.0))
                    s = np.where(den > 0.0, np.minimum(-2.0 * c0 / den, 1.0), 1.0)
                s = np.where(c0 >= 0.0, 0.0, s)
                new = _between(vb + s[:, None] * (out - vb), vb, out)
                # speeding-up joints may not overshoot their scaled velocity (jerk look-ahead)
                up = (new > v) & (new > 0.0)
                dn = (new < v) & (new < 0.0)
                if up.any() or dn.any():
                    ub = np.minimum(new, _upper_bound(new, v, dt, tau, cap))
                    db = np.maximum(new, -_upper_bound(-new, -v, dt, tau, cap))
                    new = np.where(up, np.minimum(np.maximum(ub, lo), hi),
                                   np.where(dn, np.minimum(np.maximum(db, lo), hi), new))
                new = np.where(fast[:, None], new, out)
                ee_amt = np.abs(out - new).max(axis=-1)
                out = new
        return out, ws_amt, ee_amt


# --------------------------------------------------------------------------- stateful filter


class SafetyFilter:
    """The safety node's state machine around :class:`SafetyCore`: call :meth:`step` once per
    output period.

    Keeps the previous output ``(v_prev, a_prev)``, the latest proposal (held as the target
    between policy steps, approached without overshoot) and when it arrived (watchdog). Each
    output period: ``cmd, report = filt.step(now, proposal or None, q=..., state_stamp=...,
    estop=...)``. Times are seconds on one clock (``now``, ``state_stamp``).
    """

    def __init__(
        self,
        profile: RobotProfile,
        config: SafetyConfig,
        *,
        control_hz: float,
        output_hz: float | None = None,
        kinematics: Kinematics | None = None,
        v_init: Any = None,
    ) -> None:
        """``v_init``: the velocity the controller currently holds (default: at rest)."""
        self.core = SafetyCore.from_config(profile, config, control_hz=control_hz,
                                           output_hz=output_hz, kinematics=kinematics)
        self.params = self.core.params
        self.reset(v_init)

    @property
    def output_dt(self) -> float:
        """Output period (s)."""
        return self.params.dt

    @property
    def v_prev(self) -> np.ndarray:
        """The last command sent (rad/s)."""
        return self._v.copy()

    @property
    def a_prev(self) -> np.ndarray:
        """Its acceleration ``(v_k - v_{k-1}) / dt`` (rad/s^2)."""
        return self._a.copy()

    def reset(self, v_init: Any = None) -> None:
        """Forget the target; start from ``v_init`` (rad/s, constant: zero acceleration)."""
        n = self.core.n
        v = np.zeros(n) if v_init is None else np.array(v_init, dtype=float)
        a = np.zeros(n)
        v, a = self.core._check_previous(v, a)
        self._v, self._a = v.copy(), a.copy()
        self._prop: _Checked | None = None
        self._t_prop = -math.inf
        self._used = False

    def step(
        self,
        now: float,
        proposal: Any = None,
        *,
        proposal_names: Sequence[str] | None = None,
        q: Any = None,
        state_names: Sequence[str] | None = None,
        state_stamp: float | None = None,
        estop: bool = False,
        proposal_time: float | None = None,
    ) -> tuple[np.ndarray, SafetyReport]:
        """One output period at time ``now`` (s).

        ``proposal`` (rad/s): a fresh proposal that arrived since the last call, else None (the
        latest one stays the target until the watchdog fires). ``proposal_time``: when it
        arrived (default ``now``); the watchdog counts its age from then, so braking starts no
        later than ``watchdog_timeout`` + one output period after the last proposal arrived,
        however the arrival fell between output ticks. ``q``/``state_names``/
        ``state_stamp``: the latest joint state (None: missing; a stamp of None counts as
        fresh). ``estop``: the latched e-stop. Returns ``(command, report)`` and remembers the
        command as the previous output.
        """
        now = float(now)
        if not math.isfinite(now):
            raise ValueError(f"now: expected a finite time (s), got {now}")
        if proposal is not None:
            self._prop = self.core.check_proposal(proposal, proposal_names)  # copies
            t = now if proposal_time is None else float(proposal_time)
            if not t <= now:
                raise ValueError(f"proposal_time: {t} s lies after now = {now} s (or is not finite)")
            self._t_prop = t
            self._used = False
        age = None if state_stamp is None else now - float(state_stamp)
        state = self.core.check_state(q, state_names, age)
        cmd, report = self.core.command(
            self._prop, state, v_prev=self._v, a_prev=self._a,
            proposal_age=now - self._t_prop, estop=bool(estop), held=self._used,
            _trusted=True,
        )
        if self._prop is not None:
            self._used = True
        self._a = (cmd - self._v) / self.params.dt
        self._v = np.array(cmd, dtype=float)
        return cmd, report
