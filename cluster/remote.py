"""Ray remote versions of the plain classes, and the client that lets a worker call a remote PS."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import numpy as np
import ray

from ray_a3c.actors import evaluator, worker
from ray_a3c.common.config import Config
from ray_a3c.common.envs import EnvSpaces
from ray_a3c.common.packet import ApplyResult, GradientPacket
from ray_a3c.learner import parameter_server
from ray_a3c.learner.update_log import UpdateLog

INLINE_WEIGHTS_BYTES = 100 * 1024  # Ray's own limit for inlining small objects into a reply


def publish_weights(flat: np.ndarray) -> Any:
    """Large weights go into the object store once per version (one ray.put shared by every reader);
    small ones travel inside the reply, which is cheaper than an object-store round trip. `flat` may be a live
    view of the PS's weight buffer, which the next step changes: ray.put copies it, a small one is copied here."""
    return ray.put(flat) if flat.nbytes > INLINE_WEIGHTS_BYTES else flat.copy()


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


# The Ray dashboard lists actors by class name, so the Ray-side subclasses keep the roles' own names.
class ParameterServer(ActorIdentity, parameter_server.ParameterServer):
    def __init__(self, config: Config, spaces: EnvSpaces, update_log_dir: str | None = None):
        """`update_log_dir`: the run dir (absolute) to append the update log to, None for none."""
        if config.learner.num_gpus == 0 and config.learner.device == "cpu":
            hide_gpus()
        digest_every = config.run.update_log_digest_every
        update_log = UpdateLog.open(update_log_dir, digest_every) if update_log_dir else None
        super().__init__(config, spaces, publish=publish_weights, update_log=update_log)

    def ping(self) -> int:
        return self.version


class BatchingParameterServer(ParameterServer):
    """learner.max_batch_packets > 1: an asyncio actor, so the pushes that arrive while an Adam step runs
    queue up as coroutines; the next step takes every packet waiting, up to k, as one batch (`apply_batch`).
    Its other methods stay plain: on an asyncio actor they run on the same thread, one at a time."""

    def __init__(self, config: Config, spaces: EnvSpaces, update_log_dir: str | None = None):
        super().__init__(config, spaces, update_log_dir)
        self._waiting: list[tuple[GradientPacket, asyncio.Future]] = []
        self._draining = False

    async def apply_gradients(self, packet: GradientPacket) -> ApplyResult:  # type: ignore[override]
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((packet, done))
        if not self._draining:
            self._draining = True
            try:
                await self._drain()
            finally:
                self._draining = False
        return await done

    async def _drain(self) -> None:
        k = self.config.learner.max_batch_packets
        while self._waiting:
            await asyncio.sleep(0)  # let the calls Ray already delivered join this batch
            batch, self._waiting = self._waiting[:k], self._waiting[k:]
            try:
                results = self.apply_batch([packet for packet, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every sender must hear of it, not only the drainer
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=False):
                done.set_result(result)


class RemoteParameterServerClient:
    """Satisfies actors.worker.ParameterServerClient over a Ray actor handle."""

    def __init__(self, handle: Any):
        self.handle = handle

    def submit(self, packet: GradientPacket) -> _PendingRemote:
        return _PendingRemote(self.handle.apply_gradients.remote(packet))

    def get_weights(self) -> tuple[int, np.ndarray, int]:
        version, weights, env_steps = ray.get(self.handle.get_weights.remote())
        if isinstance(weights, ray.ObjectRef):
            weights = ray.get(weights)
        return version, weights, env_steps


class _PendingRemote:
    def __init__(self, ref: ray.ObjectRef):
        self.ref = ref

    def result(self) -> ApplyResult:
        result = ray.get(self.ref)
        if isinstance(result.weights, ray.ObjectRef):
            result.weights = ray.get(result.weights)
        return result


def resolve_weights(weights: Any) -> np.ndarray:
    """Weights as a reply carries them: inline, or a reference into the object store."""
    return ray.get(weights) if isinstance(weights, ray.ObjectRef) else weights


class RolloutWorker(ActorIdentity, worker.RolloutWorker):
    def __init__(self, config: Config, rank: int):
        hide_gpus()
        super().__init__(config, rank)

    def run_remote(self, ps_handle: Any, aggregator_prefix: str | None = None) -> dict:
        """The async loop against a PS handle (or a sharded PS's target); with cluster.aggregate=node, through
        this node's aggregator."""
        from ray_a3c.cluster.sharding import ps_client

        client = ps_client(ps_handle)
        if aggregator_prefix is not None:
            from ray_a3c.cluster.aggregation import AggregatedClient, find_aggregator

            aggregator = find_aggregator(self.config, aggregator_prefix)
            if aggregator is not None:
                client = AggregatedClient(client, aggregator, self.config.cluster.aggregate_retry_s)
        return self.run(client)

    def sync_gradient(self, published: tuple, which: worker.Pass = worker.Pass.ROLLOUT) -> GradientPacket:
        """Sync mode: one pass's gradient; `published` is the PS's (version, weights, env_steps), shared by
        every worker."""
        version, weights, _ = published
        t0 = time.perf_counter()
        weights = resolve_weights(weights)
        return self.gradient_at(version, weights, fetch_s=time.perf_counter() - t0, which=which)


class Evaluator(ActorIdentity, evaluator.Evaluator):
    def __init__(self, config: Config, **kwargs: Any):
        hide_gpus()
        super().__init__(config, **kwargs)

    def evaluate_remote(
        self, ps_handle: Any, episodes: int, seed: int, gif_path: str | None = None
    ) -> evaluator.EvalResult:
        from ray_a3c.cluster.sharding import ps_client

        return self.evaluate_latest(ps_client(ps_handle), episodes, seed, gif_path)


RemoteParameterServer = ray.remote(ParameterServer)
RemoteBatchingParameterServer = ray.remote(BatchingParameterServer)
RemoteWorker = ray.remote(RolloutWorker)
RemoteEvaluator = ray.remote(Evaluator)
