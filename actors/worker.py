"""RolloutWorker: env copies + a local network -> one flat gradient per rollout."""
from __future__ import annotations

import time
from typing import Optional, Protocol

import numpy as np
import torch

from actors.rollout import collect_rollout
from common.config import Config
from common.envs import EnvBatch
from common.flat import get_flat_grads, set_flat_weights
from common.losses import a3c_loss
from common.models import build_model
from common.packet import ApplyResult, GradientPacket
from common.returns import gae


class PendingApply(Protocol):
    def result(self) -> ApplyResult: ...


class ParameterServerClient(Protocol):
    """How a worker talks to the PS: LocalClient wraps a plain ParameterServer, cluster/ a Ray handle."""

    def submit(self, packet: GradientPacket) -> PendingApply: ...

    def get_weights(self) -> tuple[int, np.ndarray, int]: ...


class _Done:
    def __init__(self, result: ApplyResult):
        self._result = result

    def result(self) -> ApplyResult:
        return self._result


class LocalClient:
    """A ParameterServerClient over an in-process ParameterServer (tests, single-process use)."""

    def __init__(self, ps):
        self.ps = ps

    def submit(self, packet: GradientPacket) -> PendingApply:
        return _Done(self.ps.apply_gradients(packet))

    def get_weights(self) -> tuple[int, np.ndarray, int]:
        return self.ps.get_weights()


class RolloutWorker:
    def __init__(self, config: Config, rank: int):
        torch.set_num_threads(1)  # one core per worker; torch's pool would fight the other actors
        self.config, self.rank = config, rank
        seed = config.run.seed + rank
        torch.manual_seed(seed)
        self.envs = EnvBatch(config.env, config.env.num_envs_per_worker, seed)
        self.model = build_model(self.envs.spaces, config.model)
        self.version = -1
        self.total_env_steps = 0

    def set_weights(self, flat: np.ndarray, version: int) -> None:
        set_flat_weights(self.model, flat)
        self.version = version

    def compute_gradient(self) -> GradientPacket:
        """Collect `rollout_steps` x num_envs transitions and differentiate the A3C loss on them."""
        algo = self.config.algo
        ro = collect_rollout(self.envs, self.model, algo.rollout_steps, self.config.env.reward_scale)
        advantages, returns = gae(ro.rewards, ro.values, ro.next_values, ro.terminated, ro.truncated,
                                  algo.gamma, algo.gae_lambda)
        batch = ro.rewards.size
        dist, values = self.model(torch.as_tensor(ro.obs.reshape(batch, -1)))
        actions = torch.as_tensor(ro.actions.reshape((batch,) + ro.actions.shape[2:]))
        terms = a3c_loss(dist.log_prob(actions), dist.entropy(), values,
                         torch.as_tensor(advantages.reshape(-1)), torch.as_tensor(returns.reshape(-1)),
                         algo.entropy_coef, algo.value_coef, algo.value_loss)
        self.model.zero_grad(set_to_none=True)
        terms.total.backward()
        self.total_env_steps += ro.num_steps
        return GradientPacket(
            gradient=get_flat_grads(self.model), version=self.version, env_steps=ro.num_steps,
            worker_rank=self.rank, episode_returns=[r for r, _ in ro.finished],
            episode_lengths=[n for _, n in ro.finished],
            losses={"policy": terms.policy, "value": terms.value, "entropy": terms.entropy,
                    "value_mean": float(ro.values.mean())})

    def run(self, ps: ParameterServerClient, max_updates: Optional[int] = None) -> dict:
        """The asynchronous loop: rollout -> gradient -> push -> adopt the PS's newer weights, until stop.

        With `algo.overlap_push` the push travels while the next rollout is collected, so the worker's
        CPU is not idle during the round trip, at the price of acting one update behind.
        """
        overlap = self.config.algo.overlap_push
        version, weights, _ = ps.get_weights()
        self.set_weights(weights, version)
        pushed, pending, stop = 0, None, False
        compute_s = comm_s = 0.0
        while not stop and (max_updates is None or pushed < max_updates):
            t0 = time.perf_counter()
            packet = self.compute_gradient()
            packet.compute_s, packet.comm_s = compute_s, comm_s
            t1 = time.perf_counter()
            if pending is not None:
                stop, pending = self._adopt(pending.result()), None
                if stop:
                    break
            pending = ps.submit(packet)
            pushed += 1
            if not overlap:
                stop, pending = self._adopt(pending.result()), None
            compute_s, comm_s = t1 - t0, time.perf_counter() - t1
        if pending is not None:
            self._adopt(pending.result())
        return {"rank": self.rank, "pushed": pushed, "env_steps": self.total_env_steps}

    def _adopt(self, result: ApplyResult) -> bool:
        """Take the weights that came back with a push; True when the PS asks workers to stop."""
        if result.weights is not None and result.version != self.version:
            self.set_weights(result.weights, result.version)
        return result.stop

    def close(self) -> None:
        self.envs.close()
