"""What the network sees: an env's observation space described (`EnvSpaces`) and observations encoded for it.

Vectors and Discrete observations become float32 [obs_dim] (Discrete one-hot); an image stays uint8 [C, H, W]
(the CNN scales it); a Dict becomes one float32 vector, its entries side by side in key order (`ObsPart`
says where each lies), which the model splits again: one CNN per image entry, one MLP for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from ray_a3c.common.env.wrappers import image_plan
from ray_a3c.common.reporting.errors import A3CError


@dataclass(frozen=True)
class ObsPart:
    """One entry of a Dict observation inside the encoded vector: [offset, offset + size)."""

    key: str
    offset: int
    size: int
    image_shape: tuple | None = None  # (C, H, W) for an image entry, else None (a vector)
    discrete: int | None = None  # number of values of a Discrete entry (one-hot encoded)


@dataclass
class EnvSpaces:
    """What the model needs to know about an env."""

    obs_dim: int
    discrete_obs: int | None  # number of states when observations are Discrete (one-hot encoded)
    action_space: gym.Space
    image_shape: tuple | None = None  # (C, H, W) for uint8 image observations, kept as uint8
    # image channels that each carry one number: env.observe_variables in the first design's layout
    # (env.observe_variables_as_channels, kept for its checkpoints); a Dict entry of their own otherwise
    variable_channels: tuple = ()
    parts: tuple = ()  # ObsPart per entry of a Dict observation, in key order; () otherwise
    env_spaces: dict | None = None  # the env's own spaces as plain data (spaces_io), when built from an env

    @property
    def has_images(self) -> bool:
        return self.image_shape is not None or any(p.image_shape for p in self.parts)


# The most numbers an encoded observation may hold (64 MB as float32): Pong's 4 stacked colour frames hold 0.4M.
# Past it, a wrapper's or the frame stack's mistake would be found by running out of memory.
MAX_OBS_NUMBERS = 2**24


def describe_spaces(obs: gym.Space, act: gym.Space, variable_channels: tuple = ()) -> EnvSpaces:
    """What the model needs from the spaces (images already [C, H, W]: see wrappers.ImagesFirst);
    `variable_channels` (see envs.variable_channels) only for images."""
    spaces = _describe(obs, act, variable_channels)
    if spaces.obs_dim > MAX_OBS_NUMBERS:
        raise A3CError(
            f"observations of {spaces.obs_dim:,} numbers (a {type(obs).__name__} of shape {obs.shape}) are more "
            f"than a policy reads ({MAX_OBS_NUMBERS:,}); check env.frame_stack and env.wrappers"
        )
    return spaces


def _describe(obs: gym.Space, act: gym.Space, variable_channels: tuple) -> EnvSpaces:
    if not isinstance(act, (gym.spaces.Discrete, gym.spaces.Box)):
        raise A3CError(f"action space {act} is not supported (Discrete or Box)")
    if isinstance(obs, gym.spaces.Discrete):
        return EnvSpaces(int(obs.n), int(obs.n), act)
    if isinstance(obs, gym.spaces.Box) and obs.dtype == np.uint8 and len(obs.shape) == 3:
        return EnvSpaces(int(np.prod(obs.shape)), None, act, tuple(int(d) for d in obs.shape), tuple(variable_channels))
    if isinstance(obs, gym.spaces.Box):
        return EnvSpaces(int(np.prod(obs.shape)), None, act)
    if isinstance(obs, gym.spaces.Dict):
        parts = dict_parts(obs)
        return EnvSpaces(sum(p.size for p in parts), None, act, parts=parts)
    raise A3CError(f"observation space {obs} is not supported (Box, Discrete, or a Dict of them)")


def dict_parts(space: gym.spaces.Dict) -> tuple:
    """The parts of a Dict space (entries Box or Discrete), in key order."""
    parts, offset = [], 0
    for key, sub in space.spaces.items():
        if isinstance(sub, gym.spaces.Discrete):
            part = ObsPart(str(key), offset, int(sub.n), discrete=int(sub.n))
        elif isinstance(sub, gym.spaces.Box):
            image = image_plan(sub) is not None and len(sub.shape) == 3
            part = ObsPart(str(key), offset, int(np.prod(sub.shape)), tuple(sub.shape) if image else None)
        else:
            raise A3CError(f"observation entry '{key}': {sub} is not supported inside a Dict (Box or Discrete)")
        parts.append(part)
        offset += part.size
    if not parts:
        raise A3CError("a Dict observation space needs at least one entry")
    return tuple(parts)


def encode_obs(obs: Any, spaces: EnvSpaces) -> np.ndarray:
    """One observation -> what the network reads (float32 [obs_dim]; uint8 [C, H, W] for an image)."""
    return encode_batch(_batch_of_one(obs, spaces), spaces)[0]


def _batch_of_one(obs: Any, spaces: EnvSpaces) -> Any:
    if spaces.parts:
        return {p.key: np.asarray(obs[p.key])[None] for p in spaces.parts}
    return np.asarray(obs)[None]


def encode_batch(obs: Any, spaces: EnvSpaces) -> np.ndarray:
    """A vector env's observations -> float32 [N, obs_dim] (uint8 [N, C, H, W] for images)."""
    if spaces.parts:
        return np.concatenate([_encode_part(np.asarray(obs[p.key]), p) for p in spaces.parts], axis=1)
    if spaces.image_shape is not None:
        return np.asarray(obs, np.uint8)
    if spaces.discrete_obs is not None:
        return np.eye(spaces.obs_dim, dtype=np.float32)[np.asarray(obs, np.int64)]
    obs = np.asarray(obs, np.float32)
    return obs.reshape(obs.shape[0], -1)


def _encode_part(values: np.ndarray, part: ObsPart) -> np.ndarray:
    """[N, ...] values of one Dict entry -> float32 [N, part.size]."""
    if part.discrete is not None:
        return np.eye(part.discrete, dtype=np.float32)[values.astype(np.int64).reshape(-1)]
    return values.astype(np.float32).reshape(values.shape[0], part.size)
