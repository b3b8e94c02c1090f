import gymnasium as gym
import numpy as np
import pytest
import torch

from ray_a3c.actors.rollout import VectorEnvRunner, collect_rollout
from ray_a3c.common.algo.models import build_model
from ray_a3c.common.env.envs import describe_spaces, make_env, make_vector_env, probe_spaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import EnvConfig
from tests.helpers import small_config


class Corridor(gym.Env):
    """Observation = position; always moves right; terminates at 5. Used as `tests.unit.test_envs_models:Corridor`."""

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


def corridor_runner(num_envs=2, **env_overrides):
    cfg = small_config(
        **{"env.id": "tests.unit.test_envs_models:Corridor", "env.max_episode_steps": 3, **env_overrides}
    )
    venv = make_vector_env(cfg.env, num_envs, seed=0)
    spaces = describe_spaces(venv.single_observation_space, venv.single_action_space)
    return cfg, VectorEnvRunner(venv, spaces, seed=0), build_model(spaces, cfg.model)


def test_autoreset_step_is_masked_and_truncation_bootstraps_from_the_final_observation():
    cfg, runner, model = corridor_runner()
    ro = collect_rollout(runner, model, steps=6, reward_scale=0.5)
    # the user env by import path, with a 3-step time limit: 3 transitions, 1 autoreset step, 2 transitions
    np.testing.assert_array_equal(ro.valid[:, 0], [True, True, True, False, True, True])
    np.testing.assert_array_equal(ro.truncated[:, 0], [False, False, True, False, False, False])
    assert not ro.terminated.any()
    np.testing.assert_allclose(ro.rewards[:, 0], [0.5, 0.5, 0.5, 0.0, 0.5, 0.5])  # scaled; 0 when masked
    np.testing.assert_array_equal(ro.obs[3, 0], [3.0])  # the step after the end sees the final observation
    with torch.no_grad():
        v_final = model.value(torch.tensor([[3.0]])).item()
    assert ro.next_values[2, 0] == pytest.approx(v_final, abs=1e-6)
    assert ro.finished == [(3.0, 3), (3.0, 3)]  # raw units for reporting
    assert ro.num_steps == 2 * 5


def test_warmup_desynchronises_the_envs():
    _, runner, model = corridor_runner(num_envs=4, **{"env.warmup_steps": 2})
    assert len({float(o[0]) for o in runner.obs}) > 1


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


def test_a_bf16_trunk_gives_float32_outputs_and_gradients_close_to_float32s():
    from dataclasses import replace

    from ray_a3c.common.env.observations import EnvSpaces
    from ray_a3c.common.settings.config import ModelConfig

    spaces = describe_spaces(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6))
    assert isinstance(spaces, EnvSpaces)
    torch.manual_seed(0)
    exact = build_model(spaces, ModelConfig(encoder="cnn"))
    fast = build_model(spaces, replace(ModelConfig(encoder="cnn"), trunk_bf16=True))
    fast.load_state_dict(exact.state_dict())
    obs = torch.randint(0, 255, (1, 32, 4, 84, 84), dtype=torch.uint8)
    grads = []
    for model in (exact, fast):
        dist, values, _ = model.unroll(obs)
        assert values.dtype == torch.float32 and dist.dist.logits.dtype == torch.float32
        model.zero_grad()
        (values.square().mean() - dist.entropy().mean()).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        assert all(p.dtype == torch.float32 for p in model.parameters())
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert torch.isfinite(grads[1]).all() and 0.98 < float(cosine) and not torch.equal(grads[0], grads[1])


def test_the_nature_layout_is_dqn_natures_network_and_the_a3c_layout_keeps_its_checkpoint_names():
    from ray_a3c.common.settings.config import ModelConfig

    spaces = describe_spaces(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6))
    nature = build_model(spaces, ModelConfig(encoder="cnn", cnn_layout="nature", cnn_fc_size=512, shared_trunk=True))
    convs = [m for m in nature.actor_trunk.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (4, 32, (8, 8), (4, 4)),
        (32, 64, (4, 4), (2, 2)),
        (64, 64, (3, 3), (1, 1)),
    ]
    assert nature.actor_trunk.fc[0].in_features == 64 * 7 * 7 and nature.actor_trunk.fc[0].out_features == 512
    assert {type(m) for m in nature.actor_trunk.modules()} >= {torch.nn.ReLU} and not any(
        isinstance(m, torch.nn.ELU) for m in nature.actor_trunk.modules()
    )
    dist, values, _ = nature.unroll(torch.randint(0, 255, (1, 3, 4, 84, 84), dtype=torch.uint8))
    assert dist.dist.logits.shape == (3, 6) and values.shape == (3,)
    a3c = build_model(spaces, ModelConfig(encoder="cnn", shared_trunk=True))
    shapes = {k: tuple(v.shape) for k, v in a3c.actor_trunk.state_dict().items()}
    assert shapes == {  # the names and shapes every checkpoint saved before the nature layout has
        "convs.0.weight": (16, 4, 8, 8),
        "convs.0.bias": (16,),
        "convs.2.weight": (32, 16, 4, 4),
        "convs.2.bias": (32,),
        "fc.0.weight": (256, 32 * 9 * 9),
        "fc.0.bias": (256,),
    }


def test_the_nature_layout_refuses_small_frames_and_an_unknown_layout_is_refused():
    from dataclasses import replace

    from ray_a3c.cluster.run.launch import model_spaces
    from ray_a3c.common.settings.config import ModelConfig, validate

    small = describe_spaces(gym.spaces.Box(0, 255, (1, 20, 20), np.uint8), gym.spaces.Discrete(3))
    with pytest.raises(A3CError, match="cnn_layout=nature needs frames of 36 pixels and up, got 20x20"):
        build_model(small, ModelConfig(encoder="cnn", cnn_layout="nature"))
    build_model(small, ModelConfig(encoder="cnn"))  # the a3c layout adapts its geometry instead
    cfg = small_config()
    with pytest.raises(A3CError, match="model.cnn_layout must be one of a3c, nature"):
        validate(replace(cfg, model=replace(cfg.model, cnn_layout="impala")))
    assert model_spaces(replace(cfg, model=replace(cfg.model, cnn_layout="nature"))) is not None  # vectors: no CNN
