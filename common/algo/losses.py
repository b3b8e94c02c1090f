"""The A3C loss (with an optional clipped surrogate for extra passes) and global-norm clipping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class LossTerms:
    total: torch.Tensor
    policy: float
    value: float
    entropy: float
    clip_fraction: float = 0.0  # clipped surrogate only: the weighted share of steps outside the clip range


def a3c_loss(
    log_probs: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    entropy_coef: float,
    value_coef: float,
    value_loss: str = "mse",
    mask: torch.Tensor | None = None,
    old_log_probs: torch.Tensor | None = None,
    clip_range: float = 0.2,
) -> LossTerms:
    """Policy gradient + value regression - entropy bonus, each a mean over the batch's valid steps.

    All inputs are [B] (flatten [T, N] first). `advantages` and `returns` are constants (detached);
    `mask` [B] (bool or 0/1) drops steps that are not transitions (vector-env autoreset steps).
    policy = -mean(log pi(a|s) * A), or with `old_log_probs` [B] (the acting policy's log mu(a|s)) the clipped
    surrogate -mean(min(r * A, clip(r, 1 - clip_range, 1 + clip_range) * A)), r = pi / mu: the same gradient
    while r = 1, none for a step that already moved past the clip in its advantage's direction;
    value = mean(0.5 * (R - V)^2) or mean(smooth_l1(V, R));
    total = policy + value_coef * value - entropy_coef * mean(H[pi]).
    """
    advantages = advantages.detach()
    weights = mean_weights(values, mask)
    clip_fraction = 0.0
    if old_log_probs is None:
        policy = -(log_probs * advantages * weights).sum()
    else:
        policy, clip_fraction = clipped_surrogate(log_probs, old_log_probs, advantages, clip_range, weights)
    value = critic_loss(values, returns, value_loss, weights)
    ent = (entropy * weights).sum()
    total = policy + value_coef * value - entropy_coef * ent
    return LossTerms(total, float(policy.detach()), float(value.detach()), float(ent.detach()), clip_fraction)


def clipped_surrogate(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
    weights: torch.Tensor,
) -> tuple[torch.Tensor, float]:
    """PPO's clipped policy objective, negated: (sum(w * -min(r A, clip(r) A)), weighted share of clipped steps).
    All [B]; `weights` sum to 1 over the valid steps; r = exp(log_probs - old_log_probs)."""
    ratio = torch.exp(log_probs - old_log_probs.detach())
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    outside = ((ratio - 1.0).abs() > clip_range).to(weights.dtype)
    return -(torch.min(unclipped, clipped) * weights).sum(), float((outside * weights).sum())


def mean_weights(like: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-step weights that turn a weighted sum into a mean over the valid steps."""
    weights = torch.ones_like(like) if mask is None else mask.to(like.dtype)
    return weights / weights.sum().clamp(min=1.0)


def critic_loss(values: torch.Tensor, returns: torch.Tensor, kind: str, weights: torch.Tensor) -> torch.Tensor:
    """Weighted value regression: sum(w * 0.5 * (R - V)^2) or sum(w * smooth_l1(V, R)); w sums to 1."""
    if kind == "mse":
        per_step = 0.5 * (returns.detach() - values).pow(2)
    else:
        per_step = F.smooth_l1_loss(values, returns.detach(), reduction="none")
    return (per_step * weights).sum()


def clip_by_global_norm(flat_grad: np.ndarray, max_norm: float) -> tuple[np.ndarray, float]:
    """Scale a flat gradient so its L2 norm is at most `max_norm` (0 = no clipping); returns (grad, norm before)."""
    norm = float(np.linalg.norm(flat_grad.astype(np.float64)))
    if max_norm > 0 and norm > max_norm:
        return (flat_grad * (max_norm / (norm + 1e-6))).astype(np.float32), norm
    return flat_grad, norm
