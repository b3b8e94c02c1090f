"""Weights and gradients as one flat float32 vector (the unit that travels between actors).

The weight vector holds every parameter and then every buffer (observation-normaliser statistics), so one
vector carries the whole policy; the gradient vector holds parameters only.
"""

from __future__ import annotations

import math
import warnings

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
            t.copy_(source[offset : offset + n].view_as(t))
            offset += n


def get_flat_grads(module: torch.nn.Module) -> np.ndarray:
    """Gradients in parameter order as float32 [P]; a parameter without a gradient contributes zeros."""
    parts = [
        torch.zeros(p.numel()) if p.grad is None else p.grad.detach().reshape(-1).float().cpu()
        for p in module.parameters()
    ]
    return torch.cat(parts).numpy()


def set_flat_grads(module: torch.nn.Module, flat: np.ndarray) -> None:
    _check_size(flat, num_params(module))
    source = torch.tensor(flat)
    offset = 0
    for p in module.parameters():
        n = p.numel()
        p.grad = source[offset : offset + n].to(dtype=p.dtype, device=p.device).view_as(p).clone()
        offset += n


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def num_weights(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in _state_tensors(module))


def _check_size(flat: np.ndarray, expected: int) -> None:
    if flat.ndim != 1 or flat.size != expected:
        raise ValueError(f"flat vector has shape {flat.shape}, the model expects {expected} values")


def encode_gradient(flat: np.ndarray, dtype: str) -> np.ndarray:
    """A float32 gradient in its transport dtype (learner.grad_dtype): float16 halves the bytes (values past
    +-65504 become inf, which the PS rejects as non-finite); bfloat16 keeps float32's range with 8 bits of
    mantissa and travels as uint16 (numpy has no bfloat16), rounded to nearest even."""
    if dtype == "float32":
        return flat
    if dtype == "float16":
        return flat.astype(np.float16)
    bits = np.ascontiguousarray(flat, np.float32).view(np.uint32)
    rounding = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    rounded = np.where(np.isnan(flat), bits, bits + rounding)  # NaN stays NaN: rounding could make it inf
    return (rounded >> np.uint32(16)).astype(np.uint16)


def decode_gradient(data: np.ndarray) -> np.ndarray:
    """The float32 gradient back from any transport dtype (uint16 = bfloat16 bits)."""
    if data.dtype == np.uint16:
        return (data.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return data.astype(np.float32, copy=False)


def gradient_tensor(data: np.ndarray) -> torch.Tensor:
    """A transported gradient as a torch tensor in its own dtype (float32, float16, or bfloat16 from uint16
    bits), sharing the array's memory: no copy and no conversion yet (the PS converts while copying it into
    its flat gradient buffer). Ray's arrays are read-only; the tensor is only ever read."""
    if data.ndim != 1:
        raise ValueError(f"flat gradient has shape {data.shape}, expected one dimension")
    if not data.flags.writeable:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns about read-only arrays
            tensor = torch.from_numpy(data)
    else:
        tensor = torch.from_numpy(data)
    if tensor.dtype == torch.uint16:
        return tensor.view(torch.bfloat16)
    if tensor.dtype not in (torch.float32, torch.float16):
        return tensor.float()
    return tensor


def finite_norm(tensor: torch.Tensor) -> float:
    """The L2 norm (float32 accumulation), or a non-finite number iff some entry is inf or NaN: one read pass
    serves as both the global norm and the finiteness check. A float32 sum of squares that overflows on finite
    entries (|g| ~ 1e19) is told apart and recomputed in float64."""
    if tensor.dtype == torch.float32:
        norm = math.sqrt(float(torch.dot(tensor, tensor)))  # BLAS: faster than vector_norm; inf and NaN propagate
    else:
        norm = float(torch.linalg.vector_norm(tensor, dtype=torch.float32))
    if not math.isfinite(norm) and bool(torch.isfinite(tensor).all()):
        norm = float(torch.linalg.vector_norm(tensor, dtype=torch.float64))
    return norm
