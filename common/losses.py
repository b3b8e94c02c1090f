"""The A3C loss and global-norm clipping."""
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


def a3c_loss(log_probs: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor, advantages: torch.Tensor,
             returns: torch.Tensor, entropy_coef: float, value_coef: float, value_loss: str = "mse") -> LossTerms:
    """Policy gradient + value regression - entropy bonus, each a mean over the batch.

    All inputs are [B] (flatten [T, N] first). `advantages` and `returns` are constants (detached).
    policy = -mean(log pi(a|s) * A);  value = mean(0.5 * (R - V)^2) or mean(smooth_l1(V, R));
    total = policy + value_coef * value - entropy_coef * mean(H[pi]).
    """
    advantages, returns = advantages.detach(), returns.detach()
    policy = -(log_probs * advantages).mean()
    if value_loss == "mse":
        value = 0.5 * (returns - values).pow(2).mean()
    else:
        value = F.smooth_l1_loss(values, returns)
    ent = entropy.mean()
    total = policy + value_coef * value - entropy_coef * ent
    return LossTerms(total, float(policy.detach()), float(value.detach()), float(ent.detach()))


def clip_by_global_norm(flat_grad: np.ndarray, max_norm: float) -> tuple[np.ndarray, float]:
    """Scale a flat gradient so its L2 norm is at most `max_norm` (0 = no clipping); returns (grad, norm before)."""
    norm = float(np.linalg.norm(flat_grad.astype(np.float64)))
    if max_norm > 0 and norm > max_norm:
        return (flat_grad * (max_norm / (norm + 1e-6))).astype(np.float32), norm
    return flat_grad, norm
