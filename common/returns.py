"""Advantage and return estimators as pure numpy functions, time-major.

Conventions for every array of shape [T, N] (T steps of N envs):
- `values[t]` is V(s_t), the value of the state acted on at step t.
- `next_values[t]` is V(s_{t+1}), the value of the observation that followed step t. Where the episode
  ended at t this is V(final observation); it only matters if the episode was truncated.
- `terminated[t]`: the MDP ended (no bootstrap). `truncated[t]`: cut by a time limit (bootstrap from V(s_{t+1})).
Either flag stops the recursion: nothing flows across an episode boundary.
"""
from __future__ import annotations

import numpy as np


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
        truncated: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE(lambda) advantages and returns (= advantages + values), both [T, N] float32.

    lam = 1 gives the n-step bootstrapped discounted return minus V(s_t).
    """
    not_term = 1.0 - terminated.astype(np.float32)
    not_done = 1.0 - np.logical_or(terminated, truncated).astype(np.float32)
    deltas = rewards + gamma * not_term * next_values - values
    advantages = np.zeros_like(deltas, dtype=np.float32)
    running = np.zeros(deltas.shape[1:], np.float32)
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, (advantages + values).astype(np.float32)


def nstep_returns(rewards: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
                  truncated: np.ndarray, gamma: float) -> np.ndarray:
    """n-step bootstrapped discounted returns [T, N]: R_t = r_t + gamma * (R_{t+1} or V(s_{t+1})).

    The bootstrap V(s_{t+1}) is used at the rollout's end and at truncation; termination adds nothing.
    """
    done = np.logical_or(terminated, truncated)
    returns = np.zeros_like(rewards, dtype=np.float32)
    following = np.zeros(rewards.shape[1:], np.float32)
    for t in range(len(rewards) - 1, -1, -1):
        bootstrap = np.where(done[t] | (t == len(rewards) - 1), next_values[t], following)
        following = rewards[t] + gamma * (1.0 - terminated[t]) * bootstrap
        returns[t] = following
    return returns
