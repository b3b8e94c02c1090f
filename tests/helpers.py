"""Plain functions the test modules share (test modules never import each other): small configs, synthetic
rollouts, a run directory as training leaves it, file listings. Imports stay light: torch loads only with
make_run."""

import os

import numpy as np

from ray_a3c.common.settings.config import Config, from_flat, validate


def small_config(**overrides) -> Config:
    base = {"env.num_envs_per_worker": 4, "model.hidden_sizes": [16, 16], "run.num_workers": 2}
    base.update(overrides)
    return validate(from_flat(base, Config()))


def small_doom(scenario="basic") -> dict:
    """Flat overrides of a small ViZDoom config: one env, a small CNN and LSTM, 8-step rollouts."""
    return {
        "env.id": f"vizdoom:{scenario}",
        "env.num_envs_per_worker": 1,
        "env.reward_scale": 0.01,
        "model.encoder": "cnn",
        "model.shared_trunk": True,
        "model.lstm_size": 32,
        "model.conv_channels": [8, 16],
        "model.cnn_fc_size": 32,
        "algo.rollout_steps": 8,
    }


def doom_config(scenario="basic", **extra) -> Config:
    """`small_doom` as a validated Config."""
    base = {**small_doom(scenario), **extra}
    return validate(from_flat(base, Config()))


def random_rollout(seed, T=40, N=5):
    """(rewards, values, next_values, terminated, truncated), each [T, N], with episode ends at random."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    terminated = rng.random((T, N)) < 0.1
    truncated = (rng.random((T, N)) < 0.1) & ~terminated
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]
    next_values[-1] = rng.normal(size=N)
    ended = terminated | truncated
    # where an episode ended, s_{t+1} is its final observation: a value unrelated to values[t + 1]
    next_values[ended] = rng.normal(size=int(ended.sum()))
    return rewards, values, next_values, terminated, truncated


def make_run(root, name: str, **overrides) -> str:
    """A run dir as training leaves it (config.yaml, a checkpoint), with untrained but non-trivial weights."""
    from ray_a3c.common.env.envs import probe_spaces
    from ray_a3c.common.settings.config import save_yaml
    from ray_a3c.common.storage.checkpoint import save_atomic
    from ray_a3c.learner.parameter_server import ParameterServer

    cfg = validate(from_flat(overrides, Config()))
    run = os.path.join(root, name)
    os.makedirs(os.path.join(run, "checkpoints"))
    save_yaml(cfg, os.path.join(run, "config.yaml"))
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    if ps.model.obs_norm is not None:  # statistics that change the answer, so the export must carry them
        dim = ps.model.obs_norm.mean.numel()
        ps.model.obs_norm.merge(50.0, np.full(dim, 0.5, np.float32), np.full(dim, 4.0, np.float32))
    save_atomic(ps.state_dict(), os.path.join(run, "checkpoints", "ckpt-0.pt"))
    return run


def listing(root) -> set:
    """Every file under `root`, as paths relative to it."""
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


def assembled_weights(servers: list) -> np.ndarray:
    """The whole wire weight vector of a sharded PS run in process: each shard's published part put back."""
    from ray_a3c.learner.shards import scatter

    plan = servers[0].plan
    out = np.full(plan.num_weights, np.nan, np.float32)
    for server in servers:
        scatter(out, plan.shards[server.shard_index].weight_chunks, server.flat.weights())
    return out
