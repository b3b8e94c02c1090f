"""The parameter server's network in one flat buffer, so each optimizer steps over ONE tensor.

Every parameter (and buffer) of the PS's model is re-pointed at a slice of one contiguous float32 tensor, and
every `.grad` at a slice of one flat gradient tensor. Parameters are laid out group by group (a shared trunk:
one group `all`, in module order; separate networks: `actor` then `critic`, each in module order), then the
buffers, so each optimizer owns one contiguous slice and torch's fused Adam makes one pass over it.

The wire order (common/wire/flat.py: parameters in module order, then buffers) differs from this layout only when
the critic's parameters are not contiguous in module order; `chunks` map one to the other, and decoding a
gradient or publishing the weights copies chunk by chunk: still one pass over memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.optim.adam import adam

from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config
from ray_a3c.common.settings.validation import Optimizer
from ray_a3c.common.wire.flat import finite_norm
from ray_a3c.learner.rmsprop_tf import RMSpropTF

Chunk = tuple[int, int, int]  # (offset in the wire vector, offset in the flat buffer, length)


def _append(chunks: list[Chunk], wire: int, flat: int, n: int) -> None:
    if chunks and chunks[-1][0] + chunks[-1][2] == wire and chunks[-1][1] + chunks[-1][2] == flat:
        w, f, m = chunks[-1]
        chunks[-1] = (w, f, m + n)
    elif n:
        chunks.append((wire, flat, n))


class FlatParameters:
    """`model`'s parameters and buffers as views into `self.flat` [W], their gradients into `self.grad` [P];
    `groups` (name -> that group's parameters, together every parameter once) become contiguous slices,
    `tensors[name]` the one leaf tensor an optimizer steps. The model must not be moved (`.to`) afterwards."""

    def __init__(self, model: torch.nn.Module, groups: dict[str, list[torch.nn.Parameter]]):
        params = list(model.parameters())
        owners = [
            (module, name, buf)
            for module in model.modules()
            for name, buf in module._buffers.items()
            if buf is not None
        ]
        listed = [p for group in groups.values() for p in group]
        if sorted(map(id, listed)) != sorted(map(id, params)):
            raise ValueError("the optimizer groups must hold every parameter of the model exactly once")
        if any(t.dtype != torch.float32 for t in params + [b for _, _, b in owners]):
            raise ValueError("the flat buffer holds float32 parameters and buffers only")
        wire_at, offset = {}, 0
        for p in params:
            wire_at[id(p)], offset = offset, offset + p.numel()
        self.num_params = offset
        self.num_grad_values = offset  # what set_gradient takes: every parameter, or a shard's part (restrict)
        self.num_weights = offset + sum(b.numel() for _, _, b in owners)
        self.device = params[0].device
        self.flat = torch.empty(self.num_weights, device=self.device)
        self.grad = torch.zeros(self.num_params, device=self.device)
        chunks: list[Chunk] = []
        self.slices: dict[str, tuple[int, int]] = {}
        at = 0
        with torch.no_grad():
            for name, group in groups.items():
                start = at
                for p in group:
                    n = p.numel()
                    self.flat[at : at + n].copy_(p.detach().reshape(-1))
                    p.data = self.flat[at : at + n].view_as(p)
                    p.grad = self.grad[at : at + n].view_as(p)
                    _append(chunks, wire_at[id(p)], at, n)
                    at += n
                self.slices[name] = (start, at)
            self.grad_chunks = list(chunks)
            self._grad_parts = [(wire, n, self.grad[at : at + n]) for wire, at, n in sorted(chunks)]
            for module, name, buf in owners:
                n = buf.numel()
                self.flat[at : at + n].copy_(buf.reshape(-1))
                module._buffers[name] = self.flat[at : at + n].view_as(buf)
                _append(chunks, at, at, n)  # buffers keep the wire order, after every parameter
                at += n
        self.weight_chunks = sorted(chunks)  # in wire order, as the published vector is built
        self._weight_parts = [self.flat[at : at + n] for _, at, n in self.weight_chunks]
        self.tensors = {name: self._leaf(a, b) for name, (a, b) in self.slices.items()}

    def _leaf(self, start: int, end: int) -> torch.Tensor:
        tensor = self.flat[start:end]  # a leaf: the flat buffer itself records no autograd history
        tensor.grad = self.grad[start:end]
        return tensor

    def restrict(self, shard: Any) -> None:
        """Own only `shard`'s part (a learner.shards.ShardSlice) from now on: set_gradient takes the shard's
        gradient slice (its ranges concatenated), `tensors` holds the owned part of each group (a group the
        shard has no part of is left out), and weights() publishes the shard's pieces, then the buffers if the
        shard owns them. The rest of the buffer keeps whatever it holds; nothing reads it."""
        owned = [(name, lo, hi) for name, lo, hi in shard.ranges if hi > lo]
        self._grad_parts, at = [], 0
        for _, lo, hi in owned:
            self._grad_parts.append((at, hi - lo, self.grad[lo:hi]))
            at += hi - lo
        self.num_grad_values = at
        self.tensors = {name: self._leaf(lo, hi) for name, lo, hi in owned}
        buffers = [self.flat[self.num_params :]] if shard.num_weight_values > at else []
        self._weight_parts = [self.flat[lo:hi] for _, lo, hi in owned] + buffers

    def set_gradient(
        self, parts: list[tuple[torch.Tensor, float]], max_norm: float, norm: float | None = None
    ) -> float:
        """grad <- sum(weight * part) over wire-order gradients (any float dtype, any device; weights summing to
        1), clipped to global norm `max_norm` (0: no clipping) by max_norm / (norm + 1e-6) as
        losses.clip_by_global_norm does. One part is converted and scaled in the same copy; `norm`, when given,
        is its norm already measured. Returns the norm before clipping."""
        if len(parts) == 1:
            source, weight = parts[0]
            if norm is None:
                norm = finite_norm(source) * weight
            scale = weight * (max_norm / (norm + 1e-6) if 0 < max_norm < norm else 1.0)
            self._copy_in(source, scale)
            return norm
        for i, (source, weight) in enumerate(parts):
            self._copy_in(source, weight, accumulate=i > 0)
        norm = finite_norm(self.grad)
        if 0 < max_norm < norm:
            self.grad.mul_(max_norm / (norm + 1e-6))
        return norm

    def _copy_in(self, source: torch.Tensor, scale: float, accumulate: bool = False) -> None:
        if source.numel() != self.num_grad_values:
            raise ValueError(f"flat gradient has {source.numel()} values, expected {self.num_grad_values}")
        # torch computes in the inputs' dtype: a half-precision source is converted before it is scaled
        one_pass = source.device == self.device and source.dtype == torch.float32
        same_device = source.device == self.device
        for wire, n, target in self._grad_parts:
            part = source[wire : wire + n]
            if accumulate:
                target.add_(part if same_device else part.to(self.device), alpha=scale)
            elif scale == 1.0:
                target.copy_(part)
            elif one_pass:
                torch.mul(part, scale, out=target)
            else:
                target.copy_(part).mul_(scale)

    def weights(self, copy: bool = True) -> np.ndarray:
        """The wire-order weight vector (parameters then buffers) as float32 [W]. copy=True: an array no later
        step touches. copy=False may return a live read-only view of the buffer (one layout, on the CPU) for a
        caller that copies it at once (ray.put); otherwise it is a fresh array too."""
        if not self._weight_parts:  # a shard of a network too small to give it anything
            out = self.flat[:0].cpu()
        elif len(self._weight_parts) == 1:
            out = self._weight_parts[0].detach()
            out = out.clone() if copy and out.device.type == "cpu" else out.cpu()
        else:
            out = torch.cat(self._weight_parts).cpu()  # in wire order
        array = out.numpy()
        if not copy:
            array.flags.writeable = False
        return array

    def param_norm(self) -> float:
        """The norm of the parameters this buffer steps (a shard: its own part)."""
        parts = [t.detach().reshape(-1) for t in self.tensors.values()]
        return float(torch.linalg.vector_norm(torch.cat(parts))) if parts else 0.0


class FlatAdam(torch.optim.Adam):
    """torch's Adam over one flat tensor, with `fast_step`: once the state exists it calls torch's functional
    `adam` (the same kernel, fused where the device has one) directly. `Optimizer.step` is wrapped by torch
    (profiler scope, hooks, grad mode): ~50 us a call, most of a step for a small network. The first step and
    any configuration the shortcut does not cover (amsgrad) go through `step`."""

    def fast_step(self) -> None:
        group = self.param_groups[0]
        param = group["params"][0]
        state = self.state.get(param)
        if not state or group["amsgrad"] or len(self.param_groups) != 1:
            self.step()
            return
        adam(
            [param],
            [param.grad],
            [state["exp_avg"]],
            [state["exp_avg_sq"]],
            [],
            [state["step"]],
            foreach=group["foreach"],
            fused=group["fused"],
            capturable=group["capturable"],
            decoupled_weight_decay=group.get("decoupled_weight_decay", False),
            amsgrad=False,
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )


def step(optimizer: torch.optim.Optimizer) -> None:
    """One optimizer step, by the shortcut where the optimizer has one."""
    fast = getattr(optimizer, "fast_step", None)
    if fast is None:
        optimizer.step()
    else:
        fast()


def build_optimizer(tensor: torch.Tensor, lr: float, algo: Any) -> torch.optim.Optimizer:
    """Adam (torch's fused kernel where this device has one, else foreach), torch's RMSprop (no fused kernel in
    torch; its single-tensor path, which on one tensor is as fast as foreach) or RMSprop in TensorFlow's form
    (learner/rmsprop_tf.py) over one flat tensor."""
    if algo.optimizer == Optimizer.RMSPROP:
        return torch.optim.RMSprop([tensor], lr=lr, alpha=algo.rmsprop_alpha, eps=algo.rmsprop_eps, foreach=False)
    if algo.optimizer == Optimizer.RMSPROP_TF:
        return RMSpropTF([tensor], lr=lr, alpha=algo.rmsprop_alpha, eps=algo.rmsprop_eps)
    try:
        return FlatAdam([tensor], lr=lr, eps=algo.adam_eps, fused=True)
    except RuntimeError:  # no fused Adam for this device in this torch
        return FlatAdam([tensor], lr=lr, eps=algo.adam_eps, foreach=True)


def build_optimizers(flat: FlatParameters, config: Config) -> dict[str, torch.optim.Optimizer]:
    """{"all": optimizer} for a shared trunk; {"actor": ..., "critic": ...} for separate networks, the critic's
    at `critic_learning_rate` (or the same lr), so a value-only step can move the critic alone. Each steps one
    flat tensor (above); a shard has one for each group it owns a part of."""
    algo = config.algo
    critic_lr = algo.critic_learning_rate or algo.learning_rate
    return {
        name: build_optimizer(tensor, critic_lr if name == "critic" else algo.learning_rate, algo)
        for name, tensor in flat.tensors.items()
    }


IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, saved: dict, name: str, part: tuple[int, int] | None = None
) -> None:
    """Load a saved optimizer state into an optimizer over one flat tensor. A state saved per parameter tensor
    (checkpoints from before the flat buffer) is concatenated in its parameter order, which is this group's
    flat order; the saved implementation flags (fused, foreach) are replaced by this optimizer's own. `part`
    (start, end): a shard's optimizer over that part of the group takes the same part of the saved state."""
    groups = saved.get("param_groups", [])
    if len(groups) != 1:
        raise A3CError(f"the '{name}' optimizer state has {len(groups)} parameter groups, expected 1")
    ids, state = list(groups[0]["params"]), saved.get("state", {})
    if len(ids) > 1:
        present = [i for i in ids if i in state]
        if present and len(present) != len(ids):
            raise A3CError(f"the '{name}' optimizer state covers {len(present)} of its {len(ids)} tensors")
        merged = {}
        if present:
            first = state[ids[0]]
            merged = {
                key: (
                    value
                    if not isinstance(value, torch.Tensor)
                    else value.clone()
                    if value.dim() == 0
                    else torch.cat([state[i][key].reshape(-1) for i in ids])
                )
                for key, value in first.items()
            }
        state = {0: merged} if merged else {}
    start, end = part if part is not None else (None, None)
    # copies: torch's load_state_dict keeps a CPU tensor as it is given, and the caller's state must not change
    # when this optimizer steps (several shards of one process load the same state)
    state = {
        key: {
            k: (v[start:end] if v.dim() > 0 else v).clone() if isinstance(v, torch.Tensor) else v
            for k, v in values.items()
        }
        for key, values in state.items()
    }
    size = optimizer.param_groups[0]["params"][0].numel()
    for values in state.values():
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.numel() != size:
                raise A3CError(
                    f"the '{name}' optimizer state's {key} has {value.numel()} values, the model "
                    f"{size}: the checkpoint belongs to another network"
                )
    group = dict(groups[0], params=[0])
    group.update({k: optimizer.defaults[k] for k in IMPLEMENTATION_KEYS if k in optimizer.defaults})
    optimizer.load_state_dict({"state": {0: state[next(iter(state))]} if state else {}, "param_groups": [group]})


def parameter_groups(model: Any) -> dict[str, list[torch.nn.Parameter]]:
    """{"all": every parameter} for a shared trunk, {"actor": ..., "critic": ...} (module order within each)
    for separate networks."""
    critic_ids = model.critic_parameter_ids()
    if not critic_ids:
        return {"all": list(model.parameters())}
    return {
        "actor": [p for p in model.parameters() if id(p) not in critic_ids],
        "critic": [p for p in model.parameters() if id(p) in critic_ids],
    }
