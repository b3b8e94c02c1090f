"""Supervision of the asynchronous worker loops: relaunch with back-off after a failure, give a worker up
after too many failures in a row, replace workers that are gone, kill workers that went silent. Every wait
is non-blocking: the driver's loop keeps logging, evaluating, checkpointing and checking stops meanwhile.
Liveness is judged on the driver's own clock (the PS only counts packets), never across two machines."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayError

from ray_a3c.common.reporting.errors import A3CError, EnvHangError

BACKOFF_BASE_S, BACKOFF_MAX_S = 1.0, 60.0
RESTART_WAIT_S = 120.0  # how long a crashed actor may take to come back before it is replaced


def root_cause(exc: BaseException) -> str:
    """The original error's type and first line, not Ray's wrapper ('RayTaskError(ValueError)')."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, RayError):
        text = str(cause).strip().splitlines()
        return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")
    lines = [line.strip() for line in str(exc).splitlines()]
    found = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b:?", line)]
    return found[-1] if found else type(exc).__name__


def fatal_cause(exc: BaseException) -> str | None:
    """The message of a failure that must end the run rather than restart its worker (an env that hung more
    often than env.max_hang_restarts allows: EnvHangError), through Ray's wrapper; None for any other."""
    cause = getattr(exc, "cause", None)
    return str(cause) if isinstance(cause, EnvHangError) else None


@dataclass
class _Loop:
    ref: ray.ObjectRef | None = None  # the running loop's result
    started: float = 0.0  # driver clock: when it was launched
    packets: int = -1  # the PS's packet count for this rank when last seen
    progress_at: float = 0.0  # driver clock: when that count last grew
    failures: int = 0  # consecutive failures without a packet in between
    relaunch_at: float | None = None  # a relaunch is due at this time...
    ping: ray.ObjectRef | None = None  # ...once this answer says the actor is up
    ping_deadline: float = 0.0


class WorkerLoops:
    def __init__(
        self,
        fleet: Any,
        timeout_s: float,
        max_failures: int,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.fleet, self.timeout_s, self.max_failures, self.say, self.clock = fleet, timeout_s, max_failures, say, clock
        self.loops: dict[int, _Loop] = {}
        self.given_up: dict[int, str] = {}  # rank -> the failure that ended it

    def start(self, ranks) -> None:
        for rank in ranks:
            self.loops[rank] = _Loop()
            self._launch(rank)

    def refs(self) -> list:
        return [loop.ref for loop in self.loops.values() if loop.ref is not None]

    def _launch(self, rank: int) -> None:
        loop, now = self.loops[rank], self.clock()
        loop.ref = self.fleet.workers[rank].run_remote.remote(self.fleet.ps_target, self.fleet.aggregator_prefix)
        loop.started = loop.progress_at = now
        loop.relaunch_at = loop.ping = None

    def check(self, packets: dict) -> None:
        """One non-blocking pass: `packets` maps rank -> packets the PS has counted from that worker."""
        now = self.clock()
        for rank, loop in list(self.loops.items()):
            count = int(packets.get(rank, 0))
            if count != loop.packets:
                if loop.packets >= 0 and count > loop.packets:
                    loop.failures = 0
                loop.packets, loop.progress_at = count, now
            if loop.ref is None:
                self._advance_relaunch(rank, loop, now)
                continue
            ready, _ = ray.wait([loop.ref], timeout=0)
            if ready:
                try:
                    ray.get(loop.ref)
                except RayError as exc:
                    if fatal := fatal_cause(exc):
                        raise A3CError(fatal) from None
                    self._on_failure(rank, loop, root_cause(exc), now)
                    continue
            silent = now - max(loop.progress_at, loop.started)
            if loop.ref is not None and silent > self.timeout_s:
                self.say(f"worker-{rank} sent nothing for {silent:.0f}s: killing it for a restart")
                ray.kill(self.fleet.workers[rank], no_restart=False)
                loop.started = now

    def _on_failure(self, rank: int, loop: _Loop, cause: str, now: float) -> None:
        loop.ref = None
        loop.failures += 1
        restart = self.fleet.count_restart("worker")
        if loop.failures > self.max_failures:
            self.say(f"worker-{rank} failed {loop.failures} times in a row, last: {cause}; giving it up")
            self.given_up[rank] = cause
            del self.loops[rank]
            if not self.loops:
                raise A3CError(f"no worker can run: worker-{rank} failed {loop.failures} times in a row: {cause}")
            return
        delay = min(BACKOFF_BASE_S * 2 ** (loop.failures - 1), BACKOFF_MAX_S)
        self.say(f"worker-{rank} failed: {cause}; restart #{restart} in {delay:.0f}s")
        loop.relaunch_at = now + delay

    def _advance_relaunch(self, rank: int, loop: _Loop, now: float) -> None:
        """Back-off over -> ask the actor whether it is up -> launch, or replace it if it is gone."""
        if loop.relaunch_at is None or now < loop.relaunch_at:
            return
        if loop.ping is None:
            loop.ping, loop.ping_deadline = self.fleet.workers[rank].node_id.remote(), now + RESTART_WAIT_S
            return
        ready, _ = ray.wait([loop.ping], timeout=0)
        if not ready and now < loop.ping_deadline:
            return
        try:
            if not ready:
                raise TimeoutError
            ray.get(loop.ping)
        except ActorUnavailableError:
            if now < loop.ping_deadline:  # Ray is restarting it: ask again, within the same deadline
                loop.ping = self.fleet.workers[rank].node_id.remote()
                return
            self._replace(rank)
        except (RayError, TimeoutError):
            self._replace(rank)
        self._launch(rank)

    def _replace(self, rank: int) -> None:
        ray.kill(self.fleet.workers[rank], no_restart=True)
        self.say(f"worker-{rank} is gone: starting a replacement")
        self.fleet.spawn_worker(rank)

    def relaunch_all(self) -> None:
        """After a PS recovery: the loops fail on the dead PS; start each again on the new one."""
        now = self.clock()
        for loop in self.loops.values():
            if loop.ref is not None:
                ray.cancel(loop.ref, force=False)
            loop.ref, loop.relaunch_at, loop.ping = None, now, None
