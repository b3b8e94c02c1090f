"""The chaos soak's Ray side (`bench/chaos.py` drives it): a thread that delivers the seeded schedule's faults to
a live Trainer and one that samples the session every minute, beside the driver's own loop in the main thread.

Actor processes are found by name through Ray's state API (`ray.util.state.list_actors` at the session's
dashboard: a busy worker cannot answer a call of its own) and killed with SIGKILL. Memory: the RSS of every
process of the Ray session and this driver, and the object store's bytes held by owners (primary copies) and in
use, the least of STORE_READINGS readings, from `ray._private.internal_api`'s store stats (bench/soak.py's
helpers; Ray 2.60 has no public call for them: `ray.available_resources` gives the capacity only)."""

from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import ray

from bench.chaos_hang import pull_trigger
from bench.chaos_plan import RESTART_ROLE, Event, Fault, NamedHang, PSKill, Sample, parse_hang, render_table
from bench.soak import object_store_stats, session_rss_bytes
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.storage.keys import CKPT_COUNTERS
from ray_a3c.common.wire.counters import PSCounters, PSStatus

CALL_TIMEOUT_S = 10.0  # a PS call from the soak: no answer means it is down (being recreated)
SETTLE_TIMEOUT_S = 180.0  # before an event, the longest wait for the fleet to run whole again
RECOVERY_TIMEOUT_S = 180.0  # after a PS kill, the longest wait for its recreation
VERSION_POLL_S = 5.0  # the PS version history the allowance of a PS kill is read from
STORE_READINGS = 5  # object-store readings per sample, 1 s apart; the sample keeps their least
ALLOWANCE_SLACK_S = VERSION_POLL_S  # the checkpoint's age at a kill may pass the interval by a tick and a poll


class LogTap(logging.Handler):
    """The driver's log records: kept in `run_log_path` (every line, with its time) and read for hang names."""

    def __init__(self, run_log_path: str):
        super().__init__(logging.INFO)
        self.file = open(run_log_path, "a")
        self.hangs: list[NamedHang] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.file.write(f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {message}\n")
        self.file.flush()
        named = parse_hang(message, record.created)
        if named is not None:
            self.hangs.append(named)


@dataclass
class Delivered:
    """What the schedule did: kills by restart role, PS kills' costs, and the events it could not deliver."""

    kills: dict = field(default_factory=lambda: {role: 0 for role in RESTART_ROLE.values()})
    ps_kills: list = field(default_factory=list)
    log: list = field(default_factory=list)  # (seconds from t0, restart role) of each kill
    hangs_pulled: list = field(default_factory=list)  # wall clock of each trigger made
    skipped: list = field(default_factory=list)  # "<at_s> <fault>: why"
    unsettled: int = 0  # events delivered while the fleet was not yet whole after the previous one


class Session:
    """The live run as the soak sees it: the Trainer (its fleet, summary), the Ray session, the clock."""

    def __init__(self, trainer, dashboard: str, stop: threading.Event):
        self.trainer, self.dashboard, self.stop = trainer, dashboard, stop
        self.t0_wall: float | None = None

    def wait_for_training(self) -> bool:
        """Until the driver has started the workers (its t0); False if the run ended first."""
        while self.trainer.t0 is None or self.trainer.fleet is None:
            if self.stop.wait(0.5):
                return False
        self.t0_wall = time.time() - (time.perf_counter() - self.trainer.t0)
        return True

    def elapsed_s(self) -> float:
        return time.time() - self.t0_wall

    def sleep_until(self, at_s: float, on_tick=None) -> bool:
        """Sleep to `at_s` after t0 (calling on_tick every VERSION_POLL_S); False if the run ended first."""
        while (left := at_s - self.elapsed_s()) > 0:
            if self.stop.wait(min(left, VERSION_POLL_S)):
                return False
            if on_tick is not None:
                on_tick()
        return not self.stop.is_set()

    def counters(self) -> PSStatus | None:
        try:
            return ray.get(self.trainer.fleet.ps.get_counters.remote(), timeout=CALL_TIMEOUT_S)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            return None

    def alive_pid(self, role: str, wait_s: float = 60.0) -> int | None:
        """The process id of the run's actor `role` (worker-0, ps, eval) once Ray lists it alive."""
        from ray.util.state import list_actors

        name = self.trainer.fleet.actor_name(role)
        deadline = time.monotonic() + wait_s
        while not self.stop.is_set():
            try:
                rows = list_actors(address=self.dashboard, filters=[("name", "=", name), ("state", "=", "ALIVE")])
            except Exception as exc:  # noqa: BLE001 - the state API times out on a loaded machine: ask again
                print(f"chaos: listing actors failed ({type(exc).__name__}); asking again", flush=True)
                rows = []
            if rows and rows[0].pid:
                return int(rows[0].pid)
            if time.monotonic() > deadline:
                return None
            self.stop.wait(2.0)
        return None


class Monkey:
    """Delivers the schedule's events at their times, each once the fleet runs whole again after the previous."""

    def __init__(self, session: Session, events: list[Event], trigger: str):
        self.s, self.events, self.trigger = session, events, trigger
        self.done = Delivered()
        self.versions: collections.deque = collections.deque(maxlen=10_000)  # (wall, PS version)

    def run(self) -> None:
        if not self.s.wait_for_training():
            return
        for event in self.events:
            if not self.s.sleep_until(event.at_s, self._poll_version):
                self.done.skipped += [f"{e.at_s:.0f}s {e.fault.value}: the run ended first" for e in self._rest(event)]
                return
            if not self._settle():
                self.done.unsettled += 1
            try:
                self._deliver(event)
            except Exception as exc:  # noqa: BLE001 - one failed delivery must not end the soak unseen
                self.done.skipped.append(f"{event.at_s:.0f}s {event.fault.value}: {type(exc).__name__}: {exc}")

    def _rest(self, event: Event) -> list[Event]:
        return self.events[self.events.index(event) :]

    def _poll_version(self) -> None:
        counters = self.s.counters()
        if counters is not None:
            self.versions.append((time.time(), counters.version))

    def _settle(self) -> bool:
        """Until the PS answers and every worker pushes again (each rank's packet count grows); False after
        SETTLE_TIMEOUT_S. A kill before that would hit a worker whose loop is not running, which no loop sees."""
        fleet = self.s.trainer.fleet
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        before = self.s.counters()
        while time.monotonic() < deadline and not self.s.stop.wait(VERSION_POLL_S):
            now = self.s.counters()
            if now is not None:
                self.versions.append((time.time(), now.version))
            ranks = [rank for rank in range(len(fleet.workers)) if rank not in fleet.loops.given_up]
            if before is not None and now is not None and all(_grew(before, now, rank) for rank in ranks):
                return True
            before = now
        return False

    def _deliver(self, event: Event) -> None:
        if event.fault is Fault.HANG:
            self._hang(event)
        elif event.fault is Fault.PS_KILL:
            self._kill_ps(event)
        else:
            role = "eval" if event.fault is Fault.EVALUATOR_KILL else f"worker-{event.worker_rank}"
            if event.fault is Fault.EVALUATOR_KILL and self.s.trainer.fleet.evaluator is None:
                self.done.skipped.append(f"{event.at_s:.0f}s {event.fault.value}: no evaluator runs")
                return
            self._kill(event, role)

    def _kill(self, event: Event, role: str, pid: int | None = None) -> bool:
        pid = pid or self.s.alive_pid(role)
        if pid is None:
            self.done.skipped.append(f"{event.at_s:.0f}s {event.fault.value}: {role} is not alive")
            return False
        os.kill(pid, signal.SIGKILL)
        self.done.kills[RESTART_ROLE[event.fault]] += 1
        self.done.log.append((round(self.s.elapsed_s(), 1), RESTART_ROLE[event.fault]))
        print(f"chaos: {self.s.elapsed_s():.0f}s: SIGKILL {role} (pid {pid})", flush=True)
        return True

    def _kill_ps(self, event: Event) -> None:
        fleet = self.s.trainer.fleet
        old_ps, lost_before = fleet.ps, fleet.lost_updates
        pid = self.s.alive_pid("ps")  # first: the version is read right before the kill, not a listing before
        counters = self.s.counters() if pid is not None else None
        if counters is None:
            self.done.skipped.append(f"{event.at_s:.0f}s {event.fault.value}: the PS does not answer")
            return
        killed_at, at_s = time.time(), round(self.s.elapsed_s(), 1)
        self._kill(event, "ps", pid)
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while fleet.ps is old_ps and time.monotonic() < deadline and not self.s.stop.wait(0.5):
            pass
        recovered = fleet.ps is not old_ps
        self.s.stop.wait(1.0)  # the fleet counts the loss right after the new PS took its checkpoint
        kill = PSKill(
            at_s=at_s,
            version_before=counters.version,
            checkpoint_version=newest_checkpoint_at_most(fleet.ckpt_dir, counters.version),
            driver_lost=fleet.lost_updates - lost_before if recovered else None,
            allowance=self._allowance(killed_at, counters.version),
        )
        self.done.ps_kills.append(kill)
        print(
            f"chaos: PS back: {kill.lost} updates lost (driver: {kill.driver_lost}; allowed {kill.allowance})",
            flush=True,
        )

    def _allowance(self, killed_at: float, version: int) -> int:
        """The updates the PS applied from one checkpoint interval (and the slack) before the kill to it."""
        interval = self.s.trainer.config.run.checkpoint_interval_s
        earlier = [v for t, v in self.versions if t <= killed_at - interval - ALLOWANCE_SLACK_S]
        return version - (earlier[-1] if earlier else 0)

    def _hang(self, event: Event) -> None:
        if os.path.exists(self.trigger):
            self.done.skipped.append(f"{event.at_s:.0f}s hang: the previous trigger is still untaken")
            return
        pull_trigger(self.trigger)
        self.done.hangs_pulled.append(time.time())
        print(f"chaos: {self.s.elapsed_s():.0f}s: one env's next step hangs", flush=True)


def _grew(before: PSStatus, now: PSStatus, rank: int) -> bool:
    return int(now.packets.get(rank, 0)) > int(before.packets.get(rank, 0))


def newest_checkpoint_at_most(ckpt_dir: str, version: int) -> int | None:
    """The version of the newest checkpoint in `ckpt_dir` holding no update past `version` (None: none)."""
    found = None
    for path in checkpoint.list_checkpoints(ckpt_dir):
        saved = PSCounters.from_dict(checkpoint.load(path)[CKPT_COUNTERS]).version
        if saved <= version:
            found = saved
    return found


class Sampler:
    """Every `every_s` from t0 (and once just before the run's end): the session's memory, the PS's env steps,
    the returns, restarts and hangs named so far."""

    def __init__(self, session: Session, tap: LogTap, every_s: float, duration_s: float):
        self.s, self.tap, self.every_s, self.duration_s = session, tap, every_s, duration_s
        self.samples: list[Sample] = []
        self._last_steps: tuple[float, int] | None = None  # (t, env steps) of the last sample the PS answered
        self.session_name = ray._private.worker.global_worker.node.session_name  # no public API names it
        self.gcs = ray.get_runtime_context().gcs_address

    def times(self) -> list[float]:
        end = self.duration_s - min(5.0, self.every_s / 2)
        return [k * self.every_s for k in range(1, int(end // self.every_s) + 1)] + [end]

    def run(self) -> None:
        if not self.s.wait_for_training():
            return
        for at_s in self.times():
            if not self.s.sleep_until(at_s):
                return
            try:
                self.samples.append(self._sample())
            except Exception as exc:  # noqa: BLE001 - a failed sample is printed, the soak goes on
                print(f"chaos: sample failed: {exc!r}", flush=True)
                continue
            s = self.samples[-1]
            print(f"chaos: {render_table([s]).splitlines()[-1]}", flush=True)

    def _sample(self) -> Sample:
        trainer, now = self.s.trainer, self.s.elapsed_s()
        counters = self.s.counters()
        steps = counters.env_steps if counters is not None else None
        fps = None
        if steps is not None:
            if self._last_steps is not None:
                fps = (steps - self._last_steps[1]) / max(now - self._last_steps[0], 1e-9)
            self._last_steps = (now, steps)
        stores = []
        for i in range(STORE_READINGS):  # the floor over a few seconds: a reading's in-flight bytes vary by the push
            if i:
                time.sleep(1.0)
            stores.append(object_store_stats(self.gcs))
        return Sample(
            minute=round(now / 60, 2),
            return_100=trainer.summary.train_return_mean100,
            eval_return=trainer.summary.last_eval,
            rss_bytes=session_rss_bytes(self.session_name),
            object_store_bytes=min(st.used_bytes for st in stores),
            object_store_pinned_bytes=min(st.pinned_bytes for st in stores),
            env_steps=steps,
            env_steps_per_s=fps,
            restarts=dict(trainer.fleet.restarts),
            hangs_named=len(self.tap.hangs),
            lost_updates=trainer.fleet.lost_updates,
        )
