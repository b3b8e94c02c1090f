"""The LSTM core: one long unroll equals the same sequence cut into rollouts with the state carried;
state resets at episode starts; the worker's gradient starts from the state saved at the rollout's start."""
import numpy as np
import pytest
import torch

from ray_a3c.actors.worker import RolloutWorker
from ray_a3c.common.envs import probe_spaces
from ray_a3c.common.models import build_model
from tests.helpers import small_config


def lstm_model(seed=0):
    cfg = small_config(**{"model.lstm_size": 8, "model.shared_trunk": True, "model.hidden_sizes": [16]})
    torch.manual_seed(seed)
    return build_model(probe_spaces(cfg.env), cfg.model)


def loss_and_grads(model, outputs):
    model.zero_grad()
    loss = sum((d.dist.logits.pow(2).sum() + v.pow(3).sum()) for d, v in outputs)
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_one_long_unroll_equals_rollouts_with_the_state_carried():
    model = lstm_model()
    T, N = 12, 3
    obs = torch.randn(T, N, 4)
    starts = torch.zeros(T, N, dtype=torch.bool)
    starts[0] = True
    starts[7, 1] = True  # env 1 begins a new episode inside the second rollout
    dist, values, _ = model.unroll(obs, None, starts)
    full_grads = loss_and_grads(model, [(dist, values)])
    state, pieces = None, []
    for a, b in [(0, 5), (5, 9), (9, 12)]:
        d, v, state = model.unroll(obs[a:b], state, starts[a:b])
        pieces.append((d, v))
    piece_grads = loss_and_grads(model, pieces)
    torch.testing.assert_close(torch.cat([d.dist.logits for d, _ in pieces]), dist.dist.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([v for _, v in pieces]), values, atol=1e-5, rtol=1e-5)
    for g_full, g_piece in zip(full_grads, piece_grads):
        torch.testing.assert_close(g_piece, g_full, atol=1e-5, rtol=1e-5)


def test_state_resets_at_an_episode_start():
    model = lstm_model()
    obs = torch.randn(6, 2, 4)
    starts = torch.zeros(6, 2, dtype=torch.bool)
    starts[3, 0] = True
    with torch.no_grad():
        d, v, _ = model.unroll(obs, model.initial_state(2), starts)
        fresh_d, fresh_v, _ = model.unroll(obs[3:, :1], None, None)  # env 0 from step 3 with a zero state
        carried_d, _, _ = model.unroll(obs[3:, :1], model.unroll(obs[:3, :1])[2], None)
    logits = d.dist.logits.reshape(6, 2, -1)
    torch.testing.assert_close(logits[3:, 0], fresh_d.dist.logits, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(carried_d.dist.logits, fresh_d.dist.logits, atol=1e-4)


def test_worker_carries_state_across_rollouts_and_differentiates_from_the_saved_start():
    cfg = small_config(**{"model.lstm_size": 8, "model.shared_trunk": True, "algo.rollout_steps": 6,
                          "env.num_envs_per_worker": 2})
    worker = RolloutWorker(cfg, rank=0)
    worker.compute_gradient()
    h_after_first = worker.runner.state[0].clone()
    assert h_after_first.abs().sum() > 0
    from ray_a3c.actors.rollout import collect_rollout

    ro = collect_rollout(worker.runner, worker.model, 6, 1.0)
    torch.testing.assert_close(ro.initial_state[0], h_after_first)  # carried, not reset, between rollouts
    with torch.no_grad():
        _, values, _ = worker.model.unroll(torch.as_tensor(ro.obs), ro.initial_state, torch.as_tensor(ro.starts))
    np.testing.assert_allclose(values.numpy().reshape(ro.values.shape), ro.values, atol=1e-5)


@pytest.mark.parametrize("lstm", [0, 8])
def test_cartpole_lstm_worker_produces_a_finite_gradient(lstm):
    cfg = small_config(**{"model.lstm_size": lstm, "model.shared_trunk": True})
    packet = RolloutWorker(cfg, rank=0).compute_gradient()
    assert np.isfinite(packet.gradient).all() and np.abs(packet.gradient).sum() > 0
