"""Checkpoints: plain tensors and numbers, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import glob
import os
import re
import time
from typing import Any

import torch

from ray_a3c.common.atomic import TMP_PREFIX, atomic_write
from ray_a3c.common.errors import A3CError
from ray_a3c.common.keys import CKPT_CONFIG_YAML, CKPT_COUNTERS, CKPT_MODEL, CKPT_OPTIMIZERS

CKPT_PATTERN = re.compile(r"ckpt-(\d+)\.pt$")


def save_atomic(state: dict, path: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path` (readable by all: mkstemp's
    0600 would make checkpoints the one unreadable file of the run dir)."""
    with atomic_write(path, suffix=".pt", fsync=True, makedirs=True) as tmp:
        torch.save(state, tmp)


def load(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise A3CError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise A3CError(f"checkpoint '{path}' is unreadable or corrupt ({type(exc).__name__})") from None
    if not isinstance(state, dict) or CKPT_MODEL not in state:
        raise A3CError(f"checkpoint '{path}' is not a ray-a3c checkpoint (no model weights)")
    problem = _type_problem(state)
    if problem:
        raise A3CError(f"checkpoint '{path}' is malformed: {problem}")
    return state


def _type_problem(state: dict) -> str:
    model = state[CKPT_MODEL]
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        return "'model' must map parameter names to tensors"
    counters = state.get(CKPT_COUNTERS, {})
    if not isinstance(counters, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in counters.values()
    ):
        return "'counters' must map names to numbers"
    if CKPT_OPTIMIZERS in state and not isinstance(state[CKPT_OPTIMIZERS], dict):
        return "'optimizers' must be a mapping"
    if not isinstance(state.get(CKPT_CONFIG_YAML, ""), str):
        return "'config_yaml' must be text"
    return ""


def list_checkpoints(ckpt_dir: str) -> list[str]:
    """ckpt-<version>.pt files, oldest version first."""
    paths = [p for p in glob.glob(os.path.join(ckpt_dir, "ckpt-*.pt")) if CKPT_PATTERN.search(p)]
    return sorted(paths, key=lambda p: int(CKPT_PATTERN.search(p).group(1)))


STALE_TMP_S = 3600.0  # a .tmp-* file this old is left over from a crash, not a write in progress


def save_versioned(state: dict, ckpt_dir: str, version: int, keep: int) -> str:
    path = os.path.join(ckpt_dir, f"ckpt-{version}.pt")
    save_atomic(state, path)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        os.unlink(old)
    remove_stale_temp_files(ckpt_dir)
    return path


def remove_stale_temp_files(directory: str, older_than_s: float = STALE_TMP_S) -> int:
    """Delete `.tmp-*` files that a killed process left behind; returns how many."""
    now, removed = time.time(), 0
    for tmp in glob.glob(os.path.join(directory, TMP_PREFIX + "*")):
        try:
            if now - os.path.getmtime(tmp) > older_than_s:
                os.unlink(tmp)
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def resolve(run_dir: str, which: str) -> str:
    """'latest' | 'best' | a path -> a checkpoint path; 'best' falls back to latest if none was saved."""
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if which not in ("latest", "best"):
        return which
    best = os.path.join(ckpt_dir, "best.pt")
    if which == "best" and os.path.isfile(best):
        return best
    found = list_checkpoints(ckpt_dir)
    if not found:
        raise A3CError(f"no checkpoint in '{ckpt_dir}'")
    return found[-1]
