"""Stable-Baselines3's sides of bench/atari.py: PPO and A2C with rl-zoo's Atari entries (ppo.yml and a2c.yml
`atari`: AtariWrapper, 4 stacked frames, CnnPolicy, i.e. the Nature CNN), on ALE/<Game>-v5 made with frameskip=1
(AtariWrapper skips 4). Needs stable-baselines3 (`pip install 'ray-a3c[bench]'`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from bench.atari_sides import (
    EVAL_SEED,
    FRAME_SKIP,
    NATURE_CNN,
    Budget,
    Deadline,
    game_means,
    returns_summary,
    side_result,
)

# rl-zoo's hyperparams/ppo.yml `atari` (n_timesteps 1e7; learning_rate lin_2.5e-4, clip_range lin_0.1)
ZOO_PPO = {
    "n_envs": 8,
    "n_steps": 128,
    "n_epochs": 4,
    "batch_size": 256,
    "learning_rate": 2.5e-4,
    "clip_range": 0.1,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
}
# rl-zoo's hyperparams/a2c.yml `atari` (RMSpropTFLike alpha 0.99, eps 1e-5; the zoo keeps 7e-4 constant)
ZOO_A2C = {"n_envs": 16, "n_steps": 5, "ent_coef": 0.01, "vf_coef": 0.25, "learning_rate": 7e-4}
# the entries that fall linearly to 0: the zoo's `lin_` ones, and A2C's rate as ours falls
LINEAR = {"ppo": ("learning_rate", "clip_range"), "a2c": ("learning_rate",)}
ZOO = {"ppo": ZOO_PPO, "a2c": ZOO_A2C}


def linear(initial: float, deadline: Deadline) -> Callable[[float], float]:
    """rl-zoo's `lin_` schedule: `initial` x SB3's progress_remaining (1 -> 0 over the frame budget); under a
    clock budget `initial` x the share of the clock left, since SB3's progress counts toward a frame total
    that a clock-sized run never reaches."""
    if deadline.seconds is None:
        return lambda progress: initial * progress
    return lambda _progress: initial * deadline.fraction_left()


def algo_kwargs(algo: str, deadline: Deadline) -> dict:
    """The SB3 constructor's arguments from the zoo's entry (n_envs sizes the vector env instead)."""
    kwargs = {key: value for key, value in ZOO[algo].items() if key != "n_envs"}
    for key in LINEAR[algo]:
        kwargs[key] = linear(kwargs[key], deadline)
    return kwargs


def run_sb3(algo: str, game: str, target: float, seed: int, budget: Budget, eval_games: int) -> dict:
    """`algo` (ppo | a2c) trained within `budget` (a callback stops it at a clock budget's deadline), its policy
    saved as a state dict, loaded into a fresh model and evaluated over `eval_games` whole games."""
    deadline = Deadline(budget.seconds)  # before the imports: start-up counts
    import ale_py
    import gymnasium as gym
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env_id, base = f"ALE/{game}-v5", {"frameskip": 1}
    algo_class = PPO if algo == "ppo" else A2C
    extra = {} if algo == "ppo" else {"max_grad_norm": 0.5, "policy_kwargs": _a2c_policy(RMSpropTFLike)}

    def model_on(env):
        return algo_class("CnnPolicy", env, seed=seed, device="cpu", verbose=0, **algo_kwargs(algo, deadline), **extra)

    env = VecFrameStack(make_atari_env(env_id, n_envs=ZOO[algo]["n_envs"], seed=seed, env_kwargs=base), n_stack=4)
    model = model_on(env)
    games: list[tuple[float, int, float]] = []

    class Games(BaseCallback):  # Monitor sits inside AtariWrapper: its "episode" is a whole game, unclipped
        def _on_step(self) -> bool:
            frames = FRAME_SKIP * self.num_timesteps
            games.extend(
                (deadline.elapsed(), frames, float(i["episode"]["r"])) for i in self.locals["infos"] if "episode" in i
            )
            return not deadline.passed()

    started = deadline.elapsed()
    model.learn(total_timesteps=budget.agent_steps(), callback=Games())
    train_s = deadline.elapsed() - started
    frames = FRAME_SKIP * model.num_timesteps
    eval_env = VecFrameStack(
        make_atari_env(
            env_id,
            n_envs=1,
            seed=EVAL_SEED,
            env_kwargs=base,
            wrapper_kwargs=dict(terminal_on_life_loss=False, clip_reward=False),
        ),
        n_stack=4,
    )
    with tempfile.TemporaryDirectory() as tmp:  # the saved policy, as the other sides evaluate theirs
        path = os.path.join(tmp, "policy.pt")
        torch.save(model.policy.state_dict(), path)
        fresh = model_on(env)  # the training env only sizes its buffers (the evaluation's single env would not)
        fresh.policy.load_state_dict(torch.load(path, weights_only=True))
    env.close()
    returns, _ = evaluate_policy(
        fresh, eval_env, n_eval_episodes=eval_games, deterministic=False, return_episode_rewards=True
    )
    eval_env.close()
    evaluation = returns_summary([float(r) for r in returns])
    return side_result(game_means(games), target, evaluation, frames / max(train_s, 1e-9), frames, budget, NATURE_CNN)


def _a2c_policy(optimizer_class) -> dict:
    return dict(optimizer_class=optimizer_class, optimizer_kwargs=dict(alpha=0.99, eps=1e-5))
