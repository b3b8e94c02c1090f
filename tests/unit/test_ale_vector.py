"""The ALE's own vector env against the wrapper pipeline it stands in for (common/env/ale_vector.py)."""

from dataclasses import replace

import numpy as np
import pytest

from ray_a3c.common.env.ale_vector import AleGame, AleVectorEnv, native_plan, rom_name
from ray_a3c.common.env.envs import make_policy_env, make_vector_env, scoring_env_config
from ray_a3c.common.env.wrappers import GAME_LENGTH, GAME_RETURN
from ray_a3c.common.settings.config import Config, from_dict, from_flat, load_yaml

pytest.importorskip("ale_py")

PREPROCESSING = {"AtariPreprocessing": {"frame_skip": 4, "screen_size": 84, "grayscale_obs": True, "noop_max": 0}}
CLIP = {"ClipReward": {"min_reward": -1, "max_reward": 1}}


def env_config(env_id: str, *later, sticky: float = 0.0, **flat):
    """A deterministic pipeline (no sticky actions, no no-op starts) so both paths play the same game."""
    values = {
        "env.id": env_id,
        "env.kwargs": {"frameskip": 1, "repeat_action_probability": sticky},
        "env.wrappers": [PREPROCESSING, *later],
        "env.frame_stack": 4,
        **flat,
    }
    return from_flat(values, Config()).env


def test_rom_names_follow_the_ale_ids():
    assert rom_name("ALE/Pong-v5") == "pong"
    assert rom_name("ALE/MsPacman-v5") == "ms_pacman"
    assert rom_name("ALE/SpaceInvaders-v5") == "space_invaders"
    assert rom_name("ALE/Pong-v4") is None and rom_name("CartPole-v1") is None


def test_the_atari_preset_maps_onto_the_ale_and_its_scoring_env_keeps_only_the_game():
    cfg = from_dict(load_yaml("atari")).env
    plan = native_plan(cfg)
    assert plan is not None and plan.game == "pong" and plan.sticky == 0.25 and plan.frame_stack == 4
    assert plan.life_loss and plan.fire_reset and plan.reward_bounds == (-1, 1) and plan.noop_max == 30
    scoring = native_plan(scoring_env_config(cfg))
    assert scoring is not None and not scoring.life_loss and scoring.reward_bounds is None and scoring.fire_reset


@pytest.mark.parametrize(
    "change",
    [
        {"env.ale_vector": False},
        {"env.max_episode_steps": 1000},
        {"env.warmup_steps": 10},
        {"env.wrappers": [PREPROCESSING, "RecordEpisodeStatistics"]},
        {"env.wrappers": [PREPROCESSING, "FireReset", "LifeLossEnd"]},  # no serve after a lost life
        {"env.wrappers": [{"AtariPreprocessing": {"scale_obs": True}}]},
        {"env.wrappers": ["LifeLossEnd"]},
        {"env.kwargs": {"repeat_action_probability": 0.0}},  # v5's own frameskip would skip twice
        {"env.id": "ALE/Pong-v4"},
    ],
)
def test_pipelines_the_ale_does_not_implement_keep_the_wrappers(change):
    assert native_plan(env_config("ALE/Pong-v5", **change)) is None


def test_a_pipeline_the_ale_does_not_implement_builds_the_gymnasium_vector_env():
    venv = make_vector_env(env_config("ALE/Pong-v5", "RecordEpisodeStatistics"), 1, 0)
    assert not isinstance(venv, AleVectorEnv) and native_plan(env_config("ALE/Pong-v5")) is not None
    venv.close()


def play_both(cfg, steps: int, num_envs: int = 3):
    """The same random actions through the wrappers and through the ALE: every step's arrays, and the games."""
    wrapped = make_vector_env(replace(cfg, ale_vector=False), num_envs, 5)
    native = make_vector_env(cfg, num_envs, 5)
    assert isinstance(native, AleVectorEnv) and not isinstance(wrapped, AleVectorEnv)
    seeds = [5 + i for i in range(num_envs)]
    first = wrapped.reset(seed=seeds)[0], native.reset(seed=seeds)[0]
    assert first[0].shape == first[1].shape == (num_envs, 4, 84, 84) and np.array_equal(*first)
    rng = np.random.default_rng(1)
    games: tuple[list, list] = ([], [])
    mismatches = 0
    for t in range(steps):
        actions = rng.integers(0, native.single_action_space.n, num_envs)
        results = wrapped.step(actions), native.step(actions)
        mismatches += sum(not np.array_equal(a, b) for a, b in zip(results[0][:4], results[1][:4], strict=True))
        for found, (*_, info) in zip(games, results, strict=True):
            if GAME_RETURN in info:
                ended = np.flatnonzero(info["_" + GAME_RETURN])
                found += [(t, i, info[GAME_RETURN][i], info[GAME_LENGTH][i]) for i in ended]
    wrapped.close(), native.close()
    return mismatches, games


def test_pong_through_the_ale_is_the_wrapper_pipeline_step_for_step():
    mismatches, (wrapped, native) = play_both(env_config("ALE/Pong-v5"), 1000)
    assert mismatches == 0
    assert len(native) >= 1 and native == wrapped  # a whole game: -21..-19 for random play, its frames


def test_lives_as_episodes_and_clipped_rewards_match_lifelossend_and_clipreward():
    cfg = env_config("ALE/Breakout-v5", "LifeLossEnd", CLIP)
    mismatches, (wrapped, native) = play_both(cfg, 500)
    assert mismatches == 0  # each lost life ends an episode at the same step, each stack restarts alike
    assert len(native) >= 2 and native == wrapped  # games end only when the last life is lost


def test_training_ends_episodes_at_lost_lives_and_counts_whole_games_at_the_games_own_reward():
    cfg = from_dict(load_yaml("atari")).env
    venv = make_vector_env(replace(cfg, id="ALE/Breakout-v5"), 2, 3)
    venv.reset(seed=[3, 4])
    rng = np.random.default_rng(0)
    life_ends = games = 0
    for _ in range(1500):
        _, rewards, terminated, truncated, info = venv.step(rng.integers(0, 4, 2))
        assert set(np.unique(rewards)) <= {0.0, 1.0}
        life_ends += int((terminated & (info["lives"] > 0)).sum())
        if GAME_RETURN in info:
            games += int(info["_" + GAME_RETURN].sum())
            assert (info["lives"][info["_" + GAME_RETURN]] == 0).all()
    assert life_ends >= 4 * games and games >= 1


def test_an_evaluation_game_is_one_whole_game_at_its_own_score():
    env = make_policy_env(scoring_env_config(from_dict(load_yaml("atari")).env))
    assert isinstance(env, AleGame) and env.observation_space.shape == (4, 84, 84)
    obs, _ = env.reset(seed=7)
    total, steps, done, info = 0.0, 0, False, {}
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total, steps, done = total + reward, steps + 1, terminated or truncated
    assert -21 <= total <= -15 and steps > 500 and obs.shape == (4, 84, 84)  # a random player's whole game
    assert info[GAME_RETURN] == total
    env.reset(seed=8)  # and the next game starts
    env.close()
