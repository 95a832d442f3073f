"""Networks of the actor-critic learners: MLP actors, (twin) critics, observation normaliser.

* :class:`Actor` -- deterministic policy ``a = scale * tanh(MLP(norm(s))) + bias`` (the bounds
  of the policy's action space, [-1, 1]^n by default).
* :class:`GaussianActor` -- SVG(0)/SAC policy ``a = scale * tanh(mu + sigma * eps) + bias``,
  reparameterised, with the log-density corrected for the tanh squashing.
* :class:`CriticEnsemble` -- ``n`` independent critics ``Q_i(s, a) = MLP_i([s, a])`` (n = 2 for
  TD3's clipped double-Q), returned stacked as ``(n, B)``.
* :class:`RunningNormalizer` -- running mean / variance of observations (Chan et al.'s parallel
  update, float64), applied as ``clip((s - mean) / sqrt(var + eps), -c, c)``; its statistics are
  buffers, so they are saved with the weights and exported with the policy.

Initialisation is PyTorch's ``nn.Linear`` default (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for
weights and biases), the same as Stable-Baselines3 and CleanRL use.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else CPU; ``"cuda"`` without CUDA is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("agent.device: 'cuda' was asked for but torch sees no CUDA device "
                         "(use 'auto' or 'cpu')")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"agent.device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(device)


def set_torch_threads(n: int | None) -> int:
    """Set torch's intra-op thread count (``None``: leave the default); return the count."""
    if n is not None:
        if int(n) < 1:
            raise ValueError(f"agent.torch_threads: expected an integer >= 1, got {n}")
        if torch.get_num_threads() != int(n):
            torch.set_num_threads(int(n))
    return torch.get_num_threads()


class RunningNormalizer(nn.Module):
    """``y = clip((x - mean) / sqrt(var + eps), -clip, clip)`` with running statistics.

    ``update(x)`` merges a batch into the count / mean / sum of squared deviations (float64,
    Chan et al. 1979): ``delta = mean_b - mean``, ``n' = n + n_b``,
    ``mean' = mean + delta * n_b / n'``, ``M2' = M2 + M2_b + delta^2 * n * n_b / n'``,
    ``var = M2 / n``. Disabled (``enabled=False``) it is the identity.
    """

    def __init__(self, dim: int, clip: float = 5.0, eps: float = 1e-8, enabled: bool = True):
        super().__init__()
        self.dim, self.clip, self.eps, self.enabled = int(dim), float(clip), float(eps), enabled
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))
        # float32 copies used by forward(), refreshed by update() / load
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        if not self.enabled:
            return
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"observation: expected shape (batch, {self.dim}), got "
                             f"{tuple(x.shape)}")
        xb = x.to(torch.float64)
        nb = xb.shape[0]
        if nb == 0:
            return
        mb = xb.mean(0)
        m2b = ((xb - mb) ** 2).sum(0)
        n = self.count
        tot = n + nb
        delta = mb - self.mean
        self.mean.add_(delta * (nb / tot))
        self.m2.add_(m2b + delta * delta * (n * nb / tot))
        self.count.copy_(tot)
        self.sync()

    @torch.no_grad()
    def sync(self) -> None:
        """Recompute the float32 ``shift`` / ``inv_std`` from the float64 statistics."""
        if float(self.count) > 0:
            var = self.m2 / self.count
            self.shift.copy_(self.mean)
            self.inv_std.copy_(1.0 / torch.sqrt(var + self.eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        return ((x - self.shift) * self.inv_std).clamp_(-self.clip, self.clip)


class MLP(nn.Module):
    """``Linear -> ReLU -> ... -> Linear`` (no activation on the output)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int):
        super().__init__()
        dims = [int(in_dim), *[int(h) for h in hidden], int(out_dim)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = self.layers
        for layer in layers[:-1]:
            # in place on the fresh linear output (its backward does not need it): one
            # (B, hidden) allocation less per layer, same numbers
            x = F.relu(layer(x), inplace=True)
        return layers[-1](x)

    def value_and_input_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, dy/dx)`` of a one-output MLP, ``y`` ``(B,)`` and ``dy/dx`` ``(B, in)``, without
        autograd: ``g = W_L``, then ``g <- (g * 1[h_l > 0]) W_l`` back through the layers --
        the products autograd's input gradient computes (to float rounding). The compiled
        actor step uses it (no gradient tape): a compiled backward through the critic would
        compute the critic's weight gradients too, and store the ReLU masks as bool tensors,
        which inductor's CPU code writes very slowly on this machine (docs/benchmarks.md, issue 16 session 11)."""
        layers = self.layers
        hs = []
        for layer in layers[:-1]:
            x = F.relu(F.linear(x, layer.weight, layer.bias))
            hs.append(x)
        last = layers[-1]
        y = (x * last.weight).sum(-1) + last.bias  # the N = 1 output layer as a fused sum
        g = last.weight.expand(x.shape[0], -1)  # (B, h_L)
        for layer, h in zip(reversed(layers[:-1]), reversed(hs)):
            g = torch.where(h > 0, g, 0.0) @ layer.weight
        return y, g


class _Bounded(nn.Module):
    """Holds the action bounds: ``a = scale * tanh(u) + bias``."""

    def _init_bounds(self, act_dim: int, low, high) -> None:
        low_t = torch.full((act_dim,), -1.0) if low is None else torch.as_tensor(low, dtype=torch.float32)
        high_t = torch.full((act_dim,), 1.0) if high is None else torch.as_tensor(high, dtype=torch.float32)
        if low_t.shape != (act_dim,) or high_t.shape != (act_dim,):
            raise ValueError(f"action bounds: expected {act_dim} values each, got "
                             f"{tuple(low_t.shape)} and {tuple(high_t.shape)}")
        if not (torch.isfinite(low_t).all() and torch.isfinite(high_t).all() and (low_t < high_t).all()):
            raise ValueError("action bounds: expected finite low < high")
        self.register_buffer("action_scale", (high_t - low_t) / 2)
        self.register_buffer("action_bias", (high_t + low_t) / 2)
        self.register_buffer("action_low", low_t.clone())
        self.register_buffer("action_high", high_t.clone())
        self._unit = bool((low_t == -1).all() and (high_t == 1).all())

    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(u)
        return a if self._unit else a * self.action_scale + self.action_bias


class Actor(_Bounded):
    """Deterministic policy ``pi(s) = scale * tanh(MLP(norm(s))) + bias``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), *,
                 normalizer: RunningNormalizer | None = None, low=None, high=None):
        super().__init__()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.net = MLP(obs_dim, hidden, act_dim)
        self.normalizer = normalizer if normalizer is not None else RunningNormalizer(obs_dim, enabled=False)
        self._init_bounds(act_dim, low, high)

    def forward_normalized(self, obs_n: torch.Tensor) -> torch.Tensor:
        """The action for an already normalised observation."""
        return self._squash(self.net(obs_n))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward_normalized(self.normalizer(obs))


class GaussianActor(_Bounded):
    """SVG(0) / SAC policy: ``u = mu(s) + sigma(s) * eps``, ``a = scale * tanh(u) + bias``.

    ``log sigma = LOG_STD_MIN + (LOG_STD_MAX - LOG_STD_MIN) * (tanh(h) + 1) / 2`` and
    ``log pi(a|s) = sum_j [log N(u_j; mu_j, sigma_j) - log(scale_j * (1 - tanh(u_j)^2) + 1e-6)]``.
    The deterministic action (evaluation, export) is ``scale * tanh(mu) + bias``.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), *,
                 normalizer: RunningNormalizer | None = None, low=None, high=None):
        super().__init__()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.net = MLP(obs_dim, hidden, 2 * act_dim)
        self.normalizer = normalizer if normalizer is not None else RunningNormalizer(obs_dim, enabled=False)
        self._init_bounds(act_dim, low, high)

    def dist_params(self, obs_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, h = self.net(obs_n).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(h) + 1.0)
        return mu, log_std

    def sample_normalized(self, obs_n: torch.Tensor, generator: torch.Generator | None = None,
                          eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample and its log-density (summed over action dimensions).

        ``eps``: the standard normal draws ``(B, act_dim)`` (:meth:`draw_eps`), drawn by the
        caller (a compiled update draws them outside the graph); None: drawn here."""
        mu, log_std = self.dist_params(obs_n)
        std = log_std.exp()
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = mu + std * eps
        t = torch.tanh(u)
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - torch.log(self.action_scale * (1 - t.pow(2)) + 1e-6).sum(-1)
        a = t if self._unit else t * self.action_scale + self.action_bias
        return a, log_prob

    def draw_eps(self, obs_n: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The draws :meth:`sample_normalized` would make for ``obs_n`` (same numbers)."""
        return torch.randn((obs_n.shape[0], self.act_dim), generator=generator,
                           device=obs_n.device, dtype=obs_n.dtype)

    def forward_normalized(self, obs_n: torch.Tensor) -> torch.Tensor:
        mu, _ = self.dist_params(obs_n)
        return self._squash(mu)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward_normalized(self.normalizer(obs))


class Critic(nn.Module):
    """One plain critic ``Q(s, a) = MLP([s, a])`` (the reference for :class:`CriticEnsemble`)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = MLP(obs_dim + act_dim, hidden, 1)

    def forward(self, obs_n: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs_n, action], -1)).squeeze(-1)


class CriticEnsemble(nn.Module):
    """``n`` independent critics (TD3's twins: n = 2); ``forward`` returns ``(n, B)``.

    Each critic is a plain :class:`Critic`. A fused variant (the layers of both critics as one
    ``(n, in, out)`` tensor, one ``baddbmm`` per layer) was tried: it differs from the plain
    critics in the last bit (another GEMM kernel) and was not faster here (the update is
    FLOP-bound at batch 256), so the plain form is the one used.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), n: int = 2):
        super().__init__()
        if n < 1:
            raise ValueError(f"n: expected >= 1 critics, got {n}")
        self.n = int(n)
        self.critics = nn.ModuleList(Critic(obs_dim, act_dim, hidden) for _ in range(n))
        #: the output layer as a multiply + sum over the hidden units instead of an ``addmm``
        #: with N = 1: set by the learner with ``compile`` on (inductor fuses it with the last
        #: ReLU, and its backward; the same maths to float rounding). Eager keeps ``addmm``.
        self.compile_form = False

    def forward(self, obs_n: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs_n, action], -1)
        if self.compile_form:
            out = []
            for c in self.critics:
                layers = c.net.layers
                h = x
                for layer in layers[:-1]:
                    h = F.relu(layer(h))
                out.append((h * layers[-1].weight).sum(-1) + layers[-1].bias)
            return torch.stack(out)
        return torch.stack([c.net(x).squeeze(-1) for c in self.critics])

    def q1(self, obs_n: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The first critic alone, ``(B,)`` (the TD3 / DDPG actor loss uses it)."""
        return self.critics[0](obs_n, action)

    @torch.no_grad()
    def q1_and_action_grad(self, obs_n: torch.Tensor, action: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q_1(s, a), grad_a Q_1(s, a))`` without autograd (:meth:`MLP.value_and_input_grad`)."""
        y, g = self.critics[0].net.value_and_input_grad(torch.cat([obs_n, action], -1))
        return y, g[:, obs_n.shape[-1]:]

    def weight_matrices(self) -> list[torch.Tensor]:
        return [layer.weight for c in self.critics for layer in c.net.layers]


def actor_weight_matrices(actor: nn.Module) -> list[torch.Tensor]:
    return [layer.weight for layer in actor.net.layers]


def default_threads() -> int:
    """Cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- batched ensembles

#: normalisation after each hidden linear layer of a :class:`BatchedCritic`
CRITIC_NORMS = ("none", "layer", "batch", "batch_renorm")
#: where the norms sit (auto: before_relu for layer, after_relu for batch norms)
CRITIC_NORM_WHERE = ("auto", "before_relu", "after_relu")


class BatchedCritic(nn.Module):
    """``N`` critics ``Q_i(s, a) = MLP_i([s, a])`` computed as **one** batched computation.

    Layer ``l`` of every member is one stacked weight ``W_l`` of shape ``(N, in, out)`` and bias
    ``b_l`` of shape ``(N, 1, out)``; a layer is one ``baddbmm`` over all members. Initialised
    member by member exactly as ``N`` separate :class:`Critic` modules created in a row would be
    (``nn.Linear``'s default), so with the same seed it equals them up to float rounding
    (tests/unit/test_agents_families.py). ``forward`` returns ``(N, B)``; ``members`` (indices)
    computes a subset only (REDQ's target: 2 of 10 members cost 2/10 of the work).

    ``norm``, per member:

    ``where`` (``auto``: as those papers place them) overrides the placement: ``before_relu``
    (``Dense -> Norm -> ReLU``, no input norm) or ``after_relu`` (``Norm(input)``, then
    ``Dense -> ReLU -> Norm``).

    * ``"layer"`` -- LayerNorm after every hidden linear layer, before the ReLU, with an affine
      (RLPD, Ball et al. 2023: ``Dense -> LayerNorm -> ReLU``; eps 1e-6 as Flax);
    * ``"batch"`` -- BatchNorm of the input ``[s, a]`` and after every hidden ReLU
      (CrossQ, Bhatt et al. 2024, as sbx builds it: ``BN -> (Dense -> ReLU -> BN)* -> Dense``),
      statistics over the batch axis, running statistics for eval mode, eps 1e-3;
    * ``"batch_renorm"`` -- the same with Batch Renormalization (Ioffe 2017), CrossQ's final
      version: ``xhat = (x - mu_B)/sigma_B * r + d`` with ``r = clip(sigma_B/sigma, 1/r_max,
      r_max)``, ``d = clip((mu_B - mu)/sigma, -d_max, d_max)`` (both without gradient), r = 1
      and d = 0 (plain BatchNorm) for the first ``renorm_warmup`` training passes.

    Running statistics: ``stat <- momentum * stat + (1 - momentum) * batch stat`` (Flax's
    convention; torch's BatchNorm ``momentum`` is ``1 -`` this), unbiased batch variance; they
    move only in full-ensemble training passes.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), n: int = 2,
                 *, norm: str = "none", where: str = "auto", momentum: float = 0.99,
                 eps: float | None = None, renorm_rmax: float = 3.0, renorm_dmax: float = 5.0,
                 renorm_warmup: int = 0):
        super().__init__()
        if n < 1:
            raise ValueError(f"n: expected >= 1 critics, got {n}")
        if norm not in CRITIC_NORMS:
            raise ValueError(f"critic_norm: expected one of {CRITIC_NORMS}, got {norm!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"bn_momentum: expected a value in [0, 1), got {momentum}")
        if where not in CRITIC_NORM_WHERE:
            raise ValueError(f"critic_norm_where: expected one of {CRITIC_NORM_WHERE}, got {where!r}")
        self.n = int(n)
        #: the form for torch.compile, set by the learner with ``compile`` on: the output layer
        #: (one value per member) as a multiply + sum over the hidden units instead of a
        #: ``baddbmm`` with N = 1, the hidden layers as ``bmm + bias`` (the bias fused into the
        #: norm's kernel). The same maths to float rounding, not bit for bit; eager keeps
        #: ``baddbmm``.
        self.compile_form = False
        self.norm = norm
        self.batch = norm in ("batch", "batch_renorm")
        if where == "auto":
            where = "after_relu" if self.batch else "before_relu"
        #: before_relu: Dense -> Norm -> ReLU; after_relu: Norm(input), (Dense -> ReLU -> Norm)*
        self.where = where
        self.momentum = float(momentum)
        self.eps = float(eps if eps is not None else (1e-3 if self.batch else 1e-6))
        self.rmax, self.dmax, self.renorm_warmup = float(renorm_rmax), float(renorm_dmax), int(renorm_warmup)
        dims = [int(obs_dim) + int(act_dim), *[int(h) for h in hidden], 1]
        self.dims = dims
        members = [MLP(dims[0], dims[1:-1], 1) for _ in range(self.n)]  # nn.Linear's init, in order
        self.weight = nn.ParameterList(
            nn.Parameter(torch.stack([m.layers[i].weight.detach().t() for m in members]).contiguous())
            for i in range(len(dims) - 1))
        self.bias = nn.ParameterList(
            nn.Parameter(torch.stack([m.layers[i].bias.detach() for m in members]).unsqueeze(1).contiguous())
            for i in range(len(dims) - 1))
        # widths of the normalised activations: the hidden layers; batch norms also the input
        self.norm_dims = ([] if norm == "none" else
                          dims[:-1] if self.where == "after_relu" else dims[1:-1])
        if self.norm_dims:
            self.norm_weight = nn.ParameterList(nn.Parameter(torch.ones(self.n, 1, h)) for h in self.norm_dims)
            self.norm_bias = nn.ParameterList(nn.Parameter(torch.zeros(self.n, 1, h)) for h in self.norm_dims)
        if self.batch:
            for k, h in enumerate(self.norm_dims):
                self.register_buffer(f"running_mean_{k}", torch.zeros(self.n, 1, h))
                self.register_buffer(f"running_var_{k}", torch.ones(self.n, 1, h))
            self.register_buffer("num_batches", torch.zeros((), dtype=torch.int64))

    # -- normalisation ---------------------------------------------------------------------

    def _batch_norm(self, x: torch.Tensor, k: int, sel: torch.Tensor | None) -> torch.Tensor:
        rm, rv = getattr(self, f"running_mean_{k}"), getattr(self, f"running_var_{k}")
        if sel is not None:
            rm, rv = rm.index_select(0, sel), rv.index_select(0, sel)
        if not self.training:
            return (x - rm) * torch.rsqrt(rv + self.eps)
        mu = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        std = torch.sqrt(var + self.eps)
        xhat = (x - mu) / std
        if self.norm == "batch_renorm" and int(self.num_batches) >= self.renorm_warmup:
            with torch.no_grad():
                r_std = torch.sqrt(rv + self.eps)
                r = (std / r_std).clamp(1.0 / self.rmax, self.rmax)
                d = ((mu - rm) / r_std).clamp(-self.dmax, self.dmax)
            xhat = xhat * r + d
        if sel is None:  # running statistics move only on full-ensemble training passes
            with torch.no_grad():
                b = x.shape[1]
                unbiased = var * (b / max(b - 1, 1))
                m = self.momentum
                getattr(self, f"running_mean_{k}").mul_(m).add_(mu.detach(), alpha=1 - m)
                getattr(self, f"running_var_{k}").mul_(m).add_(unbiased.detach(), alpha=1 - m)
        return xhat

    def _normalize(self, x: torch.Tensor, k: int, sel: torch.Tensor | None,
                   frozen: bool = False) -> torch.Tensor:
        if self.batch:
            x = self._batch_norm(x, k, sel)
        else:
            x = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        w, b = self.norm_weight[k], self.norm_bias[k]
        if frozen:
            w, b = w.detach(), b.detach()
        if sel is not None:
            w, b = w.index_select(0, sel), b.index_select(0, sel)
        return x * w + b  # (cheaper in backward than addcmul's, which scales by its value)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, obs_n: torch.Tensor, action: torch.Tensor,
                members: torch.Tensor | None = None, frozen: bool = False) -> torch.Tensor:
        """``(N, B)`` values (``(len(members), B)`` for a subset); ``frozen``: the weights
        detached, so gradients reach the inputs only (the compiled actor step)."""
        x = torch.cat([obs_n, action], -1)
        n = self.n if members is None else int(members.shape[0])
        last = len(self.weight) - 1
        h = x.unsqueeze(0).expand(n, *x.shape)
        normed = self.norm != "none"
        after = normed and self.where == "after_relu"
        if after:
            h = self._normalize(h, 0, members, frozen)
        for i in range(last + 1):
            w, b = self.weight[i], self.bias[i]
            if frozen:
                w, b = w.detach(), b.detach()
            if members is not None:
                w, b = w.index_select(0, members), b.index_select(0, members)
            if self.compile_form and i == last and w.shape[-1] == 1:
                # (N, B, h) . (N, 1, h) summed over h: no N=1 batched GEMM (slow on the CPU);
                # inductor fuses it with the last norm / ReLU, and its backward too
                h = (h * w.transpose(1, 2)).sum(-1, keepdim=True) + b
            elif self.compile_form:
                # the bias added in the fused kernel that follows (norm / ReLU), not copied
                # into the output before the GEMM as baddbmm does
                h = torch.bmm(h, w) + b
            else:
                h = torch.baddbmm(b, h, w)
            if i < last:
                if normed and not after:
                    h = self._normalize(h, i, members, frozen)
                # in place on a fresh tensor whose producers' backward does not need it
                h = F.relu(h, inplace=True)
                if after:
                    h = self._normalize(h, i + 1, members, frozen)
        if self.training and self.batch and members is None:
            self.num_batches.add_(1)
        return h.squeeze(-1)

    def weight_matrices(self) -> list[torch.Tensor]:
        return list(self.weight)

    @torch.no_grad()
    def load_members(self, critics: Sequence[Critic]) -> None:
        """Copy ``N`` plain :class:`Critic` modules' weights into the stacked tensors."""
        if len(critics) != self.n:
            raise ValueError(f"load_members: expected {self.n} critics, got {len(critics)}")
        for i in range(len(self.weight)):
            self.weight[i].copy_(torch.stack([c.net.layers[i].weight.t() for c in critics]))
            self.bias[i].copy_(torch.stack([c.net.layers[i].bias for c in critics]).unsqueeze(1))
