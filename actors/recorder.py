"""Record episodes from a live env with a random or trained policy, with the behaviour log-probabilities."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from ray_a3c.common.algo.models import ActorCritic
from ray_a3c.common.data.dataset import OPTIONAL, REQUIRED
from ray_a3c.common.env.envs import make_policy_env, probe_spaces
from ray_a3c.common.env.observations import encode_obs
from ray_a3c.common.settings.config import EnvConfig


class BehaviourPolicy:
    """Uniform random, the trained policy's own samples, or epsilon-greedy around its mode action."""

    def __init__(
        self, action_space: gym.Space, model: ActorCritic | None, epsilon: float | None, rng: np.random.Generator
    ):
        self.space, self.model, self.epsilon, self.rng = action_space, model, epsilon, rng
        self.state, self.starting = None, True  # recurrent state; call `new_episode` at each reset
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        # A continuous epsilon-greedy mixture has no density (its greedy part is a point mass).
        self.has_log_probs = model is None or epsilon is None or self.discrete

    def _uniform(self):
        if self.discrete:
            return int(self.rng.integers(self.space.n)), -float(np.log(self.space.n))
        low, high = self.space.low, self.space.high
        return self.rng.uniform(low, high).astype(np.float32), -float(np.sum(np.log(high - low)))

    def new_episode(self) -> None:
        self.state, self.starting = None, True

    def to_env(self, action) -> np.ndarray:
        """A policy action (category index, or an unclipped Gaussian sample) -> what the env steps with."""
        if self.discrete:
            return int(action) + int(self.space.start)
        return np.clip(action, self.space.low, self.space.high).astype(np.float32)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> tuple:
        """-> (the action as the policy drew it, log mu(that action | obs) or nan). The dataset stores this
        action: unclipped, so that pi/mu ratios computed from it are right on steps the env clips."""
        if self.model is None:
            return self._uniform()
        dist, _, self.state = self.model.unroll(
            torch.as_tensor(obs)[None, None], self.state, torch.tensor([[self.starting]])
        )
        self.starting = False
        if self.epsilon is None:
            action = dist.sample()
            return _numpy_action(action[0], self.discrete), float(dist.log_prob(action)[0])
        greedy = _numpy_action(dist.mode()[0], self.discrete)
        explore = self.rng.random() < self.epsilon
        action = self._uniform()[0] if explore else greedy
        if not self.discrete:
            return action, float("nan")
        prob = self.epsilon / self.space.n + (1.0 - self.epsilon) * (action == greedy)
        return action, float(np.log(prob))


def _numpy_action(action: torch.Tensor, discrete: bool):
    return int(action) if discrete else action.numpy().astype(np.float32)


def record_episodes(
    env_cfg: EnvConfig,
    policy: BehaviourPolicy,
    episodes: int,
    seed: int,
    on_episode: Callable[[int, int], None] | None = None,
) -> dict:
    """Play `episodes` episodes (episode i seeded seed + i) and return the dataset arrays;
    `on_episode(done, episodes)` after each one."""
    env = make_policy_env(env_cfg)
    spaces = probe_spaces(env_cfg)
    cols: dict[str, list] = {k: [] for k in REQUIRED + OPTIONAL}
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        policy.new_episode()
        total, done = 0.0, False
        while not done:
            action, logp = policy.act(encode_obs(obs, spaces))
            next_obs, reward, term, trunc, _ = env.step(policy.to_env(action))
            for key, value in (
                ("observations", obs),
                ("next_observations", next_obs),
                ("actions", action),
                ("rewards", reward),
                ("terminated", term),
                ("truncated", trunc),
                ("episode_ids", ep),
                ("behaviour_log_probs", logp),
            ):
                cols[key].append(value)
            total += float(reward)
            obs, done = next_obs, term or trunc
        returns.append(total)
        if on_episode is not None:
            on_episode(ep + 1, episodes)
    env.close()
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    if isinstance(env.observation_space, gym.spaces.Box):
        arrays["observations"] = arrays["observations"].astype(np.float32)
        arrays["next_observations"] = arrays["next_observations"].astype(np.float32)
    if not policy.has_log_probs:
        arrays.pop("behaviour_log_probs")
    arrays.update(observation_space=env.observation_space, action_space=env.action_space, returns=np.asarray(returns))
    return arrays
