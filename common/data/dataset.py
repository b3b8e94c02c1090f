"""Recorded experience as one `.npz` file (never pickled), with a versioned, validated schema.

Schema version 1, arrays indexed by step i (N steps, episodes stored contiguously, in order):
  observations       [N, *obs_shape]   float32 (Box) or int64 (Discrete)
  next_observations  [N, *obs_shape]   the observation after step i (the final one where the episode ended)
  actions            [N] int64 (Discrete) or [N, *act_shape] float32 (Box)
  rewards            [N] float32
  terminated         [N] bool
  truncated          [N] bool          exactly the last step of each episode is terminated or truncated
  episode_ids        [N] int64         constant within an episode
  behaviour_log_probs [N] float32      optional: log mu(a_i | s_i) of the policy that acted
  metadata           0-d str           JSON: schema_version, observation_space, action_space, source
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.storage.atomic import atomic_write

SCHEMA_VERSION = 1
REQUIRED = ("observations", "next_observations", "actions", "rewards", "terminated", "truncated", "episode_ids")
OPTIONAL = ("behaviour_log_probs",)


@dataclass
class Dataset:
    observations: np.ndarray
    next_observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_ids: np.ndarray
    observation_space: gym.Space
    action_space: gym.Space
    source: str = ""
    behaviour_log_probs: np.ndarray | None = None

    @property
    def num_steps(self) -> int:
        return len(self.rewards)

    def episode_bounds(self) -> list[tuple[int, int]]:
        """[start, end) step ranges of the episodes, in file order."""
        ends = np.flatnonzero(self.terminated | self.truncated) + 1
        starts = np.concatenate([[0], ends[:-1]])
        return list(zip(starts.tolist(), ends.tolist(), strict=False))


def space_to_json(space: gym.Space) -> dict:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "dtype": str(space.dtype),
        }
    raise A3CError(f"cannot store space {space} in a dataset (Box or Discrete)")


def space_from_json(data: Any) -> gym.Space:
    try:
        if data["type"] == "Discrete":
            return gym.spaces.Discrete(int(data["n"]))
        if data["type"] == "Box":
            return gym.spaces.Box(
                np.array(data["low"], data["dtype"]),
                np.array(data["high"], data["dtype"]),
                tuple(data["shape"]),
                dtype=data["dtype"],
            )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: a size of Infinity
        raise A3CError(f"dataset metadata has a malformed space ({exc})") from None
    raise A3CError(f"dataset metadata names an unsupported space type {data.get('type')!r}")


def save_dataset(
    path: str,
    observations: np.ndarray,
    next_observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    episode_ids: np.ndarray,
    observation_space: gym.Space,
    action_space: gym.Space,
    source: str = "",
    behaviour_log_probs: np.ndarray | None = None,
) -> Dataset:
    """Validate the arrays against the spaces and write them; the file never needs pickle to read."""
    ds = Dataset(
        np.asarray(observations),
        np.asarray(next_observations),
        np.asarray(actions),
        np.asarray(rewards, np.float32),
        np.asarray(terminated, bool),
        np.asarray(truncated, bool),
        np.asarray(episode_ids, np.int64),
        observation_space,
        action_space,
        source,
        None if behaviour_log_probs is None else np.asarray(behaviour_log_probs, np.float32),
    )
    validate_dataset(ds, path)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "observation_space": space_to_json(observation_space),
        "action_space": space_to_json(action_space),
        "source": source,
    }
    arrays = {name: getattr(ds, name) for name in REQUIRED}
    if ds.behaviour_log_probs is not None:
        arrays["behaviour_log_probs"] = ds.behaviour_log_probs
    # written beside the target, then renamed: an interrupted recording leaves no half file
    with atomic_write(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, metadata=np.array(json.dumps(meta)), **arrays)
    return ds


def load_dataset(path: str) -> Dataset:
    """Read and validate a dataset file; every defect is an A3CError naming the file and the fix."""
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise A3CError(f"dataset '{path}' does not exist") from None
    except UNREADABLE as exc:
        raise A3CError(f"dataset '{path}' is not a readable .npz file ({type(exc).__name__})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise A3CError(f"dataset '{path}' is a single .npy array, not an .npz archive")
    with archive:
        names = set(archive.files)
        missing = [n for n in REQUIRED + ("metadata",) if n not in names]
        if missing:
            raise A3CError(f"dataset '{path}' lacks the array(s) {', '.join(missing)}")
        arrays = {n: _read_array(archive, n, path) for n in REQUIRED + OPTIONAL + ("metadata",) if n in names}
    meta = _metadata(arrays.pop("metadata"), path)
    ds = Dataset(
        observation_space=space_from_json(meta["observation_space"]),
        action_space=space_from_json(meta["action_space"]),
        source=str(meta.get("source", "")),
        behaviour_log_probs=arrays.pop("behaviour_log_probs", None),
        **arrays,
    )
    validate_dataset(ds, path)
    return ds


# What reading a damaged archive raises: zipfile's and zlib's errors (a bad CRC, a cut-off stream), numpy's
# ValueError (a bad header), and NotImplementedError / RuntimeError for a member that zipfile cannot decode
# (an unknown compression method, an encrypted entry).
UNREADABLE = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError, RuntimeError)


def _read_array(archive: np.lib.npyio.NpzFile, name: str, path: str) -> np.ndarray:
    try:
        return archive[name]
    except UNREADABLE as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise A3CError(f"dataset '{path}' holds object arrays, which would need pickle; store numbers") from None
        raise A3CError(f"dataset '{path}': array '{name}' is damaged ({type(exc).__name__}); record it again") from None


def _metadata(raw: np.ndarray, path: str) -> dict:
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError:
        raise A3CError(f"dataset '{path}' has metadata that is not JSON") from None
    if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
        version = meta.get("schema_version") if isinstance(meta, dict) else None
        raise A3CError(f"dataset '{path}' has schema version {version!r}; this version reads {SCHEMA_VERSION}")
    for key in ("observation_space", "action_space"):
        if key not in meta:
            raise A3CError(f"dataset '{path}' metadata lacks '{key}'")
    return meta


# numpy dtype kinds each one-value-per-step column may hold: b bool, i/u integers, f floats
STEP_COLUMN_KINDS = {
    "rewards": "biuf",
    "terminated": "b",
    "truncated": "b",
    "episode_ids": "iu",
    "behaviour_log_probs": "biuf",
}
KIND_WORDS = {"biuf": "numbers", "b": "booleans", "iu": "integers"}


def validate_dataset(ds: Dataset, path: str) -> None:
    arrays = {name: getattr(ds, name) for name in REQUIRED + OPTIONAL if getattr(ds, name) is not None}
    _check_columns(arrays, path)
    n = len(ds.rewards)
    if n == 0:
        raise A3CError(f"dataset '{path}' holds no steps")
    obs_shape = tuple(ds.observation_space.shape or ())
    for name in ("observations", "next_observations"):
        if arrays[name].shape[1:] != obs_shape:
            raise A3CError(
                f"dataset '{path}': '{name}' rows have shape {arrays[name].shape[1:]}, "
                f"the metadata's observation space says {obs_shape}"
            )
    act_shape = tuple(ds.action_space.shape or ())
    if ds.actions.shape[1:] != act_shape:
        raise A3CError(
            f"dataset '{path}': 'actions' rows have shape {ds.actions.shape[1:]}, "
            f"the metadata's action space says {act_shape}"
        )
    for name, space in (("actions", ds.action_space), ("observations", ds.observation_space)):
        values = arrays[name]
        if isinstance(space, gym.spaces.Discrete) and (
            values.dtype.kind not in "iu" or values.min() < 0 or values.max() >= space.n
        ):
            raise A3CError(f"dataset '{path}': discrete {name} must be integers in [0, {space.n})")
    _check_episodes(ds, path)


def _check_columns(arrays: dict[str, np.ndarray], path: str) -> None:
    """Each array holds numbers of its column's kind, one row per step (as many as 'rewards'), all finite."""
    for name, arr in arrays.items():
        kinds = STEP_COLUMN_KINDS.get(name, "biuf")
        if arr.dtype == object:
            raise A3CError(f"dataset '{path}': '{name}' is an object array; store numbers")
        if arr.dtype.kind not in kinds:
            raise A3CError(f"dataset '{path}': '{name}' holds {arr.dtype}; store {KIND_WORDS[kinds]}")
        if arr.ndim == 0 or (name in STEP_COLUMN_KINDS and arr.ndim != 1):
            raise A3CError(f"dataset '{path}': '{name}' has shape {arr.shape}; it needs one row per step")
    n = len(arrays["rewards"])
    for name, arr in arrays.items():
        if len(arr) != n:
            raise A3CError(f"dataset '{path}': '{name}' has {len(arr)} rows, 'rewards' has {n}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr).reshape(len(arr), -1).all(axis=1))[0])
            raise A3CError(f"dataset '{path}': '{name}' holds NaN or inf (first at step {bad}); clean the data")


def _check_episodes(ds: Dataset, path: str) -> None:
    ends = ds.terminated | ds.truncated
    if not ends[-1]:
        raise A3CError(f"dataset '{path}': the last episode has no terminated or truncated step")
    for start, end in ds.episode_bounds():
        ids = ds.episode_ids[start:end]
        if (ids != ids[0]).any():
            raise A3CError(f"dataset '{path}': episode_ids change inside the episode at steps {start}..{end - 1}")
    firsts = [ds.episode_ids[s] for s, _ in ds.episode_bounds()]
    if len(set(firsts)) != len(firsts):
        raise A3CError(f"dataset '{path}': an episode id is used by more than one episode")
