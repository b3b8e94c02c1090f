"""The chaos soak's pure parts (no Ray, no torch): its seeded fault schedule, the growth rule for memory, the
hang lines it reads back from the driver's log, and the per-minute samples' table. `bench/chaos.py` runs them."""

from __future__ import annotations

import random
import re
import statistics
from dataclasses import dataclass, field
from enum import Enum

from ray_a3c.common.reporting.errors import A3CError


class Fault(str, Enum):
    """What one event of the schedule does."""

    WORKER_KILL = "worker_kill"  # SIGKILL a rollout worker's process
    PS_KILL = "ps_kill"  # SIGKILL the parameter server's process
    EVALUATOR_KILL = "evaluator_kill"  # SIGKILL the evaluator's process
    HANG = "hang"  # one env's step never returns (bench/chaos_hang.py)


# the Fleet's restart roles (Fleet.count_restart) each kill must show up under; a hang restarts nothing
RESTART_ROLE = {Fault.WORKER_KILL: "worker", Fault.PS_KILL: "ps", Fault.EVALUATOR_KILL: "evaluator"}


@dataclass(frozen=True)
class ScheduleOptions:
    duration_s: float  # the run's training time
    worker_kill_every_s: float  # one worker kill per this many seconds (0: none)
    ps_kill_every_s: float  # one PS kill per this many seconds (0: none)
    evaluator_kills: int
    hangs: int
    num_workers: int
    seed: int
    min_gap_s: float = 20.0  # at least this long between two events: each fault recovers before the next

    @property
    def window(self) -> tuple[float, float]:
        """Events fall in here: not while the run starts, and early enough before its end to be recovered and
        counted (a tenth of the run at either end, at most a minute)."""
        margin = min(60.0, 0.1 * self.duration_s)
        return margin, self.duration_s - margin


@dataclass(frozen=True)
class Event:
    at_s: float  # seconds after the first gradient
    fault: Fault
    worker_rank: int | None = None  # WORKER_KILL: which worker


def planned_counts(opts: ScheduleOptions) -> dict[Fault, int]:
    """Events of each kind: one per period of the periodic kills over the run, and the one-off counts."""

    def periodic(every_s: float) -> int:
        return int(opts.duration_s // every_s) if every_s > 0 else 0

    return {
        Fault.WORKER_KILL: periodic(opts.worker_kill_every_s),
        Fault.PS_KILL: periodic(opts.ps_kill_every_s),
        Fault.EVALUATOR_KILL: opts.evaluator_kills,
        Fault.HANG: opts.hangs,
    }


def build_schedule(opts: ScheduleOptions) -> list[Event]:
    """The soak's events in time order, the same for the same options. A periodic kind's n events each fall in
    the middle half of one of n equal slots of the window; one-off kinds anywhere in its middle 60%. Events
    closer than min_gap_s are then pushed apart (later ones forward, then back from the window's end). Raises
    A3CError when the events cannot all be min_gap_s apart inside the window."""
    rng = random.Random(opts.seed)
    start, end = opts.window
    width = end - start
    counts = planned_counts(opts)
    total = sum(counts.values())
    if total and (total - 1) * opts.min_gap_s > width:
        raise A3CError(
            f"{total} chaos events do not fit {opts.min_gap_s:g}s apart in {width:.0f}s: kill less often, "
            "a longer run or a smaller --min-gap-s"
        )
    timed: list[tuple[float, Fault]] = []
    for fault, n in counts.items():
        if fault in (Fault.WORKER_KILL, Fault.PS_KILL):
            slot = width / max(n, 1)
            timed += [(start + slot * (i + 0.25 + 0.5 * rng.random()), fault) for i in range(n)]
        else:
            timed += [(start + width * (0.2 + 0.6 * rng.random()), fault) for _ in range(n)]
    times = _spread(sorted(t for t, _ in timed), opts.min_gap_s, start, end)
    faults = [fault for _, fault in sorted(timed, key=lambda tf: tf[0])]
    return [
        Event(round(t, 1), fault, rng.randrange(opts.num_workers) if fault is Fault.WORKER_KILL else None)
        for t, fault in zip(times, faults, strict=True)
    ]


def _spread(times: list[float], gap: float, start: float, end: float) -> list[float]:
    out = list(times)
    for i in range(len(out)):
        out[i] = max(out[i], start, out[i - 1] + gap if i else start)
    for i in reversed(range(len(out))):
        out[i] = min(out[i], end, out[i + 1] - gap if i + 1 < len(out) else end)
    return out


def growth_percent(values: list[tuple[float, float]], from_minute: float, window: int = 3) -> float | None:
    """How much a quantity sampled over time grew: (minute, value) pairs in time order -> the change, in % of
    the first, from the median of the first `window` samples at or after `from_minute` to the median of the last
    `window`. Medians, not single samples: a sample taken while a killed process restarts (a fresh worker loads
    torch and its envs) is one process light or heavy. None (not measured) with fewer than 2 x window samples
    from that minute on; 0 -> 0 is no growth, 0 -> more is infinite."""
    later = [v for m, v in values if m >= from_minute]
    if len(later) < 2 * window:
        return None
    first, last = statistics.median(later[:window]), statistics.median(later[-window:])
    if first == 0:
        return 0.0 if last == 0 else float("inf")
    return (last - first) / first * 100


@dataclass(frozen=True)
class NamedHang:
    """A hang as the driver's log named it (HangReport.describe's words)."""

    worker_rank: int
    env_index: int
    seed: int
    episode_step: int  # 0: in its reset
    named_at: float = 0.0  # wall clock of the log record


HANG_LINE = re.compile(
    r"worker (?P<rank>\d+): env (?P<index>\d+) \(seed (?P<seed>-?\d+)\) hung in "
    r"(?:step (?P<step>\d+) of its episode|its reset): no answer after"
)


def parse_hang(message: str, named_at: float = 0.0) -> NamedHang | None:
    """The hang a driver log line names (actors' HangReport.describe), None for any other line and for a hang
    named only as a whole vector env (its sub envs ran out of the worker's process)."""
    match = HANG_LINE.search(message)
    if match is None:
        return None
    step = int(match["step"]) if match["step"] is not None else 0
    return NamedHang(int(match["rank"]), int(match["index"]), int(match["seed"]), step, named_at)


@dataclass
class Sample:
    """One minute (or --sample-every-s) of the soak."""

    minute: float  # since the first gradient
    return_100: float | None  # mean of the last 100 training episodes (sampled actions)
    eval_return: float | None  # the evaluator's last screening
    rss_bytes: int  # every process of the run's Ray session, and this driver
    object_store_bytes: int  # the least of STORE_READINGS readings: in use, in flight and freed-not-deleted
    env_steps: int | None  # None: the PS did not answer (it may be being recreated)
    env_steps_per_s: float | None  # since the previous sample
    restarts: dict = field(default_factory=dict)  # Fleet restart role -> count
    hangs_named: int = 0
    lost_updates: int = 0  # PS updates lost to PS kills so far, as the driver counts them
    object_store_pinned_bytes: int | None = None  # the least of the readings' primary copies: what owners hold


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _store(s: Sample) -> str:
    pinned = "-" if s.object_store_pinned_bytes is None else f"{s.object_store_pinned_bytes / 1e6:,.1f}"
    return f"{pinned} / {s.object_store_bytes / 1e6:,.1f}"


def store_series(samples: list[Sample]) -> tuple[str, list[tuple[float, float]]]:
    """What the store's growth target judges: the bytes owners hold (primary copies) where sampled, else the
    bytes in use. Bytes in use follow the traffic: ~10 pushes/s of a 2.7 MB gradient and a 2.7 MB weights copy
    each, freed at once but deleted in batches, put tens of MB in the store at any moment without a leak."""
    if samples and all(s.object_store_pinned_bytes is not None for s in samples):
        return "object store bytes held", [(s.minute, s.object_store_pinned_bytes) for s in samples]
    return "object store bytes in use", [(s.minute, s.object_store_bytes) for s in samples]


def render_table(samples: list[Sample], every: int = 1) -> str:
    """The samples as a markdown table; `every` > 1 keeps every n-th row and the last."""
    kept = [s for i, s in enumerate(samples) if i % every == every - 1 or i == len(samples) - 1]
    lines = [
        "| minute | return100 | eval | RSS MB | store MB held / used | env steps/s | restarts w/ps/eval | hangs "
        "| lost updates |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in kept:
        r = s.restarts
        lines.append(
            f"| {s.minute:.1f} | {_num(s.return_100, '.1f')} | {_num(s.eval_return, '.1f')} | "
            f"{s.rss_bytes / 1e6:,.0f} | {_store(s)} | {_num(s.env_steps_per_s, ',.0f')} | "
            f"{r.get('worker', 0)}/{r.get('ps', 0)}/{r.get('evaluator', 0)} | {s.hangs_named} | {s.lost_updates:,} |"
        )
    return "\n".join(lines)


@dataclass
class PSKill:
    """One PS kill and the updates it cost, as the soak measures them and as the driver counted them."""

    at_s: float
    version_before: int  # the PS's version read just before the SIGKILL
    checkpoint_version: int | None  # the newest checkpoint at or below it: what the PS came back from
    driver_lost: int | None  # the driver's own count for this recovery (the rise of Fleet.lost_updates)
    allowance: int  # updates the PS applied in one checkpoint interval (and a poll's slack) before the kill

    @property
    def lost(self) -> int:
        return self.version_before - (self.checkpoint_version or 0)
