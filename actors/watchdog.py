"""Hung envs caught where they happen: a vector env's step or reset runs on a helper thread while the caller waits
for it at most env.step_timeout_s. One that does not return is named (worker, env index, seed, episode step), its
thread is left behind, and the vector env is rebuilt from its factories with fresh seeds; each env index may
hang env.max_hang_restarts times, the next hang raises EnvHangError, which ends the run.

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

from ray_a3c.common.config import Config
from ray_a3c.common.envs import make_vector_env
from ray_a3c.common.errors import EnvHangError
from ray_a3c.common.packet import HangReport
from ray_a3c.common.step_markers import WHOLE_VECTOR_ENV, StepMarkers


def rebuild_seed(seed: int, build: int) -> int:
    """The base seed of a vector env's `build`-th rebuild (0: `seed` itself); env i gets it + i. Drawn from a
    SeedSequence of (seed, build), so rebuilds of one worker do not replay another worker's seeds."""
    if build == 0:
        return seed
    return int(np.random.SeedSequence([seed, build]).generate_state(1)[0] % 2**31)


class _Helper:
    """One daemon thread that runs the calls handed to it, one at a time (a queue handoff each way)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="env-watchdog", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            self._results.put(_outcome(*call))
            del call  # an idle thread holds no reference to the vector env it stepped (it must be collectable)

    def call(self, fn: Callable, args: tuple, kwargs: dict, timeout_s: float) -> Any:
        """fn's result; its exception re-raised; queue.Empty when it has not returned after timeout_s."""
        self._calls.put((fn, args, kwargs))
        ok, value = self._results.get(timeout=timeout_s)
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        """The thread ends after its current call (at once when idle; a hung one ends if its call ever returns)."""
        self._calls.put(None)


def _outcome(fn: Callable, args: tuple, kwargs: dict) -> tuple[bool, Any]:
    try:
        return True, fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
        return False, exc


class EnvWatchdog:
    """Times a worker's vector env calls, names hangs and rebuilds the vector env. `rebuild(seed, markers)` builds
    one whose sub envs report to `markers` (`marked`) where they run in this process; `markers` are those of the
    first build (each rebuild gets fresh ones: a hung call that returns late must not mark the new build's)."""

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

    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """(True, fn(*args, **kwargs)) run on the helper thread, or (False, seconds waited) when it has not
        returned within the timeout: that thread is left to its call and a fresh one serves the next."""
        t0 = time.monotonic()
        try:
            return True, self._helper.call(fn, args, kwargs, self.timeout_s)
        except queue.Empty:
            self._helper.stop()
            self._helper = _Helper()
            return False, time.monotonic() - t0

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
            f"{report.describe()}; rebuilding its vector env ({report.budget_text()}); the other envs' episodes "
            "end truncated too"
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
