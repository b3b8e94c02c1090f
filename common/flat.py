"""Parameters and gradients as one flat float32 vector (the unit that travels between actors)."""
from __future__ import annotations

import numpy as np
import torch


def get_flat_weights(module: torch.nn.Module) -> np.ndarray:
    """All parameters in `module.parameters()` order, as float32 [P]."""
    with torch.no_grad():
        return torch.cat([p.detach().reshape(-1).float().cpu() for p in module.parameters()]).numpy()


def set_flat_weights(module: torch.nn.Module, flat: np.ndarray) -> None:
    _check_size(module, flat)
    source = torch.tensor(flat)  # one copy: arrays from Ray's object store are read-only
    with torch.no_grad():
        offset = 0
        for p in module.parameters():
            n = p.numel()
            p.copy_(source[offset:offset + n].view_as(p))
            offset += n


def get_flat_grads(module: torch.nn.Module) -> np.ndarray:
    """Gradients in parameter order as float32 [P]; a parameter without a gradient contributes zeros."""
    parts = [torch.zeros(p.numel()) if p.grad is None else p.grad.detach().reshape(-1).float().cpu()
             for p in module.parameters()]
    return torch.cat(parts).numpy()


def set_flat_grads(module: torch.nn.Module, flat: np.ndarray) -> None:
    _check_size(module, flat)
    source = torch.tensor(flat)
    offset = 0
    for p in module.parameters():
        n = p.numel()
        p.grad = source[offset:offset + n].to(dtype=p.dtype, device=p.device).view_as(p).clone()
        offset += n


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _check_size(module: torch.nn.Module, flat: np.ndarray) -> None:
    if flat.ndim != 1 or flat.size != num_params(module):
        raise ValueError(f"flat vector has shape {flat.shape}, the model has {num_params(module)} parameters")
