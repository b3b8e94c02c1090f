"""gymnasium spaces as plain data (dicts of lists and numbers) and back, so a checkpoint can say what its policy
reads and returns without building the env (torch.load(weights_only=True) reads plain data)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ray_a3c.common.reporting.errors import A3CError


def space_to_data(space: gym.Space) -> dict:
    """Box, Discrete and Dict (of those) -> plain data; other spaces raise A3CError."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bound(space.low),
            "high": _bound(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": [[str(k), space_to_data(s)] for k, s in space.spaces.items()]}
    raise A3CError(f"space {space} cannot be stored (Box, Discrete or Dict)")


def _bound(values: np.ndarray) -> Any:
    """One number when every entry is the same (an image's 0 and 255), else the nested list."""
    flat = np.asarray(values).reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return float(flat[0])
    return np.asarray(values, np.float64).tolist()


def space_from_data(data: dict) -> gym.Space:
    kind = data.get("type")
    if kind == "Box":
        dtype = np.dtype(data["dtype"])
        return gym.spaces.Box(
            np.broadcast_to(np.asarray(data["low"], dtype), data["shape"]).copy(),
            np.broadcast_to(np.asarray(data["high"], dtype), data["shape"]).copy(),
            dtype=dtype,
        )
    if kind == "Discrete":
        return gym.spaces.Discrete(int(data["n"]), start=int(data["start"]))
    if kind == "Dict":
        return gym.spaces.Dict({key: space_from_data(sub) for key, sub in data["spaces"]})
    raise A3CError(f"not a stored space: {kind!r}")
