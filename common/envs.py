"""Environment construction (gymnasium ids or user classes) and a lockstep batch of env copies."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from common.config import EnvConfig
from common.errors import A3CError


def _import_env_class(spec: str) -> type:
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise A3CError(f"cannot import env module '{module_name}' ({exc})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise A3CError(f"module '{module_name}' has no class '{class_name}'")
    return cls


def make_env(cfg: EnvConfig) -> gym.Env:
    """One env from `cfg.id` (a gymnasium id or `pkg.module:Class`); bad ids raise A3CError."""
    kwargs = dict(cfg.kwargs)
    if ":" in cfg.id and "/" not in cfg.id.split(":")[0]:
        env = _import_env_class(cfg.id)(**kwargs)
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


@dataclass
class EnvSpaces:
    """What the model needs to know about an env."""

    obs_dim: int
    discrete_obs: Optional[int]  # number of states when observations are Discrete (one-hot encoded)
    action_space: gym.Space


def describe_spaces(env: gym.Env) -> EnvSpaces:
    obs, act = env.observation_space, env.action_space
    if isinstance(obs, gym.spaces.Discrete):
        spaces = EnvSpaces(int(obs.n), int(obs.n), act)
    elif isinstance(obs, gym.spaces.Box):
        spaces = EnvSpaces(int(np.prod(obs.shape)), None, act)
    else:
        raise A3CError(f"observation space {obs} is not supported (Box or Discrete)")
    if not isinstance(act, (gym.spaces.Discrete, gym.spaces.Box)):
        raise A3CError(f"action space {act} is not supported (Discrete or Box)")
    return spaces


def probe_spaces(cfg: EnvConfig) -> EnvSpaces:
    """Build one env to validate the id and read its spaces, then close it."""
    env = make_env(cfg)
    try:
        return describe_spaces(env)
    finally:
        env.close()


def encode_obs(obs: Any, spaces: EnvSpaces) -> np.ndarray:
    """Flatten an observation into float32 [obs_dim] (one-hot for Discrete observation spaces)."""
    if spaces.discrete_obs is not None:
        out = np.zeros(spaces.obs_dim, np.float32)
        out[int(obs)] = 1.0
        return out
    return np.asarray(obs, np.float32).reshape(-1)


@dataclass
class StepBatch:
    """One lockstep step of N envs. `final_obs[i]` is the episode's last observation where done[i]."""

    obs: np.ndarray  # [N, obs_dim] observation to act on next (already reset where done)
    rewards: np.ndarray  # [N] raw rewards
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool
    final_obs: dict = field(default_factory=dict)  # env index -> [obs_dim] last obs of a finished episode
    finished: list = field(default_factory=list)  # (return, length) of episodes that ended this step


class EnvBatch:
    """N copies of one env stepped in lockstep; an env that finishes is reset within the same step.

    Resetting immediately (rather than gymnasium's next-step autoreset) means every stored step is a real
    transition, and the final observation is kept so a truncated episode can bootstrap from V(s_final).
    """

    def __init__(self, cfg: EnvConfig, num_envs: int, seed: int):
        self.envs = [make_env(cfg) for _ in range(num_envs)]
        self.spaces = describe_spaces(self.envs[0])
        self._seed = seed
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, np.int64)
        self.obs = np.stack([self._reset(i, seed + 1000 * i) for i in range(num_envs)])

    def _reset(self, i: int, seed: Optional[int] = None) -> np.ndarray:
        obs, _ = self.envs[i].reset(seed=seed)
        self._returns[i], self._lengths[i] = 0.0, 0
        return encode_obs(obs, self.spaces)

    def step(self, actions: np.ndarray) -> StepBatch:
        n = len(self.envs)
        rewards = np.zeros(n, np.float32)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        batch = StepBatch(self.obs, rewards, terminated, truncated)
        next_obs = np.empty_like(self.obs)
        for i, env in enumerate(self.envs):
            obs, reward, term, trunc, _ = env.step(actions[i])
            rewards[i], terminated[i], truncated[i] = reward, term, trunc
            self._returns[i] += reward
            self._lengths[i] += 1
            next_obs[i] = encode_obs(obs, self.spaces)
            if term or trunc:
                batch.final_obs[i] = next_obs[i].copy()
                batch.finished.append((float(self._returns[i]), int(self._lengths[i])))
                next_obs[i] = self._reset(i)
        self.obs = batch.obs = next_obs
        return batch

    def close(self) -> None:
        for env in self.envs:
            env.close()
