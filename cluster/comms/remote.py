"""Ray remote versions of the plain classes (the PS, its asyncio batching form, the worker, the evaluator); how
they reach each other: cluster/comms/transport.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray

from ray_a3c.actors import evaluator, worker
from ray_a3c.cluster.comms.transport import (
    ActorIdentity,
    hide_gpus,
    ps_client,
    publish_weights,
    resolve_weights,
    worker_client,
)
from ray_a3c.common.env.envs import EnvSpaces
from ray_a3c.common.settings.config import Config
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket
from ray_a3c.learner import parameter_server
from ray_a3c.learner.update_log import UpdateLog


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


class RolloutWorker(ActorIdentity, worker.RolloutWorker):
    def __init__(self, config: Config, rank: int):
        hide_gpus()
        super().__init__(config, rank)

    def run_remote(self, ps_handle: Any, aggregator_prefix: str | None = None) -> dict:
        """The async loop against a PS handle (or a sharded PS's target); with cluster.aggregate=node, through
        this node's aggregator."""
        return self.run(worker_client(self.config, ps_handle, aggregator_prefix))

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
        return self.evaluate_latest(ps_client(ps_handle), episodes, seed, gif_path)


RemoteParameterServer = ray.remote(ParameterServer)
RemoteBatchingParameterServer = ray.remote(BatchingParameterServer)
RemoteWorker = ray.remote(RolloutWorker)
RemoteEvaluator = ray.remote(Evaluator)
