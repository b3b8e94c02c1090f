"""RMSprop in TensorFlow's form: what the A3C paper's and OpenAI Baselines' A2C ran, and what SB3 runs A2C on
Atari with (its `RMSpropTFLike`).

torch's RMSprop differs in two ways that matter at the start of training: its mean square starts at 0, so the
first step divides g by sqrt((1 - alpha) g^2) = 0.1 |g| (alpha 0.99) and moves every weight by ~10x the
learning rate, and its eps sits outside the root. Here the mean square starts at 1 and eps is inside the root:
the first steps are about lr * g, and the step size grows as the mean square settles.
"""

from __future__ import annotations

import torch


def rmsprop_tf_update(
    param: torch.Tensor, grad: torch.Tensor, square_avg: torch.Tensor, lr: float, alpha: float, eps: float
) -> None:
    """One step, in place. All tensors [P] (any equal shape):
    square_avg <- alpha * square_avg + (1 - alpha) * grad^2;  param <- param - lr * grad / sqrt(square_avg + eps).
    """
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1.0 - alpha)
    param.addcdiv_(grad, square_avg.add(eps).sqrt_(), value=-lr)


class RMSpropTF(torch.optim.Optimizer):
    """Not centred, no momentum (the A3C paper's rule); state per tensor: `square_avg` (from ones) and `step`."""

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 1e-5):
        if lr < 0 or not 0 < alpha < 1 or eps <= 0:
            raise ValueError(f"RMSpropTF needs lr >= 0, 0 < alpha < 1, eps > 0 (got {lr}, {alpha}, {eps})")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["square_avg"] = torch.ones_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                rmsprop_tf_update(param, param.grad, state["square_avg"], group["lr"], group["alpha"], group["eps"])
        return loss
