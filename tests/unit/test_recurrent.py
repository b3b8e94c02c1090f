"""The LSTM core: one long unroll equals the same sequence cut into rollouts with the state carried;
state resets at episode starts; the worker's gradient starts from the state saved at the rollout's start."""

import numpy as np
import pytest
import torch

from ray_a3c.actors.worker import RolloutWorker
from ray_a3c.common.algo.models import build_model
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.settings.config import validate
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
    for g_full, g_piece in zip(full_grads, piece_grads, strict=False):
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
    cfg = small_config(
        **{"model.lstm_size": 8, "model.shared_trunk": True, "algo.rollout_steps": 6, "env.num_envs_per_worker": 2}
    )
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


def test_lstm_input_norm_makes_the_core_blind_to_the_features_scale_not_to_their_pattern():
    """A CNN's features start ~0.04 in size: an LSTM fed them raw answers the same for every input. With the
    LayerNorm the core's output is the same for features x and 100 x, and differs between two patterns."""
    normed = lstm_model()
    raw_cfg = small_config(
        **{"model.lstm_size": 8, "model.shared_trunk": True, "model.hidden_sizes": [16], "model.lstm_input_norm": False}
    )
    torch.manual_seed(0)
    raw = build_model(probe_spaces(raw_cfg.env), raw_cfg.model)
    x = torch.randn(1, 2, 16) * 0.04
    small_n, small_r = (m._run_core(x, None, None)[0] for m in (normed, raw))
    torch.testing.assert_close(
        normed._run_core(100 * x, None, None)[0], normed._run_core(10 * x, None, None)[0], atol=1e-4, rtol=1e-4
    )
    assert not torch.allclose(raw._run_core(100 * x, None, None)[0], raw._run_core(10 * x, None, None)[0], atol=1e-3)
    assert (small_n[0] - small_n[1]).abs().max() > 10 * (small_r[0] - small_r[1]).abs().max()


def test_a_run_saved_before_lstm_input_norm_reloads_without_it(tmp_path):
    from ray_a3c.common.settings.config import load_run_config, save_yaml

    cfg = small_config(**{"model.lstm_size": 8, "model.shared_trunk": True})
    save_yaml(cfg, str(tmp_path / "config.yaml"))
    lines = (tmp_path / "config.yaml").read_text().splitlines()
    saved_before = "\n".join(line for line in lines if "lstm_input_norm" not in line)
    (tmp_path / "config.yaml").write_text(saved_before)
    assert load_run_config(str(tmp_path)).model.lstm_input_norm is False
    model = build_model(probe_spaces(cfg.env), load_run_config(str(tmp_path)).model)
    assert not any("core_input_norm" in name for name in model.state_dict())
    # a resume reads the config stored inside the checkpoint the same way
    from ray_a3c.cluster.run.launch import _checkpoint_config

    stored = _checkpoint_config({"config_yaml": saved_before}, cfg)
    assert stored.model.lstm_size == 8 and stored.model.lstm_input_norm is False


def test_lstm_skip_gives_the_heads_the_current_features_beside_the_memory():
    """With the core's weights zeroed its output is the same for every input: the heads then tell observations
    apart only through the skip path."""
    outputs = {}
    for skip in (False, True):
        cfg = small_config(
            **{"model.lstm_size": 8, "model.shared_trunk": True, "model.hidden_sizes": [16], "model.lstm_skip": skip}
        )
        torch.manual_seed(0)
        model = build_model(probe_spaces(cfg.env), cfg.model)
        assert model.policy_head.in_features == (8 + 16 if skip else 8)
        with torch.no_grad():
            for p in model.core.parameters():
                p.zero_()
            outputs[skip] = model.unroll(torch.randn(1, 2, 4) * 3, None, None)[0].dist.logits
    assert torch.allclose(outputs[False][0], outputs[False][1])
    assert not torch.allclose(outputs[True][0], outputs[True][1])


def test_a_separate_critic_beside_an_lstm_actor_is_feed_forward_and_leaves_the_actor_alone():
    """shared_trunk=false with an LSTM: the value of a frame does not depend on the carried state, and the
    value loss's gradient reaches only the critic's own encoder and head, never the actor's encoder or core."""
    cfg = small_config(**{"model.lstm_size": 8, "model.shared_trunk": False, "model.hidden_sizes": [16]})
    validate(cfg)
    torch.manual_seed(0)
    model = build_model(probe_spaces(cfg.env), cfg.model)
    assert model.value_head.in_features == 16 and model.policy_head.in_features == 8
    obs = torch.randn(1, 3, 4)
    state = (torch.randn(3, 8), torch.randn(3, 8))
    dist_a, values_a, _ = model.unroll(obs, None, None)
    dist_b, values_b, _ = model.unroll(obs, state, None)
    torch.testing.assert_close(values_a, values_b)
    assert not torch.allclose(dist_a.dist.logits, dist_b.dist.logits)
    model.zero_grad()
    values_b.pow(2).sum().backward()
    actor_params = list(model.actor_trunk.parameters()) + list(model.core.parameters())
    assert all(p.grad is None or not p.grad.any() for p in actor_params)
    assert any(p.grad is not None and p.grad.any() for p in model.critic_trunk.parameters())
