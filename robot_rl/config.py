"""Typed configuration of every component (pydantic v2), loadable from YAML.

One :class:`Config` holds a section per component: ``robot`` (profile: joint names, URDF,
limits), ``task``, ``sim``, ``safety``, ``agent``, ``replay``, ``run`` and ``teleop``. Unknown
keys and bad values are refused with a :class:`ConfigError` whose lines name the field path, what
was expected and what was given, e.g. ``robot.limits.dq_max: expected 7 values, got 6``.

ROS parameters of the nodes are generated from these models (never from string literals spread
through the nodes), and ``robot-rl config show`` prints the resolved result.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from robot_rl import profiles

Vec3 = tuple[float, float, float]


class ConfigError(ValueError):
    """A configuration that cannot be used; ``str()`` names every offending field path."""


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _finite(name: str, values: tuple[float, ...]) -> None:
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise ValueError(f"{name}[{i}] must be finite, got {v}")


# --------------------------------------------------------------------------- robot


class JointLimits(_Section):
    """Per-joint limits, in the profile's joint order (radians, seconds)."""

    q_min: tuple[float, ...] = Field(description="lower position limits (rad)")
    q_max: tuple[float, ...] = Field(description="upper position limits (rad)")
    dq_max: tuple[float, ...] = Field(description="velocity limits (rad/s), hard in the safety node")
    ddq_max: tuple[float, ...] = Field(description="acceleration limits (rad/s^2), hard")
    dddq_max: tuple[float, ...] = Field(description="jerk limits (rad/s^3), hard")

    @model_validator(mode="after")
    def _check(self) -> JointLimits:
        n = len(self.q_min)
        for name in ("q_max", "dq_max", "ddq_max", "dddq_max"):
            got = len(getattr(self, name))
            if got != n:
                raise ValueError(f"{name}: expected {n} values (as many as q_min), got {got}")
        for name in ("q_min", "q_max", "dq_max", "ddq_max", "dddq_max"):
            _finite(name, getattr(self, name))
        for i, (lo, hi) in enumerate(zip(self.q_min, self.q_max)):
            if not lo < hi:
                raise ValueError(f"q_min[{i}] = {lo} must be below q_max[{i}] = {hi}")
        for name in ("dq_max", "ddq_max", "dddq_max"):
            for i, v in enumerate(getattr(self, name)):
                if v <= 0:
                    raise ValueError(f"{name}[{i}] must be > 0, got {v}")
        return self


class RobotProfile(_Section):
    """A robot: joint names and limits that belong together, its URDF and end-effector link.

    Give just ``name: panda`` or ``name: fr3`` to take the published values; any field given
    explicitly overrides them and is checked against the family (names exact, limits only
    tightened).
    """

    name: Literal["panda", "fr3"] = Field("panda", description="robot family: 'panda' or 'fr3'")
    joint_names: tuple[str, ...] = Field(
        description="joint names, in the order commands are sent (never the order messages use)"
    )
    limits: JointLimits = Field(description="joint limits (defaults: Franka's published table)")
    ee_speed_max: float = Field(
        gt=0, description="published Cartesian translational speed limit of the flange (m/s)"
    )
    urdf: str = Field(
        description="URDF for kinematics/simulation; 'pybullet_data:<rel>' resolves in pybullet_data"
    )
    urdf_joint_names: tuple[str, ...] = Field(
        description="the URDF's names for joint_names, same order (FR3 defaults to the Panda URDF)"
    )
    ee_link: str = Field(description="URDF link whose position is the end-effector point")
    home: tuple[float, ...] = Field(description="home joint configuration (rad)")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_family(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("name", "panda")
        if name not in profiles.FAMILIES:
            return data  # the Literal check reports it
        fam = profiles.FAMILIES[name]
        out = dict(data)
        out.setdefault("joint_names", fam.joint_names)
        out.setdefault("urdf", fam.urdf)
        out.setdefault("urdf_joint_names", fam.urdf_joint_names)
        out.setdefault("ee_link", fam.ee_link)
        out.setdefault("home", fam.home)
        out.setdefault("ee_speed_max", fam.limits.ee_speed_max)
        pub = fam.limits
        lim = {
            "q_min": pub.q_min,
            "q_max": pub.q_max,
            "dq_max": pub.dq_max,
            "ddq_max": pub.ddq_max,
            "dddq_max": pub.dddq_max,
        }
        given = out.get("limits")
        if isinstance(given, dict):
            lim.update(given)
        elif given is not None:
            return out
        out["limits"] = lim
        return out

    @model_validator(mode="after")
    def _check(self) -> RobotProfile:
        n = len(self.joint_names)
        if len(set(self.joint_names)) != n:
            raise ValueError(f"joint_names has duplicates: {list(self.joint_names)}")
        if len(self.limits.q_min) != n:
            raise ValueError(
                f"limits: expected {n} values per limit (one per joint), got {len(self.limits.q_min)}"
            )
        if len(self.urdf_joint_names) != n:
            raise ValueError(
                f"urdf_joint_names: expected {n} names (one per joint), got "
                f"{len(self.urdf_joint_names)}"
            )
        if len(self.home) != n:
            raise ValueError(f"home: expected {n} values (one per joint), got {len(self.home)}")
        lim = self.limits
        profiles.check_profile_consistency(
            self.name, self.joint_names, lim.q_min, lim.q_max, lim.dq_max, lim.ddq_max, lim.dddq_max
        )
        if self.ee_speed_max > profiles.family(self.name).limits.ee_speed_max + 1e-9:
            raise ValueError(
                f"ee_speed_max = {self.ee_speed_max} exceeds the {self.name!r} published "
                f"{profiles.family(self.name).limits.ee_speed_max} m/s"
            )
        for i, (q, lo, hi) in enumerate(zip(self.home, lim.q_min, lim.q_max)):
            if not lo <= q <= hi:
                raise ValueError(f"home[{i}] = {q} lies outside [{lo}, {hi}]")
        return self

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)


# --------------------------------------------------------------------------- task


class Box3(_Section):
    """An axis-aligned box in the robot base frame (metres)."""

    low: Vec3 = Field(description="lower corner (x, y, z)")
    high: Vec3 = Field(description="upper corner (x, y, z)")

    @model_validator(mode="after")
    def _check(self) -> Box3:
        _finite("low", self.low)
        _finite("high", self.high)
        for i, (lo, hi) in enumerate(zip(self.low, self.high)):
            if lo > hi:
                raise ValueError(f"low[{i}] = {lo} must not exceed high[{i}] = {hi}")
        return self


class TaskConfig(_Section):
    """The task: what is rewarded, when an episode ends, how actions map to joint velocities."""

    name: Literal["reach", "push"] = Field("reach", description="task: 'reach' or 'push'")
    reward: Literal["dense", "sparse"] = Field(
        "dense", description="dense: -distance; sparse: 0 on success, -1 otherwise"
    )
    max_steps: int = Field(50, gt=0, description="time limit in control steps (truncation)")
    success_threshold: float = Field(
        0.05, gt=0, description="success when the distance to the goal is below this (m)"
    )
    terminate_on_success: bool = Field(
        True, description="end the episode (terminated, no bootstrap) once successful"
    )
    goal_box: Box3 = Field(
        default_factory=lambda: Box3(low=(0.35, -0.2, 0.15), high=(0.65, 0.2, 0.45)),
        description="reach: goals are sampled uniformly in this box; push: goal x/y range",
    )
    object_box: Box3 = Field(
        default_factory=lambda: Box3(low=(0.4, -0.15, 0.0), high=(0.6, 0.15, 0.0)),
        description="push: the cube's start is sampled in this box (z ignored: on the table)",
    )
    object_size: float = Field(0.05, gt=0, description="push: cube edge length (m)")
    action_mode: Literal["joint", "ee_velocity"] = Field(
        "joint",
        description="joint: a in [-1,1]^7 times scale*dq_max; ee_velocity: a in [-1,1]^3 times "
        "ee_speed (m/s), mapped to joints by damped least squares",
    )
    joint_velocity_scale: float = Field(
        0.5, gt=0, le=1, description="joint mode: fraction of dq_max that action 1.0 commands"
    )
    ee_speed: float = Field(0.3, gt=0, description="ee_velocity mode: speed (m/s) of action 1.0")
    dls_damping: float = Field(
        0.05, gt=0, description="ee_velocity mode: damping lambda of the least-squares inverse"
    )


# --------------------------------------------------------------------------- sim


class SimConfig(_Section):
    """PyBullet simulation of one or several Pandas."""

    control_hz: float = Field(20.0, gt=0, description="control rate (Hz): one env step per period")
    substeps: int = Field(12, ge=1, description="physics steps per control period (12 -> 240 Hz)")
    num_robots: int = Field(1, ge=1, description="robots in the one world")
    robot_spacing: float = Field(1.5, gt=0, description="distance between robot bases along y (m)")
    home_noise: float = Field(
        0.05, ge=0, description="uniform noise (rad) added to the home pose at reset, seeded"
    )
    clock: Literal["realtime", "lockstep"] = Field(
        "lockstep", description="graph only: wall-clock pacing, or advance when all commands arrive"
    )
    lockstep_timeout: float = Field(
        0.5, gt=0, description="lockstep: advance anyway after this many seconds (wall)"
    )

    @property
    def physics_dt(self) -> float:
        return 1.0 / (self.control_hz * self.substeps)

    @property
    def control_dt(self) -> float:
        return 1.0 / self.control_hz


# --------------------------------------------------------------------------- safety


class SafetyConfig(_Section):
    """Safety-compliance node: hard rate limits, position margins, workspace, watchdog."""

    position_margin: float = Field(
        0.05, ge=0, description="stop this far (rad) inside each joint's position limits"
    )
    limit_scale: float = Field(
        0.9, gt=0, le=1, description="fraction of the profile's dq/ddq/dddq limits that is enforced"
    )
    workspace: Box3 = Field(
        default_factory=lambda: Box3(low=(0.1, -0.6, 0.02), high=(0.85, 0.6, 0.9)),
        description="end-effector must stay in this box (robot base frame, m)",
    )
    workspace_enabled: bool = Field(
        True, description="enforce the workspace box (forward kinematics every output period)"
    )
    ee_speed_max: float | None = Field(
        0.2, gt=0, description="end-effector speed limit (m/s); null disables it"
    )
    watchdog_timeout: float | None = Field(
        None, gt=0, description="seconds without a fresh proposal before braking (default 2 periods)"
    )
    state_timeout: float = Field(0.1, gt=0, description="robot state older than this is stale (s)")
    output_hz: float | None = Field(
        None, gt=0, description="command output rate (Hz); default: the control rate"
    )
    trigger: Literal["auto", "timer", "proposal"] = Field(
        "auto", description="when a command goes out: 'timer' (every output period, "
        "interpolating; a real arm at up to 1 kHz), 'proposal' (one command per proposal at the "
        "control rate, at once, plus braking when proposals stop; the sim, and lockstep), "
        "'auto': proposal unless output_hz is set"
    )
    estop_file: str | None = Field(
        None, description="where the latched e-stop state persists (default: under the run dir)"
    )
    missed_period_safe: bool = Field(
        True, description="cap the acceleration at J*dt per joint, so that an output period the "
        "node misses (the driver then samples one command twice, i.e. zero acceleration for a "
        "period) cannot break the jerk limit as the driver sees it; binds only where J*dt < A "
        "(output rates above ~500 Hz for the Panda: at 1 kHz it halves the acceleration)"
    )


# --------------------------------------------------------------------------- agent


class AgentConfig(_Section):
    """Off-policy actor-critic learner (DDPG / TD3 / DDPGfD / SVG(0))."""

    algo: str = Field("td3", description="algorithm: ddpg, td3, ddpgfd (deterministic actor), svg0, "
                      "sac (RLPD recipe: ensembles, LayerNorm), crossq (robot_rl.agents.registry)")
    hidden: tuple[int, ...] = Field((256, 256), description="hidden layer sizes (actor and critic)")
    gamma: float = Field(0.99, gt=0, le=1, description="discount factor")
    tau: float = Field(0.005, gt=0, le=1, description="Polyak factor of the target networks")
    actor_lr: float = Field(3e-4, gt=0, description="actor learning rate")
    critic_lr: float = Field(3e-4, gt=0, description="critic learning rate")
    batch_size: int = Field(256, gt=0, description="minibatch size")
    policy_delay: int | None = Field(
        None, ge=1, description="critic updates per actor update: td3 (None: 2), sac (None: 1; "
        "the RLPD recipe sets it to utd_ratio, so the actor updates once per env step), crossq "
        "(None: 3); ddpg, ddpgfd and svg0 update the actor with every critic update")
    target_noise: float = Field(0.2, ge=0, description="TD3: target-policy smoothing noise std")
    target_noise_clip: float = Field(0.5, ge=0, description="TD3: clip of the smoothing noise")
    exploration_noise: float = Field(0.1, ge=0, description="behaviour policy Gaussian noise std")
    warmup_steps: int = Field(1000, ge=0, description="random-action steps before learning")
    utd_ratio: float = Field(1.0, gt=0, description="gradient updates per new transition")
    pretrain_updates: int = Field(
        0, ge=0, description="offline warm start: updates on the store's demonstration rows "
        "before the first env step (a fresh run whose store holds demo rows and no policy "
        "rows; batches drawn with replacement); not counted by utd_ratio. With bc_weight the actor starts "
        "from a clone of the demos, and the critic from their values")
    utd_pacing: Literal["cap", "floor"] = Field(
        "cap", description="how the learner node holds utd_ratio: cap -- exactly "
        "floor((n - warmup_steps) * utd_ratio) updates after n env steps (the in-process "
        "trainer's schedule, which it always uses; a lockstep sim waits for it); floor -- at "
        "least that many, and as many more as the hardware allows once warmed up (SERL's "
        "learner: in real time the robot does not wait, so spare learner time goes into "
        "updates); either way /diagnostics reports the UTD achieved, per robot too, and in real "
        "time the node warns when it falls below utd_ratio")
    n_step: int = Field(1, ge=1, description="n-step return length")
    demo_fraction: float = Field(0.0, ge=0, le=1, description="fraction of each batch from demos")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: default)")
    # -- networks and targets (robot_rl.agents) --
    twin_critics: bool | None = Field(
        None, description="two critics, target = min of both (clipped double-Q); None: the "
        "algorithm's default (td3: true; ddpg, ddpgfd, svg0: false)")
    target_update: Literal["polyak", "hard"] = Field(
        "polyak", description="polyak: theta' <- tau*theta + (1-tau)*theta'; hard: theta' <- theta")
    target_update_period: int = Field(
        1, ge=1, description="move the targets every this many actor updates (= critic "
        "updates except td3's delayed actor); with target_update=hard this is the M of 'copy "
        "every M steps'")
    obs_normalization: bool = Field(
        True, description="normalise observations by running mean/std (saved with the weights)")
    obs_clip: float = Field(5.0, gt=0, description="clip normalised observations to +-obs_clip")
    # -- exploration (behaviour policy pi(s) + noise, clipped to the action bounds) --
    exploration: Literal["gaussian", "ou"] = Field(
        "gaussian", description="exploration noise: independent Gaussian or Ornstein-Uhlenbeck")
    exploration_noise_final: float | None = Field(
        None, ge=0, description="noise std at the end of the schedule (None: constant)")
    exploration_decay_steps: int = Field(
        0, ge=0, description="env steps after warm-up over which the std moves linearly from "
        "exploration_noise to exploration_noise_final")
    sample_correlation: float = Field(
        0.0, ge=0, lt=1, description="sac, crossq, svg0: lag-1 correlation rho of the standard "
        "normal draws xi of the behaviour policy's samples tanh(mu + sigma xi), an AR(1) process "
        "xi_t = rho xi_(t-1) + sqrt(1 - rho^2) n_t restarted each episode (each xi_t is still "
        "N(0, 1): every action is a sample of the policy). 0: independent draws. A real arm "
        "needs smooth commands: independent samples jump by more than the acceleration limits "
        "allow at 20 Hz and the safety node clamps them")
    ou_theta: float = Field(0.15, gt=0, description="OU mean-reversion rate theta (1/s)")
    ou_dt: float = Field(0.05, gt=0, description="OU time step (s); the control period at 20 Hz")
    # -- DDPGfD extras (each switchable; None: 'on' for ddpgfd, 'off' otherwise) --
    critic_targets: Literal["1step", "nstep", "mixed"] | None = Field(
        None, description="critic loss on 1-step targets, n-step targets, or their sum "
        "L1 + nstep_loss_weight*Ln; None: mixed for ddpgfd with n_step > 1, else nstep")
    nstep_loss_weight: float = Field(1.0, ge=0, description="weight of the n-step loss (mixed)")
    critic_l2: float = Field(
        0.0, ge=0, description="L2 weight decay lambda2 on critic weight matrices: "
        "+ lambda2 * sum ||W||^2 in the critic loss")
    target_clip: tuple[float, float] | Literal["auto"] | None = Field(
        "auto", description="[low, high]: clip every TD target into the range the returns can "
        "take (as HER does): with rewards in [r_min, r_max], [r_min/(1-gamma), r_max/(1-gamma)]"
        ", e.g. [-100, 0] for the sparse reward (-1 / 0) at gamma 0.99; None: no clipping; "
        "auto (default): that range for task.reward=sparse, no clipping for dense rewards "
        "(unbounded below); resolved when the configuration loads")
    actor_l2: float = Field(0.0, ge=0, description="L2 weight decay on actor weight matrices")
    bc_weight: float | None = Field(
        None, ge=0, description="weight of the behaviour-cloning loss on demo rows; None: 1.0 "
        "for ddpgfd, 0 otherwise")
    q_filter: bool = Field(
        True, description="behaviour cloning only where Q(s, a_demo) > Q(s, pi(s)) (Q-filter)")
    priority_actor_lambda: float = Field(
        1.0, ge=0, description="ddpgfd priorities: delta^2 + lambda3*||grad_a Q||^2 (other "
        "algorithms: |delta|); the sampler adds per_eps (+ per_demo_eps for demos)")
    demo_sampling: Literal["fixed", "union"] = Field(
        "fixed", description="fixed: round(demo_fraction*B) demo rows per batch; union: demo "
        "and online rows drawn together (DDPGfD's single buffer)")
    her: Literal["none", "future", "final", "episode"] = Field(
        "none", description="hindsight goal relabelling at sample time (robot_rl/replay/her.py): "
        "future, final or episode achieved goals of the same episode replace the desired goal of "
        "her_k/(her_k+1) of each batch; needs n_step 1 and uniform sampling")
    her_k: int = Field(4, ge=1, description="HER: relabelled rows per original row")
    # -- SVG(0) --
    svg_entropy_coef: float = Field(
        0.01, ge=0, description="svg0: entropy weight alpha, actor loss E[alpha*log pi(a|s) - Q(s,a)]")
    svg_soft_target: bool = Field(
        False, description="svg0: subtract alpha*log pi(a'|s') in the TD target too (SAC-style, "
        "with twin_critics=true: SAC with a fixed alpha)")
    # -- critic ensembles, normalisation, temperature (sac, crossq) --
    critic_hidden: tuple[int, ...] | None = Field(
        None, description="critic hidden layer sizes (None: hidden); CrossQ's paper uses "
        "[2048, 2048]")
    ensemble_size: int | None = Field(
        None, ge=1, description="sac, crossq: N critics computed as one batched ensemble (None: "
        "2; RLPD: 10)")
    target_subset: int | None = Field(
        None, ge=1, description="sac, crossq: the TD target is the min over M members drawn "
        "at random each update (REDQ/RLPD; None: 2, i.e. clipped double-Q when N = 2)")
    actor_q: Literal["auto", "min", "mean"] = Field(
        "auto", description="sac, crossq: the actor maximises the min or the mean of the "
        "ensemble's values (auto: min for N <= 2, mean above, as RLPD)")
    critic_norm: Literal["none", "layer", "batch", "batch_renorm"] | None = Field(
        None, description="sac, crossq: normalisation after each hidden critic layer: layer "
        "(RLPD's LayerNorm), batch or batch_renorm (CrossQ); None: sac none, crossq batch_renorm")
    critic_norm_where: Literal["auto", "before_relu", "after_relu"] = Field(
        "auto", description="sac, crossq: where critic_norm sits -- before_relu (Dense -> Norm "
        "-> ReLU; auto for layer, as RLPD) or after_relu (Norm of the input [s, a], then Dense "
        "-> ReLU -> Norm; auto for the batch norms, as CrossQ's code and sbx)")
    bn_momentum: float = Field(
        0.99, ge=0, lt=1, description="batch norms: running statistic <- m*stat + (1-m)*batch")
    renorm_warmup: int = Field(
        100_000, ge=0, description="batch_renorm: critic training passes of plain batch norm "
        "before the renormalisation's r/d corrections start (CrossQ's sbx default)")
    learn_temperature: bool = Field(
        True, description="sac, crossq: learn the entropy temperature alpha towards "
        "target_entropy (false: alpha stays init_temperature)")
    init_temperature: float = Field(1.0, gt=0, description="sac, crossq: alpha at the start")
    target_entropy: float | Literal["auto"] = Field(
        "auto", description="sac, crossq: entropy target of the temperature loss (auto: -|A|)")
    temperature_lr: float | None = Field(
        None, gt=0, description="sac, crossq: Adam learning rate of log alpha (None: actor_lr)")
    adam_beta1: float | None = Field(
        None, ge=0, lt=1, description="Adam's beta1 of every optimiser (None: 0.9; crossq 0.5 "
        "as its paper)")
    compile: bool = Field(
        False, description="torch.compile the update's forward and loss computations (ddpg, "
        "td3, ddpgfd, sac; inductor: fused C++ kernels on the CPU, Triton on CUDA). Off: the "
        "eager update, bit for bit as before. On: the same maths to float rounding, the same "
        "checkpoints (the modules are not wrapped); the first updates pay the compile time "
        "(tens of seconds on a cold cache; bench/learner.py's *_compiled arms, docs/benchmarks.md)")

    @field_validator("algo")
    @classmethod
    def _known_algo(cls, v):
        from robot_rl.agents.registry import ALGORITHMS

        if v not in ALGORITHMS:
            raise ValueError(f"expected one of {sorted(ALGORITHMS)}, got {v!r}")
        return v

    @field_validator("target_clip")
    @classmethod
    def _clip_range(cls, v):
        if v is None or v == "auto":
            return v
        if not (math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] < v[1]):
            raise ValueError(f"expected [low, high] with finite low < high, got {list(v)}")
        return v


# --------------------------------------------------------------------------- replay


class ReplayConfig(_Section):
    """The zarr replay store and its sampler (robot_rl.replay)."""

    capacity: int = Field(1_000_000, gt=0, description="online rows kept for sampling")
    chunk_rows: int = Field(4096, gt=0, description="rows per zarr chunk along time")
    flush_interval: float = Field(0.5, gt=0, description="partial chunks are committed this often (s)")
    fsync: bool = Field(
        True, description="fsync chunks, directories and the commit marker before a commit "
        "counts (survives power loss; a killed process is safe without it)"
    )
    max_uncommitted_rows: int = Field(
        65_536, gt=0, description="commit as soon as this many accepted rows wait, between timer "
        "flushes (bounds the writer's memory)"
    )
    check_bounds: bool = Field(
        True, description="refuse rows whose observation/action lie outside the spec's bounds"
    )
    policy_action: Literal["applied", "proposed"] = Field(
        "applied", description="what the action of a policy row holds: applied -- the command "
        "the safety node sent, mapped into the action space (DESIGN 3: what the robot did); "
        "proposed -- the behaviour policy's action, the safety filter then counts as part of "
        "the environment (safety_rules still marks the rows it changed). Demo and intervention "
        "rows always hold the operator's applied command. Fixed when the store is created (a "
        "store refuses the other). CrossQ learns through the safety node only from proposals "
        "(docs/results.md, issue 16)")
    prioritized: bool = Field(False, description="prioritized replay (sum-tree) instead of uniform")
    per_alpha: float = Field(0.6, ge=0, description="PER: priority exponent alpha (0: uniform)")
    per_beta0: float = Field(
        0.4, ge=0, le=1, description="PER: importance-weight exponent beta at the start"
    )
    per_beta_steps: int = Field(
        100_000, gt=0, description="PER: sample() calls over which beta anneals linearly to 1"
    )
    per_eps: float = Field(1e-3, gt=0, description="PER: epsilon added to every priority")
    per_demo_eps: float = Field(
        1.0, ge=0, description="PER: extra epsilon for demo/intervention rows (DDPGfD's eps_D)"
    )


# --------------------------------------------------------------------------- teleop


class TeleopConfig(_Section):
    """Teleoperation: how a SpaceMouse (spacenav) or a gamepad (joy) maps to the policy's actions.

    ``None`` means "the default for this input and action mode" (robot_rl.teleop documents the
    defaults); a button index of -1 disables that button.
    """

    input: Literal["spacenav", "joy"] = Field(
        "spacenav", description="spacenav: geometry_msgs/Twist (motion) + sensor_msgs/Joy "
        "(buttons) from the spacenav driver; joy: one sensor_msgs/Joy (axes and buttons) from "
        "joy's game_controller_node")
    mapping: Literal["auto", "direct", "cartesian"] = Field(
        "auto", description="direct: device axes -> action elements; cartesian: device axes -> "
        "end-effector velocity (v_x, v_y, v_z in units of task.ee_speed), mapped to joint "
        "actions by damped least squares (joint action mode; needs joint states); auto: "
        "cartesian for spacenav in joint mode, direct otherwise")
    axes: tuple[int, ...] | None = Field(
        None, description="device axis feeding each output element (action element, or v_x, "
        "v_y, v_z with cartesian); spacenav: 0..5 = twist linear x, y, z, angular x, y, z; "
        "joy: the Joy axes index; -1: always 0")
    axis_scale: tuple[float, ...] | None = Field(
        None, description="multiplier of each output element after the deadband (its sign is "
        "the direction); the result is clipped to [-1, 1]")
    shift_button: int | None = Field(
        None, ge=-1, description="while held, shift_axes replace axes (a gamepad's second layer "
        "for joints 5-7); -1: none")
    shift_axes: tuple[int, ...] | None = Field(
        None, description="device axis per output element while shift_button is held")
    deadband: float = Field(
        0.05, ge=0, lt=1, description="|device value| below this reads 0; above, the value is "
        "rescaled so that full deflection still gives full scale")
    deadman_button: int | None = Field(
        None, ge=-1, description="the button that must be held for teleop to drive (released: "
        "deadman false, zero action); spacenav: a button on its Joy topic")
    success_button: int | None = Field(
        None, ge=-1, description="button that marks the episode a success (once per press)")
    failure_button: int | None = Field(
        None, ge=-1, description="button that marks the episode a failure (once per press)")
    discard_button: int | None = Field(
        None, ge=-1, description="button that discards the episode (once per press)")
    input_timeout: float = Field(
        0.3, gt=0, description="s without a device message before the input counts as lost: "
        "deadman false, zero action, and the deadman must be released and pressed again")


# --------------------------------------------------------------------------- run


class RunConfig(_Section):
    """Where a run lives and how it is seeded."""

    name: str = Field("default", min_length=1, description="run name: runs/<name>/")
    root: str = Field("runs", description="directory that holds the run directories")
    seed: int = Field(0, ge=0, description="seed of every random number generator")
    total_steps: int = Field(20_000, gt=0, description="environment steps to train for")
    eval_every: int = Field(2_000, gt=0, description="evaluate every this many env steps")
    eval_episodes: int = Field(50, gt=0, description="seeded evaluation episodes (DESIGN 8: >= 50)")
    eval_seed: int = Field(
        1_000_000, ge=0, description="evaluation episode i is reset with seed eval_seed + i: one "
        "fixed list for every run and arm")
    train_through_safety: bool = Field(
        False, description="in-process trainer: act (and evaluate) through the safety node's "
        "filter, one command per control step as the graph's safety node, and store the applied "
        "command mapped into the action space, as an actor node does (the graph always does; "
        "false: the policy's action goes to the sim unfiltered)")
    log_every: int = Field(1_000, gt=0, description="print/log training progress every this many env steps")
    checkpoint_every: int = Field(
        0, ge=0, description="checkpoint at the first episode end after every this many env steps "
        "(0: only at the end)")
    demo_episodes: int = Field(
        0, ge=0, description="scripted demonstration episodes (reach, push) stored as source=demo "
        "before training")
    rt_priority: int = Field(
        0, ge=0, le=98, description="graph: SCHED_FIFO priority of the control path (sim node, "
        "actors, safety nodes), so a busy learner cannot delay a command; 0: normal scheduling. "
        "Needs root, CAP_SYS_NICE or an rtprio limit (the runner says when it was refused)")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if "/" in v or v in (".", ".."):
            raise ValueError(f"must be a plain directory name, got {v!r}")
        return v

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.name


class Config(_Section):
    """The whole configuration of a run."""

    robot: RobotProfile = Field(default_factory=lambda: RobotProfile(name="panda"))
    task: TaskConfig = Field(default_factory=TaskConfig)
    sim: SimConfig = Field(default_factory=SimConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    teleop: TeleopConfig = Field(default_factory=TeleopConfig)

    @model_validator(mode="after")
    def _her_needs(self) -> Config:
        if self.agent.her != "none":
            if self.agent.n_step > 1:
                raise ValueError(f"agent.her={self.agent.her} needs agent.n_step 1 (got "
                                 f"{self.agent.n_step}): an n-step return would need every reward "
                                 "of the walk relabelled")
            if self.replay.prioritized:
                raise ValueError(f"agent.her={self.agent.her} needs replay.prioritized false: a "
                                 "relabelled row's TD error is not its stored row's priority")
        return self

    @model_validator(mode="after")
    def _resolve_target_clip(self) -> Config:
        """``agent.target_clip: auto`` -> the returns' range of the task's reward (sparse: -1 or
        0 per step, so [-1/(1-gamma), 0]; dense -distance, or gamma 1: unbounded, so none).
        Sparse DDPGfD without it diverged in one of three seeds (docs/results.md, issue 5)."""
        if self.agent.target_clip == "auto":
            clip = ((round(-1.0 / (1.0 - self.agent.gamma), 6), 0.0)
                    if self.task.reward == "sparse" and self.agent.gamma < 1 else None)
            object.__setattr__(self.agent, "target_clip", clip)
        return self

    def to_yaml(self) -> str:
        """The resolved configuration as YAML (loads back to an equal Config)."""
        return yaml.safe_dump(_plain(self.model_dump(mode="json")), sort_keys=False)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# --------------------------------------------------------------------------- loading


_LEADING_FIELD = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)(\[\d+\])?(?=[: ])")


@lru_cache(maxsize=1)
def _field_names() -> frozenset[str]:
    names: set[str] = set()
    todo: list[type[BaseModel]] = [Config]
    while todo:
        model = todo.pop()
        for name, f in model.model_fields.items():
            names.add(name)
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                todo.append(ann)
    return frozenset(names)


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``field.path: message (got value)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        loc = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "<config>")
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        # A model-level check names its field first ("dq_max: expected 7 values"): fold it
        # into the path so every line reads "robot.limits.dq_max: ...".
        m = _LEADING_FIELD.match(msg)
        if m and m.group(1).split(".")[0] in _field_names():
            loc = f"{loc}.{m.group(1)}{m.group(2) or ''}" if loc != "<config>" else m.group(1)
            rest = msg[m.end():]
            if not rest.startswith(":"):
                lines.append(f"{loc}{rest}")
                continue
            msg = rest[1:].lstrip()
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a field of this section)"
        got = e.get("input")
        got_s = "" if e["type"] in ("extra_forbidden",) or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{loc}: {msg}{got_s}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any] | None, *, source: str = "<dict>") -> Config:
    """Validate a plain mapping into a :class:`Config`; raise :class:`ConfigError` naming fields."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got "
                          f"{type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid configuration in {source}:\n{format_validation_error(e)}") from None


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {key!r}: {p!r} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["task.reward=sparse", "sim.num_robots=2"]`` → nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            hint = (" (a configuration file goes after --config)"
                    if item.endswith((".yaml", ".yml")) else "")
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. task.reward=sparse"
                              f"{hint}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from None
        _set_dotted(out, key, value)
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load YAML (optional) and apply ``KEY=VALUE`` overrides; validate everything.

    Raises :class:`ConfigError` for a missing/unreadable file, invalid YAML, unknown keys or bad
    values, naming the file and each field path.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections "
                              f"(robot, task, sim, ...), got {type(loaded).__name__}")
        data = loaded or {}
    if overrides:
        data = _merge(data, parse_overrides(overrides))
        source += " + overrides"
    return config_from_dict(data, source=source)
