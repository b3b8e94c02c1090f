"""Node-level aggregation (cluster.aggregate=node): one aggregator per node pre-reduces its workers' packets
into one packet for the parameter server, so the PS receives, decodes and steps once per node and interval
instead of once per worker push; with a sharded PS (learner.num_shards > 1), into one packet per shard.
The PS's side of it (an aggregate judged, a resend counted once) is here too. Plain functions and plain
classes: the Ray actor lives in cluster/comms/aggregation.py."""

from __future__ import annotations

import dataclasses

import numpy as np

from ray_a3c.common.wire.counters import PSCounters
from ray_a3c.common.wire.flat import decode_gradient, encode_gradient, finite_norm, gradient_tensor
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket, Rejection, Routing, needs_weights, rejection
from ray_a3c.learner.shards import LEAD, ShardPlan, gather, scatter, shard_version


def member_of(packet: GradientPacket, rejected: str = "") -> GradientPacket:
    """The packet without its gradient: what the PS needs to check, count and merge it."""
    return dataclasses.replace(packet.rerouted(members=None, rejected=rejected), gradient=np.zeros(0, np.float32))


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
                routing=Routing(members=[member_of(p, r) for p, r in group]),
            )
        )
    return aggregates, reasons


def reduce_for_shards(
    packets: list[GradientPacket],
    plan: ShardPlan,
    versions: list[int],
    max_policy_lag: int,
    grad_dtype: str = "float32",
) -> tuple[list[GradientPacket], list[list[str]]]:
    """Pre-reduce one node's packets of one kind (all policy+value or all value-only) for a sharded PS: one
    aggregate per shard, and each packet's rejection on each shard (`[shard][packet]`).

    Each shard judges a member as it would the member's own slice: non-finite alike everywhere; stale on its
    own version (`versions[s]`: the newest of shard s this aggregator has seen, a lower bound) against the
    version of shard s the sender held (`shard_versions`). Shard s's slice is the mean of the members shard s
    accepts, so a member stale on one shard only is left out there and nowhere else; where every shard accepts
    the same members (shards that applied the same packets keep the same versions), the slices are one mean's,
    bit for bit reduce_packets' gradient. Every part carries that whole aggregate's global norm (clipping and
    the finiteness check: no shard sees the whole mean, the aggregator does), every member (the lead's with
    their episodes and losses, the others' without, as split_packet cuts a packet) and the oldest member's
    version on its shard. One shard: reduce_packets' aggregate, its members judged on shard 0's versions.
    Shapes: each packet's gradient [P] (any transport dtype); part s's [len(shard s)] in `grad_dtype`."""
    finite = []
    for packet in packets:
        packet.gradient = decode_gradient(packet.gradient)
        finite.append(bool(np.all(np.isfinite(packet.gradient))))
    reasons = [
        [
            rejection([dataclasses.replace(p, version=shard_version(p, s))], ok, versions[s], max_policy_lag)
            for p, ok in zip(packets, finite, strict=True)
        ]
        for s in range(plan.num_shards)
    ]
    kept = [tuple(i for i, r in enumerate(reasons[s]) if not r) for s in range(plan.num_shards)]
    means = {  # one mean per distinct set of accepted members (nearly always one)
        k: np.mean([packets[i].gradient for i in k], axis=0, dtype=np.float32) if k else None for k in set(kept)
    }
    if len(means) == 1:
        (mean,) = means.values()
        mean = np.zeros_like(packets[0].gradient) if mean is None else mean
    else:
        mean = np.zeros_like(packets[0].gradient)
        for shard, k in zip(plan.shards, kept, strict=True):
            if means[k] is not None:
                scatter(mean, shard.grad_chunks, gather(means[k], shard.grad_chunks))
    whole = encode_gradient(mean, grad_dtype)
    sharded = plan.num_shards > 1
    norm = finite_norm(gradient_tensor(whole)) if sharded else None  # one PS measures the whole gradient itself
    parts = []
    for shard in plan.shards:
        members = [member_on(p, shard.index, r) for p, r in zip(packets, reasons[shard.index], strict=True)]
        parts.append(
            GradientPacket(
                gradient=gather(whole, shard.grad_chunks) if sharded else whole,
                version=min(m.version for m in members),
                env_steps=sum(p.env_steps for p in packets),
                worker_rank=-1,
                critic_only=packets[0].critic_only,
                routing=Routing(members=members, grad_norm=norm),
            )
        )
    return parts, reasons


def member_on(packet: GradientPacket, index: int, rejected: str) -> GradientPacket:
    """A member as shard `index` sees it: without its gradient, stamped with its version on that shard; only
    the lead gets its episodes and losses (the lead reports them; every shard counts env steps and moments)."""
    member = dataclasses.replace(member_of(packet, rejected), version=shard_version(packet, index))
    member = member.rerouted(shard_versions=None)
    if index != LEAD:
        member.episode_returns, member.episode_lengths, member.losses = [], [], {}
    return member


def shard_member_results(
    replies: list[ApplyResult | None], reasons: list[list[str]], versions: list[list[int]], weight_sync_every: int
) -> list[list[ApplyResult | None]]:
    """Each shard's reply to its part, told to each member (`[member][shard]`): per shard as member_results
    tells it (`reasons` and `versions` are `[shard][member]`), None where a shard other than the lead failed.
    The member's client joins them as it joins the shards' replies to a push of its own (join_replies)."""
    per_shard = [
        member_results(reply, reasons[s], versions[s], weight_sync_every)
        if reply is not None
        else [None] * len(reasons[s])
        for s, reply in enumerate(replies)
    ]
    return [list(row) for row in zip(*per_shard, strict=True)]


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


# -- what the parameter server makes of an aggregate, and of a resend ---------------------------------------------
def judge_aggregate(
    aggregate: GradientPacket, gradient_finite: bool, version: int, max_policy_lag: int, counters: PSCounters
) -> tuple[str, list[tuple[GradientPacket, str]]]:
    """The PS's verdict on an aggregate at `version`, and each member with its own: judged by its oldest member
    the aggregator accepted (EMPTY when it accepted none), whose rejection is counted once per such member; a
    member the aggregator left out keeps its reason, counted here. Checked before anything of it is merged."""
    members = aggregate.routing.members
    accepted = [m for m in members if not m.routing.rejected]
    if accepted:
        reason = rejection(accepted, gradient_finite, version, max_policy_lag)
        counters.count_rejected(reason, len(accepted))
    else:
        reason = Rejection.EMPTY
    for member in members:
        if member.routing.rejected:
            counters.count_rejected(member.routing.rejected)
    return reason, [(m, m.routing.rejected or reason) for m in members]


class Resends:
    """The (sender, seq) a PS has counted: a worker resends directly when its aggregator died, and the
    aggregator may have forwarded that packet first. The last 512 numbers per sender are remembered."""

    def __init__(self) -> None:
        self._seen: dict[str, set[int]] = {}  # sender -> its recent packet numbers

    def first_sight(self, packet: GradientPacket) -> bool:
        """False for a (sender, seq) seen before; an untracked packet (seq 0) is always new."""
        sender, seq = packet.routing.sender, packet.routing.seq
        if not seq:
            return True
        seen = self._seen.setdefault(sender, set())
        if seq in seen:
            return False
        seen.add(seq)
        if len(seen) > 512:
            seen.difference_update(sorted(seen)[:256])
        return True


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
