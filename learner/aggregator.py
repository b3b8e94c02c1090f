"""Node-level aggregation (cluster.aggregate=node): one aggregator per node pre-reduces its workers' packets
into one packet for the parameter server, so the PS receives, decodes and steps once per node and interval
instead of once per worker push. Plain functions and a plain class: the Ray actor lives in cluster/remote.py."""

from __future__ import annotations

import dataclasses

import numpy as np

from ray_a3c.common.flat import decode_gradient, encode_gradient
from ray_a3c.common.packet import ApplyResult, GradientPacket, needs_weights, rejection


def member_of(packet: GradientPacket, rejected: str = "") -> GradientPacket:
    """The packet without its gradient: what the PS needs to check, count and merge it."""
    return dataclasses.replace(packet, gradient=np.zeros(0, np.float32), members=None, rejected=rejected)


def reduce_packets(
    packets: list[GradientPacket], version: int, max_policy_lag: int, grad_dtype: str = "float32"
) -> tuple[list[GradientPacket], list[str]]:
    """Pre-reduce one node's packets. Each is checked as the PS would (non-finite, and stale against
    `version`, the newest PS version this aggregator has seen: a lower bound, so the PS checks again).
    Returns (aggregates, each input's rejection reason here). One aggregate per kind (policy+value, value-only)
    that has members: its gradient is the mean of the accepted members' (weighted by nothing: every packet is
    already a mean over its rollout, as in learner.max_batch_packets), its `version` the oldest member's, its
    env steps their sum; rejected packets ride along as members so the PS still counts them.
    Shapes: each packet's gradient [P] (any transport dtype); each aggregate's [P] in `grad_dtype`."""
    reasons, aggregates = [], []
    for packet in packets:
        packet.gradient = decode_gradient(packet.gradient)
        reasons.append(rejection([packet], bool(np.all(np.isfinite(packet.gradient))), version, max_policy_lag))
    for critic_only in (False, True):
        group = [(p, r) for p, r in zip(packets, reasons, strict=False) if p.critic_only == critic_only]
        if not group:
            continue
        kept = [p.gradient for p, r in group if not r]
        mean = np.mean(kept, axis=0, dtype=np.float32) if kept else np.zeros_like(group[0][0].gradient)
        aggregates.append(
            GradientPacket(
                gradient=encode_gradient(mean, grad_dtype),
                version=min(p.version for p, _ in group),
                env_steps=sum(p.env_steps for p, _ in group),
                worker_rank=-1,
                critic_only=critic_only,
                members=[member_of(p, r) for p, r in group],
            )
        )
    return aggregates, reasons


def member_results(
    reply: ApplyResult, reasons: list[str], versions: list[int], weight_sync_every: int
) -> list[ApplyResult]:
    """The PS's answer to an aggregate, told to each member: its own acceptance (a member left out here is
    rejected whatever the PS said), the PS's version, stop and weights (sent where the member needs them)."""
    results = []
    for reason, version in zip(reasons, versions, strict=False):
        reason = reason or ("" if reply.accepted else reply.reason)
        needs = needs_weights(reason, reply.version, version, weight_sync_every)
        results.append(
            ApplyResult(
                accepted=not reason,
                version=reply.version,
                reason=reason,
                stop=reply.stop,
                weights=reply.weights if needs else None,
            )
        )
    return results


class Window:
    """Packets waiting at an aggregator: flushed when `max_packets` wait or the oldest waited `interval_s`."""

    def __init__(self, max_packets: int, interval_s: float):
        self.max_packets, self.interval_s = max_packets, interval_s
        self.waiting: list = []
        self.opened_at: float | None = None

    def add(self, item, now: float) -> None:
        if not self.waiting:
            self.opened_at = now
        self.waiting.append(item)

    def due(self, now: float) -> bool:
        return bool(self.waiting) and (len(self.waiting) >= self.max_packets or now - self.opened_at >= self.interval_s)

    def take(self) -> list:
        taken, self.waiting, self.opened_at = self.waiting, [], None
        return taken
