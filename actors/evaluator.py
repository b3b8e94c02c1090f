"""Evaluator: deterministic (or random) episodes with given weights, several envs batched."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from common.config import Config
from common.envs import encode_obs, make_policy_env, probe_spaces
from common.flat import set_flat_weights
from common.models import build_model


class Evaluator:
    def __init__(self, config: Config, max_parallel_envs: int = 20):
        torch.set_num_threads(1)
        self.config = config
        self.spaces = probe_spaces(config.env)
        self.model = build_model(self.spaces, config.model)
        self.max_parallel = max_parallel_envs
        self._envs: list = []

    def set_weights(self, flat: np.ndarray) -> None:
        set_flat_weights(self.model, flat)

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)

    def _env_pool(self, n: int) -> list:
        while len(self._envs) < n:
            self._envs.append(make_policy_env(self.config.env))
        return self._envs[:n]

    @torch.no_grad()
    def run_episodes(self, episodes: int, seed: int, random_policy: bool = False,
                     deterministic: bool = True) -> dict:
        """Episode i is seeded with seed + i. Returns raw-reward statistics and the per-episode lists."""
        envs = self._env_pool(min(episodes, self.max_parallel))
        rng = np.random.default_rng(seed)
        returns, lengths = np.zeros(episodes), np.zeros(episodes, np.int64)
        slot_episode: list[Optional[int]] = list(range(len(envs)))
        obs = [encode_obs(env.reset(seed=seed + i)[0], self.spaces) for i, env in enumerate(envs)]
        next_episode = len(envs)
        if random_policy:
            for i, env in enumerate(envs):
                env.action_space.seed(int(rng.integers(2**31)) + i)
        while any(e is not None for e in slot_episode):
            active = [i for i, e in enumerate(slot_episode) if e is not None]
            actions = self._act([obs[i] for i in active], [envs[i] for i in active], random_policy, deterministic)
            for i, action in zip(active, actions):
                ob, reward, term, trunc, _ = envs[i].step(action)
                ep = slot_episode[i]
                returns[ep] += reward
                lengths[ep] += 1
                obs[i] = encode_obs(ob, self.spaces)
                if term or trunc:
                    slot_episode[i] = next_episode if next_episode < episodes else None
                    if next_episode < episodes:
                        obs[i] = encode_obs(envs[i].reset(seed=seed + next_episode)[0], self.spaces)
                    next_episode += 1
        return summarize(returns, lengths)

    def _act(self, obs: list, envs: list, random_policy: bool, deterministic: bool) -> list:
        if random_policy:
            return [env.action_space.sample() for env in envs]
        dist, _ = self.model(torch.as_tensor(np.stack(obs)))
        actions = dist.mode() if deterministic else dist.sample()
        return list(self.model.env_actions(actions))

    def evaluate_latest(self, ps, episodes: int, seed: int) -> dict:
        """Pull the PS's current weights and evaluate them; the result carries the version and weights."""
        version, weights, env_steps = ps.get_weights()
        self.set_weights(weights)
        result = self.run_episodes(episodes, seed)
        result.update(version=version, env_steps=env_steps, weights=weights)
        return result

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []


def summarize(returns: np.ndarray, lengths: np.ndarray) -> dict:
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "min_return": float(np.min(returns)), "max_return": float(np.max(returns)),
            "episodes": int(len(returns)), "mean_length": float(np.mean(lengths)),
            "returns": [float(r) for r in returns]}
