"""Evaluator: greedy, sampled or random-policy episodes with given weights, several envs batched."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from PIL import Image

from ray_a3c.common.algo.models import build_model
from ray_a3c.common.algo.selection import episode_stats
from ray_a3c.common.env.envs import make_policy_env, probe_spaces, scoring_env_config
from ray_a3c.common.env.observations import encode_obs
from ray_a3c.common.settings.config import Config
from ray_a3c.common.storage.atomic import atomic_write
from ray_a3c.common.wire.flat import set_flat_weights


class Evaluator:
    def __init__(self, config: Config, max_parallel_envs: int = 20):
        torch.set_num_threads(1)
        self.config = config
        self.env_config = scoring_env_config(config.env)
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
            self._envs.append(make_policy_env(self.env_config))
        return self._envs[:n]

    @torch.no_grad()
    def run_episodes(
        self,
        episodes: int,
        seed: int,
        random_policy: bool = False,
        on_episode: Callable[[int, int], None] | None = None,
    ) -> EvalResult:
        """Episode i is seeded with seed + i; sampled actions draw from torch's generator seeded with `seed`.
        Returns raw-reward statistics and the per-episode lists. `on_episode(done, episodes)` after each one."""
        torch.manual_seed(seed)
        envs = self._env_pool(min(episodes, self.max_parallel))
        rng = np.random.default_rng(seed)
        returns, lengths = np.zeros(episodes), np.zeros(episodes, np.int64)
        slot_episode: list[int | None] = list(range(len(envs)))
        obs = [encode_obs(env.reset(seed=seed + i)[0], self.spaces) for i, env in enumerate(envs)]
        starts = np.ones(len(envs), bool)
        state = self.model.initial_state(len(envs))
        next_episode, finished = len(envs), 0
        if random_policy:
            for i, env in enumerate(envs):
                env.action_space.seed(int(rng.integers(2**31)) + i)
        while any(e is not None for e in slot_episode):
            active = [i for i, e in enumerate(slot_episode) if e is not None]
            actions, state = self._act(obs, envs, state, starts, random_policy)
            starts[:] = False
            for i in active:
                ob, reward, term, trunc, _ = envs[i].step(actions[i])
                ep = slot_episode[i]
                returns[ep] += reward
                lengths[ep] += 1
                obs[i] = encode_obs(ob, self.spaces)
                if term or trunc:
                    finished += 1
                    if on_episode is not None:
                        on_episode(finished, episodes)
                    slot_episode[i] = next_episode if next_episode < episodes else None
                    if next_episode < episodes:
                        obs[i] = encode_obs(envs[i].reset(seed=seed + next_episode)[0], self.spaces)
                        starts[i] = True
                    next_episode += 1
        result = summarize(returns, lengths)
        result.evaluator_pid = os.getpid()
        return result

    def _act(self, obs: list, envs: list, state, starts: np.ndarray, random_policy: bool) -> tuple:
        """Actions for every slot (finished slots too: batching them is cheaper than gathering)."""
        if random_policy:
            return [env.action_space.sample() for env in envs], state
        dist, _, state = self.model.unroll(torch.as_tensor(np.stack(obs))[None], state, torch.as_tensor(starts)[None])
        return list(self.model.env_actions(self._choose(dist))), state

    def _choose(self, dist) -> torch.Tensor:
        return dist.sample() if self.config.run.eval_policy == "sample" else dist.mode()

    @torch.no_grad()
    def record_gif(self, path: str, seed: int, fps: int = 30) -> tuple[int, float]:
        """Play one episode (actions as `run.eval_policy` says) and write the env's rendered frames (ViZDoom: the
        320x240 colour screen) as an animated GIF. A `{return}` in `path` becomes the episode's return.
        Returns (frame count, episode return)."""
        env = make_policy_env(self.env_config, render_mode="rgb_array")
        torch.manual_seed(seed)
        try:
            ob, _ = env.reset(seed=seed)
            frames, state, start, done, total = [env.render()], self.model.initial_state(1), True, False, 0.0
            while not done:
                dist, _, state = self.model.unroll(
                    torch.as_tensor(encode_obs(ob, self.spaces))[None, None], state, torch.tensor([[start]])
                )
                ob, reward, term, trunc, _ = env.step(self.model.env_actions(self._choose(dist))[0])
                frames.append(env.render())
                start, done, total = False, term or trunc, total + float(reward)
        finally:
            env.close()
        images = [Image.fromarray(_distinct(np.asarray(f, np.uint8).squeeze(), i)) for i, f in enumerate(frames)]
        path = path.replace("{return}", f"{round(total, 1):g}")
        with atomic_write(path, makedirs=True) as tmp:  # a run stopped mid-write leaves no truncated .gif
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return len(images), total

    def evaluate_latest(self, ps, episodes: int, seed: int, gif_path: str | None = None) -> EvalResult:
        """Pull the PS's current weights and evaluate them; the result carries the version and weights.
        With `gif_path` (`{env_steps}` and `{return}` are filled in), one more episode is recorded as a GIF."""
        version, weights, env_steps = ps.get_weights()
        self.set_weights(weights)
        result = self.run_episodes(episodes, seed)
        result.version, result.env_steps, result.weights = version, env_steps, weights
        if gif_path:
            result.gif_frames, result.gif_return = self.record_gif(
                gif_path.replace("{env_steps}", str(env_steps)), seed
            )
        return result

    def evaluate_weights(self, weights: np.ndarray, episodes: int, seed: int) -> EvalResult:
        """Episodes of the given weights (the extension of a screening: same weights, the next seeds)."""
        self.set_weights(weights)
        return self.run_episodes(episodes, seed)

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []


def _distinct(frame: np.ndarray, index: int) -> np.ndarray:
    """Toggle the lowest bit of one corner pixel on odd frames: Pillow merges identical consecutive GIF frames,
    which would hide how long the agent stood still; this keeps one frame per step, invisibly."""
    frame = frame.copy()
    frame[(0, 0) if frame.ndim == 2 else (0, 0, 0)] ^= index % 2
    return frame


@dataclass
class EvalResult:
    """An evaluation: raw-reward statistics over its episodes and the returns themselves; `evaluate_latest`
    adds which weights were scored (and the GIF it recorded)."""

    mean_return: float
    std_return: float
    ci95_return: float
    min_return: float
    max_return: float
    episodes: int
    mean_length: float
    returns: list  # per episode, in seed order
    version: int | None = None  # evaluate_latest: the PS version evaluated...
    env_steps: int | None = None  # ...its env-step count...
    weights: Any = None  # ...and its flat weights (an extension evaluates them again)
    gif_frames: int | None = None
    gif_return: float | None = None
    evaluator_pid: int | None = None  # the process that played the episodes (a new one: restarted in between)

    def to_dict(self) -> dict:
        """The statistics and returns, the JSON form `a3c evaluate` prints from."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in STATISTICS}


STATISTICS = (
    "mean_return",
    "std_return",
    "ci95_return",
    "min_return",
    "max_return",
    "episodes",
    "mean_length",
    "returns",
)


def summarize(returns: np.ndarray, lengths: np.ndarray) -> EvalResult:
    stats = episode_stats([float(r) for r in returns])
    return EvalResult(
        mean_return=stats.mean,
        std_return=stats.std,
        ci95_return=stats.ci95,
        min_return=float(np.min(returns)),
        max_return=float(np.max(returns)),
        episodes=int(len(returns)),
        mean_length=float(np.mean(lengths)),
        returns=[float(r) for r in returns],
    )
