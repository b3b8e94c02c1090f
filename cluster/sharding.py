"""A sharded parameter server on Ray (learner.num_shards > 1; the plan and the maths: learner/shards.py).

Each shard is an asyncio actor running the plain ParameterServer over its part. A worker's `ShardedClient`
pushes every slice of a packet at once and waits for all the replies; the lead's reply decides what the
worker counts as delivered. A checkpoint is one consistent cut (`take_cut`): every packet is in all the
shards' states or in none. A node aggregator in front of a sharded PS (cluster/aggregation.py) forwards one
part per shard and hands each member the shards' replies, which the member's ShardedClient joins. Ray only
here and in remote.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError

from ray_a3c.cluster.remote import ActorIdentity, hide_gpus, publish_weights, resolve_weights
from ray_a3c.common.config import Config
from ray_a3c.common.envs import EnvSpaces
from ray_a3c.common.errors import A3CError
from ray_a3c.common.packet import ApplyResult, GradientPacket, senders
from ray_a3c.learner import parameter_server
from ray_a3c.learner.shards import LEAD, ShardPlan, join_replies, scatter, split_packet

CUT_WAIT_S = 5.0  # how long a cut waits for a packet some shards applied and others have not received yet
RECONNECT_S = 120.0  # how long a worker waits for a lost shard to be recreated by the driver


class ShardServer(ActorIdentity, parameter_server.ParameterServer):
    """One shard. Between `hold` and `resume` it applies only the packets a cut asks for (`cut`): the
    others wait, as coroutines, and are applied in arrival order once the cut is taken. The senders a cut
    follows are the workers: an aggregate's members, not the aggregator (common/packet.senders)."""

    def __init__(self, config: Config, spaces: EnvSpaces, shard_index: int):
        if config.learner.num_gpus == 0 and config.learner.device == "cpu":
            hide_gpus()
        super().__init__(config, spaces, publish=publish_weights, shard_index=shard_index)
        self._last_seq: dict[str, int] = {}  # sender -> the newest packet number this shard has applied
        self._held = False
        self._release: dict[str, int] = {}  # while held: sender -> apply its packets up to this number
        self._changed = asyncio.Event()

    def ping(self) -> int:
        return self.version

    def shard_plan(self) -> ShardPlan:
        return self.plan

    async def apply_gradients(self, packet: GradientPacket) -> ApplyResult:  # type: ignore[override]
        tracked = senders(packet)
        # an aggregate is applied whole: it waits while any member is past the cut
        while self._held and any(seq > self._release.get(sender, 0) for sender, seq in tracked):
            await self._next_change()
        result = super().apply_gradients(packet)
        for sender, seq in tracked:
            self._last_seq[sender] = max(self._last_seq.get(sender, 0), seq)
        self._notify()
        return result

    def hold(self) -> dict[str, int]:
        """Stop applying; -> sender -> the newest packet number applied so far."""
        self._held, self._release = True, {}
        return dict(self._last_seq)

    async def cut(self, targets: dict[str, int], wait_s: float) -> int:
        """Apply every sender's packets up to `targets` (waiting up to `wait_s` for ones still on their way),
        nothing later. -> how many senders' packets never came (their worker died mid-push)."""
        self._release = dict(targets)
        self._notify()
        deadline = time.monotonic() + wait_s
        while self._missing(targets) and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self._next_change(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        return len(self._missing(targets))

    def resume(self) -> None:
        self._held, self._release = False, {}
        self._notify()

    def _missing(self, targets: dict[str, int]) -> list[str]:
        return [sender for sender, seq in targets.items() if self._last_seq.get(sender, 0) < seq]

    async def _next_change(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


RemoteShardServer = ray.remote(ShardServer)


@dataclass
class ShardedTarget:
    """What a worker or the evaluator is handed to reach a sharded PS: the shards' handles (the lead first)
    and their names, under which the driver recreates a lost one."""

    handles: list
    names: list[str]
    namespace: str


def take_cut(shards: list, timeout_s: float, say: Any) -> dict:
    """A checkpoint of a sharded PS as one consistent cut: hold every shard, let each apply the packets some
    other shard had applied already (each worker has at most one packet in flight, alone or as a member of
    one aggregate; an aggregate, applied whole, is released where all its members are), then take every
    shard's part and join them on the lead (an unsharded PS's checkpoint). Training resumes whatever happens."""
    try:
        applied = ray.get([shard.hold.remote() for shard in shards], timeout=timeout_s)
        targets: dict[str, int] = {}
        for seqs in applied:
            for sender, seq in seqs.items():
                targets[sender] = max(targets.get(sender, 0), seq)
        missing = ray.get([shard.cut.remote(targets, CUT_WAIT_S) for shard in shards], timeout=timeout_s)
        parts = ray.get([shard.shard_state.remote() for shard in shards[1:]], timeout=timeout_s)
        state = ray.get(shards[LEAD].state_dict.remote(tuple(parts)), timeout=timeout_s)
    finally:
        for shard in shards:
            shard.resume.remote()
    if any(missing):
        say(f"checkpoint cut: {max(missing)} packet(s) reached some shards only (a worker died mid-push)")
    return state


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
        versions = packet.shard_versions if packet.shard_versions is not None else self.versions
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


def ps_client(target: Any) -> Any:
    """The worker's client for what the fleet hands out: one PS handle, or a sharded PS."""
    from ray_a3c.cluster.remote import RemoteParameterServerClient

    return ShardedClient(target) if isinstance(target, ShardedTarget) else RemoteParameterServerClient(target)
