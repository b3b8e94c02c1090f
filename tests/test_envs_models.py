import gymnasium as gym
import numpy as np
import pytest
import torch

from actors.rollout import collect_rollout
from common.config import EnvConfig
from common.envs import EnvBatch, make_env, probe_spaces
from common.errors import A3CError
from common.models import build_model
from tests.helpers import small_config


class Corridor(gym.Env):
    """Observation = position; always moves right; terminates at 5. Used as `tests.test_envs_models:Corridor`."""

    observation_space = gym.spaces.Box(0.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0.0
        return np.array([self.pos], np.float32), {}

    def step(self, action):
        self.pos += 1.0
        return np.array([self.pos], np.float32), 1.0, self.pos >= 5, False, {}


def test_unknown_env_id_is_a_clear_error():
    with pytest.raises(A3CError, match="unknown env id 'NoSuchEnv-v9'"):
        make_env(EnvConfig(id="NoSuchEnv-v9"))
    with pytest.raises(A3CError, match="cannot import"):
        make_env(EnvConfig(id="no_such_module:Env"))


def test_user_env_class_by_import_path_with_time_limit():
    batch = EnvBatch(EnvConfig(id="tests.test_envs_models:Corridor", max_episode_steps=3), 2, seed=0)
    for _ in range(2):
        out = batch.step(np.zeros(2, np.int64))
        assert not out.truncated.any()
    out = batch.step(np.zeros(2, np.int64))
    assert out.truncated.all() and not out.terminated.any()
    np.testing.assert_array_equal(out.final_obs[0], [3.0])  # the episode's last observation is kept
    np.testing.assert_array_equal(out.obs, [[0.0], [0.0]])  # and the env was reset in the same step
    assert out.finished == [(3.0, 3), (3.0, 3)]


def test_truncated_rollout_bootstraps_from_the_final_observation():
    cfg = small_config(**{"env.id": "tests.test_envs_models:Corridor", "env.max_episode_steps": 3})
    batch = EnvBatch(cfg.env, 1, seed=0)
    model = build_model(batch.spaces, cfg.model)
    ro = collect_rollout(batch, model, steps=4, reward_scale=0.5)
    assert ro.truncated[2, 0] and not ro.truncated[:2].any()
    with torch.no_grad():
        v_final = model.value(torch.tensor([[3.0]])).item()
        v_reset = model.value(torch.tensor([[0.0]])).item()
    assert ro.next_values[2, 0] == pytest.approx(v_final, abs=1e-6)
    assert v_final != pytest.approx(v_reset)
    np.testing.assert_allclose(ro.rewards, 0.5)  # scaled for learning
    assert ro.finished == [(3.0, 3)]  # raw units for reporting


def test_gaussian_head_clips_actions_to_bounds_and_matches_normal():
    cfg = small_config(**{"env.id": "Pendulum-v1", "model.init_log_std": 2.0})
    spaces = probe_spaces(cfg.env)
    model = build_model(spaces, cfg.model)
    dist, values = model(torch.zeros(64, spaces.obs_dim))
    actions = dist.sample()
    env_actions = model.env_actions(actions)
    assert env_actions.shape == (64, 1) and values.shape == (64,)
    assert np.abs(actions.numpy()).max() > 2.0 and np.abs(env_actions).max() <= 2.0
    reference = torch.distributions.Normal(dist.mean, torch.full_like(dist.mean, np.exp(2.0)))
    torch.testing.assert_close(dist.log_prob(actions), reference.log_prob(actions).sum(-1))
    torch.testing.assert_close(dist.entropy(), reference.entropy().sum(-1))


def test_separate_trunks_isolate_critic_parameters():
    cfg = small_config()
    model = build_model(probe_spaces(cfg.env), cfg.model)
    critic = model.critic_parameter_ids()
    dist, values = model(torch.randn(3, 4))
    values.sum().backward()
    for p in model.parameters():
        has_grad = p.grad is not None and p.grad.abs().sum() > 0
        assert has_grad == (id(p) in critic)
