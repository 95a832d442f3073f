"""Pure loss and target functions shared by every algorithm family (no state, no modules).

Each function states its formula; the families (:mod:`robot_rl.agents.dpg`,
:mod:`robot_rl.agents.svg`, :mod:`robot_rl.agents.sac`, :mod:`robot_rl.agents.crossq`) combine
them in their ``step()``. Shapes: a critic ensemble's values are ``(n, B)`` (member, batch).
"""
from __future__ import annotations

from typing import Sequence

import torch

# --------------------------------------------------------------------------- TD targets


def td_target(reward: torch.Tensor, discount: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
    """``y = r + d * Q'`` with ``d = gamma^m * (1 - terminated)`` from the batch.

    A terminated row has ``d = 0`` (``y = r``, no bootstrap); a truncated one keeps
    ``d = gamma^m`` (the time limit is not an end of the task: bootstrap through it).
    """
    return reward + discount * next_q


def clipped_target(y: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``clip(y, low, high)``: a TD target kept inside the range the returns can take.

    With rewards in ``[r_min, r_max]`` every discounted return lies in ``[r_min/(1-gamma),
    r_max/(1-gamma)]`` (the n-step target too), so a target outside it is the critic's own
    extrapolation feeding back -- e.g. ``Q > 0`` under the sparse reward (-1 / 0), where a
    bootstrapped overestimate otherwise grows without bound (HER clips its targets so).
    """
    return y.clamp(low, high)


def smoothed_target_action(action: torch.Tensor, noise: torch.Tensor, noise_clip: float,
                           low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """TD3 target-policy smoothing: ``a' = clip(pi'(s') + clip(eps, -c, c), low, high)``."""
    return (action + noise.clamp(-noise_clip, noise_clip)).clamp(low, high)


def min_over_critics(q: torch.Tensor) -> torch.Tensor:
    """Clipped double-Q: ``min_i Q_i`` over the first axis of ``(n, B)`` (identity for n = 1)."""
    return q[0] if q.shape[0] == 1 else q.min(dim=0).values


def subset_min(q: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """REDQ / RLPD target value: ``min_{i in M} Q_i`` over a subset ``M`` of the ensemble.

    ``q`` is ``(N, B)``, ``members`` the indices of ``M`` (``|M| = 2`` of ``N = 10`` in RLPD);
    with ``M`` = all members this is :func:`min_over_critics`.
    """
    return min_over_critics(q.index_select(0, members))


def soft_value(q_next: torch.Tensor, log_prob_next: torch.Tensor, alpha: torch.Tensor | float
               ) -> torch.Tensor:
    """The entropy-regularised value of the next state: ``V(s') = Q'(s', a') - alpha log pi(a'|s')``
    with ``a' ~ pi(.|s')`` (SAC's soft backup)."""
    return q_next - alpha * log_prob_next


# --------------------------------------------------------------------------- critic


def critic_td_loss(q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``L = sum_i (1/B) sum_b w_b (Q_i(s_b, a_b) - y_b)^2`` over critics i (q is ``(n, B)``).

    ``w`` are the prioritized-replay importance weights (1 for uniform sampling).
    """
    return ((q - target.unsqueeze(0)).pow(2) * weights.unsqueeze(0)).mean(dim=1).sum()


def l2_penalty(weights: Sequence[torch.Tensor], coef: float) -> torch.Tensor:
    """``lambda * sum_W ||W||_F^2`` (gradient ``2 lambda W``): DDPG/DDPGfD's L2 weight decay."""
    return coef * torch.stack([w.pow(2).sum() for w in weights]).sum()


# --------------------------------------------------------------------------- actor


def deterministic_actor_loss(q_pi: torch.Tensor) -> torch.Tensor:
    """DPG: ``L = -(1/B) sum_b Q_1(s_b, pi(s_b))``; its gradient is ``-grad_theta pi . grad_a Q``."""
    return -q_pi.mean()


def bc_loss(pi_action: torch.Tensor, demo_action: torch.Tensor, is_demo: torch.Tensor,
            q_demo: torch.Tensor, q_pi: torch.Tensor, q_filter: bool
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Behaviour cloning with the Q-filter (Nair et al. 2018), over the demo rows of a batch.

    ``L_BC = sum_b m_b f_b ||pi(s_b) - a_b||^2 / max(1, sum_b m_b)`` with ``m_b = 1`` for demo
    rows and ``f_b = 1[Q(s_b, a_b) > Q(s_b, pi(s_b))]`` (``f_b = 1`` without the filter).
    Returns ``(L_BC, fraction of demo rows that passed the filter)``.
    """
    m = is_demo.to(pi_action.dtype)
    f = (q_demo > q_pi).to(pi_action.dtype) if q_filter else torch.ones_like(m)
    mf = m * f
    n_demo = m.sum().clamp_min(1.0)
    loss = (mf * (pi_action - demo_action).pow(2).sum(-1)).sum() / n_demo
    return loss, mf.sum() / n_demo


def svg0_actor_loss(q: torch.Tensor, log_prob: torch.Tensor, alpha: float | torch.Tensor
                    ) -> torch.Tensor:
    """SVG(0) / SAC: ``L = (1/B) sum_b [alpha log pi(a_b|s_b) - Q(s_b, a_b)]``, ``a_b = f(s_b, eps_b)``
    reparameterised, so ``grad L`` flows through ``grad_a Q``; ``-alpha log pi`` is the entropy
    bonus."""
    return (alpha * log_prob - q).mean()


#: SAC's actor loss is SVG(0)'s with a learned alpha (Haarnoja et al. 2018, eq. 7 / 17)
sac_actor_loss = svg0_actor_loss


def reduce_ensemble(q: torch.Tensor, how: str) -> torch.Tensor:
    """The ensemble's value for the actor: ``min_i Q_i`` (SAC, clipped double-Q) or
    ``(1/N) sum_i Q_i`` (REDQ / RLPD with large ensembles); ``q`` is ``(N, B)``."""
    if how == "min":
        return min_over_critics(q)
    if how == "mean":
        return q.mean(dim=0)
    raise ValueError(f"actor_q: expected 'min' or 'mean', got {how!r}")


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
                     ) -> torch.Tensor:
    """SAC's temperature loss (Haarnoja et al. 2018b, eq. 18, in log-space as SB3 does):

    ``J(log alpha) = -(1/B) sum_b log alpha * (log pi(a_b|s_b) + H_target)`` with the log-densities
    detached. Its gradient ``-(mean log pi + H_target)`` is negative -- alpha grows -- while the
    policy's entropy ``-mean log pi`` is below the target ``H_target`` (``-|A|`` by default), and
    positive -- alpha shrinks -- while it is above.
    """
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


# --------------------------------------------------------------------------- priorities, targets


def ddpgfd_priority(td: torch.Tensor, grad_a_q: torch.Tensor | None, lam: float) -> torch.Tensor:
    """DDPGfD: ``p = delta^2 + lambda3 ||grad_a Q(s, a)|_{a=pi(s)}||^2`` (the sampler adds
    ``eps`` and, for demo rows, ``eps_D``)."""
    p = td.pow(2)
    if grad_a_q is not None and lam > 0:
        p = p + lam * grad_a_q.pow(2).sum(-1)
    return p


@torch.no_grad()
def polyak_update(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """``theta' <- theta' + tau (theta - theta') = tau theta + (1 - tau) theta'`` (in place)."""
    torch._foreach_lerp_(list(target), list(online), tau)


@torch.no_grad()
def hard_update(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor]) -> None:
    """``theta' <- theta`` (in place)."""
    torch._foreach_copy_(list(target), list(online))
