"""What the parameter server reports: its running totals (PSCounters, saved in checkpoints), the status the
driver polls (PSStatus) and the statistics of one log window (WindowStats, from the PS's StatsWindow). Plain
dataclasses, no Ray or torch import: the PS, the driver, the fleet and the tests read the same fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ray_a3c.common.wire.packet import Rejection


@dataclass
class PSCounters:
    """The PS's running totals. A resumed run continues them; a recreated PS takes the last ones the driver saw
    as floors (`raise_to`), so they never go backwards."""

    version: int = 0  # optimizer steps applied: the weights' version
    env_steps: int = 0  # transitions in every packet counted, rejected ones included (they were really taken)
    episodes: int = 0  # episodes finished in them
    rejected_stale: int = 0  # packets (or aggregate members) rejected as Rejection.STALE
    rejected_nonfinite: int = 0  # ... as Rejection.NONFINITE
    env_hangs: int = 0  # env steps or resets the workers reported hung (each rebuilt its vector env)

    def count_rejected(self, reason: str, n: int = 1) -> None:
        """Rejections of the counted kinds (stale, non-finite); the others are not totals of the run."""
        if reason == Rejection.STALE:
            self.rejected_stale += n
        elif reason == Rejection.NONFINITE:
            self.rejected_nonfinite += n

    def totals(self) -> PSCounters:
        """The running totals alone (a PSStatus or WindowStats carries more)."""
        return PSCounters(**{f.name: getattr(self, f.name) for f in dataclasses.fields(PSCounters)})

    def highest(self, other: PSCounters) -> PSCounters:
        """Each total's larger value of the two: the highest counters seen across answers of one PS."""
        return PSCounters(
            **{f.name: max(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(PSCounters)}
        )

    def raise_to(self, floor: PSCounters) -> None:
        """Never below `floor` (the last totals seen before a crash): env steps really taken stay counted, and
        the version jumps past every version handed out before, so no packet from lost weights passes as fresh."""
        for f in dataclasses.fields(PSCounters):
            bound = int(getattr(floor, f.name)) + (1 if f.name == "version" else 0)
            setattr(self, f.name, max(getattr(self, f.name), bound))

    def to_dict(self) -> dict:
        """The checkpoint's `counters`: plain names and ints (weights_only-loadable)."""
        return {f.name: int(getattr(self, f.name)) for f in dataclasses.fields(PSCounters)}

    @classmethod
    def from_dict(cls, data: dict | None) -> Any:
        """A checkpoint's `counters` (any version's: unknown names are ignored, missing ones are 0)."""
        names = {f.name for f in dataclasses.fields(PSCounters)}
        return cls(**{k: int(v) for k, v in (data or {}).items() if k in names})


@dataclass
class PSStatus(PSCounters):
    """`get_counters`: the totals plus what the driver watches (cheap; polled every tick)."""

    packets: dict = field(default_factory=dict)  # worker rank -> packets received (liveness)
    device: str = ""  # where the learner trains
    busy_s: float = 0.0  # time spent checking, stepping and publishing since the PS started
    env_recreations: int = 0  # env processes the workers restarted after crashes


@dataclass
class WindowStats(PSCounters):
    """`pull_stats`: the totals plus means over everything received since the previous pull (one log tick)."""

    episode_returns: list = field(default_factory=list)  # finished training episodes' raw returns
    episode_lengths: list = field(default_factory=list)
    hang_reports: list = field(default_factory=list)  # the HangReports received in the window
    applied: int = 0  # optimizer steps in the window
    losses: dict = field(default_factory=dict)  # packet loss terms (metrics.packet_losses names) -> mean
    policy_lag_mean: float | None = None  # versions between a gradient's weights and the step applying it
    grad_norm_mean: float | None = None
    lr_fraction: float = 1.0  # the share of the configured learning rates in use (algo.lr_schedule)
    weight_norm: float = 0.0
    comm_fraction: float | None = None  # the workers' share of time spent communicating


@dataclass
class StatsWindow:
    """What the PS accumulates between two `pull_stats` calls: a WindowStats once pulled."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    hangs: list = field(default_factory=list)  # HangReports
    losses: dict[str, list[float]] = field(default_factory=dict)
    lags: list[int] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    compute_s: float = 0.0
    comm_s: float = 0.0
    applied: int = 0

    def stats(self, totals: PSCounters, lr_fraction: float, weight_norm: float) -> WindowStats:
        """The window's means, with the PS's totals and what it reports of itself now."""
        busy = self.compute_s + self.comm_s
        return WindowStats(
            **dataclasses.asdict(totals),
            episode_returns=self.returns,
            episode_lengths=self.lengths,
            hang_reports=self.hangs,
            applied=self.applied,
            losses={k: float(np.mean(v)) for k, v in self.losses.items()},
            policy_lag_mean=float(np.mean(self.lags)) if self.lags else None,
            grad_norm_mean=float(np.mean(self.grad_norms)) if self.grad_norms else None,
            lr_fraction=lr_fraction,
            weight_norm=weight_norm,
            comm_fraction=self.comm_s / busy if busy > 0 else None,
        )
