"""Environment construction (gymnasium ids or user classes) and a lockstep batch of env copies."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from ray_a3c.common.config import EnvConfig
from ray_a3c.common.errors import A3CError


def _import_env_class(spec: str) -> type:
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise A3CError(f"cannot import env module '{module_name}' ({exc})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise A3CError(f"module '{module_name}' has no class '{class_name}'")
    # A run dir's config must not be able to call arbitrary code (`os:system`): only env classes are built.
    if not (isinstance(cls, type) and issubclass(cls, gym.Env)):
        raise A3CError(f"'{spec}' is not a gymnasium.Env subclass; env.id names an env class (or a gymnasium id)")
    return cls


def _construct(what: str, build, **kwargs) -> gym.Env:
    """Call an env constructor; its failure becomes one clear error naming the env."""
    try:
        return build(**kwargs)
    except A3CError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error of the user's env is reported the same way
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise A3CError(f"env '{what}' failed to start: {type(exc).__name__}: {message}") from None


def make_env(cfg: EnvConfig, render_mode: Optional[str] = None) -> gym.Env:
    """One env from `cfg.id` (a gymnasium id or `pkg.module:Class`); bad ids raise A3CError."""
    kwargs = dict(cfg.kwargs)
    if render_mode:
        kwargs["render_mode"] = render_mode
    if cfg.id.startswith("vizdoom:"):
        return _stack_frames(_make_vizdoom(cfg, kwargs), cfg.frame_stack)
    if ":" in cfg.id and "/" not in cfg.id.split(":")[0]:
        env = _construct(cfg.id, _import_env_class(cfg.id), **kwargs)
        if cfg.max_episode_steps:
            env = gym.wrappers.TimeLimit(env, cfg.max_episode_steps)
        return env
    try:
        gym.spec(cfg.id)
    except gym.error.Error as exc:
        raise A3CError(f"unknown env id '{cfg.id}': {exc}".rstrip(".") + " (see gymnasium.pprint_registry())") from None
    if cfg.max_episode_steps:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    try:
        return gym.make(cfg.id, **kwargs)
    except (gym.error.DependencyNotInstalled, ImportError) as exc:
        raise A3CError(f"env '{cfg.id}' needs an extra package: {exc}") from None
    except TypeError as exc:
        raise A3CError(f"env '{cfg.id}' rejected env.kwargs: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise A3CError(f"env '{cfg.id}' failed to start: {type(exc).__name__}: {exc}") from None


def scoring_env_config(cfg: EnvConfig) -> EnvConfig:
    """The env as evaluations score it: the task's own reward, without training-only shaping."""
    return replace(cfg, medkit_bonus=0.0, variable_rewards={})


def _make_vizdoom(cfg: EnvConfig, kwargs: dict) -> gym.Env:
    try:
        from ray_a3c.common.vizdoom_env import VizdoomEnv
    except ImportError as exc:
        raise A3CError(f"ViZDoom envs need the vizdoom package: pip install 'ray-a3c[doom]' ({exc})") from None
    if cfg.medkit_bonus:
        kwargs["health_bonus"] = cfg.medkit_bonus
    if cfg.variable_rewards:
        kwargs["variable_rewards"] = dict(cfg.variable_rewards)
    if cfg.observe_variables:
        kwargs["observe_variables"] = dict(cfg.observe_variables)
    kwargs.setdefault("screen_size", tuple(cfg.screen_size))
    env: gym.Env = VizdoomEnv(cfg.id.removeprefix("vizdoom:"), frame_skip=cfg.frame_skip, **kwargs)
    if cfg.max_episode_steps:
        env = gym.wrappers.TimeLimit(env, cfg.max_episode_steps)
    return env


def _stack_frames(env: gym.Env, k: int) -> gym.Env:
    """The last k frames [k, C, H, W] as k*C channels."""
    if k == 1:
        return env
    c, h, w = env.observation_space.shape
    env = gym.wrappers.FrameStackObservation(env, k)
    return gym.wrappers.ReshapeObservation(env, (k * c, h, w))


@dataclass
class EnvSpaces:
    """What the model needs to know about an env."""

    obs_dim: int
    discrete_obs: Optional[int]  # number of states when observations are Discrete (one-hot encoded)
    action_space: gym.Space
    image_shape: Optional[tuple] = None  # (C, H, W) for uint8 image observations, kept as uint8
    scalar_channels: tuple = ()  # image channels that each carry one number (env.observe_variables)


def scalar_channels(cfg: EnvConfig) -> tuple:
    """The channels of a ViZDoom observation that carry env.observe_variables: after each stacked frame's
    picture, one per variable."""
    per_frame = 1 + len(cfg.observe_variables) if cfg.id.startswith("vizdoom:") else 1
    return tuple(f * per_frame + 1 + v for f in range(cfg.frame_stack) for v in range(per_frame - 1))


def describe_spaces(obs: gym.Space, act: gym.Space, scalars: tuple = ()) -> EnvSpaces:
    """What the model needs from the spaces; `scalars` (see `scalar_channels`) only for images."""
    if isinstance(obs, gym.spaces.Discrete):
        spaces = EnvSpaces(int(obs.n), int(obs.n), act)
    elif isinstance(obs, gym.spaces.Box) and obs.dtype == np.uint8 and len(obs.shape) == 3:
        spaces = EnvSpaces(int(np.prod(obs.shape)), None, act, tuple(int(d) for d in obs.shape), tuple(scalars))
    elif isinstance(obs, gym.spaces.Box):
        spaces = EnvSpaces(int(np.prod(obs.shape)), None, act)
    else:
        raise A3CError(f"observation space {obs} is not supported (Box or Discrete)")
    if not isinstance(act, (gym.spaces.Discrete, gym.spaces.Box)):
        raise A3CError(f"action space {act} is not supported (Discrete or Box)")
    return spaces


def make_policy_env(cfg: EnvConfig, render_mode: Optional[str] = None) -> gym.Env:
    """One env as the policy sees it: `make_env` plus action rescaling when configured."""
    env = make_env(cfg, render_mode)
    if channels_last(env.observation_space):
        env = _ChannelsFirst(env)
    if cfg.rescale_actions and isinstance(env.action_space, gym.spaces.Box):
        space = env.action_space
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            env.close()
            raise A3CError(f"env.rescale_actions needs finite action bounds; '{cfg.id}' has {space}: "
                           "set env.rescale_actions=false")
        ones = np.ones(space.shape, np.float32)  # float32 bounds: no precision-loss warnings
        env = gym.wrappers.RescaleAction(env, -ones, ones)
    return env


def channels_last(space: gym.Space) -> bool:
    """uint8 [H, W, C] images (C of 1, 3 or 4, smaller than H and W): the CNN wants [C, H, W]."""
    return (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[2] in (1, 3, 4) and space.shape[0] > 4 and space.shape[1] > 4)


class _ChannelsFirst(gym.ObservationWrapper):
    """[H, W, C] image observations -> [C, H, W]."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (c, h, w), np.uint8)

    def observation(self, obs):
        return np.ascontiguousarray(np.transpose(obs, (2, 0, 1)))


def probe_spaces(cfg: EnvConfig) -> EnvSpaces:
    """Build one env to validate the id and read its spaces (as the policy sees them), then close it.
    With a dataset, its file is validated too and its spaces must agree with the live env's."""
    if cfg.dataset:
        from ray_a3c.common.offline import cached_dataset

        data = cached_dataset(cfg.dataset)
        spaces = describe_spaces(data.observation_space, data.action_space, scalar_channels(cfg))
        if cfg.id:
            live = _probe_live(cfg)
            if (live.obs_dim, str(live.action_space)) != (spaces.obs_dim, str(spaces.action_space)):
                raise A3CError(f"dataset '{cfg.dataset}' spaces ({data.observation_space}, {data.action_space}) "
                               f"differ from env '{cfg.id}' ({live.action_space}); fix env.id or the dataset")
        return spaces
    return _probe_live(cfg)


def _probe_live(cfg: EnvConfig) -> EnvSpaces:
    env = make_policy_env(cfg)
    try:
        return describe_spaces(env.observation_space, env.action_space, scalar_channels(cfg))
    finally:
        env.close()


def encode_obs(obs: Any, spaces: EnvSpaces) -> np.ndarray:
    """Flatten an observation into float32 [obs_dim] (one-hot for Discrete observation spaces); images stay
    uint8 [C, H, W] (the network scales them)."""
    if spaces.image_shape is not None:
        return np.asarray(obs, np.uint8)
    if spaces.discrete_obs is not None:
        out = np.zeros(spaces.obs_dim, np.float32)
        out[int(obs)] = 1.0
        return out
    return np.asarray(obs, np.float32).reshape(-1)


class RandomWarmup(gym.Wrapper):
    """On the first reset only, take `steps` random actions (resetting on episode ends) so that the envs
    of a vector env start at different points of their episodes."""

    def __init__(self, env: gym.Env, steps: int, seed: int):
        super().__init__(env)
        self._steps = steps
        self._seed = seed

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        steps, self._steps = self._steps, 0
        self.env.action_space.seed(self._seed)
        for _ in range(steps):
            obs, _, term, trunc, info = self.env.step(self.env.action_space.sample())
            if term or trunc:
                obs, info = self.env.reset()
        return obs, info


def _env_factory(cfg: EnvConfig, warmup: int, seed: int):
    def build() -> gym.Env:
        env = make_policy_env(cfg)
        return RandomWarmup(env, warmup, seed) if warmup else env
    return build


def _offline_factory(cfg: EnvConfig, shard: int, num_shards: int, copy: int, num_copies: int):
    def build() -> gym.Env:
        from ray_a3c.common.offline import OfflineEnv

        return OfflineEnv(cfg.dataset, shard, num_shards, copy, num_copies)
    return build


def make_vector_env(cfg: EnvConfig, num_envs: int, seed: int, shard: int = 0,
                    num_shards: int = 1) -> gym.vector.VectorEnv:
    """gymnasium vector env of `num_envs` copies, autoreset on the NEXT step (gymnasium 1.x default).

    Env i is seeded with seed + i and, with `warmup_steps`, first takes a random number of random steps.
    With `cfg.dataset` the copies replay shard `shard` of `num_shards` of the recorded episodes instead,
    each copy its own part of that shard (see OfflineEnv).
    """
    rng = np.random.default_rng(seed)
    warmups = rng.integers(0, cfg.warmup_steps + 1, num_envs) if cfg.warmup_steps else np.zeros(num_envs, int)
    if cfg.dataset:
        fns = [_offline_factory(cfg, shard, num_shards, i, num_envs) for i in range(num_envs)]
    else:
        fns = [_env_factory(cfg, int(w), seed + i) for i, w in enumerate(warmups)]
    if cfg.vector_mode == "async":
        return gym.vector.AsyncVectorEnv(fns, context="spawn",
                                         autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


def encode_batch(obs: Any, spaces: EnvSpaces) -> np.ndarray:
    """A vector env's observations -> float32 [N, obs_dim] (uint8 [N, C, H, W] for images)."""
    if spaces.image_shape is not None:
        return np.asarray(obs, np.uint8)
    if spaces.discrete_obs is not None:
        return np.eye(spaces.obs_dim, dtype=np.float32)[np.asarray(obs, np.int64)]
    obs = np.asarray(obs, np.float32)
    return obs.reshape(obs.shape[0], -1)
