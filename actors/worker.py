"""RolloutWorker: a vector env + a local network -> one flat gradient per rollout."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np
import torch

from ray_a3c.actors.rollout import Rollout, VectorEnvRunner, collect_rollout
from ray_a3c.actors.watchdog import worker_vector_env
from ray_a3c.common.algo.losses import LossTerms, a3c_loss, critic_loss, mean_weights
from ray_a3c.common.algo.models import build_model
from ray_a3c.common.algo.returns import (
    awr_weights,
    discounted_return_trace,
    gae,
    importance_weights,
    standardize,
    vtrace,
)
from ray_a3c.common.env.envs import describe_spaces, variable_channels
from ray_a3c.common.reporting.metrics import (
    ACTION_ABS_MAX,
    ADVANTAGE_MEAN,
    CLIP_FRACTION,
    LOSS_ENTROPY,
    LOSS_POLICY,
    LOSS_VALUE,
    VALUE_MEAN,
    VALUE_REFIT,
    packet_losses,
)
from ray_a3c.common.settings.config import AlgoConfig, Config
from ray_a3c.common.wire.flat import encode_gradient, get_flat_grads, set_flat_weights
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket, Routing


class Pass(str, Enum):
    """One gradient computed for a rollout."""

    ROLLOUT = "rollout"  # collect a rollout and differentiate the A3C loss (V-trace, AWR offline) on it
    SURROGATE = "surrogate"  # an extra policy epoch on the last rollout: PPO's clipped surrogate
    CRITIC = "critic"  # an extra critic epoch on the last rollout: value-only


def passes(algo: AlgoConfig) -> list[Pass]:
    """The gradients of one rollout, in order, each pushed (async) or averaged (sync) on its own: the rollout's,
    then algo.policy_epochs - 1 surrogate passes, then algo.critic_epochs - 1 value-only passes."""
    return [Pass.ROLLOUT] + [Pass.SURROGATE] * (algo.policy_epochs - 1) + [Pass.CRITIC] * (algo.critic_epochs - 1)


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


@dataclass
class _LastBatch:
    """What the extra epochs (critic refits, clipped-surrogate passes) reuse: the last rollout, its fixed
    targets and the acting policy's log-probabilities."""

    obs: torch.Tensor  # [T, N, ...]
    starts: torch.Tensor  # [T, N]
    initial_state: object  # recurrent state before step 0, or None
    actions: torch.Tensor  # [T*N] or [T*N, act_dim]
    advantages: torch.Tensor  # [T*N]
    returns: torch.Tensor  # [T*N]
    mask: torch.Tensor  # [T*N]
    old_log_probs: torch.Tensor  # [T*N] log mu(a|s) under the weights that acted


class RolloutWorker:
    def __init__(self, config: Config, rank: int):
        torch.set_num_threads(1)  # one core per worker; torch's pool would fight the other actors
        self.config, self.rank = config, rank
        seed = config.run.seed + rank
        torch.manual_seed(seed)
        venv, watchdog = worker_vector_env(config, rank, seed * 1000)
        spaces = describe_spaces(venv.single_observation_space, venv.single_action_space, variable_channels(config.env))
        self.model = build_model(spaces, config.model)
        self.runner = VectorEnvRunner(venv, spaces, seed * 1000, self.model.initial_state(venv.num_envs), watchdog)
        self.version = -1
        self.shard_versions: list[int] | None = None  # a sharded PS: each shard's version of the weights held
        self.total_env_steps = 0  # collected
        self.delivered_env_steps = 0  # in packets the PS (or an aggregator) answered: what the PS counted
        self.sender, self._seq = uuid.uuid4().hex, 0  # this incarnation's packets are (sender, 1), (sender, 2)...
        self._last_batch: _LastBatch | None = None
        self._return_acc = np.zeros(venv.num_envs)  # running discounted returns, for reward normalisation
        self._said_no_correction = False
        self._sync_done_at: float | None = None  # when the last synchronous gradient was handed back

    def set_weights(self, flat: np.ndarray, version: int, shard_versions: list[int] | None = None) -> None:
        """`shard_versions`: a sharded PS's version of each shard's part of `flat` (None: `version` is all)."""
        set_flat_weights(self.model, flat)
        self.version, self.shard_versions = version, shard_versions

    def compute_gradient(self) -> GradientPacket:
        """Collect `rollout_steps` x num_envs steps and differentiate the A3C loss on the valid ones."""
        algo = self.config.algo
        ro = collect_rollout(self.runner, self.model, algo.rollout_steps, self.config.env.reward_scale)
        ro, return_moments = self._normalize_rewards(ro)
        batch = ro.rewards.size
        obs, starts = torch.as_tensor(ro.obs), torch.as_tensor(ro.starts)
        mask = torch.as_tensor(ro.valid.reshape(-1))
        # truncated BPTT: the gradient unrolls from the state saved at the rollout's start
        dist, values, _ = self.model.unroll(obs, ro.initial_state, starts)
        actions = torch.as_tensor(ro.actions.reshape((batch,) + ro.actions.shape[2:]))
        log_probs = dist.log_prob(actions)
        raw_advantages, returns = self._targets(ro, log_probs.detach().numpy().reshape(ro.rewards.shape))
        # standardized before the extra passes keep them: every pass weighs the same advantages
        advantages = standardize(raw_advantages, ro.valid) if algo.normalize_advantages else raw_advantages
        self._last_batch = _LastBatch(
            obs=obs,
            starts=starts,
            initial_state=ro.initial_state,
            actions=actions,
            advantages=torch.as_tensor(advantages.reshape(-1)),
            returns=torch.as_tensor(returns.reshape(-1)),
            mask=mask,
            old_log_probs=log_probs.detach(),
        )
        terms = self._loss(log_probs, dist.entropy(), values, self._last_batch)
        self.model.zero_grad(set_to_none=True)
        terms.total.backward()
        self.total_env_steps += ro.num_steps
        valid = ro.valid
        scalars = {
            LOSS_POLICY: terms.policy,
            LOSS_VALUE: terms.value,
            LOSS_ENTROPY: terms.entropy,
            VALUE_MEAN: float(ro.values[valid].mean()) if valid.any() else 0.0,
            ADVANTAGE_MEAN: float(raw_advantages[valid].mean()) if valid.any() else 0.0,
        }
        if self.model.continuous:
            scalars[ACTION_ABS_MAX] = float(np.abs(ro.actions[valid]).max()) if valid.any() else 0.0
        return self._stamped(
            GradientPacket(
                gradient=self._flat_grads(),
                version=self.version,
                env_steps=ro.num_steps,
                worker_rank=self.rank,
                episode_returns=[r for r, _ in ro.finished],
                episode_lengths=[n for _, n in ro.finished],
                losses=packet_losses(scalars),
                env_recreations=int(self.runner.recreations.sum()),
                env_hangs=self.runner.take_hang_reports(),
                obs_moments=_moments(ro.obs[valid]) if self.model.obs_norm is not None else None,
                return_moments=return_moments,
            ),
            Pass.ROLLOUT,
        )

    def _stamped(self, packet: GradientPacket, which: Pass) -> GradientPacket:
        self._seq += 1
        packet.pass_kind = which.value  # the PS's update log records it: `a3c replay` recomputes that pass
        # the shard versions of the weights this gradient comes from: stamped now, as with overlapped pushes the
        # next reply's weights are adopted before this packet leaves
        packet.routing = Routing(sender=self.sender, seq=self._seq, shard_versions=self.shard_versions)
        return packet

    def _flat_grads(self) -> np.ndarray:
        return encode_gradient(get_flat_grads(self.model), self.config.learner.grad_dtype)

    def _normalize_rewards(self, ro: Rollout) -> tuple[Rollout, tuple | None]:
        """model.normalize_rewards: rewards divided by the running std of the discounted return (the PS's
        statistics, as of these weights), clipped to +-10; plus this rollout's return moments for the PS."""
        norm = self.model.reward_norm
        if norm is None:
            return ro, None
        trace, self._return_acc = discounted_return_trace(
            ro.rewards, ro.terminated | ro.truncated, ro.valid, self._return_acc, self.config.algo.gamma
        )
        moments = _moments(trace[ro.valid].reshape(-1, 1))
        scale = float(torch.sqrt(norm.var + 1e-8))
        return dataclasses.replace(ro, rewards=np.clip(ro.rewards / scale, -10.0, 10.0).astype(np.float32)), moments

    def _targets(self, ro, log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(policy-gradient coefficients, value targets) [T, N]: GAE advantages on-policy; V-trace with truncated
        importance weights when replaying a dataset that recorded its behaviour policy's log-probabilities;
        AWR weights on the logged data's GAE advantages with algo.offline_update=awr."""
        algo = self.config.algo
        if self.runner.replaying and algo.offline_update == "awr":
            advantages, returns = gae(
                ro.rewards, ro.values, ro.next_values, ro.terminated, ro.truncated, algo.gamma, algo.gae_lambda
            )
            return awr_weights(advantages, algo.awr_temperature, algo.awr_max_weight), returns
        if ro.behaviour_log_probs is not None:
            rhos = np.where(ro.valid, importance_weights(log_probs, ro.behaviour_log_probs, algo.is_clip), 0.0)
            returns, advantages = vtrace(
                rewards=ro.rewards,
                values=ro.values,
                next_values=ro.next_values,
                terminated=ro.terminated,
                truncated=ro.truncated,
                rhos=rhos.astype(np.float32),
                cs=rhos.astype(np.float32),
                gamma=algo.gamma,
            )
            return advantages, returns
        if self.runner.replaying and not self._said_no_correction:
            self._said_no_correction = True
            print(
                f"worker {self.rank}: the dataset has no behaviour log-probs: plain A3C update on the logged "
                "actions, no importance correction",
                flush=True,
            )
        return gae(ro.rewards, ro.values, ro.next_values, ro.terminated, ro.truncated, algo.gamma, algo.gae_lambda)

    def compute_surrogate_gradient(self) -> GradientPacket:
        """A full gradient on the last rollout with the current weights, PPO's clipped surrogate against the
        policy that acted (one extra policy epoch): the trust region bounds how far the passes move it."""
        b = self._batch()
        dist, values, _ = self.model.unroll(b.obs, b.initial_state, b.starts)
        terms = self._loss(dist.log_prob(b.actions), dist.entropy(), values, b, surrogate=True)
        self.model.zero_grad(set_to_none=True)
        terms.total.backward()
        return self._extra_pass_packet({CLIP_FRACTION: terms.clip_fraction}, Pass.SURROGATE)

    def _loss(
        self,
        log_probs: torch.Tensor,
        entropy: torch.Tensor,
        values: torch.Tensor,
        batch: _LastBatch,
        surrogate: bool = False,
    ) -> LossTerms:
        """The A3C loss of the policy's [T*N] log-probabilities, entropies and values on `batch`'s valid steps,
        with the algo's coefficients; `surrogate`: PPO's clipped surrogate against the policy that acted."""
        algo = self.config.algo
        return a3c_loss(
            log_probs=log_probs,
            entropy=entropy,
            values=values,
            advantages=batch.advantages,
            returns=batch.returns,
            entropy_coef=algo.entropy_coef,
            value_coef=algo.value_coef,
            value_loss=algo.value_loss,
            mask=batch.mask,
            old_log_probs=batch.old_log_probs if surrogate else None,
            clip_range=algo.clip_range,
        )

    def _batch(self) -> _LastBatch:
        if self._last_batch is None:
            raise RuntimeError("compute_gradient must run before an extra epoch")
        return self._last_batch

    def compute_critic_gradient(self) -> GradientPacket:
        """A value-only gradient on the last rollout, with the current weights (one extra critic epoch)."""
        b = self._batch()
        values = self.model.unroll(b.obs, b.initial_state, b.starts)[1]
        value = critic_loss(values, b.returns, self.config.algo.value_loss, mean_weights(b.returns, b.mask))
        self.model.zero_grad(set_to_none=True)
        (self.config.algo.value_coef * value).backward()
        return self._extra_pass_packet({VALUE_REFIT: float(value.detach())}, Pass.CRITIC)

    def _extra_pass_packet(self, losses: dict, which: Pass) -> GradientPacket:
        """An extra pass's gradient (no new env steps) as a stamped packet, with the pass's own loss tags."""
        return self._stamped(
            GradientPacket(
                gradient=self._flat_grads(),
                version=self.version,
                env_steps=0,
                worker_rank=self.rank,
                critic_only=which == Pass.CRITIC,
                losses=packet_losses(losses),
            ),
            which,
        )

    def compute(self, which: Pass) -> GradientPacket:
        """One pass's gradient with the current weights."""
        if which == Pass.SURROGATE:
            return self.compute_surrogate_gradient()
        if which == Pass.CRITIC:
            return self.compute_critic_gradient()
        return self.compute_gradient()

    # -- synchronous mode: the driver hands everyone the same weights -------------------------------------
    def gradient_at(
        self, version: int, weights: np.ndarray, fetch_s: float = 0.0, which: Pass = Pass.ROLLOUT
    ) -> GradientPacket:
        """One pass's gradient on the given weights. `fetch_s`: seconds the caller spent fetching `weights`.
        Communication in sync mode = fetching the weights + the time since the previous gradient left
        (the packet's trip to the PS, the wait for the slowest worker, the PS's step, the next call)."""
        t0 = time.perf_counter()
        waited = t0 - fetch_s - self._sync_done_at if self._sync_done_at is not None else 0.0
        self.set_weights(weights, version)
        packet = self.compute(which)
        self._sync_done_at = time.perf_counter()
        packet.compute_s, packet.comm_s = self._sync_done_at - t0, max(waited, 0.0) + fetch_s
        return packet

    # -- asynchronous mode: the worker loops on its own ---------------------------------------------------
    def run(self, ps: ParameterServerClient, max_updates: int | None = None) -> dict:
        """Rollout -> gradient -> push -> adopt the PS's newer weights, until the PS says stop.

        With `algo.overlap_push` the push travels while the next rollout is collected, so the worker's
        CPU is not idle during the round trip, at the price of acting one update behind. Extra policy epochs
        (clipped surrogate), then extra critic epochs, are pushed one at a time, each on the weights the
        previous push returned.
        """
        plan = passes(self.config.algo)
        overlap = self.config.algo.overlap_push and len(plan) == 1
        version, weights, _ = ps.get_weights()
        self.set_weights(weights, version, getattr(ps, "shard_versions", None))  # a sharded PS's client has them
        pushed, pending, stop = 0, None, False
        compute_s = comm_s = 0.0
        while not stop and (max_updates is None or pushed < max_updates):
            t0 = time.perf_counter()
            packet = self.compute(plan[0])
            packet.compute_s, packet.comm_s = compute_s, comm_s
            t1 = time.perf_counter()
            if pending is not None:
                stop, pending = self._settle(pending), None
                if stop:
                    break
            pending = (ps.submit(packet), packet.env_steps)
            pushed += 1
            if not overlap:
                stop, pending = self._settle(pending), None
                for which in plan[1:]:
                    stop = stop or self._settle((ps.submit(self.compute(which)), 0))
            compute_s, comm_s = t1 - t0, time.perf_counter() - t1
        if pending is not None:
            self._settle(pending)
        return {"rank": self.rank, "pushed": pushed, "env_steps": self.delivered_env_steps}

    def _settle(self, pending: tuple) -> bool:
        """Wait for a push's answer, count its env steps as delivered, adopt its weights; True = stop."""
        submitted, env_steps = pending
        result = submitted.result()
        self.delivered_env_steps += env_steps
        return self._adopt(result)

    def _adopt(self, result: ApplyResult) -> bool:
        """Take the weights that came back with a push; True when the PS asks workers to stop."""
        if result.weights is not None:  # a sharded PS may send one shard's newer slice under the same lead version
            self.set_weights(result.weights, result.version, result.shard_versions)
        return result.stop

    def close(self) -> None:
        self.runner.close()


def _moments(obs: np.ndarray) -> tuple:
    """(count, mean, var) over the first axis of [B, D] observations."""
    if not len(obs):
        return 0, None, None
    return int(len(obs)), obs.mean(0).astype(np.float32), obs.var(0).astype(np.float32)
