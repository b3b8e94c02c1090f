"""Collect a time-major rollout from a gymnasium vector env with the current policy.

gymnasium 1.x vector envs autoreset on the NEXT step: after env i ends at step t, step t+1 only resets it
(its action is ignored, its reward is 0). That step is not a transition: `valid[t+1, i]` is False and the
loss ignores it. In exchange the observation after the ending step is the episode's real final observation,
so V(s_{t+1}) for a truncated episode is simply `values[t+1]`.

With an env watchdog (actors/watchdog.py) the rollout runs on its helper thread, each vector env call timed. One
that hangs drops the rollout in flight (its transitions never leave the worker, its unfinished episodes are not
reported): the vector env is rebuilt and reset, and the rollout collected again from the rebuilt envs' first
observations, so every rollout is one the invariants above hold for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ray_a3c.actors.watchdog import EnvWatchdog
from ray_a3c.common.algo.models import ActorCritic
from ray_a3c.common.env.observations import EnvSpaces, encode_batch
from ray_a3c.common.env.wrappers import GAME_LENGTH, GAME_RETURN
from ray_a3c.common.storage.keys import INFO_LOG_PROB, INFO_LOGGED_ACTION
from ray_a3c.common.wire.packet import HangReport


@dataclass
class Rollout:
    obs: np.ndarray  # [T, N, obs_dim] observations acted on
    actions: np.ndarray  # [T, N] (discrete) or [T, N, act_dim] (continuous, unclipped samples)
    rewards: np.ndarray  # [T, N] scaled rewards, 0 where not valid
    terminated: np.ndarray  # [T, N] bool
    truncated: np.ndarray  # [T, N] bool
    valid: np.ndarray  # [T, N] bool, False on autoreset steps
    values: np.ndarray  # [T, N] V(s_t) under the acting weights
    next_values: np.ndarray  # [T, N] V(s_{t+1})
    finished: list = field(default_factory=list)  # (raw return, length) of episodes ended in the rollout
    behaviour_log_probs: np.ndarray | None = None  # [T, N] log mu(a|s) when replaying a dataset that has them
    starts: np.ndarray | None = None  # [T, N] bool: step t is the first of an episode (recurrent state reset)
    initial_state: Any = None  # the LSTM state before step 0 (truncated BPTT starts from it), or None

    @property
    def num_steps(self) -> int:
        return int(self.valid.sum())


class VectorEnvRunner:
    """A vector env plus what must persist between rollouts: the next observation, which envs are due
    for their autoreset step, and the running returns of unfinished episodes. With a `watchdog` its steps and
    resets are timed, and one that hangs rebuilds the vector env (the module's docstring)."""

    def __init__(
        self,
        venv: gym.vector.VectorEnv,
        spaces: EnvSpaces,
        seed: int,
        state: Any = None,
        watchdog: EnvWatchdog | None = None,
    ):
        self.venv, self.spaces, self.seed, self.watchdog = venv, spaces, seed, watchdog
        self.state = state  # the policy's recurrent state for the N envs, carried across rollouts
        self.recreations = np.zeros(venv.num_envs, np.int64)  # env processes restarted after a crash (ViZDoom)
        self._begin(*self._reset())

    def _begin(self, obs: Any, info: dict) -> None:
        """The state of freshly reset envs: each observation the first of an episode."""
        n = self.venv.num_envs
        self.obs = encode_batch(obs, self.spaces)
        self.starting, self.resetting = np.ones(n, bool), np.zeros(n, bool)
        self.ep_return, self.ep_length = np.zeros(n), np.zeros(n, np.int64)
        self.logged_actions, self.behaviour_log_probs = _logged(info, n)

    @property
    def replaying(self) -> bool:
        """True when the envs replay a dataset: the logged actions replace the policy's samples."""
        return self.logged_actions is not None

    def step(self, env_actions: np.ndarray) -> tuple:
        """-> (raw rewards, terminated, truncated, valid, finished) for this step."""
        obs, rewards, term, trunc, info = self._timed(self.venv.step, env_actions)
        valid = ~self.resetting
        term, trunc = term & valid, trunc & valid
        rewards = np.where(valid, rewards, 0.0)
        self.ep_return += rewards
        self.ep_length += valid
        done = term | trunc
        # live envs report whole games (common.env.envs wraps each in GameStatistics); a dataset's episodes are its own
        finished = (
            [(float(self.ep_return[i]), int(self.ep_length[i])) for i in np.flatnonzero(done)]
            if self.replaying
            else _finished_games(info)
        )
        self.ep_return[done], self.ep_length[done] = 0.0, 0
        self.resetting = done
        self.starting = ~valid  # after an autoreset step the observation is a new episode's first
        self.obs = encode_batch(obs, self.spaces)
        if "env_recreations" in info:
            self.recreations = np.maximum(
                self.recreations, np.where(info["_env_recreations"], info["env_recreations"], 0)
            )
        if self.replaying:
            self.logged_actions, self.behaviour_log_probs = _logged(
                info, len(valid), self.logged_actions, self.behaviour_log_probs
            )
        return rewards, term, trunc, valid, finished

    def _timed(self, call: Callable, *args: Any, in_reset: bool = False, **kwargs: Any) -> Any:
        """A vector env call; with a watchdog (whose helper thread runs it) bracketed for timing."""
        if self.watchdog is None:
            return call(*args, **kwargs)
        self.watchdog.enter(in_reset)
        try:
            return call(*args, **kwargs)
        finally:
            self.watchdog.leave()

    def _reset(self) -> tuple:
        """The vector env's reset, env i seeded seed + i; one that hangs rebuilds it (new seeds) and resets again."""
        if self.watchdog is None:
            return self._reset_now()
        return self.watchdog.run(self._reset_now, self._rebuild)

    def _reset_now(self) -> tuple:
        return self._timed(self.venv.reset, seed=[self.seed + i for i in range(self.venv.num_envs)], in_reset=True)

    def _rebuild(self, waited_s: float, in_reset: bool) -> None:
        """Name the hang (EnvHangError once over budget) and swap in a rebuilt vector env."""
        self.watchdog.name_hang(self.venv.num_envs, waited_s, None if in_reset else self.ep_length)
        self.venv = self.watchdog.rebuild(self.venv)
        self.seed = self.watchdog.seed

    def restart_after_hang(self, waited_s: float, in_reset: bool) -> None:
        """A rollout's env call hung: the rebuilt vector env, reset, is where the next rollout starts."""
        self._rebuild(waited_s, in_reset)
        self._begin(*self._reset())

    def take_hang_reports(self) -> list[HangReport]:
        """The hangs named since the previous call (none without a watchdog)."""
        return self.watchdog.take_reports() if self.watchdog is not None else []

    def close(self) -> None:
        self.venv.close()
        if self.watchdog is not None:
            self.watchdog.close()


def _finished_games(info: dict) -> list:
    """(return, length) of the games that ended this step, as common.env.wrappers.GameStatistics counted them:
    whole games at the env's own reward, whatever training-only wrappers made of the episodes."""
    if GAME_RETURN not in info:
        return []
    ended = np.flatnonzero(info["_" + GAME_RETURN])
    return [(float(info[GAME_RETURN][i]), int(info[GAME_LENGTH][i])) for i in ended]


def _logged(
    info: dict,
    n: int,
    previous: np.ndarray | None = None,
    previous_blp: np.ndarray | None = None,
) -> tuple:
    """(logged actions [N, ...], behaviour log-probs [N] or None) from a vector env's info, or (None, None)
    when the envs are live. Envs without one this step (all about to autoreset: their next action is
    ignored) keep their previous values."""
    if INFO_LOGGED_ACTION not in info:
        return previous, previous_blp
    has, logged = info["_" + INFO_LOGGED_ACTION], info[INFO_LOGGED_ACTION]
    actions = np.stack([np.asarray(a) for a in logged]) if logged.dtype == object else np.asarray(logged)
    if previous is not None:
        actions = np.where(has.reshape((-1,) + (1,) * (actions.ndim - 1)), actions, previous)
    blp = None
    if INFO_LOG_PROB in info:
        blp = np.where(info["_" + INFO_LOG_PROB], info[INFO_LOG_PROB], 0.0).astype(np.float32)
    return actions, blp


def collect_rollout(runner: VectorEnvRunner, model: ActorCritic, steps: int, reward_scale: float) -> Rollout:
    """`steps` steps of every env; with the runner's watchdog on its helper thread, collected again from the
    rebuilt envs when an env call in it hangs."""

    def collect() -> Rollout:
        return _collect(runner, model, steps, reward_scale)

    if runner.watchdog is None:
        return collect()
    return runner.watchdog.run(collect, runner.restart_after_hang)


class RolloutBuffer:
    """One rollout's steps as they are taken (`add`, by keyword, each [N, ...]), stacked once into a time-major
    Rollout (`build`)."""

    def __init__(self, initial_state: Any):
        self.initial_state = initial_state  # the recurrent state before step 0
        self.obs: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[np.ndarray] = []
        self.terminated: list[np.ndarray] = []
        self.truncated: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []
        self.behaviour_log_probs: list[np.ndarray | None] = []
        self.finished: list = []

    def add(
        self,
        *,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        valid: np.ndarray,
        values: np.ndarray,
        starts: np.ndarray,
        behaviour_log_probs: np.ndarray | None,
        finished: list,
    ) -> None:
        """One step of every env; `behaviour_log_probs` None where there are none (live envs, or a dataset that
        did not record them)."""
        self.obs.append(obs)
        self.actions.append(actions)
        self.rewards.append(rewards)
        self.terminated.append(terminated)
        self.truncated.append(truncated)
        self.valid.append(valid)
        self.values.append(values)
        self.starts.append(starts)
        self.behaviour_log_probs.append(behaviour_log_probs)
        self.finished.extend(finished)

    def build(self, last_values: np.ndarray) -> Rollout:
        """The steps as a Rollout; `last_values` [N]: V of the observation after the last step."""
        values = np.stack(self.values).astype(np.float32)
        next_values = np.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = last_values
        blps = self.behaviour_log_probs
        return Rollout(
            obs=np.stack(self.obs),
            actions=np.stack(self.actions),
            rewards=np.stack(self.rewards).astype(np.float32),
            terminated=np.stack(self.terminated),
            truncated=np.stack(self.truncated),
            valid=np.stack(self.valid),
            values=values,
            next_values=next_values,
            finished=self.finished,
            behaviour_log_probs=np.stack(blps) if blps and all(b is not None for b in blps) else None,
            starts=np.stack(self.starts),
            initial_state=self.initial_state,
        )


@torch.no_grad()  # grad mode is per thread: set in the thread that collects
def _collect(runner: VectorEnvRunner, model: ActorCritic, steps: int, reward_scale: float) -> Rollout:
    buffer = RolloutBuffer(runner.state)
    noise = None
    for t in range(steps):
        obs, starts = runner.obs, runner.starting.copy()
        dist, values, runner.state = model.unroll(
            torch.as_tensor(obs)[None], runner.state, torch.as_tensor(starts)[None]
        )
        behaviour = None
        if runner.replaying:  # the dataset decides what was done; the policy only learns from it
            actions = torch.as_tensor(runner.logged_actions).to(dist.sample().dtype)
            behaviour = runner.behaviour_log_probs
        elif model.gsde:  # a fresh exploration matrix per env copy at each rollout's start and every k steps
            if t == 0 or (model.gsde_sample_every and t % model.gsde_sample_every == 0):
                noise = model.exploration_noise(len(starts))
            actions = dist.sample_with(noise)
        else:
            actions = dist.sample()
        rewards, terminated, truncated, valid, finished = runner.step(model.env_actions(actions))
        buffer.add(
            obs=obs,
            actions=actions.numpy(),
            rewards=rewards * reward_scale,
            terminated=terminated,
            truncated=truncated,
            valid=valid,
            values=values.numpy(),
            starts=starts,
            behaviour_log_probs=behaviour,
            finished=finished,
        )
    last = model.unroll(torch.as_tensor(runner.obs)[None], runner.state, torch.as_tensor(runner.starting)[None])
    return buffer.build(last[1].numpy())
