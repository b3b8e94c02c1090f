"""Checkpoints: plain tensors and numbers, written atomically, loaded with weights_only=True. Each carries its
layout's schema version; where no file is named (`latest`, `best`, PS recovery) an unreadable newest one is
skipped, with a warning, for the newest readable one."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.reporting.logs import log
from ray_a3c.common.storage.atomic import TMP_PREFIX, atomic_write
from ray_a3c.common.storage.keys import (
    CKPT_CONFIG_YAML,
    CKPT_COUNTERS,
    CKPT_MODEL,
    CKPT_OPTIMIZERS,
    CKPT_SCHEMA_VERSION,
)

T = TypeVar("T")

CKPT_PATTERN = re.compile(r"ckpt-(\d+)\.pt")  # the whole file name: temp files (TMP_PREFIX) never match
BEST_FILE = "best.pt"
LATEST, BEST = "latest", "best"  # what a caller may name instead of a file

# 1: the layout up to commit 9d1910a, with no version entry. 2: the same entries plus CKPT_SCHEMA_VERSION.
LEGACY_SCHEMA_VERSION = 1
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (LEGACY_SCHEMA_VERSION, SCHEMA_VERSION)


class UnreadableCheckpoint(A3CError):
    """A file that holds no usable checkpoint (truncated, empty, foreign, malformed, gone): where no file was
    named, an older readable one is taken instead."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"checkpoint '{path}' {reason}")
        self.path, self.reason = path, reason


def cpu_copies(value: Any) -> Any:
    """A state dict with every tensor on the CPU, so a reader without a GPU can load it, each tensor a copy of
    its own: the model's are views of the flat buffer, and a view pickles (Ray) with its whole storage."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: cpu_copies(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copies(v) for v in value)
    return value


def save_atomic(state: dict, path: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path` (readable by all: mkstemp's
    0600 would make checkpoints the one unreadable file of the run dir). Stamped with SCHEMA_VERSION. An
    OSError (disk full, read-only folder) leaves `path` as it was and no temp file behind."""
    with atomic_write(path, suffix=".pt", fsync=True, makedirs=True) as tmp:
        torch.save({**state, CKPT_SCHEMA_VERSION: SCHEMA_VERSION}, tmp)


def load(path: str) -> dict[str, Any]:
    """The checkpoint at `path`; UnreadableCheckpoint if it holds none, A3CError if its schema is unknown."""
    if not os.path.isfile(path):
        raise UnreadableCheckpoint(path, "does not exist")
    if os.path.getsize(path) == 0:
        raise UnreadableCheckpoint(path, "is empty (0 bytes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise UnreadableCheckpoint(path, f"is unreadable or corrupt ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise UnreadableCheckpoint(path, "is not a ray-a3c checkpoint (no model weights)")
    version = schema_version(state, path)
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise A3CError(
            f"checkpoint '{path}' has schema version {version}; this ray-a3c reads versions "
            f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))} (a newer ray-a3c wrote it: upgrade to load it)"
        )
    if CKPT_MODEL not in state:
        raise UnreadableCheckpoint(path, "is not a ray-a3c checkpoint (no model weights)")
    problem = _type_problem(state)
    if problem:
        raise UnreadableCheckpoint(path, f"is malformed: {problem}")
    return state


def schema_version(state: dict, path: str) -> int:
    """The layout version a loaded checkpoint declares (none: LEGACY_SCHEMA_VERSION, written before versions)."""
    version = state.get(CKPT_SCHEMA_VERSION, LEGACY_SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise UnreadableCheckpoint(path, f"is malformed: '{CKPT_SCHEMA_VERSION}' must be an integer")
    return version


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


def _version_of(path: str) -> int:
    return int(CKPT_PATTERN.fullmatch(os.path.basename(path)).group(1))


def list_checkpoints(ckpt_dir: str) -> list[str]:
    """ckpt-<version>.pt files, oldest version first (never a temp file of a write in progress, nor best.pt)."""
    paths = [p for p in glob.glob(os.path.join(ckpt_dir, "ckpt-*.pt")) if CKPT_PATTERN.fullmatch(os.path.basename(p))]
    return sorted(paths, key=_version_of)


def load_newest(paths: list[str]) -> tuple[str, dict[str, Any]]:
    """The newest readable of `paths` (oldest first) -> (its path, its state). Each unreadable one after it is
    skipped with one warning line naming it, why, and the file used instead. A3CError, one line naming every
    file and why, when none is readable; an unknown schema version is never skipped (older code continuing,
    then pruning, a newer code's run would lose it)."""
    skipped: list[UnreadableCheckpoint] = []
    for path in reversed(paths):
        try:
            state = load(path)
        except UnreadableCheckpoint as exc:
            skipped.append(exc)
            continue
        for bad in skipped:
            log.warning(f"skipped checkpoint '{bad.path}': it {bad.reason}; using '{path}' instead")
        return path, state
    reasons = "; ".join(f"'{bad.path}' {bad.reason}" for bad in skipped)
    raise A3CError(f"no readable checkpoint: {reasons or 'none found'}")


def load_from_run(run_dir: str, which: str) -> tuple[str, dict[str, Any]]:
    """LATEST | BEST | a path -> (the file read, its state). LATEST: the newest readable ckpt-<version>.pt;
    BEST: best.pt, else (missing or unreadable) as LATEST. A file named by path that is bad is an error."""
    if which not in (LATEST, BEST):
        return which, load(which)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    candidates = list_checkpoints(ckpt_dir)
    best = os.path.join(ckpt_dir, BEST_FILE)
    if which == BEST and os.path.isfile(best):
        candidates.append(best)  # tried first
    if not candidates:
        raise A3CError(f"no checkpoint in '{ckpt_dir}'")
    return load_newest(candidates)


STALE_TMP_S = 3600.0  # a .tmp-* file this old is left over from a crash, not a write in progress


def save_versioned(state: dict, ckpt_dir: str, version: int, keep: int) -> str:
    """ckpt-<version>.pt, then the oldest pruned so that `keep` remain at or below `version`. Pruning runs only
    once the new file is complete (a failed write raises first), and files above `version` (one a resume
    skipped as unreadable) neither count nor go."""
    path = os.path.join(ckpt_dir, f"ckpt-{version}.pt")
    save_atomic(state, path)
    older = [p for p in list_checkpoints(ckpt_dir) if _version_of(p) <= version]
    for old in older[:-keep]:
        with contextlib.suppress(FileNotFoundError):
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


class WriteFailures:
    """Checkpoint writes that failed in a row (disk full, read-only folder): each kind (errno) is warned about
    once until a write succeeds again; the `limit`-th failure in a row makes `error()` the run's end."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_a_row = 0
        self.warned: set[int | None] = set()
        self.last: tuple[str, OSError] | None = None  # (where, what) of the latest failure

    def attempt(self, where: str, write: Callable[..., T], *args: Any) -> T | None:
        """write(*args) -> its result; None if it raised OSError, warned about once per errno. `where`: the file
        or folder written, for the messages."""
        try:
            result = write(*args)
        except OSError as exc:
            self._failed(where, exc)
            return None
        if self.in_a_row:
            log.warning(f"checkpoint written to '{where}' again after {self.in_a_row} failed write(s)")
        self.in_a_row, self.last = 0, None
        self.warned.clear()
        return result

    def _failed(self, where: str, exc: OSError) -> None:
        self.in_a_row += 1
        self.last = (where, exc)
        if exc.errno not in self.warned:
            self.warned.add(exc.errno)
            log.warning(
                f"checkpoint not written to '{where}': {_describe(exc)}; the earlier checkpoints are kept and "
                f"training goes on ({self.in_a_row} of at most {self.limit} failed writes in a row)"
            )

    @property
    def exhausted(self) -> bool:
        return self.in_a_row >= self.limit

    def error(self) -> A3CError:
        where, exc = self.last or ("?", None)
        return A3CError(
            f"no checkpoint could be written to '{where}' {self.in_a_row} times in a row "
            f"(run.max_checkpoint_failures {self.limit}): {_describe(exc)}; free space or make the folder "
            "writable, then continue with --resume"
        )


def _describe(exc: OSError | None) -> str:
    """'No space left on device (ENOSPC)': the failure in words, then its errno's name."""
    if exc is None:
        return "unknown error"
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else type(exc).__name__
    return f"{exc.strerror or exc} ({name})"
