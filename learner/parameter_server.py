"""ParameterServer: the global network, one optimizer (Adam or RMSprop), versions, staleness and NaN guards,
checkpoint state. What it makes of an aggregate or a resend (cluster.aggregate=node) is in learner/aggregator.py."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml

from ray_a3c.common.algo.models import build_model
from ray_a3c.common.env.envs import EnvSpaces
from ray_a3c.common.settings.config import Config
from ray_a3c.common.storage.checkpoint import cpu_copies
from ray_a3c.common.storage.keys import CKPT_CONFIG_YAML, CKPT_COUNTERS, CKPT_MODEL, CKPT_OPTIMIZERS, CKPT_SPACES
from ray_a3c.common.wire.counters import PSCounters, PSStatus, StatsWindow, WindowStats
from ray_a3c.common.wire.flat import finite_norm, gradient_tensor
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket, Rejection, needs_weights, rejection
from ray_a3c.learner.aggregator import Resends, judge_aggregate
from ray_a3c.learner.flat_params import FlatParameters, build_optimizers, load_optimizer_state, parameter_groups, step
from ray_a3c.learner.shards import LEAD, merge_optimizer_states, plan_from_layout, shard_range
from ray_a3c.learner.update_log import UpdateLog


class _Judged(NamedTuple):
    """What the PS made of one arrival."""

    reason: str  # its Rejection, "" when accepted
    weight: int  # the packets it stands for in the step's mean: 1, an aggregate's accepted members, 0
    gradient: torch.Tensor  # [P] in its transport dtype
    norm: float  # its global norm


def resolve_device(requested: str) -> torch.device:
    """cpu | cuda | auto -> a device; cuda without a GPU falls back to the CPU with a warning."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        warnings.warn(
            "learner.device=cuda but no GPU is visible here: the parameter server trains on the CPU", stacklevel=2
        )
    return torch.device("cpu")


class ParameterServer:
    """The global network and its optimizers; with learner.num_shards > 1, one shard of it (learner/shards.py):
    it steps and publishes only its part, and shard 0 (the lead) is the one whose counters and statistics
    the run reports."""

    def __init__(
        self,
        config: Config,
        spaces: EnvSpaces,
        publish: Callable[[np.ndarray], Any] | None = None,
        shard_index: int = LEAD,
        update_log: UpdateLog | None = None,
    ):
        torch.set_num_threads(1)
        torch.manual_seed(config.run.seed)
        self.config = config
        self.env_spaces = spaces.env_spaces  # saved with the weights: load_policy then builds no env
        self.device = resolve_device(config.learner.device)
        self.model = build_model(spaces, config.model).to(self.device)
        self.flat = FlatParameters(self.model, parameter_groups(self.model))  # the model now views its buffer
        self.plan = plan_from_layout(
            self.flat.slices,
            self.flat.grad_chunks,
            self.flat.num_params,
            self.flat.num_weights,
            config.learner.num_shards,
        )
        self.shard_index = shard_index
        if self.plan.num_shards > 1:
            self.flat.restrict(self.plan.shards[shard_index])
        self.optimizers = build_optimizers(self.flat, config)
        self._base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in self.optimizers.items()}
        self._publish = publish  # given a live read-only view of the weights: it copies what it keeps (ray.put)
        self._published: tuple[int, Any] = (-1, None)
        self.counters = PSCounters()
        self.stop_requested = False
        self._window = StatsWindow()
        self.packets_from: dict[int, int] = {}  # worker rank -> packets received (liveness, on the reader's clock)
        self._recreations: dict[int, int] = {}  # worker rank -> env recreations it reported
        self._snapshots: list[dict] = []  # weights kept at env-step multiples, until the driver pops them
        self._snapshot_every = config.run.snapshot_every_env_steps
        self._last_snapshot_steps = 0
        self.resends = Resends()  # the (sender, seq) counted so far: a resend is counted once
        self.busy_s = 0.0  # time spent checking, stepping and publishing (not receiving), since start
        self._clock_start: float | None = None  # the run's training start (epoch s), for run.time_limit_s
        # every packet judged, in order, and digests of the weights (learner/update_log.py): what `a3c replay` reads
        self.update_log = update_log
        if update_log is not None:
            update_log.start(yaml.safe_dump(config.to_dict()), config.run.seed, str(self.device), self.flat.flat)

    @property
    def version(self) -> int:
        return self.counters.version

    def apply_gradients(self, packet: GradientPacket) -> ApplyResult:
        """Apply one worker gradient (serially), or reject it as stale / non-finite. Always answers
        with the current weights so the worker can adopt them without a second call."""
        return self.apply_batch([packet])[0]

    def apply_batch(self, packets: list[GradientPacket]) -> list[ApplyResult]:
        """Batched application (learner.max_batch_packets): each packet is checked, counted and its lag
        recorded on its own; the accepted ones' gradients are averaged into one optimizer step. The mean, not the
        sum: each packet's gradient is already a mean over its transitions, so their mean is the gradient of
        the mean loss over all of them (a larger batch), and max_grad_norm keeps its meaning. One packet is
        exactly serial A3C. Every sender gets the new version's weights."""
        started = time.perf_counter()
        reasons = self._step_on_mean(packets)
        weights = self._current_weights()
        self.busy_s += time.perf_counter() - started
        every = self.config.algo.weight_sync_every
        return [
            ApplyResult(
                accepted=not reason,
                version=self.version,
                reason=reason,
                stop=self.stop_requested,
                weights=weights if needs_weights(reason, self.version, packet.version, every) else None,
            )
            for packet, reason in zip(packets, reasons, strict=False)
        ]

    def apply_mean_gradients(self, *packets: GradientPacket) -> ApplyResult:
        """Synchronous mode: one optimizer step on the mean of the packets' gradients (all computed from the
        current version); non-finite or stale ones are counted and left out of the mean."""
        started = time.perf_counter()
        kept = [not reason for reason in self._step_on_mean(list(packets))]
        weights = self._current_weights()
        self.busy_s += time.perf_counter() - started
        return ApplyResult(
            accepted=any(kept),
            version=self.version,
            reason="" if any(kept) else Rejection.ALL_REJECTED,
            stop=self.stop_requested,
            weights=weights,
            counters=self.get_counters(),
        )

    def _step_on_mean(self, packets: list[GradientPacket]) -> list[str]:
        """Check and count every packet, then one optimizer step per kind (policy+value, value-only) on the mean
        gradient of the accepted ones, each weighed by the packets it stands for. Returns each packet's
        rejection reason ("" = accepted)."""
        judged = [self._judge(packet) for packet in packets]
        for critic_only in (False, True):
            kept = [
                (j.gradient, j.norm, j.weight)
                for p, j in zip(packets, judged, strict=True)
                if not j.reason and j.weight and p.critic_only == critic_only
            ]
            if kept:
                self._step(kept, critic_only)
        self._maybe_snapshot()
        reasons = [j.reason for j in judged]
        if self.update_log is not None:  # rejected packets too: their workers' envs and RNGs moved on all the same
            norms = [j.norm for j in judged]
            self.update_log.judged(packets, reasons, norms, self.version, self.counters.env_steps, self.flat.flat)
        return reasons

    def _judge(self, packet: GradientPacket) -> _Judged:
        """One arrival checked and counted before anything of it is merged (a worker's packet here, an aggregate in
        _judge_aggregate): a rejected one changes no weight and no normaliser statistic, but is still counted (its
        env steps and episodes happened)."""
        grad = gradient_tensor(packet.gradient)  # the transport dtype, no copy: converted in the step's copy
        if packet.routing.members is not None:
            return self._judge_aggregate(packet, grad)
        if not self.resends.first_sight(packet):  # its aggregator had forwarded it before it looked dead
            return _Judged(Rejection.DUPLICATE, 0, grad, 0.0)
        norm = self._norm(packet, grad)
        reason = rejection([packet], math.isfinite(norm), self.version, self.config.algo.max_policy_lag)
        self.counters.count_rejected(reason)
        self._record(packet, accepted=not reason)
        return _Judged(reason, 0 if reason else 1, grad, norm)

    def _judge_aggregate(self, aggregate: GradientPacket, grad: torch.Tensor) -> _Judged:
        """cluster.aggregate=node: judged by its members (learner/aggregator.judge_aggregate), weighed by those
        accepted; each member counted and its lag recorded as if it had come alone, once (a resend may have come
        first, sent directly while its aggregator looked dead)."""
        norm = self._norm(aggregate, grad)
        lag = self.config.algo.max_policy_lag
        reason, members = judge_aggregate(aggregate, math.isfinite(norm), self.version, lag, self.counters)
        counted = [(member, why) for member, why in members if self.resends.first_sight(member)]
        for member, why in counted:
            self._record(member, accepted=not why)
        return _Judged(reason, sum(1 for _, why in counted if not why), grad, norm)

    @staticmethod
    def _norm(packet: GradientPacket, grad: torch.Tensor) -> float:
        """The global norm, non-finite iff an entry is: one pass for both (a shard's slice: the sender's)."""
        return finite_norm(grad) if packet.routing.grad_norm is None else packet.routing.grad_norm

    def _step(self, kept: list[tuple[torch.Tensor, float, int]], critic_only: bool = False) -> None:
        """One optimizer step on the mean of `kept` (gradient, its norm, its weight), clipped by global norm."""
        total = sum(w for _, _, w in kept)
        norm = self.flat.set_gradient(
            [(g, w / total) for g, _, w in kept],
            self.config.algo.max_grad_norm,
            norm=kept[0][1] if len(kept) == 1 else None,
        )
        fraction = self.lr_fraction()
        for name, optimizer in self.optimizers.items():
            if name == "critic" or not critic_only:
                for group, base in zip(optimizer.param_groups, self._base_lrs[name], strict=False):
                    group["lr"] = base * fraction
                step(optimizer)
        self.counters.version += 1
        self._window.grad_norms.append(norm)
        self._window.applied += 1

    def start_clock(self, epoch_s: float) -> None:
        """When training started (the driver's clock, epoch seconds): the linear schedule then also counts
        run.time_limit_s, so a run stopped by its time limit ends at the rate the schedule promised."""
        self._clock_start = epoch_s

    def budget_used(self) -> float:
        """The share of the run's budget spent: env steps over run.total_env_steps or, once the clock is started
        and run.time_limit_s set, seconds over it, whichever is further along."""
        run = self.config.run
        used = self.counters.env_steps / run.total_env_steps
        if run.time_limit_s is not None and self._clock_start is not None:
            used = max(used, (time.time() - self._clock_start) / run.time_limit_s)
        return used

    def lr_fraction(self) -> float:
        """The share of the configured learning rates used now (algo.lr_schedule): 1 until algo.lr_decay_start
        of the budget is used, then falling linearly to 0 at its end."""
        algo = self.config.algo
        if algo.lr_schedule == "constant":
            return 1.0
        start = algo.lr_decay_start
        return min(1.0, max(0.0, (1.0 - self.budget_used()) / (1.0 - start)))

    def _maybe_snapshot(self) -> None:
        """Keep the weights when env steps pass the next multiple of run.snapshot_every_env_steps (benchmarks
        evaluate them after training, so evaluation never competes with training for the CPU)."""
        n = self._snapshot_every
        if not n or self.counters.env_steps // n <= self._last_snapshot_steps // n:
            return
        self._snapshots.append(
            {
                "env_steps": self.counters.env_steps,
                "version": self.version,
                "time": time.time(),
                "weights": self.flat.weights(),
            }
        )
        self._last_snapshot_steps = self.counters.env_steps

    def pop_snapshots(self) -> list[dict]:
        """The snapshots kept since the previous call: {env_steps, version, time (epoch s), weights}."""
        taken, self._snapshots = self._snapshots, []
        return taken

    def _record(self, packet: GradientPacket, accepted: bool) -> None:
        """Count what one worker's packet brings (env steps, episodes, hangs, statistics); an accepted one's
        lag, losses and moments too."""
        self.packets_from[packet.worker_rank] = self.packets_from.get(packet.worker_rank, 0) + 1
        self._recreations[packet.worker_rank] = packet.env_recreations
        w = self._window
        if accepted:
            w.lags.append(self.version - packet.version)
        self.counters.env_steps += packet.env_steps
        self.counters.episodes += len(packet.episode_returns)
        self.counters.env_hangs += len(packet.env_hangs)
        w.hangs += packet.env_hangs
        w.returns += [r for r in packet.episode_returns if np.isfinite(r)]
        w.lengths += packet.episode_lengths
        for key, value in packet.losses.items():
            if accepted:
                w.losses.setdefault(key, []).append(value)
        w.compute_s += packet.compute_s
        w.comm_s += packet.comm_s
        if accepted and packet.obs_moments is not None and self.model.obs_norm is not None and packet.obs_moments[0]:
            self.model.obs_norm.merge(*packet.obs_moments)
        if accepted and packet.return_moments and self.model.reward_norm is not None and packet.return_moments[0]:
            self.model.reward_norm.merge(*packet.return_moments)

    def _current_weights(self) -> Any:
        """This version's weights, published once and shared by everyone who asks for them."""
        if self._published[0] != self.version:
            weights = self.flat.weights(copy=self._publish is None)
            self._published = (self.version, weights if self._publish is None else self._publish(weights))
        return self._published[1]

    def get_weights(self) -> tuple[int, Any, int]:
        """(version, weights, env_steps)."""
        return self.version, self._current_weights(), self.counters.env_steps

    def get_counters(self) -> PSStatus:
        """The cumulative counters plus each worker's packet count (cheap; polled by the driver)."""
        return PSStatus(
            **dataclasses.asdict(self.counters),
            packets=dict(self.packets_from),
            device=str(self.device),
            busy_s=self.busy_s,
            env_recreations=sum(self._recreations.values()),
        )

    def request_stop(self) -> None:
        self.stop_requested = True

    def pull_stats(self) -> WindowStats:
        """Counters plus means over everything received since the previous call."""
        window, self._window = self._window, StatsWindow()
        return window.stats(self.counters, self.lr_fraction(), self.flat.param_norm())

    def shard_state(self) -> dict:
        """A shard's part of a checkpoint: its parameter ranges' values and its optimizers' states."""
        return cpu_copies(
            {
                "index": self.shard_index,
                "values": {name: t.detach() for name, t in self.flat.tensors.items()},
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            }
        )

    def state_dict(self, shard_states: tuple = ()) -> dict:
        """Everything a resume needs, as plain tensors and numbers (weights_only-loadable). The lead of a
        sharded PS is handed the other shards' `shard_state()`s, taken at the same cut: their values are
        written into its buffer (parts it never reads otherwise) and the optimizer states joined, so the
        checkpoint is the one an unsharded PS writes, loadable with any learner.num_shards."""
        optimizers = {name: opt.state_dict() for name, opt in self.optimizers.items()}
        if shard_states:
            states = sorted([self.shard_state(), *shard_states], key=lambda st: st["index"])
            with torch.no_grad():
                for st in states[1:]:
                    for name, lo, hi in self.plan.shards[st["index"]].ranges:
                        if hi > lo:
                            self.flat.flat[lo:hi].copy_(st["values"][name])
            optimizers = merge_optimizer_states(self.plan, [st["optimizers"] for st in states])
        if self.update_log is not None:  # which update the checkpoint holds (a replay compares its weights there)
            self.update_log.checkpoint(self.version, self.counters.env_steps, self.flat.flat)
        return cpu_copies(
            {
                CKPT_MODEL: self.model.state_dict(),
                CKPT_OPTIMIZERS: optimizers,
                CKPT_COUNTERS: self.counters.to_dict(),
                CKPT_CONFIG_YAML: yaml.safe_dump(self.config.to_dict()),
                **({CKPT_SPACES: self.env_spaces} if self.env_spaces else {}),
            }
        )

    def raise_counters(self, counter_floor: PSCounters) -> None:
        """Counter floors without weights (a PS recreated before any checkpoint existed)."""
        self.counters.raise_to(counter_floor)
        if self.update_log is not None:  # its version jumped: the log's updates no longer follow one PS
            self.update_log.restored(self.version)

    def load_state_dict(self, state: dict, counter_floor: PSCounters | None = None) -> None:
        """Restore weights, optimizer state and counters. `counter_floor` (the last counters seen before a crash) keeps
        counters from going backwards: env steps really taken stay counted, and the version jumps past every
        version handed out before, so no packet from the lost weights can pass as fresh."""
        self.model.load_state_dict(state[CKPT_MODEL])  # copies into the flat buffer's views
        sharded = self.plan.num_shards > 1
        for name, opt in self.optimizers.items():
            part = shard_range(self.plan, self.shard_index, name) if sharded else None
            # per-tensor states (older checkpoints) are joined; a shard takes its part
            load_optimizer_state(opt, state[CKPT_OPTIMIZERS][name], name, part)
        self.counters = PSCounters.from_dict(state[CKPT_COUNTERS])
        if counter_floor is not None:
            self.counters.raise_to(counter_floor)
        self._published = (-1, None)
        if self.update_log is not None:  # the log's updates no longer start from the header's weights
            self.update_log.restored(self.version)

    def close_update_log(self) -> None:
        """The run's end: a last digest of the weights, and the log file closed (a no-op without a log)."""
        if self.update_log is not None:
            self.update_log.close(self.version, self.counters.env_steps, self.flat.flat)
            self.update_log = None
