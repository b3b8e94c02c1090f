"""gSDE: state-dependent exploration for continuous actions (model.gsde)."""

import numpy as np
import pytest
import torch

from ray_a3c.actors.rollout import VectorEnvRunner, collect_rollout
from ray_a3c.actors.worker import LocalClient, RolloutWorker
from ray_a3c.cluster.run.launch import model_spaces
from ray_a3c.common.algo.models import StateDependentGaussian, build_model
from ray_a3c.common.env.envs import describe_spaces, make_vector_env, probe_spaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.storage import checkpoint
from ray_a3c.learner.parameter_server import ParameterServer
from tests.helpers import small_config


def pendulum_config(**overrides):
    return small_config(**{"env.id": "Pendulum-v1", "model.gsde": True, "model.init_log_std": -1.0, **overrides})


def test_log_prob_is_the_normal_whose_variance_is_the_features_squared_times_sigma_squared():
    rng = np.random.default_rng(0)
    latent, log_std = rng.normal(size=(5, 7)), rng.normal(scale=0.3, size=(7, 2)) - 1.0
    mean, actions = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    dist = StateDependentGaussian(*(torch.tensor(x, dtype=torch.float64) for x in (mean, latent, log_std)))
    std = np.sqrt((latent**2) @ np.exp(2 * log_std) + 1e-6)
    reference = (-0.5 * ((actions - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(torch.tensor(actions)).numpy(), reference, rtol=1e-9)


def test_actions_from_drawn_matrices_follow_that_normal():
    """Over many exploration matrices the held-noise actions of one state have the marginal's mean and std."""
    cfg = pendulum_config()
    model = build_model(probe_spaces(cfg.env), cfg.model)
    torch.manual_seed(0)
    obs = torch.randn(1, 3).expand(20_000, 3)
    with torch.no_grad():
        dist, _ = model(obs)
        actions = dist.sample_with(model.exploration_noise(20_000))
    np.testing.assert_allclose(actions.mean(0).numpy(), dist.mean[0].numpy(), atol=0.02)
    np.testing.assert_allclose(actions.std(0).numpy(), dist.dist.stddev[0].numpy(), rtol=0.03)


def test_the_std_learns_through_log_std_only():
    cfg = pendulum_config(**{"model.shared_trunk": True})
    model = build_model(probe_spaces(cfg.env), cfg.model)
    assert tuple(model.log_std.shape) == (16, 1)  # (features, action dimensions)
    dist, _ = model(torch.randn(8, 3))
    dist.entropy().sum().backward()
    assert model.log_std.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.actor_trunk.parameters())


def _rollout(every: int, num_envs: int = 3, steps: int = 10, **overrides):
    cfg = pendulum_config(**{"model.gsde_sample_every": every, **overrides})
    venv = make_vector_env(cfg.env, num_envs, seed=0)
    runner = VectorEnvRunner(venv, describe_spaces(venv.single_observation_space, venv.single_action_space), 0)
    model = build_model(runner.spaces, cfg.model)
    drawn = []
    draw = model.exploration_noise
    model.exploration_noise = lambda batch: drawn.append(batch) or draw(batch)
    ro = collect_rollout(runner, model, steps=steps, reward_scale=1.0)
    venv.close()
    return model, ro, drawn


@pytest.mark.parametrize("every,draws", [(0, 1), (4, 3), (1, 10)])
def test_a_matrix_is_drawn_per_rollout_and_every_k_steps(every, draws):
    assert _rollout(every)[2] == [3] * draws


@pytest.mark.parametrize("every", [0, 1])
def test_held_noise_is_one_linear_map_of_the_features(every):
    """With one matrix per rollout, each env's deviations a - mean(s) over 12 steps are z(s) @ W for one W
    (4 features: the least-squares fit is exact); drawn afresh every step, no single W fits."""
    model, ro, _ = _rollout(every, steps=12, **{"model.hidden_sizes": [4]})
    with torch.no_grad():
        dist, _, _ = model.unroll(torch.as_tensor(ro.obs), None, None)
    deviation = (torch.as_tensor(ro.actions).reshape(-1, 1) - dist.mean).reshape(12, 3).numpy()
    latent = dist.latent.reshape(12, 3, -1).numpy()
    residuals = [
        np.abs(latent[:, e] @ np.linalg.lstsq(latent[:, e], deviation[:, e], rcond=None)[0] - deviation[:, e]).max()
        for e in range(3)
    ]
    assert (max(residuals) < 1e-4) == (every == 0)


def test_gsde_trains_and_reloads(tmp_path):
    cfg = pendulum_config()
    spaces = probe_spaces(cfg.env)
    ps = ParameterServer(cfg, spaces)
    worker = RolloutWorker(cfg, rank=0)
    before = ps.get_weights()[1].copy()
    assert worker.run(LocalClient(ps), max_updates=5)["pushed"] == 5
    assert not np.allclose(ps.get_weights()[1], before)
    path = str(tmp_path / "latest.pt")
    checkpoint.save_atomic(ps.state_dict(), path)
    restored = ParameterServer(cfg, spaces)
    restored.load_state_dict(checkpoint.load(path))
    assert tuple(restored.model.log_std.shape) == (16, 1)
    torch.testing.assert_close(restored.model.log_std, ps.model.log_std)


def test_gsde_refuses_discrete_actions():
    with pytest.raises(A3CError, match="model.gsde needs continuous"):
        model_spaces(small_config(**{"model.gsde": True}))
