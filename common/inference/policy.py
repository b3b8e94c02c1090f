"""A trained policy outside training: load a run's checkpoint, act on raw env observations, export it.

`Policy.act` and the exported graphs share one torch module (`PolicyGraph`), so an exported file acts
exactly as `load_policy` does: observation encoding and normalisation, the network, the greedy action, and
the map back to the env's own action bounds all happen inside it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ray_a3c.common.algo.models import ActorCritic, build_model
from ray_a3c.common.env.envs import make_env, probe_spaces, spaces_from_env
from ray_a3c.common.env.observations import EnvSpaces
from ray_a3c.common.env.spaces_io import space_from_data
from ray_a3c.common.env.wrappers import image_plan, to_chw
from ray_a3c.common.inference.export import EXPORT_FORMATS, export_onnx, export_pt2
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config, load_run_config
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.storage.keys import CKPT_MODEL, CKPT_SPACES


class PolicyGraph(nn.Module):
    """One greedy policy step as a pure function of tensors.

    inputs:  the observation as the env gives it, a batch [B, *obs_shape] (float32; uint8 for images; int64
             [B] for Discrete observations), or one such input per entry of a Dict observation (key order);
             then h, c [B, lstm_size] for recurrent models.
    outputs: action [B, *action_shape] in the env's own bounds (int64 [B] for Discrete), then h, c.
    """

    def __init__(self, model: ActorCritic, spaces: EnvSpaces, env_obs_space: gym.Space, env_action_space: gym.Space):
        super().__init__()
        self.model = model.eval()
        self.recurrent = model.recurrent
        self.obs_keys = [p.key for p in spaces.parts] or [OBS_INPUT]
        if spaces.parts:
            self.encodings = [_encoding(env_obs_space[p.key], p.discrete) for p in spaces.parts]
        else:
            self.encodings = [_encoding(env_obs_space, spaces.discrete_obs, spaces.image_shape is not None)]
        self.continuous = isinstance(env_action_space, gym.spaces.Box)
        if self.continuous:
            policy_space = spaces.action_space  # [-1, 1] when the run rescaled actions, else the env's
            self.register_buffer("policy_low", torch.as_tensor(policy_space.low, dtype=torch.float32))
            self.register_buffer("policy_high", torch.as_tensor(policy_space.high, dtype=torch.float32))
            self.register_buffer("env_low", torch.as_tensor(env_action_space.low, dtype=torch.float32))
            self.register_buffer("env_high", torch.as_tensor(env_action_space.high, dtype=torch.float32))
        else:
            self.action_start = int(getattr(env_action_space, "start", 0))

    def forward(self, *inputs: torch.Tensor):
        x, core_state = self._network_inputs(inputs)
        out, _, new_state = self.model.head_outputs(x.unsqueeze(0), core_state, None)
        # the Gaussian's mode is its mean; a categorical's, its largest logit
        action = self._env_action(out if self.continuous else out.argmax(-1))
        return (action, *new_state) if self.recurrent else action

    def sample(self, *inputs: torch.Tensor):
        """As `forward`, with actions drawn from the policy (as in training) instead of its mode."""
        x, core_state = self._network_inputs(inputs)
        dist, _, new_state = self.model.unroll(x.unsqueeze(0), core_state, None)
        action = self._env_action(dist.sample())
        return (action, *new_state) if self.recurrent else action

    def _network_inputs(self, inputs: tuple) -> tuple:
        obs, state = inputs[: len(self.obs_keys)], inputs[len(self.obs_keys) :]
        parts = [_encode(x, encoding) for x, encoding in zip(obs, self.encodings, strict=False)]
        x = (
            parts[0]
            if len(parts) == 1 and self.encodings[0][0] == IMAGE
            else torch.cat([p.float().reshape(p.shape[0], -1) for p in parts], dim=1)
        )
        return x, (tuple(state) if self.recurrent else None)

    def _env_action(self, action: torch.Tensor) -> torch.Tensor:
        """The policy's action -> the env's: clipped to the policy's bounds and mapped onto the env's (Box), or
        shifted by a Discrete space's start."""
        if not self.continuous:
            return action + self.action_start
        action = torch.maximum(torch.minimum(action, self.policy_high), self.policy_low)
        span = (self.policy_high - self.policy_low).clamp(min=1e-12)
        return self.env_low + (action - self.policy_low) * (self.env_high - self.env_low) / span


OBS_INPUT = "obs"  # the exported graph's observation input (one per key for a Dict observation)
IMAGE, ONE_HOT, VECTOR = "image", "one_hot", "vector"


def _encoding(space: gym.Space, discrete: int | None, image: bool = True) -> tuple:
    """How the graph turns one raw observation input into the network's: (kind, detail)."""
    if discrete is not None:
        return ONE_HOT, discrete
    plan = image_plan(space) if image else None
    if plan is not None and len(plan[1]) == 3:
        return IMAGE, plan
    return VECTOR, None


def _encode(x: torch.Tensor, encoding: tuple) -> torch.Tensor:
    kind, detail = encoding
    if kind == ONE_HOT:
        return nn.functional.one_hot(x.long().reshape(x.shape[0]), detail).float()
    if kind == IMAGE:
        return to_chw(x, detail, batch_dims=1)
    return x.float().reshape(x.shape[0], -1)


class Policy:
    """A run's trained policy for one env copy: `act(obs, state) -> (action, state)` with the greedy (most
    likely) action, no Ray involved."""

    def __init__(self, config: Config, state_dict: dict, env_spaces: dict | None = None):
        """`env_spaces`: the env's spaces as a checkpoint stores them (no env is built); None builds one."""
        self.config = config
        if env_spaces:
            self.env_obs_space = space_from_data(env_spaces["observation"])
            self.env_action_space = space_from_data(env_spaces["action"])
            self.spaces = spaces_from_env(self.env_obs_space, self.env_action_space, config.env)
        else:  # a checkpoint from before the spaces were stored
            self.spaces = probe_spaces(config.env)
            self.env_obs_space, self.env_action_space = _env_spaces(config)
        model = build_model(self.spaces, config.model)
        try:
            model.load_state_dict(state_dict)
        except (RuntimeError, KeyError) as exc:
            raise A3CError(f"checkpoint does not match the run's model: {str(exc).splitlines()[0]}") from None
        self.graph = PolicyGraph(model, self.spaces, self.env_obs_space, self.env_action_space)

    @property
    def recurrent(self) -> bool:
        return self.graph.recurrent

    def initial_state(self, batch: int = 1) -> tuple | None:
        state = self.graph.model.initial_state(batch)
        return None if state is None else tuple(t.numpy() for t in state)

    @torch.no_grad()
    def act(self, obs: Any, state: tuple | None = None, deterministic: bool = True) -> tuple[Any, tuple | None]:
        """obs as the env returns it (a dict for a Dict space), or a batch of them (a leading axis; a dict of
        batches) -> (action for env.step, or a batch of actions; next state). `state` is None at an episode's
        start; pass back what the previous call returned. `deterministic=False` samples from the policy."""
        batch = self._batch_size(obs)
        if self.recurrent and state is None:
            state = self.initial_state(batch or 1)
        inputs = self.obs_inputs(obs, batched=batch is not None)
        if self.recurrent:
            inputs += tuple(torch.as_tensor(np.asarray(s, np.float32)) for s in state)
        out = self.graph(*inputs) if deterministic else self.graph.sample(*inputs)
        action, new_state = (out[0], tuple(t.numpy() for t in out[1:])) if self.recurrent else (out, None)
        actions = action.numpy()
        if self.graph.continuous:
            actions = actions.astype(np.float32).reshape((-1,) + self.env_action_space.shape)
        else:
            actions = actions.astype(np.int64).reshape(-1)
        if batch is not None:
            return actions, new_state
        return (actions[0] if self.graph.continuous else int(actions[0])), new_state

    def _batch_size(self, obs: Any) -> int | None:
        """The leading axis of a batch of observations, None for one observation."""
        key = self.graph.obs_keys[0] if self.spaces.parts else None
        value = np.asarray(obs[key]) if key is not None else np.asarray(obs)
        space = self.env_obs_space[key] if key is not None else self.env_obs_space
        one = () if isinstance(space, gym.spaces.Discrete) else tuple(space.shape)
        return value.shape[0] if value.ndim == len(one) + 1 else None

    def obs_inputs(self, obs: Any, batched: bool = False) -> tuple:
        """One env observation (or a batch) -> the graph's observation inputs, each with a batch axis."""
        if self.spaces.parts:
            return tuple(
                _as_input(np.asarray(obs[key]), self.env_obs_space[key], batched=batched) for key in self.graph.obs_keys
            )
        return (_as_input(np.asarray(obs), self.env_obs_space, self.spaces.discrete_obs is not None, batched),)

    def example_inputs(self, obs: Any | None = None) -> tuple:
        """Inputs of the exported graph for one observation (a zero one by default)."""
        if obs is None:
            obs = _zero_obs(self.env_obs_space)
        inputs = self.obs_inputs(obs)
        if self.recurrent:
            inputs += tuple(torch.as_tensor(s) for s in self.initial_state())
        return inputs

    def export(self, path: str, fmt: str) -> str:
        """Write a self-contained policy file (`onnx`: onnxruntime alone runs it; `pt2`: torch alone)."""
        if fmt not in EXPORT_FORMATS:
            raise A3CError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got '{fmt}'")
        names = list(self.graph.obs_keys) + (["h", "c"] if self.recurrent else [])
        outputs = ["action", "h_out", "c_out"] if self.recurrent else ["action"]
        writer = export_onnx if fmt == "onnx" else export_pt2
        # A batch of two: torch.export specialises a dimension whose example size is 1.
        inputs = tuple(torch.cat([x, x]) for x in self.example_inputs())
        return writer(self.graph, inputs, path, names, outputs)


def _as_input(obs: np.ndarray, space: gym.Space, discrete: bool = False, batched: bool = False) -> torch.Tensor:
    """A raw observation (or Dict entry), or a batch of them, as a batch in the dtype the graph takes."""
    if isinstance(space, gym.spaces.Discrete) or discrete:
        return torch.as_tensor(np.asarray(obs, np.int64).reshape(-1))
    if image_plan(space) is not None:
        return torch.as_tensor(np.asarray(obs, np.uint8) if batched else np.asarray(obs, np.uint8)[None])
    return torch.as_tensor(np.asarray(obs, np.float32).reshape((-1,) + tuple(space.shape)))


def _zero_obs(space: gym.Space) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {k: _zero_obs(s) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Discrete):
        return np.asarray(int(space.start))
    return np.zeros(space.shape, space.dtype if image_plan(space) is not None else np.float32)


def _env_spaces(config: Config) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces of the env itself (before channel reordering and the policy's
    [-1, 1] action rescaling)."""
    if config.env.dataset and not config.env.id:
        spaces = probe_spaces(config.env)
        return gym.spaces.Box(-np.inf, np.inf, (spaces.obs_dim,)), spaces.action_space
    env = make_env(config.env)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def load_policy(run_dir: str, checkpoint_name: str = "best") -> Policy:
    """`run_dir`'s policy from its `best` (else latest) checkpoint, `latest`, or a checkpoint path; `best` and
    `latest` skip unreadable files for the newest readable one (common/storage/checkpoint.load_from_run)."""
    config = load_run_config(run_dir)
    _, state = checkpoint.load_from_run(run_dir, checkpoint_name)
    return Policy(config, state[CKPT_MODEL], state.get(CKPT_SPACES))
