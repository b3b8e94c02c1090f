"""`env.wrappers`: one ordered pipeline of gymnasium wrappers in front of every env a run builds (workers,
evaluator, recorder, `load_policy`), and the image-layout rule that hands the CNN [C, H, W] frames.

An entry is a name (a class of `gymnasium.wrappers`, one of ours in `OWN_WRAPPERS`, or `module:Class`) given as
`Name`, `{Name: {kwargs}}` or `{wrapper: Name, kwargs: {...}, training_only: bool}`. A wrapper that changes
rewards or episode ends is training-only (`TRAINING_ONLY`, or `training_only: true`): evaluations leave it
out, so they score the game's own return over whole games.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from ray_a3c.common.env.env_ids import import_module, missing_package_hint
from ray_a3c.common.reporting.errors import A3CError


class LifeLossEnd(gym.Wrapper):
    """Losing a life ends the episode for learning (the A3C paper's Atari recipe); the game itself goes on:
    the reset after a lost life only reads the current frame (one no-op step), and only a real game over
    resets the game. Reads `info["lives"]` (ALE and any env that reports lives)."""

    def __init__(self, env: gym.Env, noop_action: int = 0):
        super().__init__(env)
        self._noop, self._lives, self._game_over = noop_action, 0, True

    def reset(self, **kwargs):
        if self._game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(self._noop)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self._lives, self._game_over = int(info.get("lives", 0)), False
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = int(info.get("lives", 0))
        life_lost = 0 < lives < self._lives
        self._lives = lives
        return obs, reward, terminated or life_lost, truncated, info


class FireReset(gym.Wrapper):
    """After every reset (a lost life's too, behind LifeLossEnd) press FIRE once, for games that wait for it to
    serve (Breakout): a policy that never learnt to press it would stall the game to its time limit. A no-op for
    envs whose action meanings have no FIRE."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = getattr(env.unwrapped, "get_action_meanings", lambda: [])()
        self._fire = meanings.index("FIRE") if "FIRE" in meanings else None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self._fire is None:
            return obs, info
        obs, _, terminated, truncated, info = self.env.step(self._fire)
        if terminated or truncated:  # rare: the serve ended the episode; start over without firing again
            obs, info = self.env.reset(**kwargs)
        return obs, info


class GameStatistics(gym.Wrapper):
    """Innermost wrapper: when the game itself ends, `info` carries its own return and length
    (`GAME_RETURN`, `GAME_LENGTH`), whatever training-only wrappers (clipped rewards, lives as episodes) make
    of it outside. Training statistics are whole games, as evaluations are."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._return, self._length = 0.0, 0

    def reset(self, **kwargs):
        self._return, self._length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._length += 1
        if terminated or truncated:
            info = {**info, GAME_RETURN: self._return, GAME_LENGTH: self._length}
        return obs, reward, terminated, truncated, info


GAME_RETURN, GAME_LENGTH = "game_return", "game_length"  # info keys set by GameStatistics
OWN_WRAPPERS = {"LifeLossEnd": LifeLossEnd, "FireReset": FireReset}
# gymnasium and own wrappers that change rewards or episode ends: never in an evaluation
TRAINING_ONLY = frozenset({"ClipReward", "TransformReward", "NormalizeReward", "LifeLossEnd"})


@dataclass(frozen=True)
class WrapperSpec:
    """One parsed `env.wrappers` entry."""

    name: str
    kwargs: dict = field(default_factory=dict)
    training_only: bool = False


def parse_wrappers(entries: list) -> list[WrapperSpec]:
    """`env.wrappers` -> specs; malformed entries raise A3CError (nothing is imported)."""
    return [_parse_entry(entry, i) for i, entry in enumerate(entries)]


def _parse_entry(entry: Any, index: int) -> WrapperSpec:
    where = f"env.wrappers[{index}]"
    if isinstance(entry, str):
        name, kwargs, training_only = entry, {}, None
    elif isinstance(entry, dict) and "wrapper" in entry:
        unknown = set(entry) - {"wrapper", "kwargs", "training_only"}
        if unknown:
            raise A3CError(f"{where}: unknown keys {sorted(unknown)} (wrapper, kwargs, training_only)")
        name, kwargs, training_only = entry["wrapper"], entry.get("kwargs") or {}, entry.get("training_only")
    elif isinstance(entry, dict) and len(entry) == 1:
        (name, kwargs), training_only = next(iter(entry.items())), None
        kwargs = kwargs or {}
    else:
        raise A3CError(
            f"{where} must be a name, {{Name: {{kwargs}}}} or {{wrapper: Name, kwargs: ..., "
            f"training_only: ...}}, got {entry!r}"
        )
    if not isinstance(name, str) or not name:
        raise A3CError(f"{where}: the wrapper's name must be a string, got {name!r}")
    if not isinstance(kwargs, dict):
        raise A3CError(f"{where} ({name}): kwargs must be a mapping, got {kwargs!r}")
    if training_only is not None and not isinstance(training_only, bool):
        raise A3CError(f"{where} ({name}): training_only must be true or false, got {training_only!r}")
    if name == "AtariPreprocessing" and kwargs.get("terminal_on_life_loss"):
        raise A3CError(
            f"{where}: AtariPreprocessing's terminal_on_life_loss would end evaluation games at a "
            "lost life too; add the training-only LifeLossEnd wrapper instead"
        )
    short = name.rpartition(":")[2]
    return WrapperSpec(name, dict(kwargs), short in TRAINING_ONLY if training_only is None else training_only)


def wrapper_class(name: str) -> type:
    """The class an entry names; A3CError when there is none or it is not a gymnasium wrapper."""
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        cls = getattr(import_module(module_name, "wrapper"), class_name, None)
    else:
        cls = OWN_WRAPPERS.get(name) or getattr(gym.wrappers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, gym.Wrapper)):
        raise A3CError(
            f"env.wrappers: '{name}' is not a gymnasium wrapper (a class of gymnasium.wrappers, "
            f"{', '.join(OWN_WRAPPERS)}, or module:Class of a gymnasium.Wrapper subclass)"
        )
    return cls


def apply_wrappers(env: gym.Env, specs: list[WrapperSpec], training: bool) -> gym.Env:
    """Wrap `env` in order; training-only wrappers only when `training`."""
    for spec in specs:
        if spec.training_only and not training:
            continue
        try:
            env = wrapper_class(spec.name)(env, **spec.kwargs)
        except A3CError:
            raise
        except (gym.error.DependencyNotInstalled, ImportError) as exc:
            env.close()
            raise A3CError(f"env.wrappers: {spec.name} needs an extra package: {missing_package_hint(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - any failure of a wrapper is reported the same way
            env.close()
            raise A3CError(
                f"env.wrappers: {spec.name}({_kwargs_text(spec.kwargs)}) failed: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            ) from None
    return env


def _kwargs_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def chw_plan(shape: tuple) -> tuple[tuple, tuple] | None:
    """How a uint8 observation of `shape` becomes one [C, H, W] image: (axis permutation, [C, H, W]), or None
    when it is not an image. (H, W): one channel; (H, W, C) with C of 1, 3 or 4: channels last; (C, H, W)
    as is; (K, H, W, C) and (K, C, H, W) (stacked frames): the K frames' channels side by side."""
    big = 8  # the smallest height and width taken for a picture; smaller 2-D arrays are boards of numbers
    if len(shape) == 2 and min(shape) >= big:
        return (0, 1), (1, *shape)
    if len(shape) == 3:
        if shape[2] in (1, 3, 4) and shape[0] > 4 and shape[1] > 4:
            return (2, 0, 1), (shape[2], shape[0], shape[1])
        if min(shape[1:]) >= big:
            return (0, 1, 2), tuple(shape)
    if len(shape) == 4:
        if shape[3] in (1, 3, 4) and shape[1] > 4 and shape[2] > 4:
            return (0, 3, 1, 2), (shape[0] * shape[3], shape[1], shape[2])
        if min(shape[2:]) >= big:
            return (0, 1, 2, 3), (shape[0] * shape[1], shape[2], shape[3])
    return None


def image_plan(space: gym.Space) -> tuple[tuple, tuple] | None:
    """`chw_plan` of a uint8 Box; None for anything else."""
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8:
        return chw_plan(tuple(space.shape))
    return None


def to_chw(obs: Any, plan: tuple, batch_dims: int = 0) -> Any:
    """Apply a `chw_plan` to a numpy array or torch tensor with `batch_dims` leading batch axes."""
    axes, out = plan
    lead = tuple(range(batch_dims))
    order = lead + tuple(a + batch_dims for a in axes)
    moved = obs.transpose(order) if isinstance(obs, np.ndarray) else obs.permute(order)
    return moved.reshape(tuple(obs.shape[:batch_dims]) + tuple(out))


class ImagesFirst(gym.ObservationWrapper):
    """Image observations (alone, or entries of a Dict) as uint8 [C, H, W]; everything else unchanged."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict):
            self.plans = {k: image_plan(s) for k, s in space.spaces.items()}
        else:
            self.plans = {None: image_plan(space)}
        self.observation_space = images_first_space(space)

    def observation(self, obs):
        if None in self.plans:
            plan = self.plans[None]
            return obs if plan is None else np.ascontiguousarray(to_chw(np.asarray(obs), plan))
        return {
            k: v if self.plans[k] is None else np.ascontiguousarray(to_chw(np.asarray(v), self.plans[k]))
            for k, v in obs.items()
        }


def images_first_space(space: gym.Space) -> gym.Space:
    """The space `ImagesFirst` gives for `space`: images (alone or Dict entries) as uint8 [C, H, W]."""
    if isinstance(space, gym.spaces.Dict):
        return gym.spaces.Dict({k: images_first_space(s) for k, s in space.spaces.items()})
    plan = image_plan(space)
    return space if plan is None else gym.spaces.Box(0, 255, plan[1], np.uint8)


def needs_layout(space: gym.Space) -> bool:
    """True when `ImagesFirst` changes this space."""
    if isinstance(space, gym.spaces.Dict):
        return any(image_plan(s) is not None and image_plan(s)[1] != s.shape for s in space.spaces.values())
    plan = image_plan(space)
    return plan is not None and plan[1] != space.shape
