"""Seeded learning runs with env-step budgets (`make test-slow`; minutes each on 2 cores)."""

import json
import sys

import pytest

from ray_a3c.cluster.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def train_then_evaluate(ray_session, capsys, run_dir, args, episodes=20):
    assert main(["train", *args, "--run-dir", run_dir]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["evaluate", run_dir, "--episodes", str(episodes), "--seed", "123"]) == 0
    evaluation = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # past capsys: `pytest -m slow -s` shows the figures that README and BENCHMARKS quote
    print(
        f"\n{args[0]}: summary {json.dumps(summary)}\n{args[0]}: evaluation {json.dumps(evaluation)}",
        file=sys.__stderr__,
    )
    return summary, evaluation


def offline_cartpole_played_live(capsys, dataset_setting: str, student: str) -> dict:
    """Train `offline_cartpole` on the dataset for 500k steps (seed 0), then 20 live CartPole-v1 episodes of its
    latest checkpoint beside a random policy: `a3c evaluate`'s JSON."""
    args = ["offline_cartpole", "--set", dataset_setting, "--total-env-steps", "500000", "--seed", "0"]
    assert main(["train", *args, "--run-dir", student]) == 0
    capsys.readouterr()
    play = ["--env", "CartPole-v1", "--checkpoint", "latest", "--episodes", "20", "--vs-random", "--seed", "7"]
    assert main(["evaluate", student, *play]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_pendulum_sync_reaches_minus_300(ray_session, tmp_path, capsys):
    summary, evaluation = train_then_evaluate(
        ray_session,
        capsys,
        str(tmp_path / "run"),
        ["pendulum", "--mode", "sync", "--seed", "0", "--total-env-steps", "1500000", "--stop-return", "-300"],
    )
    assert summary["reason"] == "solved", summary
    assert evaluation["mean_return"] >= -300, evaluation


def test_lunarlander_discrete_reaches_100(ray_session, tmp_path, capsys):
    summary, evaluation = train_then_evaluate(
        ray_session,
        capsys,
        str(tmp_path / "run"),
        ["lunarlander", "--seed", "0", "--total-env-steps", "3000000", "--stop-return", "100"],
    )
    assert summary["reason"] == "solved", summary
    assert evaluation["mean_return"] >= 100, evaluation


def test_offline_training_from_a_recorded_cartpole_dataset(ray_session, tmp_path, capsys):
    """Record 200 epsilon-greedy episodes from a part-trained run, train on the file only, play live."""
    teacher, data, student = (str(tmp_path / name) for name in ("teacher", "data.npz", "student"))
    assert main(["train", "--seed", "3", "--stop-return", "150", "--run-dir", teacher]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "record",
                "--env",
                "CartPole-v1",
                "--policy",
                teacher,
                "--epsilon",
                "0.1",
                "--episodes",
                "200",
                "--out",
                data,
            ]
        )
        == 0
    )
    recorded = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mean_return"]
    result = offline_cartpole_played_live(capsys, f"env.dataset={data}", student)
    print(
        f"recording policy mean {recorded:.1f}; offline-trained mean {result['mean_return']:.1f}; "
        f"random {result['random_mean_return']:.1f}"
    )
    assert result["mean_return"] >= 0.8 * recorded
    assert result["mean_return"] >= result["random_mean_return"] + 100


def test_offline_pendulum_from_a_recorded_dataset(ray_session, tmp_path, capsys):
    """Continuous offline: record 200 sampled episodes of a trained Pendulum policy, train offline_pendulum
    (AWR on the logged actions) on the file only, evaluate best.pt live over 100 episodes. Returns are negative,
    so "80% of the recording policy" is measured from random play: (ours - random) / (recorded - random)."""
    teacher, data, student = (str(tmp_path / name) for name in ("teacher", "data.npz", "student"))
    assert main(["train", "pendulum", "--seed", "0", "--stop-return", "-250", "--run-dir", teacher]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "record",
                "--env",
                "Pendulum-v1",
                "--policy",
                teacher,
                "--episodes",
                "200",
                "--seed",
                "1000",
                "--out",
                data,
            ]
        )
        == 0
    )
    recorded = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mean_return"]
    assert (
        main(
            [
                "train",
                "offline_pendulum",
                "--set",
                f"env.dataset={data}",
                "--total-env-steps",
                "400000",
                "--seed",
                "0",
                "--run-dir",
                student,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", student, "--checkpoint", "best", "--episodes", "100", "--vs-random", "--seed", "7"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    score = (result["mean_return"] - result["random_mean_return"]) / (recorded - result["random_mean_return"])
    print(
        f"recording policy {recorded:.1f}; offline-trained {result['mean_return']:.1f}; random "
        f"{result['random_mean_return']:.1f}; normalised score {score:.2f}"
    )
    assert score >= 0.8


def test_offline_cartpole_from_a_minari_datacollector_dataset(ray_session, tmp_path, capsys, monkeypatch):
    """The same bar as the npz test above, from a dataset Minari's own DataCollector wrote (no behaviour
    log-probs: the update is plain A3C on the logged actions)."""
    import warnings

    import gymnasium as gym
    import minari
    import numpy as np

    import ray_a3c

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    teacher, student = str(tmp_path / "teacher"), str(tmp_path / "student")
    assert main(["train", "--seed", "3", "--stop-return", "150", "--run-dir", teacher]) == 0
    policy = ray_a3c.load_policy(teacher)
    env, rng, returns = minari.DataCollector(gym.make("CartPole-v1")), np.random.default_rng(0), []
    for episode in range(200):
        obs, done, total = env.reset(seed=episode)[0], False, 0.0
        while not done:
            action = policy.act(obs)[0] if rng.random() >= 0.1 else int(rng.integers(2))
            obs, reward, term, trunc, _ = env.step(action)
            total, done = total + reward, term or trunc
        returns.append(total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        env.create_dataset(dataset_id="cartpole/teacher-v0", algorithm_name="epsilon-greedy 0.1")
    recorded = float(np.mean(returns))
    capsys.readouterr()
    result = offline_cartpole_played_live(capsys, "env.dataset=minari:cartpole/teacher-v0", student)
    print(f"recording policy mean {recorded:.1f}; offline-trained mean {result['mean_return']:.1f}")
    assert result["mean_return"] >= 0.8 * recorded
    assert result["mean_return"] >= result["random_mean_return"] + 100


@pytest.mark.parametrize("preset", ["vizdoom_basic", "vizdoom_basic_lstm"])
def test_vizdoom_basic_fresh_100_episodes_reach_75(ray_session, tmp_path, capsys, preset):
    """Feed-forward and the Doom notebook's CNN + LSTM 256 (with the input LayerNorm and the skip path), each
    preset as shipped (its stop, a 100-episode confirmed mean >= 80, and its budget): what the stop hands over,
    best.pt, is evaluated afresh over 100 episodes (other seeds, sampled actions as the preset evaluates)."""
    pytest.importorskip("vizdoom")
    summary, evaluation = train_then_evaluate(
        ray_session, capsys, str(tmp_path / "run"), [preset, "--seed", "0"], episodes=100
    )
    assert summary["reason"] == "solved" and summary["best_eval_episodes"] == 100, summary
    assert evaluation["mean_return"] >= 75, evaluation


def test_cartpole_lstm_solves(ray_session, tmp_path, capsys):
    summary, evaluation = train_then_evaluate(
        ray_session, capsys, str(tmp_path / "run"), ["cartpole_lstm", "--seed", "0", "--total-env-steps", "1000000"]
    )
    assert summary["reason"] == "solved", summary
    assert evaluation["mean_return"] >= 475, evaluation


def test_ant_walks_within_one_million_env_steps(ray_session, tmp_path, capsys):
    """MuJoCo Ant-v5 (the A2C-GAE notebook's spider robot): best.pt's fresh 20-episode greedy evaluation must
    clear 1,200 (the issue asks 1,000). Standing still scores ~1,000 (a healthy reward of 1 per step for 1,000
    steps), so the bar needs the robot to walk. Measured (async, rate held to 500k): 3,828 +- 541 (95% CI; some
    episodes still fall early), with the lr decaying to 0 at this 1M budget instead of the preset's 2M."""
    pytest.importorskip("mujoco", reason="mujoco is not installed (pip install 'ray-a3c[mujoco]')")
    summary, evaluation = train_then_evaluate(
        ray_session, capsys, str(tmp_path / "run"), ["ant", "--seed", "0", "--total-env-steps", "1000000"]
    )
    assert summary["reason"] == "env_steps" and summary["best_eval_episodes"] == 20, summary
    assert evaluation["mean_return"] >= 1200, evaluation


def test_a_pixel_game_nobody_tuned_for_learns_with_no_preset_and_no_set(ray_session, tmp_path, capsys):
    """tests.pixel_games' catch game, 12x12 RGB frames: the pixel family's defaults alone. Random play scores
    about -0.56 (a ball caught 22% of the time), optimal play 1.0. The latest weights, not the best, are scored."""
    run_dir = str(tmp_path / "catch")
    assert (
        main(
            [
                "train",
                "--env",
                "tests.pixel_games:PixelCatch-v0",
                "--seed",
                "0",
                "--total-env-steps",
                "400000",
                "--run-dir",
                run_dir,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("defaults: the pixels family")
    assert main(["evaluate", run_dir, "--checkpoint", "latest", "--episodes", "100", "--seed", "11"]) == 0
    evaluation = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    print(f"\npixel catch, no preset: evaluation {json.dumps(evaluation)}", file=sys.__stderr__)
    assert evaluation["mean_return"] >= 0.8, evaluation
