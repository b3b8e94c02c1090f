"""Collect a time-major rollout from a batch of envs with the current policy."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from common.envs import EnvBatch
from common.models import ActorCritic


@dataclass
class Rollout:
    obs: np.ndarray  # [T, N, obs_dim] observations acted on
    actions: np.ndarray  # [T, N] (discrete) or [T, N, act_dim] (continuous, unclipped samples)
    rewards: np.ndarray  # [T, N] scaled rewards
    terminated: np.ndarray  # [T, N] bool
    truncated: np.ndarray  # [T, N] bool
    values: np.ndarray  # [T, N] V(s_t) under the acting weights
    next_values: np.ndarray  # [T, N] V(s_{t+1}); V(final obs) where an episode ended
    finished: list = field(default_factory=list)  # (raw return, length) of episodes ended in the rollout

    @property
    def num_steps(self) -> int:
        return int(self.rewards.size)


@torch.no_grad()
def collect_rollout(envs: EnvBatch, model: ActorCritic, steps: int, reward_scale: float) -> Rollout:
    obs_buf, act_buf, rew, term, trunc, vals = [], [], [], [], [], []
    final_obs: list[dict] = []
    finished: list = []
    for _ in range(steps):
        obs = envs.obs
        dist, values = model(torch.as_tensor(obs))
        actions = dist.sample()
        batch = envs.step(model.env_actions(actions))
        obs_buf.append(obs)
        act_buf.append(actions.numpy())
        rew.append(batch.rewards * reward_scale)
        term.append(batch.terminated)
        trunc.append(batch.truncated)
        vals.append(values.numpy())
        final_obs.append(batch.final_obs)
        finished.extend(batch.finished)
    values = np.stack(vals).astype(np.float32)
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]
    next_values[-1] = model.value(torch.as_tensor(envs.obs)).numpy()
    _bootstrap_truncated(model, final_obs, np.stack(trunc), next_values)
    return Rollout(np.stack(obs_buf), np.stack(act_buf), np.stack(rew).astype(np.float32), np.stack(term),
                   np.stack(trunc), values, next_values, finished)


def _bootstrap_truncated(model: ActorCritic, final_obs: list[dict], truncated: np.ndarray,
                         next_values: np.ndarray) -> None:
    """Where an episode ended at (t, i), s_{t+1} is its final obs, not the reset obs that followed."""
    where = [(t, i) for t, ends in enumerate(final_obs) for i in ends]
    if not where:
        return
    needs_value = [(t, i) for t, i in where if truncated[t, i]]
    for t, i in where:
        next_values[t, i] = 0.0  # terminated: unused by the maths; keep it clean
    if needs_value:
        obs = np.stack([final_obs[t][i] for t, i in needs_value])
        boot = model.value(torch.as_tensor(obs)).numpy()
        for (t, i), v in zip(needs_value, boot):
            next_values[t, i] = v
