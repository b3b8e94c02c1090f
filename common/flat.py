"""Weights and gradients as one flat float32 vector (the unit that travels between actors).

The weight vector holds every parameter and then every buffer (observation-normaliser statistics), so one
vector carries the whole policy; the gradient vector holds parameters only.
"""
from __future__ import annotations

import numpy as np
import torch


def _state_tensors(module: torch.nn.Module) -> list:
    return list(module.parameters()) + list(module.buffers())


def get_flat_weights(module: torch.nn.Module) -> np.ndarray:
    """Parameters then buffers, in module order, as float32 [W]."""
    with torch.no_grad():
        return torch.cat([t.detach().reshape(-1).float().cpu() for t in _state_tensors(module)]).numpy()


def set_flat_weights(module: torch.nn.Module, flat: np.ndarray) -> None:
    _check_size(flat, num_weights(module))
    source = torch.tensor(flat)  # one copy: arrays from Ray's object store are read-only
    with torch.no_grad():
        offset = 0
        for t in _state_tensors(module):
            n = t.numel()
            t.copy_(source[offset:offset + n].view_as(t))
            offset += n


def get_flat_grads(module: torch.nn.Module) -> np.ndarray:
    """Gradients in parameter order as float32 [P]; a parameter without a gradient contributes zeros."""
    parts = [torch.zeros(p.numel()) if p.grad is None else p.grad.detach().reshape(-1).float().cpu()
             for p in module.parameters()]
    return torch.cat(parts).numpy()


def set_flat_grads(module: torch.nn.Module, flat: np.ndarray) -> None:
    _check_size(flat, num_params(module))
    source = torch.tensor(flat)
    offset = 0
    for p in module.parameters():
        n = p.numel()
        p.grad = source[offset:offset + n].to(dtype=p.dtype, device=p.device).view_as(p).clone()
        offset += n


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def num_weights(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in _state_tensors(module))


def _check_size(flat: np.ndarray, expected: int) -> None:
    if flat.ndim != 1 or flat.size != expected:
        raise ValueError(f"flat vector has shape {flat.shape}, the model expects {expected} values")
