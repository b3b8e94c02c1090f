"""OfflineEnv: a gymnasium env that replays a recorded dataset, one shard of episodes per worker."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from ray_a3c.common.data.dataset import Dataset, load_dataset
from ray_a3c.common.data.minari_io import is_minari, load_minari
from ray_a3c.common.storage.keys import INFO_LOG_PROB, INFO_LOGGED_ACTION


def open_dataset(ref: str) -> Dataset:
    """An .npz path, or `minari:<dataset_id or directory>` for a local Minari dataset."""
    if is_minari(ref):
        return load_minari(ref)
    return load_dataset(ref)


@functools.lru_cache(maxsize=4)
def cached_dataset(ref: str) -> Dataset:
    """One load per process, shared by the worker's env copies."""
    return open_dataset(ref)


def shard_episodes(num_episodes: int, num_shards: int) -> list[np.ndarray]:
    """Whole episodes split into `num_shards` contiguous windows (the snake-robot notebook's per-worker
    windows): disjoint, covering every episode, sizes differing by at most one."""
    return np.array_split(np.arange(num_episodes), num_shards)


class OfflineEnv(gym.Env):
    """Replays the episodes of one shard in order, cycling. Within a worker's shard, env copy `copy` of
    `num_copies` replays its own part (the copies split the shard: no episode is replayed by two copies of a
    worker while a copy has none); only when the shard has fewer episodes than copies do copies share a part,
    offset by one episode each. A seeded reset rewinds to the copy's first episode. The action passed to `step`
    is ignored: the
    logged one is what happened. `info["logged_action"]` (and `info["behaviour_log_prob"]` where recorded)
    says which action the log takes from the observation just returned, so the learner trains on it."""

    metadata = {"render_modes": []}

    def __init__(self, path: str, shard: int = 0, num_shards: int = 1, copy: int = 0, num_copies: int = 1):
        self.data = cached_dataset(path)
        self.observation_space = self.data.observation_space
        self.action_space = self.data.action_space
        bounds = self.data.episode_bounds()
        windows = shard_episodes(len(bounds), num_shards)
        if not len(windows[shard]):
            raise ValueError(f"shard {shard} of {num_shards} is empty: the dataset has {len(bounds)} episodes")
        parts = shard_episodes(len(windows[shard]), min(num_copies, len(windows[shard])))
        mine = windows[shard][parts[copy % len(parts)]]
        self.episodes = [bounds[i] for i in mine]
        self._start = (copy // len(parts)) % len(self.episodes)
        self._next_episode = self._start
        self._step: int | None = None
        self._end = 0

    def _info(self) -> dict[str, Any]:
        if self._step is None or self._step >= self._end:
            return {}
        info = {INFO_LOGGED_ACTION: self.data.actions[self._step]}
        if self.data.behaviour_log_probs is not None:
            info[INFO_LOG_PROB] = float(self.data.behaviour_log_probs[self._step])
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:  # a seeded reset is deterministic: it rewinds to this copy's first episode
            self._next_episode = self._start
        start, self._end = self.episodes[self._next_episode]
        self._next_episode = (self._next_episode + 1) % len(self.episodes)
        self._step = start
        return self.data.observations[start].copy(), self._info()

    def step(self, action: Any):
        if self._step is None or self._step >= self._end:
            raise RuntimeError("OfflineEnv.step called before reset or after the episode ended")
        i = self._step
        self._step += 1
        d = self.data
        return (
            d.next_observations[i].copy(),
            float(d.rewards[i]),
            bool(d.terminated[i]),
            bool(d.truncated[i]),
            self._info(),
        )
