"""How calls travel between the run's actors: the clients a worker (or the evaluator) reaches the parameter
server through (one PS, a sharded PS, a node aggregator in front of either), the pending replies they hand
back, how weights are published and resolved, and what every actor class here shares (`ActorIdentity`,
`hide_gpus`). cluster/comms/remote.py, sharding.py and aggregation.py import from here and not from each other."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError

from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket
from ray_a3c.learner.shards import LEAD, ShardPlan, join_replies, scatter, split_packet

INLINE_WEIGHTS_BYTES = 100 * 1024  # Ray's own limit for inlining small objects into a reply
RECONNECT_S = 120.0  # how long a worker (or an aggregator) waits for a lost shard to be recreated by the driver


# -- what every actor shares ----------------------------------------------------------------------------------
def hide_gpus() -> None:
    """Ray >= 2.56 no longer hides GPUs from actors that reserve none; a CPU actor must not touch one. Set
    before anything initialises CUDA (torch reads it lazily, at the first CUDA call)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


class ActorIdentity:
    """Where an actor runs: the driver logs it and the fault tests kill by pid."""

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


# -- weights on the wire --------------------------------------------------------------------------------------
def publish_weights(flat: np.ndarray) -> Any:
    """Large weights go into the object store once per version (one ray.put shared by every reader);
    small ones travel inside the reply, which is cheaper than an object-store round trip. `flat` may be a live
    view of the PS's weight buffer, which the next step changes: ray.put copies it, a small one is copied here."""
    return ray.put(flat) if flat.nbytes > INLINE_WEIGHTS_BYTES else flat.copy()


def resolve_weights(weights: Any) -> np.ndarray:
    """Weights as a reply carries them: inline, or a reference into the object store."""
    return ray.get(weights) if isinstance(weights, ray.ObjectRef) else weights


# -- one PS ---------------------------------------------------------------------------------------------------
class PendingReply:
    """One PS's answer to a push (or an aggregator's, passed on), with its weights resolved once it comes."""

    def __init__(self, ref: ray.ObjectRef):
        self.ref = ref

    def result(self) -> ApplyResult:
        result = ray.get(self.ref)
        result.weights = resolve_weights(result.weights)
        return result


class RemoteParameterServerClient:
    """Satisfies actors.worker.ParameterServerClient over a Ray actor handle."""

    def __init__(self, handle: Any):
        self.handle = handle

    def submit(self, packet: GradientPacket) -> PendingReply:
        return PendingReply(self.handle.apply_gradients.remote(packet))

    def get_weights(self) -> tuple[int, np.ndarray, int]:
        version, weights, env_steps = ray.get(self.handle.get_weights.remote())
        return version, resolve_weights(weights), env_steps


# -- a sharded PS (learner.num_shards > 1; its actors: cluster/comms/sharding.py) -------------------------------
@dataclass
class ShardedTarget:
    """What a worker or the evaluator is handed to reach a sharded PS: the shards' handles (the lead first)
    and their names, under which the driver recreates a lost one."""

    handles: list
    names: list[str]
    namespace: str


class ShardedClient:
    """Satisfies actors.worker.ParameterServerClient over a sharded PS. Keeps the whole weight vector the
    worker holds and, per shard, the version its slice came from. A packet is stamped with the shard versions
    of the weights it was computed on (the worker's `shard_versions`, which with overlapped pushes are older
    than the client's latest); an unstamped one with the client's."""

    def __init__(self, target: ShardedTarget):
        self.target = target
        self.handles = list(target.handles)
        self.plan: ShardPlan = ray.get(self.handles[LEAD].shard_plan.remote())
        self.weights = np.zeros(self.plan.num_weights, np.float32)
        self.versions = [0] * self.plan.num_shards
        self.lost: set[int] = set()  # shards whose reply failed: found again (recreated) before the next push

    def get_weights(self) -> tuple[int, np.ndarray, int]:
        self._reconnect()
        replies = ray.get([h.get_weights.remote() for h in self.handles])
        for index, (version, part, _) in enumerate(replies):
            self._take(index, version, part)
        return replies[LEAD][0], self.weights, replies[LEAD][2]

    @property
    def shard_versions(self) -> list[int]:
        """Each shard's version of the weights this client last handed out (a copy)."""
        return list(self.versions)

    def submit(self, packet: GradientPacket) -> _PendingShards:
        if self.lost:
            self._reconnect()
        versions = packet.routing.shard_versions
        versions = self.versions if versions is None else versions
        parts = split_packet(packet, self.plan, versions)
        return _PendingShards(self, [h.apply_gradients.remote(p) for h, p in zip(self.handles, parts, strict=True)])

    def join(self, replies: list[ApplyResult | None]) -> ApplyResult:
        """The shards' replies to one packet (None: a shard other than the lead that failed), pushed directly or
        through an aggregator, as the worker takes them: the lead's verdict, and the whole weight vector with
        each shard's version where any shard sent its slice."""
        changed = False
        for index, reply in enumerate(replies):
            if reply is not None and reply.weights is not None:
                self._take(index, reply.version, reply.weights)
                changed = True
        joined = join_replies(replies)
        if changed:
            joined.weights, joined.shard_versions = self.weights, self.shard_versions
        return joined

    def _take(self, index: int, version: int, part: Any) -> None:
        scatter(self.weights, self.plan.shards[index].weight_chunks, resolve_weights(part))
        self.versions[index] = version

    def _reconnect(self) -> None:
        """Find each lost shard again under its name once the driver has recreated it (a dead lead ends the
        worker's loop instead: the driver recreates every shard and relaunches the loops)."""
        deadline = time.monotonic() + RECONNECT_S
        for index in sorted(self.lost):
            while True:
                try:
                    handle = ray.get_actor(self.target.names[index], namespace=self.target.namespace)
                    ray.get(handle.ping.remote(), timeout=10)
                    break
                except (ValueError, RayActorError, ray.exceptions.GetTimeoutError):
                    if time.monotonic() > deadline:
                        raise A3CError(f"PS shard {index} was not recreated within {RECONNECT_S:g}s") from None
                    time.sleep(0.5)
            self.handles[index] = handle
            self.lost.discard(index)


class _PendingShards:
    def __init__(self, client: ShardedClient, refs: list):
        self.client, self.refs = client, refs

    def result(self) -> ApplyResult:
        """The lead's answer, with the whole weight vector if any shard sent its slice. A shard other than the
        lead that died is remembered and found again before the next push; the packet still counts (the lead
        counted it)."""
        replies: list[ApplyResult | None] = [ray.get(self.refs[LEAD])]
        for index, ref in enumerate(self.refs[1:], start=1):
            try:
                replies.append(ray.get(ref))
            except RayActorError:
                self.client.lost.add(index)
                replies.append(None)
        return self.client.join(replies)


def ps_client(target: Any) -> RemoteParameterServerClient | ShardedClient:
    """The worker's client for what the fleet hands out: one PS handle, or a sharded PS."""
    return ShardedClient(target) if isinstance(target, ShardedTarget) else RemoteParameterServerClient(target)


# -- through a node aggregator (cluster.aggregate=node; its actor: cluster/comms/aggregation.py) ----------------
def aggregator_name(prefix: str, node_id: str) -> str:
    """`prefix` is the run's actor-name prefix (`a3c:<run>:`)."""
    return f"{prefix}agg-{node_id[:16]}"


def find_aggregator(config: Config, prefix: str) -> Any | None:
    """The calling worker's node's aggregator, or None (a node that joined after the start has none)."""
    node_id = ray.get_runtime_context().get_node_id()
    try:
        return ray.get_actor(aggregator_name(prefix, node_id), namespace=config.cluster.namespace)
    except ValueError:
        return None


class AggregatedClient:
    """A worker's client with an aggregator in front of the PS. `direct` is the client it would use without one
    (one PS's, or a sharded PS's ShardedClient, which keeps the whole weights and joins the shards' replies the
    aggregator passes on). When the aggregator fails, the packet is resent through `direct` (the PS, each shard
    of it, drops it if the aggregator had forwarded it already) and the worker pushes directly for `retry_s`,
    then tries the aggregator again."""

    def __init__(
        self,
        direct: RemoteParameterServerClient | ShardedClient,
        aggregator: Any,
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.direct, self.aggregator, self.retry_s, self.clock = direct, aggregator, retry_s, clock
        self.down_until = 0.0
        self.fallbacks = 0

    @property
    def shard_versions(self) -> list[int] | None:
        return self.direct.shard_versions if isinstance(self.direct, ShardedClient) else None

    def get_weights(self) -> tuple[int, Any, int]:
        return self.direct.get_weights()

    def submit(self, packet: GradientPacket) -> Any:
        if self.clock() < self.down_until:
            return self.direct.submit(packet)
        if isinstance(self.direct, ShardedClient) and packet.routing.shard_versions is None:
            packet = packet.rerouted(shard_versions=self.direct.shard_versions)  # the aggregator judges it per shard
        return _ViaAggregator(self, packet, self.aggregator.apply_gradients.remote(packet))

    def aggregator_failed(self, packet: GradientPacket) -> ApplyResult:
        self.down_until = self.clock() + self.retry_s
        self.fallbacks += 1
        return self.direct.submit(packet).result()

    def joined(self, ref: ray.ObjectRef) -> ApplyResult:
        """The aggregator's answer as the worker takes it: one PS's reply, or every shard's, joined."""
        if isinstance(self.direct, ShardedClient):
            return self.direct.join(ray.get(ref))
        return PendingReply(ref).result()


class _ViaAggregator:
    def __init__(self, client: AggregatedClient, packet: GradientPacket, ref: ray.ObjectRef):
        self.client, self.packet, self.ref = client, packet, ref

    def result(self) -> ApplyResult:
        try:
            return self.client.joined(self.ref)
        except RayActorError:
            return self.client.aggregator_failed(self.packet)


def worker_client(config: Config, target: Any, aggregator_prefix: str | None = None) -> Any:
    """A worker's client for `target` (one PS handle, or a sharded PS's ShardedTarget); with an
    `aggregator_prefix` (cluster.aggregate=node), through this node's aggregator where it has one."""
    client = ps_client(target)
    if aggregator_prefix is None:
        return client
    aggregator = find_aggregator(config, aggregator_prefix)
    if aggregator is None:
        return client
    return AggregatedClient(client, aggregator, config.cluster.aggregate_retry_s)
