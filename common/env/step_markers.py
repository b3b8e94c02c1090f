"""Which copy of a vector env is inside a step or reset now, for the env watchdog (actors/watchdog.py) to name a
hung one. Only copies running in this process can report here (SyncVectorEnv's); AsyncVectorEnv's run in their
own processes and write their own copy of the markers, so those stay at WHOLE_VECTOR_ENV."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

WHOLE_VECTOR_ENV = -1  # the env index of a hang whose sub env is out of reach


class StepMarkers:
    """Which sub env is inside a call now (-1: none seen), and whether that call is its reset."""

    __slots__ = ("active", "in_reset")

    def __init__(self) -> None:
        self.active = WHOLE_VECTOR_ENV
        self.in_reset = False


class MarkedEnv(gym.Wrapper):
    """Writes its index into `markers` for the length of each step and reset (two attribute writes a call)."""

    def __init__(self, env: gym.Env, markers: StepMarkers, index: int):
        super().__init__(env)
        self._markers, self._index = markers, index

    def step(self, action: Any):
        markers = self._markers
        markers.active = self._index
        try:
            return self.env.step(action)
        finally:
            markers.active = WHOLE_VECTOR_ENV

    def reset(self, **kwargs: Any):
        markers = self._markers
        markers.active, markers.in_reset = self._index, True
        try:
            return self.env.reset(**kwargs)
        finally:
            markers.active, markers.in_reset = WHOLE_VECTOR_ENV, False


def marked(factory: Callable[[], gym.Env], markers: StepMarkers, index: int) -> Callable[[], gym.Env]:
    """A sub env factory whose env reports its calls in `markers`."""

    def build() -> gym.Env:
        return MarkedEnv(factory(), markers, index)

    return build
