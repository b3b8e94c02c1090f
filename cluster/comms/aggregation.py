"""cluster.aggregate=node: one aggregator actor per node pre-reduces its workers' packets (learner/aggregator.py)
and forwards one packet to the parameter server (one part per shard to a sharded PS); the PS's reply, weights
included, goes back through it. A worker whose aggregator fails pushes to the PS directly until Ray has
restarted it; the PS (each shard) counts a resent packet once (sender, seq). The worker's side of it,
`AggregatedClient`, is in cluster/comms/transport.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ray_a3c.cluster.comms.transport import RECONNECT_S, ActorIdentity, aggregator_name, hide_gpus
from ray_a3c.cluster.run.reservation import shard_role
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket
from ray_a3c.learner.aggregator import (
    Window,
    member_results,
    reduce_for_shards,
    reduce_packets,
    shard_member_results,
)
from ray_a3c.learner.shards import LEAD, ShardPlan, shard_version


class NodeAggregator(ActorIdentity):
    """An asyncio actor: pushes that arrive while a forward is on its way wait in a window; the window is
    forwarded as one aggregate when `cluster.aggregate_packets` wait or the oldest waited
    `cluster.aggregate_interval_s`. The PS (each shard) is looked up by name, so a PS recreated after a crash
    is found. With a sharded PS each member is answered with every shard's reply (its ShardedClient joins
    them); a shard other than the lead that fails is found again before the next forward, as a worker's
    ShardedClient finds it."""

    def __init__(self, config: Config, ps_names: list[str]):
        hide_gpus()
        self.config, self.ps_names = config, ps_names
        c = config.cluster
        self.window = Window(c.aggregate_packets, c.aggregate_interval_s)
        self.versions = [-1] * len(ps_names)  # the newest version of each shard seen in a reply
        self.received = self.forwarded = 0
        self._handles: list[Any] = [None] * len(ps_names)
        self._plan: ShardPlan | None = None
        self._timer: asyncio.Task | None = None

    @property
    def version(self) -> int:
        return self.versions[LEAD]

    def _handle(self, index: int = LEAD) -> Any:
        if self._handles[index] is None:
            self._handles[index] = ray.get_actor(self.ps_names[index], namespace=self.config.cluster.namespace)
        return self._handles[index]

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
        if len(self.ps_names) > 1:
            await self._forward_to_shards(group)
            return
        packets = [p for p, _ in group]
        versions = [p.version for p in packets]
        algo, c = self.config.algo, self.config
        (aggregate,), reasons = reduce_packets(packets, self.version, algo.max_policy_lag, c.learner.grad_dtype)
        try:
            reply = await self._handle().apply_gradients.remote(aggregate)
        except Exception as exc:  # noqa: BLE001 - the PS failed: every sender hears of it, as without us
            self._handles[LEAD] = None
            for _, done in group:
                done.set_exception(exc)
            return
        self.versions[LEAD] = max(self.version, reply.version)
        self.forwarded += 1
        for (_, done), result in zip(
            group, member_results(reply, reasons, versions, algo.weight_sync_every), strict=False
        ):
            done.set_result(result)

    async def _forward_to_shards(self, group: list) -> None:
        """learner.num_shards > 1: one part per shard, all at once; each member gets every shard's reply
        (None from a shard other than the lead that failed: the lead counted the member, so it is delivered)."""
        packets = [p for p, _ in group]
        member_versions = [[shard_version(p, s) for p in packets] for s in range(len(self.ps_names))]
        algo, c = self.config.algo, self.config
        try:
            for index in range(1, len(self.ps_names)):
                if self._handles[index] is None:
                    await self._find(index)
            if self._plan is None:
                self._plan = await self._handle().shard_plan.remote()
            parts, reasons = reduce_for_shards(
                packets, self._plan, self.versions, algo.max_policy_lag, c.learner.grad_dtype
            )
            refs = [self._handle(s).apply_gradients.remote(part) for s, part in enumerate(parts)]
            replies: list[ApplyResult | None] = [await refs[LEAD]]
        except Exception as exc:  # noqa: BLE001 - the lead failed (or a lost shard never came back): as without us
            self._handles = [None] * len(self.ps_names)  # a dead lead takes every shard down: all are recreated
            for _, done in group:
                done.set_exception(exc)
            return
        for index, ref in enumerate(refs[1:], start=1):
            try:
                replies.append(await ref)
            except RayActorError:
                self._handles[index] = None  # the driver recreates it under its name: found before the next forward
                replies.append(None)
        for index, reply in enumerate(replies):
            if reply is not None:
                self.versions[index] = max(self.versions[index], reply.version)
        self.forwarded += 1
        results = shard_member_results(replies, reasons, member_versions, algo.weight_sync_every)
        for (_, done), result in zip(group, results, strict=True):
            done.set_result(result)

    async def _find(self, index: int) -> None:
        """A lost shard (not the lead) again under its name, once the driver has recreated it."""
        deadline = time.monotonic() + RECONNECT_S
        while True:
            try:
                handle = ray.get_actor(self.ps_names[index], namespace=self.config.cluster.namespace)
                await asyncio.wait_for(handle.ping.remote(), timeout=10)
                self._handles[index] = handle
                return
            except (ValueError, RayActorError, asyncio.TimeoutError):
                if time.monotonic() > deadline:
                    raise A3CError(f"PS shard {index} was not recreated within {RECONNECT_S:g}s") from None
                await asyncio.sleep(0.5)

    def reduce_round(self, *packets: GradientPacket) -> GradientPacket:
        """Sync mode: this node's packets of one round (all from the same version) as one aggregate."""
        version = max(p.version for p in packets)
        (aggregate,), _ = reduce_packets(
            list(packets), version, self.config.algo.max_policy_lag, self.config.learner.grad_dtype
        )
        return aggregate


RemoteAggregator = ray.remote(NodeAggregator)


def spawn_aggregators(config: Config, prefix: str, options: Callable[..., dict]) -> dict[str, Any]:
    """One aggregator per alive node with CPUs, pinned to it (it serves that node's workers only; Ray restarts
    it there after a crash). -> {node_id: handle}."""
    handles = {}
    ps_names = [prefix + shard_role(i) for i in range(config.learner.num_shards)]  # the lead first
    for node in ray.nodes():
        if not node.get("Alive") or not node.get("Resources", {}).get("CPU"):
            continue
        node_id = node["NodeID"]
        opts = options(aggregator_name(prefix, node_id), num_cpus=0.0)
        opts.update(max_restarts=-1, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        handles[node_id] = RemoteAggregator.options(**opts).remote(config, ps_names)
    return handles
