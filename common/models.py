"""Actor-critic networks: MLP encoder(s), Categorical or Gaussian policy head, value head."""
from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from common.config import ModelConfig
from common.envs import EnvSpaces

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(in_dim: int, sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), ACTIVATIONS[activation]()]
        in_dim = size
    return nn.Sequential(*layers)


def _init_linear(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ObsNormalizer(nn.Module):
    """Running mean / variance of observations as buffers, so they travel with the weights. Workers send
    the moments of what they saw; the parameter server merges them (`merge`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(1e-4))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-10.0, 10.0)

    @torch.no_grad()
    def merge(self, count: float, mean: np.ndarray, var: np.ndarray) -> None:
        """Chan et al.'s parallel update of (count, mean, var) with a batch's moments."""
        if count <= 0:
            return
        batch_mean = torch.tensor(mean).float().to(self.mean.device)
        batch_var = torch.tensor(var).float().to(self.mean.device)
        total = self.count + count
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * count + delta.pow(2) * self.count * count / total
        self.mean += delta * count / total
        self.var.copy_(m2 / total)
        self.count.fill_(float(total))


class DiagGaussian:
    """Independent Normal per action dimension; log-prob and entropy summed over dimensions."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.dist = Normal(mean, log_std.exp().expand_as(mean))
        self.mean = mean

    def sample(self) -> torch.Tensor:
        return self.dist.sample()

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(actions).sum(-1)

    def entropy(self) -> torch.Tensor:
        return self.dist.entropy().sum(-1)


class CategoricalDist:
    def __init__(self, logits: torch.Tensor):
        self.dist = Categorical(logits=logits)

    def sample(self) -> torch.Tensor:
        return self.dist.sample()

    def mode(self) -> torch.Tensor:
        return self.dist.logits.argmax(-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(actions.long())

    def entropy(self) -> torch.Tensor:
        return self.dist.entropy()


class ActorCritic(nn.Module):
    """pi(a|s) and V(s). With `shared_trunk` one encoder feeds both heads; otherwise the actor
    (encoder + policy head + log-std) and critic (encoder + value head) share nothing, so each can
    have its own learning rate."""

    def __init__(self, spaces: EnvSpaces, cfg: ModelConfig):
        super().__init__()
        self.action_space = spaces.action_space
        self.continuous = isinstance(spaces.action_space, gym.spaces.Box)
        self.obs_norm = ObsNormalizer(spaces.obs_dim) if cfg.normalize_obs else None
        width = cfg.hidden_sizes[-1]
        self.actor_trunk = mlp(spaces.obs_dim, cfg.hidden_sizes, cfg.activation)
        self.critic_trunk: Optional[nn.Sequential] = (
            None if cfg.shared_trunk else mlp(spaces.obs_dim, cfg.hidden_sizes, cfg.activation))
        if self.continuous:
            act_dim = int(np.prod(spaces.action_space.shape))
            self.policy_head = _init_linear(nn.Linear(width, act_dim), 0.01)
            self.log_std = nn.Parameter(torch.full((act_dim,), float(cfg.init_log_std)))
        else:
            self.policy_head = _init_linear(nn.Linear(width, int(spaces.action_space.n)), 0.01)
        self.value_head = _init_linear(nn.Linear(width, 1), 1.0)
        for trunk in (self.actor_trunk, self.critic_trunk):
            for layer in (trunk or []):
                if isinstance(layer, nn.Linear):
                    _init_linear(layer, float(np.sqrt(2)))

    def forward(self, obs: torch.Tensor):
        """obs [B, obs_dim] -> (distribution over B actions, values [B])."""
        obs = self.obs_norm(obs) if self.obs_norm is not None else obs
        hidden = self.actor_trunk(obs)
        critic_hidden = hidden if self.critic_trunk is None else self.critic_trunk(obs)
        values = self.value_head(critic_hidden).squeeze(-1)
        out = self.policy_head(hidden)
        dist = DiagGaussian(out, self.log_std) if self.continuous else CategoricalDist(out)
        return dist, values

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        obs = self.obs_norm(obs) if self.obs_norm is not None else obs
        hidden = self.actor_trunk(obs) if self.critic_trunk is None else self.critic_trunk(obs)
        return self.value_head(hidden).squeeze(-1)

    def critic_parameter_ids(self) -> set[int]:
        """ids of parameters that belong only to the critic (empty with a shared trunk)."""
        if self.critic_trunk is None:
            return set()
        return {id(p) for p in list(self.critic_trunk.parameters()) + list(self.value_head.parameters())}

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Sampled actions -> what the env accepts (Gaussian samples clipped to the Box bounds)."""
        acts = actions.detach().cpu().numpy()
        if self.continuous:
            low, high = self.action_space.low, self.action_space.high
            return np.clip(acts, low, high).reshape((-1,) + self.action_space.shape).astype(np.float32)
        return acts.astype(np.int64)


def build_model(spaces: EnvSpaces, cfg: ModelConfig) -> ActorCritic:
    return ActorCritic(spaces, cfg)
