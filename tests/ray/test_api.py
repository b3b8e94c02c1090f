"""The Python API: ray_a3c.train returns the run summary, load_policy acts without Ray, Config builds runs."""

import os

import gymnasium as gym
import pytest
import yaml

import ray_a3c

pytestmark = pytest.mark.integration


def test_train_then_load_policy(ray_session, tmp_path):
    cfg = ray_a3c.Config()
    cfg.env.num_envs_per_worker, cfg.model.hidden_sizes = 4, [32, 32]
    run_dir = str(tmp_path / "run")
    summary = ray_a3c.train(
        cfg, run_dir=run_dir, quiet=True, run__seed=1, run__total_env_steps=6000, **{"run.eval_interval_s": 1.0}
    )
    assert summary.reason == "env_steps" and summary.env_steps >= 6000
    assert summary.run_dir == run_dir and summary.result()["first_gradient_s"] > 0
    assert cfg.run.run_dir is None  # the caller's Config is not changed by the run
    with open(os.path.join(run_dir, "config.yaml")) as fh:
        assert yaml.safe_load(fh)["run"]["seed"] == 1
    assert ray_session.is_initialized()  # a Ray the caller started stays up

    policy = ray_a3c.load_policy(run_dir, checkpoint="latest")
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    action, state = policy.act(obs)
    assert action in (0, 1) and state is None
    assert env.action_space.contains(action)


def test_bad_input_raises_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ray_a3c.A3CError, match="unknown config key"):
        ray_a3c.train("cartpole", run_dir=str(run_dir), algo__gama=0.9)
    with pytest.raises(ray_a3c.A3CError, match="learning_rate"):
        ray_a3c.train({"algo": {"learning_rate": -1.0}}, run_dir=str(run_dir))
    assert not run_dir.exists()


def test_load_policy_of_a_missing_run_is_an_a3c_error(tmp_path):
    with pytest.raises(ray_a3c.A3CError, match="does not exist"):
        ray_a3c.load_policy(str(tmp_path / "nowhere"))
