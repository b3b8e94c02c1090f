"""GAE and n-step returns against a plain per-episode numpy reference."""

import numpy as np
import pytest

from ray_a3c.common.algo.returns import gae, nstep_returns, standardize
from tests.helpers import random_rollout


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Walk each env's steps backwards, one transition at a time, restarting at episode ends."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        carry = 0.0
        for t in reversed(range(T)):
            ended = terminated[t, n] or truncated[t, n]
            if ended or t == T - 1:
                carry = 0.0
                bootstrap = 0.0 if terminated[t, n] else next_values[t, n]
            else:
                bootstrap = values[t + 1, n]
            delta = rewards[t, n] + gamma * bootstrap - values[t, n]
            carry = delta + gamma * lam * carry
            adv[t, n] = carry
    return adv, adv + values


def reference_nstep(rewards, values, next_values, terminated, truncated, gamma):
    """R_t = sum of discounted rewards up to the episode's end or the rollout's end, plus the bootstrap."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, discount, k = 0.0, 1.0, t
            while True:
                total += discount * rewards[k, n]
                discount *= gamma
                if terminated[k, n]:
                    break
                if truncated[k, n] or k == T - 1:
                    total += discount * next_values[k, n]
                    break
                k += 1
            out[t, n] = total
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.98, 0.0)])
def test_gae_matches_reference(seed, gamma, lam):
    data = random_rollout(seed)
    assert data[3].any() and data[4].any(), "the data must mix terminations and truncations"
    adv, ret = gae(*data, gamma, lam)
    ref_adv, ref_ret = reference_gae(*data, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_nstep_matches_reference_and_gae_lambda_one(seed):
    data = random_rollout(seed)
    rewards, values, next_values, terminated, truncated = data
    ret = nstep_returns(rewards, next_values, terminated, truncated, 0.97)
    np.testing.assert_allclose(ret, reference_nstep(*data, 0.97), rtol=1e-5, atol=1e-5)
    _, gae_ret = gae(*data, 0.97, 1.0)
    np.testing.assert_allclose(gae_ret, ret, rtol=1e-4, atol=1e-4)


def test_truncation_bootstraps_and_termination_does_not():
    rewards = np.ones((1, 2), np.float32)
    next_values = np.full((1, 2), 10.0, np.float32)
    terminated = np.array([[True, False]])
    truncated = np.array([[False, True]])
    ret = nstep_returns(rewards, next_values, terminated, truncated, 0.5)
    np.testing.assert_allclose(ret, [[1.0, 1.0 + 0.5 * 10.0]])


def test_nothing_flows_across_an_episode_boundary():
    rewards = np.array([[1.0], [100.0]], np.float32)
    values = np.zeros((2, 1), np.float32)
    next_values = np.array([[0.0], [0.0]], np.float32)
    terminated = np.array([[True], [False]])
    truncated = np.zeros((2, 1), bool)
    adv, _ = gae(rewards, values, next_values, terminated, truncated, 0.99, 0.95)
    assert adv[0, 0] == pytest.approx(1.0)


def vector_rollout_with_autoreset(seed, T=60, N=4):
    """A hand-built NEXT_STEP vector rollout: after an env's episode ends at t, step t+1 is its reset step
    (not a transition: reward 0, no flags, garbage value) and V(s_{t+1}) = values[t+1] is the final obs."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    terminated = np.zeros((T, N), bool)
    truncated = np.zeros((T, N), bool)
    valid = np.ones((T, N), bool)
    for n in range(N):
        t = int(rng.integers(2, 8))
        while t < T - 1:
            (terminated if rng.random() < 0.5 else truncated)[t, n] = True
            valid[t + 1, n] = False
            rewards[t + 1, n] = 0.0
            t += int(rng.integers(3, 10))
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]
    next_values[-1] = rng.normal(size=N)
    return rewards, values, next_values, terminated, truncated, valid


@pytest.mark.parametrize("seed", range(4))
def test_gae_on_a_vector_rollout_with_masked_resets_equals_the_per_env_reference(seed):
    rewards, values, next_values, terminated, truncated, valid = vector_rollout_with_autoreset(seed)
    assert terminated.any() and truncated.any() and (~valid).any()
    adv, ret = gae(rewards, values, next_values, terminated, truncated, 0.99, 0.9)
    for n in range(rewards.shape[1]):
        keep = valid[:, n]  # the env's real transitions only, in order
        cols = [a[keep, n][:, None] for a in (rewards, values, next_values, terminated, truncated)]
        ref_adv, ref_ret = reference_gae(*cols, 0.99, 0.9)
        np.testing.assert_allclose(adv[keep, n], ref_adv[:, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ret[keep, n], ref_ret[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_standardize_matches_a_reference_over_the_valid_steps_only(seed):
    rng = np.random.default_rng(seed)
    advantages = rng.normal(3.0, 0.2, size=(5, 4)).astype(np.float32)
    valid = rng.random((5, 4)) > 0.3
    advantages[~valid] = 1e6  # autoreset steps: must not move the statistics
    picked = [float(a) for a, v in zip(advantages.ravel(), valid.ravel(), strict=True) if v]
    mean = sum(picked) / len(picked)
    std = (sum((a - mean) ** 2 for a in picked) / len(picked)) ** 0.5
    expected = np.where(valid, (advantages - mean) / (std + 1e-8), 0.0)
    out = standardize(advantages, valid)
    assert out.dtype == np.float32 and out.shape == (5, 4)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert abs(out[valid].mean()) < 1e-5 and abs(out[valid].std() - 1.0) < 1e-4


def test_standardize_of_one_or_no_valid_step_only_centres():
    advantages = np.array([[2.0, 5.0]], np.float32)
    np.testing.assert_array_equal(standardize(advantages, np.array([[True, False]])), [[0.0, 0.0]])
    np.testing.assert_array_equal(standardize(advantages, np.array([[False, False]])), [[0.0, 0.0]])
