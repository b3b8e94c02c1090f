"""Small games the project was never tuned for, seen only as pixels: a user's own envs in the tests.

Importing this module registers `PixelCatch-v0` and `DictCatch-v0` (used as `tests.pixel_games:PixelCatch-v0`,
the `module:EnvId` form); the classes work as `tests.pixel_games:PixelCatch` too.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SIZE = 12  # the frame is SIZE x SIZE RGB; the paddle is 3 cells wide on the bottom row


class PixelCatch(gym.Env):
    """A ball falls from a random column of the top row, one row a step; the paddle moves left, stays or moves
    right. Catching it pays `catch_reward`, missing it -1. A game has `lives` balls (info["lives"] counts those
    left): 1 by default. Optimal play catches every ball (the paddle can always reach it); random play mostly
    misses."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, lives: int = 1, catch_reward: float = 1.0, render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.lives, self.catch_reward, self.render_mode = lives, catch_reward, render_mode
        self._left = self._ball_row = self._ball_col = self._lives_left = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._left, self._lives_left = SIZE // 2 - 1, self.lives
        self._drop()
        return self._frame(), {"lives": self._lives_left}

    def _drop(self) -> None:
        self._ball_row, self._ball_col = 0, int(self.np_random.integers(SIZE))

    def step(self, action):
        self._left = int(np.clip(self._left + int(action) - 1, 0, SIZE - 3))
        self._ball_row += 1
        reward, terminated = 0.0, False
        if self._ball_row == SIZE - 1:
            caught = self._left <= self._ball_col < self._left + 3
            reward = self.catch_reward if caught else -1.0
            self._lives_left -= 1
            terminated = self._lives_left == 0
            if not terminated:
                self._drop()
        return self._frame(), reward, terminated, False, {"lives": self._lives_left}

    def _frame(self) -> np.ndarray:
        frame = np.zeros((SIZE, SIZE, 3), np.uint8)
        frame[self._ball_row, self._ball_col] = (255, 64, 0)
        frame[SIZE - 1, self._left : self._left + 3] = (0, 128, 255)
        return frame

    def render(self):
        return np.kron(self._frame(), np.ones((8, 8, 1), np.uint8))


class DictCatch(PixelCatch):
    """PixelCatch seen as a camera image plus numbers: {"camera": the frame, "paddle": [left edge / SIZE],
    "lives": lives left (Discrete)}."""

    def __init__(self, lives: int = 1, catch_reward: float = 1.0, render_mode: str | None = None):
        super().__init__(lives, catch_reward, render_mode)
        self.observation_space = gym.spaces.Dict(
            {
                "camera": gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8),
                "paddle": gym.spaces.Box(0.0, 1.0, (1,), np.float32),
                "lives": gym.spaces.Discrete(lives + 1),
            }
        )

    def _frame(self):
        return {
            "camera": super()._frame(),
            "paddle": np.array([self._left / SIZE], np.float32),
            "lives": self._lives_left,
        }

    def render(self):
        return np.kron(super()._frame(), np.ones((8, 8, 1), np.uint8))


gym.register("PixelCatch-v0", entry_point="tests.pixel_games:PixelCatch", max_episode_steps=200)
gym.register("DictCatch-v0", entry_point="tests.pixel_games:DictCatch", max_episode_steps=200)
