"""The learner's resolved settings: one frozen dataclass, built from the typed run config.

:class:`robot_rl.config.AgentConfig` is what a user writes (YAML / ``KEY=VALUE``); several of its
fields mean "the algorithm's default" when left ``None``. :func:`learner_config` resolves the
settings every family shares here and asks the algorithm's family
(:mod:`robot_rl.agents.registry`: ``robot_rl.agents.<family>.config``) for the rest, once, so
the learner reads plain values and a checkpoint records exactly what ran::

    algo      family  critics          actor update        targets            actor        extras
    ddpg      dpg     1                every update        actor + critic     determ.      -
    td3       dpg     2 (min)          every policy_delay  + smoothing        determ.      -
    ddpgfd    dpg     1                every update        actor + critic     determ.      BC+Q-filter,
                                                                                           mixed n-step,
                                                                                           PER priorities
    svg0      svg     1                every update        critic             Gaussian     fixed alpha
    sac       sac     N (min of M)     every policy_delay  critic (soft)      Gaussian     learned alpha,
                                                                                           LayerNorm,
                                                                                           ensembles (RLPD)
    crossq    crossq  N (BatchNorm)    every policy_delay  none (joint pass)  Gaussian     learned alpha
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from robot_rl.agents.registry import ALGORITHMS, family_config
from robot_rl.config import AgentConfig, ReplayConfig

ALGOS = tuple(ALGORITHMS)
#: algorithms whose learner implements ``compile`` (torch.compile of the update's parts)
COMPILE_ALGOS = ("ddpg", "td3", "ddpgfd", "sac")


@dataclass(frozen=True)
class LearnerConfig:
    """Everything :class:`robot_rl.agents.learning.Learner` needs, with defaults resolved."""

    # -- algorithm and networks
    algo: str = "td3"  # one of robot_rl.agents.registry.ALGORITHMS
    hidden: tuple[int, ...] = (256, 256)  # hidden layer sizes of the actor and of each critic
    twin_critics: bool = True  # two critics; the target takes their minimum (clipped double-Q)
    stochastic_actor: bool = False  # svg0, sac, crossq: reparameterised tanh-Gaussian actor
    obs_normalization: bool = True  # running mean/std normaliser in front of every network
    obs_clip: float = 5.0  # normalised observations are clipped to +-obs_clip
    # -- optimisation
    gamma: float = 0.99  # discount (the batch carries gamma*(1-terminated) already)
    actor_lr: float = 3e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the critic(s)
    batch_size: int = 256  # minibatch size
    policy_delay: int = 2  # critic updates per actor update (td3, sac, crossq; 1 otherwise)
    adam_beta1: float = 0.9  # Adam's beta1 of every optimiser (CrossQ: 0.5)
    # -- targets
    tau: float = 0.005  # Polyak factor
    target_update: Literal["polyak", "hard"] = "polyak"  # blend with tau, or copy
    target_update_period: int = 1  # move the targets every this many actor updates
    target_noise: float = 0.0  # td3: std of the target-policy smoothing noise (0: off)
    target_noise_clip: float = 0.5  # td3: the smoothing noise is clipped to +-this
    # -- critic targets (n-step) and regularisers
    n_step: int = 1  # n of the n-step return (the sampler computes it)
    critic_targets: Literal["1step", "nstep", "mixed"] = "nstep"  # which TD losses are summed
    nstep_loss_weight: float = 1.0  # weight of the n-step loss in "mixed"
    critic_l2: float = 0.0  # lambda2 * sum ||W||^2 over critic weight matrices
    target_clip: tuple[float, float] | None = None  # TD targets clipped into [low, high]
    actor_l2: float = 0.0  # the same for the actor
    # -- demonstrations
    bc_weight: float = 0.0  # weight of the behaviour-cloning loss on demo rows (0: off)
    q_filter: bool = True  # clone a demo action only where the critic prefers it to pi(s)
    # -- prioritized replay
    priority_formula: Literal["abs_td", "ddpgfd"] = "abs_td"  # |delta| or delta^2+l3*|gradaQ|^2
    priority_actor_lambda: float = 1.0  # lambda3 of the ddpgfd priority
    # -- svg0
    entropy_coef: float = 0.0  # alpha: actor loss E[alpha log pi - Q]
    soft_target: bool = False  # subtract alpha log pi(a'|s') in the TD target (SAC-style)
    # -- critic ensembles (sac, crossq)
    ensemble_size: int = 2  # N critics, one batched computation (RLPD: 10)
    target_subset: int = 2  # the TD target takes the min over M random members (REDQ/RLPD: 2)
    actor_q: Literal["min", "mean"] = "min"  # the actor maximises min_i Q_i or mean_i Q_i
    critic_norm: Literal["none", "layer", "batch", "batch_renorm"] = "none"  # after hidden layers
    critic_norm_where: Literal["auto", "before_relu", "after_relu"] = "auto"  # norm placement
    critic_hidden: tuple[int, ...] | None = None  # critic layer sizes (None: hidden)
    bn_momentum: float = 0.99  # batch norms: running stat <- m * stat + (1 - m) * batch stat
    renorm_warmup: int = 0  # batch_renorm: plain batch norm for this many training passes
    # -- temperature (sac, crossq; svg0 keeps entropy_coef fixed)
    learn_temperature: bool = False  # alpha learned towards target_entropy
    init_temperature: float = 1.0  # alpha at the start
    target_entropy: float | None = None  # None: -act_dim
    temperature_lr: float = 3e-4  # Adam learning rate of log alpha
    # -- execution
    compile: bool = False  # torch.compile the update's forward/loss parts (dpg and sac families)

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo: expected one of {ALGOS}, got {self.algo!r}")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected one or more positive layer sizes, got {self.hidden}")
        if self.critic_hidden is not None and (
                not self.critic_hidden or any(int(h) < 1 for h in self.critic_hidden)):
            raise ValueError(f"critic_hidden: expected one or more positive layer sizes, got "
                             f"{self.critic_hidden}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma: expected a value in (0, 1], got {self.gamma}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau: expected a value in (0, 1], got {self.tau}")
        for name in ("policy_delay", "target_update_period", "n_step", "batch_size",
                     "ensemble_size", "target_subset"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if self.target_subset > self.ensemble_size:
            raise ValueError(f"target_subset: expected at most ensemble_size="
                             f"{self.ensemble_size} members, got {self.target_subset}")
        if not 0 <= self.adam_beta1 < 1:
            raise ValueError(f"adam_beta1: expected a value in [0, 1), got {self.adam_beta1}")
        if not 0 <= self.bn_momentum < 1:
            raise ValueError(f"bn_momentum: expected a value in [0, 1), got {self.bn_momentum}")
        if self.renorm_warmup < 0:
            raise ValueError(f"renorm_warmup: expected >= 0, got {self.renorm_warmup}")
        for name in ("actor_lr", "critic_lr", "obs_clip", "init_temperature", "temperature_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a value > 0, got {getattr(self, name)}")
        for name in ("target_noise", "target_noise_clip", "nstep_loss_weight", "critic_l2",
                     "actor_l2", "bc_weight", "priority_actor_lambda", "entropy_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a value >= 0, got {getattr(self, name)}")
        if self.target_clip is not None and not self.target_clip[0] < self.target_clip[1]:
            raise ValueError(f"target_clip: expected low < high, got {list(self.target_clip)}")
        if self.compile and self.algo not in COMPILE_ALGOS:
            raise ValueError(f"compile: supported for {list(COMPILE_ALGOS)}, not algo={self.algo!r}")
        family_config(self.algo).check(self)

    # ------------------------------------------------------------------ identity

    @property
    def critic_layers(self) -> tuple[int, ...]:
        """The critic's hidden layer sizes (``critic_hidden``, else ``hidden``)."""
        return tuple(self.critic_hidden) if self.critic_hidden else tuple(self.hidden)

    def architecture(self, obs_dim: int, act_dim: int) -> dict[str, Any]:
        """What fixes the shapes of every tensor a checkpoint holds (compared on load)."""
        arch = {"algo": self.algo, "obs_dim": int(obs_dim), "act_dim": int(act_dim),
                "hidden": [int(h) for h in self.hidden], "twin_critics": self.twin_critics,
                "stochastic_actor": self.stochastic_actor,
                "obs_normalization": self.obs_normalization}
        arch.update(family_config(self.algo).architecture(self))
        return arch

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["critic_hidden"] = None if self.critic_hidden is None else list(self.critic_hidden)
        d["target_clip"] = None if self.target_clip is None else list(self.target_clip)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearnerConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"learner config: unknown fields {unknown}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(int(h) for h in d["hidden"])
        if d.get("critic_hidden") is not None:
            d["critic_hidden"] = tuple(int(h) for h in d["critic_hidden"])
        if d.get("target_clip") is not None:
            d["target_clip"] = tuple(float(x) for x in d["target_clip"])
        return cls(**d)


def learner_config(agent: AgentConfig, replay: ReplayConfig | None = None) -> LearnerConfig:
    """Resolve :class:`AgentConfig` (with its algorithm's defaults) into a :class:`LearnerConfig`.

    The settings every family reads are resolved here; the algorithm's family
    (``robot_rl.agents.<family>.config.resolve``) fills in the rest, and
    :meth:`LearnerConfig.__post_init__` has the family refuse what it would ignore.
    """
    algo = agent.algo
    fam = family_config(algo)
    common = dict(
        algo=algo,
        hidden=tuple(agent.hidden),
        obs_normalization=agent.obs_normalization,
        obs_clip=agent.obs_clip,
        gamma=agent.gamma,
        actor_lr=agent.actor_lr,
        critic_lr=agent.critic_lr,
        batch_size=agent.batch_size,
        tau=agent.tau,
        target_update=agent.target_update,
        target_update_period=agent.target_update_period,
        target_noise_clip=agent.target_noise_clip,
        n_step=agent.n_step,
        critic_targets=agent.critic_targets if agent.critic_targets is not None else "nstep",
        nstep_loss_weight=agent.nstep_loss_weight,
        critic_l2=agent.critic_l2,
        # "auto" is resolved with the task when a whole Config loads; an AgentConfig on its own
        # knows no reward, so there it means no clipping
        target_clip=(None if agent.target_clip in (None, "auto") else
                     tuple(float(x) for x in agent.target_clip)),
        actor_l2=agent.actor_l2,
        q_filter=agent.q_filter,
        priority_actor_lambda=agent.priority_actor_lambda,
        bc_weight=agent.bc_weight if agent.bc_weight is not None else 0.0,
        critic_hidden=tuple(agent.critic_hidden) if agent.critic_hidden else None,
        adam_beta1=agent.adam_beta1 if agent.adam_beta1 is not None else 0.9,
        compile=bool(agent.compile),
    )
    common.update(fam.resolve(agent))
    return LearnerConfig(**common)


def config_hash(architecture: dict[str, Any]) -> str:
    """Short stable hash of an architecture dict (the ``PolicyWeights`` config hash)."""
    raw = json.dumps(architecture, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]
