"""The chaos soak's hung env (`bench.chaos`): a training-only wrapper whose step never returns once the soak's
schedule has made a trigger file, in exactly one env of the whole run. Every env polls for the file (a stat at
most every `poll_s`, not per step); the first to rename it away (os.rename is atomic: one env wins) writes what
it is (seed, episode step, time, pid) beside it and blocks forever, as a simulator stuck in a call would. The
watchdog (actors/watchdog.py) gives its thread up after env.step_timeout_s and rebuilds the vector env, whose
fresh copies find no trigger left; a later hang of the schedule makes the trigger again."""

from __future__ import annotations

import glob
import json
import os
import threading
import time
from dataclasses import asdict, dataclass

import gymnasium as gym

CLAIM_SUFFIX = ".claim.json"  # <trigger>.<ns>-<pid> + this: what the env that took the trigger wrote (a HangClaim)


@dataclass(frozen=True)
class HangClaim:
    """The env that took the trigger: what the watchdog must name (seed, episode step) and when it hung."""

    seed: int | None  # the env's seed in its vector env's build (None: never seeded)
    episode_step: int  # the step of its episode that hangs, from 1 (the watchdog's numbering)
    hung_at: float  # wall clock (time.time) when the step began to hang
    pid: int  # the worker process


def read_claims(trigger: str) -> list[HangClaim]:
    """Every claim written for `trigger` so far, in the order the envs hung."""
    claims = []
    for path in glob.glob(glob.escape(trigger) + ".*" + CLAIM_SUFFIX):
        with open(path) as fh:
            claims.append(HangClaim(**json.load(fh)))
    return sorted(claims, key=lambda c: c.hung_at)


def pull_trigger(trigger: str) -> None:
    """Make the trigger file (atomically: no env sees it half made)."""
    tmp = f"{trigger}.tmp"
    with open(tmp, "w") as fh:
        fh.write(str(time.time()))
    os.replace(tmp, trigger)


class HangOnTrigger(gym.Wrapper):
    def __init__(self, env: gym.Env, trigger: str, poll_s: float = 0.5):
        super().__init__(env)
        self._trigger, self._poll_s = trigger, poll_s
        self._seed: int | None = None
        self._episode_step = 0
        self._next_poll = 0.0

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._seed = int(seed)
        self._episode_step = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self._episode_step += 1
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self._poll_s
            if self._claim():
                threading.Event().wait()  # never returns: the watchdog leaves this thread behind
        return self.env.step(action)

    def _claim(self) -> bool:
        taken = f"{self._trigger}.{time.time_ns()}-{os.getpid()}"
        try:
            os.rename(self._trigger, taken)
        except FileNotFoundError:
            return False  # no trigger, or another env took it first
        claim = HangClaim(self._seed, self._episode_step, time.time(), os.getpid())
        with open(taken + ".tmp", "w") as fh:
            json.dump(asdict(claim), fh)
        os.replace(taken + ".tmp", taken + CLAIM_SUFFIX)  # whole or absent: the soak reads it at any moment
        return True
