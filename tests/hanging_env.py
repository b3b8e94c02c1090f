"""An env that hangs on a chosen step, for the env watchdog's tests (used as `tests.hanging_env:HangingEnv`)."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np


class HangingEnv(gym.Env):
    """Episodes of `episode_length` steps (reward 1 a step). An env first reset with a seed in `hang_seeds` (None:
    every seed) sleeps `hang_s` on step `hang_at_step` of its first episode, or in its first reset with
    `hang_at_step` 0: as a simulator stuck in a call that never returns would."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(
        self, hang_at_step: int = 3, hang_seeds: list | None = None, hang_s: float = 3600.0, episode_length: int = 20
    ):
        self.hang_at_step, self.hang_seeds, self.hang_s = hang_at_step, hang_seeds, hang_s
        self.episode_length = episode_length
        self._hangs: bool | None = None  # decided at the first seeded reset
        self._steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self._hangs is None and seed is not None:
            self._hangs = self.hang_seeds is None or seed in self.hang_seeds
            if self._hangs and self.hang_at_step == 0:
                time.sleep(self.hang_s)
        self._steps = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self._steps += 1
        if self._hangs and self._steps == self.hang_at_step:
            self._hangs = False  # a copy hangs once: with a short hang_s it is abandoned by then, not stepped on
            time.sleep(self.hang_s)
        obs = np.full(2, self._steps / self.episode_length, np.float32)
        return obs, 1.0, self._steps >= self.episode_length, False, {}
