"""Reward normalisation (model.normalize_rewards): the running discounted return's statistics, merged on the
PS from every worker, travel with the weights and scale only the learning rewards."""

import numpy as np
import pytest
import torch

from ray_a3c.actors.evaluator import Evaluator
from ray_a3c.actors.worker import RolloutWorker
from ray_a3c.common.algo.returns import discounted_return_trace
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.wire.flat import get_flat_weights, num_params
from ray_a3c.common.wire.packet import GradientPacket
from ray_a3c.learner.parameter_server import ParameterServer
from tests.helpers import small_config


def reference_trace(rewards, done, valid, carry, gamma):
    acc, out = list(carry), np.zeros_like(rewards)
    for t in range(rewards.shape[0]):
        for i in range(rewards.shape[1]):
            if valid[t, i]:
                acc[i] = gamma * acc[i] + rewards[t, i]
                out[t, i] = acc[i]
            if done[t, i]:
                acc[i] = 0.0
    return out, np.array(acc)


def test_trace_matches_a_plain_loop_across_episode_ends_and_autoreset_steps():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(7, 3)).astype(np.float32)
    done = np.zeros((7, 3), bool)
    done[2, 0] = done[4, 1] = done[6, 2] = True
    valid = np.ones((7, 3), bool)
    valid[3, 0] = valid[5, 1] = False  # the autoreset step after an episode end is no transition
    carry = np.array([1.0, -2.0, 0.5])
    trace, acc = discounted_return_trace(rewards, done, valid, carry, 0.9)
    expected, expected_acc = reference_trace(rewards, done, valid, carry, 0.9)
    np.testing.assert_allclose(trace, expected, rtol=1e-5)
    np.testing.assert_allclose(acc, expected_acc, rtol=1e-6)
    assert acc[2] == 0.0 and trace[3, 0] == 0.0


def make_ps():
    cfg = small_config(**{"model.normalize_rewards": True})
    return ParameterServer(cfg, probe_spaces(cfg.env)), cfg


def moments(x):
    return len(x), np.array([x.mean()], np.float32), np.array([x.var()], np.float32)


def test_merging_two_workers_gives_the_pooled_statistics_and_survives_a_checkpoint(tmp_path):
    ps, cfg = make_ps()
    a, b = np.random.default_rng(1).normal(3.0, 2.0, 500), np.random.default_rng(2).normal(-1.0, 0.5, 300)
    zero = np.zeros(num_params(ps.model), np.float32)
    for rank, data in enumerate((a, b)):
        assert ps.apply_gradients(GradientPacket(zero, ps.version, 10, rank, return_moments=moments(data))).accepted
    pooled = np.concatenate([a, b])
    assert float(ps.model.reward_norm.mean) == pytest.approx(pooled.mean(), rel=1e-3)
    assert float(ps.model.reward_norm.var) == pytest.approx(pooled.var(), rel=1e-3)
    checkpoint.save_atomic(ps.state_dict(), str(tmp_path / "c.pt"))
    restored = ParameterServer(cfg, probe_spaces(cfg.env))
    restored.load_state_dict(checkpoint.load(str(tmp_path / "c.pt")))
    assert float(restored.model.reward_norm.var) == pytest.approx(pooled.var(), rel=1e-3)
    np.testing.assert_array_equal(get_flat_weights(restored.model), get_flat_weights(ps.model))


def test_nonfinite_return_moments_are_rejected():
    ps, _ = make_ps()
    bad = (5, np.array([np.nan], np.float32), np.array([1.0], np.float32))
    packet = GradientPacket(np.zeros(num_params(ps.model), np.float32), ps.version, 10, return_moments=bad)
    assert not ps.apply_gradients(packet).accepted and float(ps.model.reward_norm.var) == 1.0


def test_workers_divide_learning_rewards_by_the_return_std_and_report_return_moments():
    ps, cfg = make_ps()
    ps.model.reward_norm.var.fill_(4.0)
    worker = RolloutWorker(cfg, rank=0)
    worker.set_weights(get_flat_weights(ps.model), ps.version)
    packet = worker.compute_gradient()
    count, mean, var = packet.return_moments
    assert count == packet.env_steps and mean[0] > 0  # CartPole pays +1 a step: returns are positive
    from ray_a3c.actors.rollout import collect_rollout

    raw = collect_rollout(worker.runner, worker.model, 5, 1.0)
    scaled, _ = worker._normalize_rewards(raw)
    np.testing.assert_allclose(scaled.rewards, raw.rewards / 2.0, rtol=1e-5)  # std 2
    worker.close()


def test_evaluation_does_not_depend_on_the_reward_statistics():
    ps, cfg = make_ps()
    evaluator = Evaluator(cfg)
    evaluator.set_weights(get_flat_weights(ps.model))
    before = evaluator.run_episodes(3, seed=5).returns
    ps.model.reward_norm.var.fill_(1e6)
    evaluator.set_weights(get_flat_weights(ps.model))
    assert evaluator.run_episodes(3, seed=5).returns == before
    assert torch.equal(evaluator.model.reward_norm.var, torch.tensor([1e6]))
    evaluator.close()
