"""A sharded parameter server on Ray (learner.num_shards > 1; the plan and the maths: learner/shards.py).

Each shard is an asyncio actor running the plain ParameterServer over its part. A worker's `ShardedClient`
(cluster/comms/transport.py) pushes every slice of a packet at once and waits for all the replies; the lead's reply
decides what the worker counts as delivered. A checkpoint is one consistent cut (`take_cut`): every packet is
in all the shards' states or in none. A node aggregator in front of a sharded PS (cluster/comms/aggregation.py)
forwards one part per shard and hands each member the shards' replies, which the member's ShardedClient
joins."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray

from ray_a3c.cluster.comms.transport import ActorIdentity, hide_gpus, publish_weights
from ray_a3c.common.env.envs import EnvSpaces
from ray_a3c.common.settings.config import Config
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket, senders
from ray_a3c.learner import parameter_server
from ray_a3c.learner.shards import LEAD, ShardPlan

CUT_WAIT_S = 5.0  # how long a cut waits for a packet some shards applied and others have not received yet


class ShardServer(ActorIdentity, parameter_server.ParameterServer):
    """One shard. Between `hold` and `resume` it applies only the packets a cut asks for (`cut`): the
    others wait, as coroutines, and are applied in arrival order once the cut is taken. The senders a cut
    follows are the workers: an aggregate's members, not the aggregator (common/wire/packet.senders)."""

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
