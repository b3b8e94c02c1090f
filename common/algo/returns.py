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


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
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


def nstep_returns(
    rewards: np.ndarray, next_values: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, gamma: float
) -> np.ndarray:
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


def standardize(advantages: np.ndarray, valid: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Advantages shifted and scaled to mean 0, std 1 over the valid steps of one batch (PPO's, Sample
    Factory's and RLlib's default): the policy gradient's weight against the value and entropy terms no longer
    depends on the reward scale. advantages, valid: [T, N] -> float32 [T, N], 0 where not valid; a batch of
    fewer than two valid steps is only centred (its std is no estimate)."""
    picked = advantages[valid].astype(np.float64)
    if picked.size == 0:
        return np.zeros_like(advantages, dtype=np.float32)
    centred = advantages - picked.mean()
    scaled = centred / (picked.std() + eps) if picked.size > 1 else centred
    return np.where(valid, scaled, 0.0).astype(np.float32)


def importance_weights(target_log_probs: np.ndarray, behaviour_log_probs: np.ndarray, clip: float) -> np.ndarray:
    """Truncated importance weights min(clip, pi(a|s) / mu(a|s)), any shape."""
    return np.minimum(clip, np.exp(target_log_probs - behaviour_log_probs)).astype(np.float32)


def awr_weights(advantages: np.ndarray, temperature: float, max_weight: float) -> np.ndarray:
    """Advantage-weighted regression's per-step weights (Peng et al. 2019): min(exp(A / temperature),
    max_weight). Never negative: the policy is pulled towards logged actions that did better than the
    baseline, never pushed away from the others (which on a fixed dataset diverges for Gaussian policies).
    Shapes: any, elementwise."""
    return np.exp(np.minimum(advantages / temperature, np.log(max_weight))).astype(np.float32)


def vtrace(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    rhos: np.ndarray,
    cs: np.ndarray,
    gamma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """V-trace (Espeholt et al. 2018) with truncated weights `rhos` and trace cutting `cs`, all [T, N].

    vs_t = V_t + rho_t * delta_t + gamma * c_t * (vs_{t+1} - V_{t+1}), delta_t = r_t + gamma * V(s_{t+1}) - V_t,
    restarting at episode ends (terminated: no bootstrap; truncated: bootstrap from next_values).
    Returns (vs value targets, policy-gradient advantages rho_t * (r_t + gamma * vs_{t+1} - V_t)), both [T, N].
    With rhos = cs = 1 this is GAE(lambda=1).
    """
    not_term = 1.0 - terminated.astype(np.float32)
    not_done = 1.0 - np.logical_or(terminated, truncated).astype(np.float32)
    deltas = rhos * (rewards + gamma * not_term * next_values - values)
    corrections = np.zeros_like(values, dtype=np.float32)  # vs_t - V_t
    running = np.zeros(values.shape[1:], np.float32)
    for t in range(len(values) - 1, -1, -1):
        running = deltas[t] + gamma * cs[t] * not_done[t] * running
        corrections[t] = running
    vs = corrections + values
    vs_next = next_values.copy()
    vs_next[:-1] = np.where(not_done[:-1] > 0, vs[1:], next_values[:-1])
    advantages = rhos * (rewards + gamma * not_term * vs_next - values)
    return vs.astype(np.float32), advantages.astype(np.float32)


def discounted_return_trace(
    rewards: np.ndarray, done: np.ndarray, valid: np.ndarray, carry: np.ndarray, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """The running discounted return of each env, forwards in time, for reward normalisation: at every valid
    step acc = gamma * acc + r_t, recorded, then reset to 0 where the episode ended.

    rewards, done, valid: [T, N]; carry: [N], the accumulators left by the previous rollout.
    Returns (trace [T, N], 0 where not valid; the accumulators to carry into the next rollout [N])."""
    acc = carry.astype(np.float64).copy()
    trace = np.zeros(rewards.shape, np.float64)
    for t in range(rewards.shape[0]):
        acc = np.where(valid[t], gamma * acc + rewards[t], acc)
        trace[t] = np.where(valid[t], acc, 0.0)
        acc = np.where(done[t], 0.0, acc)
    return trace.astype(np.float32), acc
