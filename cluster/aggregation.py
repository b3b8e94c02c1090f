"""cluster.aggregate=node: one aggregator actor per node pre-reduces its workers' packets (learner/aggregator.py)
and forwards one packet to the parameter server; the PS's reply, weights included, goes back through it. A
worker whose aggregator fails pushes to the PS directly until Ray has restarted it; the PS counts a resent
packet once (sender, seq)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ray_a3c.cluster.remote import ActorIdentity, RemoteParameterServerClient, _PendingRemote, hide_gpus
from ray_a3c.common.config import Config
from ray_a3c.common.packet import ApplyResult, GradientPacket
from ray_a3c.learner.aggregator import Window, member_results, reduce_packets


def aggregator_name(prefix: str, node_id: str) -> str:
    """`prefix` is the run's actor-name prefix (`a3c:<run>:`)."""
    return f"{prefix}agg-{node_id[:16]}"


class NodeAggregator(ActorIdentity):
    """An asyncio actor: pushes that arrive while a forward is on its way wait in a window; the window is
    forwarded as one aggregate when `cluster.aggregate_packets` wait or the oldest waited
    `cluster.aggregate_interval_s`. The PS is looked up by name, so a PS recreated after a crash is found."""

    def __init__(self, config: Config, ps_name: str):
        hide_gpus()
        self.config, self.ps_name = config, ps_name
        c = config.cluster
        self.window = Window(c.aggregate_packets, c.aggregate_interval_s)
        self.version = -1  # the newest PS version seen in a reply
        self.received = self.forwarded = 0
        self._ps: Any = None
        self._timer: asyncio.Task | None = None

    def _handle(self) -> Any:
        if self._ps is None:
            self._ps = ray.get_actor(self.ps_name, namespace=self.config.cluster.namespace)
        return self._ps

    def ping(self) -> int:
        return self.version

    def get_counters(self) -> dict:
        return {"received": self.received, "forwarded": self.forwarded, "version": self.version}

    async def apply_gradients(self, packet: GradientPacket) -> ApplyResult:
        done = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        self.window.add((packet, done), now)
        self.received += 1
        if self.window.due(now):
            await self._flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())
        return await done

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.window.interval_s)
        self._timer = None
        await self._flush()

    async def _flush(self) -> None:
        items = self.window.take()
        for critic_only in (False, True):
            group = [(p, d) for p, d in items if p.critic_only == critic_only]
            if group:
                await self._forward(group)

    async def _forward(self, group: list) -> None:
        packets = [p for p, _ in group]
        versions = [p.version for p in packets]
        algo, c = self.config.algo, self.config
        (aggregate,), reasons = reduce_packets(packets, self.version, algo.max_policy_lag, c.learner.grad_dtype)
        try:
            reply = await self._handle().apply_gradients.remote(aggregate)
        except Exception as exc:  # noqa: BLE001 - the PS failed: every sender hears of it, as without us
            self._ps = None
            for _, done in group:
                done.set_exception(exc)
            return
        self.version = max(self.version, reply.version)
        self.forwarded += 1
        for (_, done), result in zip(
            group, member_results(reply, reasons, versions, algo.weight_sync_every), strict=False
        ):
            done.set_result(result)

    def reduce_round(self, *packets: GradientPacket) -> GradientPacket:
        """Sync mode: this node's packets of one round (all from the same version) as one aggregate."""
        version = max(p.version for p in packets)
        (aggregate,), _ = reduce_packets(
            list(packets), version, self.config.algo.max_policy_lag, self.config.learner.grad_dtype
        )
        return aggregate


RemoteAggregator = ray.remote(NodeAggregator)


class AggregatedClient(RemoteParameterServerClient):
    """A worker's client with an aggregator in front of the PS. When the aggregator fails, the packet is resent
    to the PS directly (the PS drops it if the aggregator had forwarded it already) and the worker pushes
    directly for `retry_s`, then tries the aggregator again."""

    def __init__(self, ps_handle: Any, aggregator: Any, retry_s: float, clock: Callable[[], float] = time.monotonic):
        super().__init__(ps_handle)
        self.aggregator, self.retry_s, self.clock = aggregator, retry_s, clock
        self.down_until = 0.0
        self.fallbacks = 0

    def submit(self, packet: GradientPacket) -> Any:
        if self.clock() < self.down_until:
            return super().submit(packet)
        return _ViaAggregator(self, packet, self.aggregator.apply_gradients.remote(packet))

    def aggregator_failed(self, packet: GradientPacket) -> ApplyResult:
        self.down_until = self.clock() + self.retry_s
        self.fallbacks += 1
        return super().submit(packet).result()


class _ViaAggregator:
    def __init__(self, client: AggregatedClient, packet: GradientPacket, ref: ray.ObjectRef):
        self.client, self.packet, self.ref = client, packet, ref

    def result(self) -> ApplyResult:
        try:
            return _PendingRemote(self.ref).result()
        except RayActorError:
            return self.client.aggregator_failed(self.packet)


def spawn_aggregators(config: Config, prefix: str, options: Callable[..., dict]) -> dict[str, Any]:
    """One aggregator per alive node with CPUs, pinned to it (it serves that node's workers only; Ray restarts
    it there after a crash). -> {node_id: handle}."""
    handles = {}
    for node in ray.nodes():
        if not node.get("Alive") or not node.get("Resources", {}).get("CPU"):
            continue
        node_id = node["NodeID"]
        opts = options(aggregator_name(prefix, node_id), num_cpus=0.0)
        opts.update(max_restarts=-1, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        handles[node_id] = RemoteAggregator.options(**opts).remote(config, prefix + "ps")
    return handles


def find_aggregator(config: Config, prefix: str) -> Any | None:
    """The calling worker's node's aggregator, or None (a node that joined after the start has none)."""
    node_id = ray.get_runtime_context().get_node_id()
    try:
        return ray.get_actor(aggregator_name(prefix, node_id), namespace=config.cluster.namespace)
    except ValueError:
        return None
