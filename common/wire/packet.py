"""What a worker sends the parameter server, and what it gets back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


@dataclass
class HangReport:
    """A vector env's step or reset that did not return within env.step_timeout_s (actors/watchdog.py)."""

    worker_rank: int
    env_index: int  # the sub env that hung; -1: the vector env as a whole (its sub envs are out of this process)
    seed: int  # the env's seed in the build that hung (env_index -1: the build's first env's)
    num_envs: int
    episode_step: int | None  # the step of its episode that hung, from 1; 0: its reset; None: not one env's
    waited_s: float
    hangs: int  # hangs of this env index so far, this one included
    max_hang_restarts: int

    def describe(self) -> str:
        """One line naming what hung, where and for how long."""
        if self.env_index < 0:
            what = f"the vector env (envs 0-{self.num_envs - 1}, seeds {self.seed}-{self.seed + self.num_envs - 1})"
        else:
            what = f"env {self.env_index} (seed {self.seed})"
        if self.episode_step is None:
            where = "a vector step"
        elif self.episode_step == 0:
            where = "its reset"
        else:
            where = f"step {self.episode_step} of its episode"
        return f"worker {self.worker_rank}: {what} hung in {where}: no answer after {self.waited_s:.1f}s"

    def over_budget(self) -> bool:
        return self.hangs > self.max_hang_restarts

    def budget_text(self) -> str:
        who = "the vector env" if self.env_index < 0 else f"env {self.env_index}"
        return f"hang {self.hangs} of {who}, env.max_hang_restarts={self.max_hang_restarts}"


class Rejection(str, Enum):
    """Why a gradient was not applied; an accepted packet's reason is "" (so `not reason` means accepted). A
    str, so it compares equal to its value and travels in a packet as plain text does."""

    STALE = "stale"  # computed from a version more than algo.max_policy_lag behind
    NONFINITE = "nonfinite"  # NaN/inf in the gradient or the observation / return moments
    DUPLICATE = "duplicate"  # a (sender, seq) the PS has counted already (a worker's resend)
    EMPTY = "empty"  # an aggregate whose members were all left out by its aggregator
    ALL_REJECTED = "all rejected"  # sync mode: no packet of the round was accepted

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Routing:
    """What only resend dedup, node aggregation and a sharded PS read; a plain A3C packet keeps the defaults.
    Frozen: a packet is re-routed with `GradientPacket.rerouted`, never changed in place."""

    sender: str = ""  # the sending worker process (an id per incarnation): with `seq`, how the PS spots a resend
    seq: int = 0  # the sender's packet number, from 1; 0 = not tracked
    members: list[GradientPacket] | None = None  # an aggregate (cluster.aggregate=node): its packets, no gradients
    rejected: str = ""  # set by an aggregator that left this member out (Rejection.STALE | NONFINITE)
    grad_norm: float | None = None  # a shard's slice: the whole gradient's global norm, from the sender
    # a sharded PS (learner.num_shards > 1): each shard's version the sender's weights came from, lead first, so
    # that an aggregator's members are judged per shard as their own slices would be; None: `version` for all
    shard_versions: list[int] | None = None


@dataclass
class GradientPacket:
    gradient: np.ndarray  # [P] float32, flat in model.parameters() order
    version: int  # PS weight version the gradient was computed from
    env_steps: int  # transitions collected for it
    worker_rank: int = 0
    episode_returns: list = field(default_factory=list)  # raw returns of episodes finished in this rollout
    episode_lengths: list = field(default_factory=list)
    losses: dict = field(default_factory=dict)  # rollout statistics and loss terms: metrics.packet_losses
    critic_only: bool = False  # a value-only gradient (critic epochs after the first)
    obs_moments: tuple | None = None  # (count, mean [D], var [D]) of the raw observations, for the PS
    return_moments: tuple | None = None  # (count, mean [1], var [1]) of the running discounted returns
    env_recreations: int = 0  # this worker's env processes restarted after crashes, so far
    env_hangs: list = field(default_factory=list)  # HangReports of the hangs since this worker's previous packet
    compute_s: float = 0.0  # seconds spent collecting + differentiating (previous loop)
    comm_s: float = 0.0  # seconds spent pushing / pulling in the previous loop
    pass_kind: str = ""  # which pass of its rollout it is (an actors.worker.Pass value): the PS's update log names it
    routing: Routing = field(default_factory=Routing)  # resends, aggregates, shards: the defaults for plain A3C

    def rerouted(self, **changes: Any) -> GradientPacket:
        """A copy (sharing its arrays and lists) whose routing has `changes`, Routing's fields by name."""
        return dataclasses.replace(self, routing=dataclasses.replace(self.routing, **changes))


@dataclass
class ApplyResult:
    accepted: bool
    version: int  # PS version after this packet
    reason: str = ""  # a Rejection when rejected
    stop: bool = False  # the driver asked workers to finish
    weights: Any | None = None  # the current version's weights (an ndarray, or an ObjectRef under Ray)
    counters: dict | None = None  # sync mode: the PS's counters after the step (saves the driver a call)
    shard_versions: list[int] | None = None  # a sharded PS: each shard's version of `weights`, lead first


def senders(packet: GradientPacket) -> list[tuple[str, int]]:
    """The tracked (sender, seq) a packet stands for: its own, or an aggregate's members'. An aggregate has none
    of its own: its members are the senders that resends and a sharded PS's checkpoint cut follow."""
    members = packet.routing.members
    return [(p.routing.sender, p.routing.seq) for p in (members if members is not None else [packet]) if p.routing.seq]


# -- the rules the parameter server and a node aggregator both apply ----------------------------------------------
def finite_moments(moments: tuple | None) -> bool:
    """(count, mean, var) moments are usable: none, empty, or finite with a non-negative variance."""
    if moments is None or not moments[0]:
        return True
    _, mean, var = moments
    return bool(np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(np.asarray(var) >= 0))


def rejection(members: list[GradientPacket], gradient_finite: bool, version: int, max_policy_lag: int) -> str:
    """Why a gradient standing for `members` (a packet: itself) is refused at `version`, "" if it is not:
    non-finite (gradient or any member's moments), else stale (its oldest member more than max_policy_lag
    versions behind)."""
    if not (
        gradient_finite and all(finite_moments(m.obs_moments) and finite_moments(m.return_moments) for m in members)
    ):
        return Rejection.NONFINITE
    if version - min(m.version for m in members) > max_policy_lag:
        return Rejection.STALE
    return ""


def needs_weights(reason: str, version: int, sent_from: int, weight_sync_every: int) -> bool:
    """Whether a reply carries the weights of `version` to a sender whose gradient came from `sent_from`: a
    stale sender always needs them; others only once weight_sync_every versions behind (fewer bytes out)."""
    return reason == Rejection.STALE or version - sent_from >= weight_sync_every
