"""Actor-critic networks: MLP encoder(s), Categorical or Gaussian policy head, value head."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from ray_a3c.common.env.observations import EnvSpaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import ModelConfig
from ray_a3c.common.settings.validation import CnnLayout

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


class StateDependentGaussian(DiagGaussian):
    """gSDE (generalised state-dependent exploration): the noise is z(s) @ W, with z the policy's features
    [B, F] and W [F, A] drawn from N(0, sigma^2) and held for several steps, so exploration is smooth in the
    state instead of white. Given s, a ~ N(mu, sqrt(z^2 @ sigma^2)): the marginal that log-probs use. z is
    detached there, so the features learn from the mean only and sigma from the log-prob."""

    def __init__(self, mean: torch.Tensor, latent: torch.Tensor, log_std: torch.Tensor):
        self.latent = latent.detach()
        variance = (self.latent**2) @ (2 * log_std).exp()
        self.dist = Normal(mean, (variance + 1e-6).sqrt())
        self.mean = mean

    def sample_with(self, noise: torch.Tensor) -> torch.Tensor:
        """noise [B, F, A] (one exploration matrix per env copy) -> actions [B, A]."""
        return self.mean + torch.einsum("bf,bfa->ba", self.latent, noise)


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


SMALL_IMAGE, TINY_IMAGE = 36, 20  # frame sides below which the convolutions keep more of the picture


def conv_geometry(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel, stride) of the two convolutions for a frame of this size: the A3C paper's 8x8/4 and 4x4/2 from
    36 pixels up (Atari's 84x84, ViZDoom's); 3x3/1 twice below 20 (a 12x12 catch game plateaued at 75% caught
    with 4x4/2 then 3x3/1, and caught every ball with this); 3x3/1 then 3x3/2 in between (fewer fc inputs)."""
    side = min(height, width)
    if side >= SMALL_IMAGE:
        return (8, 4), (4, 2)
    return ((3, 1), (3, 1)) if side < TINY_IMAGE else ((3, 1), (3, 2))


NATURE_CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))  # DQN Nature's (out channels, kernel, stride)


def conv_plan(layout: str, height: int, width: int, channels: list) -> list[tuple[int, int, int]]:
    """(out channels, kernel, stride) of each convolution for a frame of this size."""
    if layout == CnnLayout.NATURE:
        if min(height, width) < SMALL_IMAGE:
            raise A3CError(f"model.cnn_layout=nature needs frames of {SMALL_IMAGE} pixels and up, got {height}x{width}")
        return list(NATURE_CONVS)
    (k1, s1), (k2, s2) = conv_geometry(height, width)
    return [(channels[0], k1, s1), (channels[1], k2, s2)]


class ConvEncoder(nn.Module):
    """uint8 [B, C, H, W] -> /255 -> convolutions -> fc. The a3c layout is the Doom notebook's encoder (conv
    8x8/4 -> conv 4x4/2 -> fc, ELU); nature is DQN Nature's (three convolutions -> fc, ReLU), the network SB3's
    and Sample Factory's Atari agents use. `extra_inputs`: numbers the fc layer reads beside the image features
    (VariableChannelsEncoder's)."""

    def __init__(
        self, image_shape: tuple, channels: list, fc_size: int, extra_inputs: int = 0, layout: str = CnnLayout.A3C
    ):
        super().__init__()
        c, h, w = image_shape
        activation = nn.ReLU if layout == CnnLayout.NATURE else nn.ELU
        layers: list[nn.Module] = []
        for out, kernel, stride in conv_plan(layout, h, w, channels):
            layers += [nn.Conv2d(c, out, kernel, stride=stride), activation()]
            c = out
        self.convs = nn.Sequential(*layers, nn.Flatten())  # a3c: the names checkpoints have (convs.0, convs.2)
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, image_shape[0], h, w)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat + extra_inputs, fc_size), activation())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(obs.float() / 255.0))


class VariableChannelsEncoder(ConvEncoder):
    """Compatibility: the first design of env.observe_variables (env.observe_variables_as_channels), kept so
    that its checkpoints load (same parameter names as a ConvEncoder). Each of `variable_channels` is a constant
    plane carrying one number: the convolutions skip them and the fc layer reads their value / 255 beside the
    image features (as planes under every filter they swamped the convolutions' input). New runs get a Dict
    observation instead: DictEncoder."""

    def __init__(self, image_shape: tuple, channels: list, fc_size: int, variable_channels: tuple):
        c, h, w = image_shape
        variables = set(variable_channels)
        super().__init__((c - len(variables), h, w), channels, fc_size, extra_inputs=len(variables))
        # plain lists, not buffers: buffers travel in the flat weight vectors
        self.image_index, self.variable_index = [i for i in range(c) if i not in variables], sorted(variables)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.float() / 255.0
        features = self.convs(obs[:, self.image_index])
        return self.fc(torch.cat([features, obs[:, self.variable_index, 0, 0]], dim=1))


class DictEncoder(nn.Module):
    """A Dict observation, encoded as one vector (common/env/observations.py): one ConvEncoder per image entry and
    one MLP over the other entries side by side; their features are concatenated for the core and heads.
    obs [B, obs_dim] -> [B, width]."""

    def __init__(self, spaces: EnvSpaces, cfg: ModelConfig):
        super().__init__()
        images = [p for p in spaces.parts if p.image_shape is not None]
        self.image_slices = [(p.offset, p.offset + p.size, p.image_shape) for p in images]
        self.cnns = nn.ModuleList(
            ConvEncoder(p.image_shape, cfg.conv_channels, cfg.cnn_fc_size, layout=cfg.cnn_layout) for p in images
        )
        vectors = [p for p in spaces.parts if p.image_shape is None]
        # plain list of column indices, not a buffer: buffers travel in the flat weight vectors
        self.vector_index = [i for p in vectors for i in range(p.offset, p.offset + p.size)]
        self.mlp = _init_mlp(mlp(len(self.vector_index), cfg.hidden_sizes, cfg.activation)) if vectors else None
        self.width = len(images) * cfg.cnn_fc_size + (cfg.hidden_sizes[-1] if vectors else 0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch = obs.shape[0]
        features = [
            cnn(obs[:, start:end].reshape((batch,) + shape))
            for cnn, (start, end, shape) in zip(self.cnns, self.image_slices, strict=False)
        ]
        if self.mlp is not None:
            features.append(self.mlp(obs[:, self.vector_index]))
        return torch.cat(features, dim=1)


def _init_mlp(trunk: nn.Sequential) -> nn.Sequential:
    for layer in trunk:
        if isinstance(layer, nn.Linear):
            _init_linear(layer, float(np.sqrt(2)))
    return trunk


State = tuple | None  # (h, c), each [N, lstm_size], or None for feed-forward models


class ActorCritic(nn.Module):
    """pi(a|s) and V(s) over sequences. Encoder (MLP, or CNN for images) -> optional LSTM core -> heads.

    With `shared_trunk` one encoder feeds both heads; otherwise the actor (encoder + policy head + log-std)
    and the critic (encoder + value head) share nothing, so each can have its own learning rate. The LSTM core
    belongs to the actor (and, with a shared trunk, to both heads); a separate critic is feed-forward. The LSTM
    state is carried by the caller and zeroed where `starts` marks the first step of an episode.
    """

    def __init__(self, spaces: EnvSpaces, cfg: ModelConfig):
        super().__init__()
        self.action_space = spaces.action_space
        self.continuous = isinstance(spaces.action_space, gym.spaces.Box)
        self.obs_norm = ObsNormalizer(spaces.obs_dim) if cfg.normalize_obs and not spaces.has_images else None
        # only its variance is used (rewards are divided by the return's std, not centred); a buffer like the
        # observation statistics, so it travels with the weights and lands in every checkpoint
        self.reward_norm = ObsNormalizer(1) if cfg.normalize_rewards else None
        use_cnn = cfg.encoder == "cnn" or (cfg.encoder == "auto" and spaces.image_shape is not None)
        self.actor_trunk, width = self._trunk(spaces, cfg, use_cnn)
        self.critic_trunk = None if cfg.shared_trunk else self._trunk(spaces, cfg, use_cnn)[0]
        self.core = nn.LSTMCell(width, cfg.lstm_size) if cfg.lstm_size else None
        self.core_input_norm = nn.LayerNorm(width) if cfg.lstm_size and cfg.lstm_input_norm else None
        self.skip = bool(cfg.lstm_size and cfg.lstm_skip)
        trunk_width = width
        width = (cfg.lstm_size + width if self.skip else cfg.lstm_size) or width
        if self.continuous:
            act_dim = int(np.prod(spaces.action_space.shape))
            self.policy_head = _init_linear(nn.Linear(width, act_dim), 0.01)
            # gSDE: one log-std per (feature, action dimension), the scale of that entry of the noise matrix
            std_shape = (width, act_dim) if cfg.gsde else (act_dim,)
            self.log_std = nn.Parameter(torch.full(std_shape, float(cfg.init_log_std)))
        else:
            self.policy_head = _init_linear(nn.Linear(width, int(spaces.action_space.n)), 0.01)
        # a separate critic reads its own trunk's features: with an LSTM it has no memory of its own, so the
        # value loss cannot reshape the actor's encoder or core
        self.value_head = _init_linear(nn.Linear(width if self.critic_trunk is None else trunk_width, 1), 1.0)
        self.gsde = bool(cfg.gsde and self.continuous)
        self.gsde_sample_every = int(cfg.gsde_sample_every)
        self.bf16_trunk = bool(cfg.trunk_bf16 and (use_cnn or spaces.parts))

    @staticmethod
    def _trunk(spaces: EnvSpaces, cfg: ModelConfig, use_cnn: bool) -> tuple[nn.Module, int]:
        if spaces.parts:
            encoder = DictEncoder(spaces, cfg)
            return encoder, encoder.width
        if use_cnn:
            if spaces.image_shape is None:
                raise ValueError("model.encoder=cnn needs uint8 image observations [C, H, W]")
            if spaces.variable_channels:
                encoder = VariableChannelsEncoder(
                    spaces.image_shape, cfg.conv_channels, cfg.cnn_fc_size, spaces.variable_channels
                )
            else:
                encoder = ConvEncoder(spaces.image_shape, cfg.conv_channels, cfg.cnn_fc_size, layout=cfg.cnn_layout)
            return encoder, cfg.cnn_fc_size
        return _init_mlp(mlp(spaces.obs_dim, cfg.hidden_sizes, cfg.activation)), cfg.hidden_sizes[-1]

    @property
    def recurrent(self) -> bool:
        return self.core is not None

    def initial_state(self, batch: int) -> State:
        if self.core is None:
            return None
        zeros = torch.zeros(batch, self.core.hidden_size)
        return zeros, zeros.clone()

    def _features(self, trunk: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        if not self.bf16_trunk or torch.onnx.is_in_onnx_export():
            return trunk(obs)
        # model.trunk_bf16: the convolutions and fc layers in bfloat16, their features back in float32, so the
        # heads, the distributions and the losses keep float32 (the weights and their gradients stay float32)
        with torch.autocast(obs.device.type, dtype=torch.bfloat16):
            return trunk(obs).float()

    def unroll(self, obs: torch.Tensor, state: State = None, starts: torch.Tensor | None = None):
        """obs [T, N, ...], state from the step before, starts [T, N] bool (reset the state before step t)
        -> (distribution over the T*N actions, values [T*N], state after the last step)."""
        hidden, values, state = self._latent(obs, state, starts)
        out = self.policy_head(hidden)
        if self.gsde:
            dist = StateDependentGaussian(out, hidden, self.log_std)
        else:
            dist = DiagGaussian(out, self.log_std) if self.continuous else CategoricalDist(out)
        return dist, values, state

    def head_outputs(self, obs: torch.Tensor, state: State = None, starts: torch.Tensor | None = None):
        """Like `unroll`, with the policy head's raw output [T*N, A] (logits, or the Gaussian mean) in place
        of a distribution: what an exported graph computes (distributions check their arguments)."""
        hidden, values, state = self._latent(obs, state, starts)
        return self.policy_head(hidden), values, state

    def exploration_noise(self, batch: int) -> torch.Tensor:
        """gSDE: a fresh noise matrix per env copy, [batch, F, A] ~ N(0, sigma^2)."""
        std = self.log_std.detach().exp()
        return torch.randn((batch,) + tuple(std.shape)) * std

    def _latent(self, obs: torch.Tensor, state: State, starts: torch.Tensor | None):
        """-> (the policy head's input [T*N, F], values [T*N], state after the last step)."""
        t_len, n = obs.shape[:2]
        flat = obs.reshape((t_len * n,) + obs.shape[2:])
        hidden = self._features(self.actor_trunk, flat)
        if self.core is not None:
            memory, state = self._run_core(hidden.reshape(t_len, n, -1), state, starts)
            hidden = torch.cat([memory, hidden], -1) if self.skip else memory
        critic_hidden = hidden if self.critic_trunk is None else self._features(self.critic_trunk, flat)
        values = self.value_head(critic_hidden).squeeze(-1)
        return hidden, values, state

    def _run_core(self, x: torch.Tensor, state: State, starts: torch.Tensor | None):
        h, c = state if state is not None else self.initial_state(x.shape[1])
        if self.core_input_norm is not None:
            x = self.core_input_norm(x)
        outputs = []
        for t in range(x.shape[0]):
            if starts is not None:
                keep = (~starts[t]).float().unsqueeze(-1)
                h, c = h * keep, c * keep
            h, c = self.core(x[t], (h, c))
            outputs.append(h)
        return torch.stack(outputs).reshape(x.shape[0] * x.shape[1], -1), (h, c)

    def forward(self, obs: torch.Tensor, state: State = None, starts: torch.Tensor | None = None):
        """One step for a batch: obs [B, ...] -> (distribution, values [B]); the state is dropped. Use
        `unroll` to carry it."""
        dist, values, _ = self.unroll(obs.unsqueeze(0), state, None if starts is None else starts.unsqueeze(0))
        return dist, values

    def value(self, obs: torch.Tensor, state: State = None, starts: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(obs, state, starts)[1]

    def critic_parameter_ids(self) -> set[int]:
        """ids of parameters that belong only to the critic (empty with a shared trunk)."""
        if self.critic_trunk is None:
            return set()
        return {id(p) for p in list(self.critic_trunk.parameters()) + list(self.value_head.parameters())}

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Sampled actions -> what the env accepts (Gaussian samples clipped to the Box bounds; category
        indices shifted by a `Discrete(n, start)`'s start)."""
        acts = actions.detach().cpu().numpy()
        if self.continuous:
            low, high = self.action_space.low, self.action_space.high
            return np.clip(acts, low, high).reshape((-1,) + self.action_space.shape).astype(np.float32)
        return acts.astype(np.int64) + int(self.action_space.start)


def build_model(spaces: EnvSpaces, cfg: ModelConfig) -> ActorCritic:
    return ActorCritic(spaces, cfg)
