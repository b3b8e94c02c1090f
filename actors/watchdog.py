"""Hung envs caught where they happen: a worker's rollout (and its first reset) runs on a helper thread while the
worker waits, timing each vector env step and reset in it against env.step_timeout_s. One that does not return
is named (worker, env index, seed, episode step), its thread is left behind, the vector env is rebuilt from its
factories with fresh seeds and the rollout collected again; each env index may hang env.max_hang_restarts
times, the next hang raises EnvHangError, which ends the run. One handoff per rollout, not per step: a handoff
costs ~15 us idle and more across cores, which per step was 12-16% of a CartPole worker's time.

Which sub env hung is known where the sub envs run in this process (SyncVectorEnv): each is wrapped in a
MarkedEnv that writes its index into the shared StepMarkers around every call. Sub envs in other processes
(AsyncVectorEnv) or in C++ (a native vector env) write nothing here: the vector env is named as a whole (index
-1). A hang that holds the GIL (a busy loop in C) stops the waiting thread too: only cluster.worker_timeout_s
catches it. Plain Python, no Ray: VectorEnvRunner (actors/rollout.py) calls it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from ray_a3c.common.env.envs import make_vector_env
from ray_a3c.common.env.step_markers import WHOLE_VECTOR_ENV, StepMarkers
from ray_a3c.common.reporting.errors import EnvHangError
from ray_a3c.common.settings.config import Config
from ray_a3c.common.wire.packet import HangReport


def rebuild_seed(seed: int, build: int) -> int:
    """The base seed of a vector env's `build`-th rebuild (0: `seed` itself); env i gets it + i. Drawn from a
    SeedSequence of (seed, build), so rebuilds of one worker do not replay another worker's seeds."""
    if build == 0:
        return seed
    return int(np.random.SeedSequence([seed, build]).generate_state(1)[0] % 2**31)


class _Abandoned(Exception):
    """Raised in a helper thread whose hung env call returned after the watchdog gave it up: it touches nothing."""


class _Helper:
    """One daemon thread that runs the calls handed to it, one at a time (a queue handoff each way)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="env-watchdog", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            self._results.put(_outcome(call))
            del call  # an idle thread holds no reference to the vector env it stepped (it must be collectable)

    def submit(self, fn: Callable[[], Any]) -> None:
        self._calls.put(fn)

    def result(self, timeout_s: float) -> tuple[bool, Any]:
        """(True, the call's result) or (False, its exception); queue.Empty when none came within timeout_s."""
        return self._results.get(timeout=timeout_s)

    def stop(self) -> None:
        """The thread ends after its current call (at once when idle; a hung one ends if its call ever returns)."""
        self._calls.put(None)


def _outcome(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
        return False, exc


class EnvWatchdog:
    """Times a worker's vector env calls, names hangs and rebuilds the vector env. `rebuild(seed, markers)` builds
    one whose sub envs report to `markers` (`marked`) where they run in this process; `markers` are those of the
    first build (each rebuild gets fresh ones: a hung call that returns late must not mark the new build's).

    `run(fn, recover)` runs fn (a whole rollout: one handoff, not one per step) on the helper thread; inside it
    every vector env call is bracketed by `enter` and `leave` (a clock read, a lock: ~1 us), and the caller,
    waiting, times the call in progress. A call older than timeout_s is hung: its thread is given up (its
    `leave` raises `_Abandoned` should the call ever return) and `recover(seconds, in_reset)` runs in the caller
    (name the hang, rebuild), then fn runs again from the start on a fresh thread."""

    def __init__(
        self,
        rebuild: Callable[[int, StepMarkers | None], gym.vector.VectorEnv],
        seed: int,
        timeout_s: float,
        max_hang_restarts: int,
        worker_rank: int,
        markers: StepMarkers | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self._rebuild, self.base_seed, self.timeout_s = rebuild, seed, timeout_s
        self.max_hang_restarts, self.worker_rank, self.markers = max_hang_restarts, worker_rank, markers
        self.say = say or (lambda text: print(text, flush=True))
        self.seed, self.builds = seed, 0  # the current build's base seed, and how many rebuilds so far
        self.hangs_by_env: dict[int, int] = {}  # env index (-1: the vector env as a whole) -> hangs
        self._unsent: list[HangReport] = []
        self._helper = _Helper()
        self._lock = threading.Lock()  # `leave` against the caller giving the call up
        self._given_up: set[threading.Thread] = set()  # helper threads left in a hung call
        self._since: float | None = None  # monotonic start of the env call in progress on the helper thread
        self._in_reset = False  # ...and whether it is a reset

    def run(self, fn: Callable[[], Any], recover: Callable[[float, bool], None]) -> Any:
        """fn() run on the helper thread, its exception re-raised here; after a hung env call in it,
        `recover(seconds waited, the call was a reset)` (EnvHangError once over budget) and fn again."""
        while True:
            self._since = None
            self._helper.submit(fn)
            outcome, waited_s = self._wait()
            if outcome is not None:
                ok, value = outcome
                if not ok:
                    raise value
                return value
            recover(waited_s, self._in_reset)

    def _wait(self) -> tuple[tuple | None, float]:
        """(the call's outcome, 0) once it answers; (None, seconds) when an env call in it has run longer than
        timeout_s: its thread is given up and a fresh one serves the next call."""
        while True:
            since = self._since
            wait_s = self.timeout_s if since is None else since + self.timeout_s - time.monotonic()
            try:
                return self._helper.result(max(wait_s, 0.0)), 0.0
            except queue.Empty:
                pass
            with self._lock:  # decided while the helper cannot leave its env call
                since = self._since
                if since is not None and time.monotonic() - since >= self.timeout_s:
                    self._helper.stop()
                    self._given_up.add(self._helper.thread)
                    self._helper = _Helper()
                    return None, time.monotonic() - since

    def enter(self, in_reset: bool = False) -> None:
        """An env call starts on the helper thread."""
        self._in_reset, self._since = in_reset, time.monotonic()

    def leave(self) -> None:
        """The env call returned: raises _Abandoned in a thread the caller gave up meanwhile."""
        with self._lock:
            if threading.current_thread() in self._given_up:
                raise _Abandoned
            self._since = None

    def name_hang(self, num_envs: int, waited_s: float, episode_steps: np.ndarray | None) -> HangReport:
        """Count and report the hang of the call that just timed out; `episode_steps`: each env's steps in its
        episode before that call (None: the call was a reset). Raises EnvHangError once over budget."""
        index = self.markers.active if self.markers is not None else WHOLE_VECTOR_ENV
        if index == WHOLE_VECTOR_ENV:
            step = 0 if episode_steps is None else None
        else:
            step = 0 if episode_steps is None or self.markers.in_reset else int(episode_steps[index]) + 1
        self.hangs_by_env[index] = self.hangs_by_env.get(index, 0) + 1
        report = HangReport(
            worker_rank=self.worker_rank,
            env_index=index,
            seed=self.seed + max(index, 0),
            num_envs=num_envs,
            episode_step=step,
            waited_s=waited_s,
            hangs=self.hangs_by_env[index],
            max_hang_restarts=self.max_hang_restarts,
        )
        if report.over_budget():
            raise EnvHangError(f"{report.describe()}; {report.budget_text()}: see env.step_timeout_s")
        self.say(
            f"{report.describe()}; rebuilding its vector env ({report.budget_text()}): the rollout in flight is "
            "collected again, every env from a new episode"
        )
        self._unsent.append(report)
        return report

    def rebuild(self, hung: gym.vector.VectorEnv) -> gym.vector.VectorEnv:
        """A fresh vector env with the next rebuild's seeds; the hung one is closed on a thread of its own (a
        close that blocks on the hung env is left behind too)."""
        threading.Thread(target=_close_quietly, args=(hung,), name="env-watchdog-close", daemon=True).start()
        self.markers = StepMarkers() if self.markers is not None else None
        self.builds += 1
        self.seed = rebuild_seed(self.base_seed, self.builds)
        return self._rebuild(self.seed, self.markers)

    def take_reports(self) -> list[HangReport]:
        """The hangs named since the previous call (they travel in the next gradient packet)."""
        taken, self._unsent = self._unsent, []
        return taken

    def close(self) -> None:
        self._helper.stop()


def worker_vector_env(config: Config, rank: int, seed: int) -> tuple[gym.vector.VectorEnv, EnvWatchdog | None]:
    """Worker `rank`'s vector env (env i seeded seed + i) and the EnvWatchdog that times it (None with
    env.step_timeout_s 0: no thread, no markers)."""
    env = config.env

    def build(build_seed: int, markers: StepMarkers | None) -> gym.vector.VectorEnv:
        return make_vector_env(env, env.num_envs_per_worker, build_seed, rank, config.run.num_workers, markers)

    if not env.step_timeout_s:
        return build(seed, None), None
    markers = StepMarkers()
    watchdog = EnvWatchdog(build, seed, env.step_timeout_s, env.max_hang_restarts, rank, markers)
    return build(seed, markers), watchdog


def _close_quietly(venv: gym.vector.VectorEnv) -> None:
    """Close a vector env that hung: AsyncVectorEnv's processes are terminated rather than asked to finish."""
    try:
        try:
            venv.close(terminate=True)
        except TypeError:  # a vector env whose close takes no such option
            venv.close()
    except Exception:  # noqa: BLE001 - a hung env may fail any way while closing; it is gone either way
        pass
