"""Seeded learning runs with env-step budgets (`make test-slow`; minutes each on 2 cores)."""
import json

import pytest

from ray_a3c.cluster.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def train_then_evaluate(ray_session, capsys, run_dir, args, episodes=20):
    assert main(["train", *args, "--run-dir", run_dir]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["evaluate", run_dir, "--episodes", str(episodes), "--seed", "123"]) == 0
    evaluation = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return summary, evaluation


def test_pendulum_sync_reaches_minus_300(ray_session, tmp_path, capsys):
    summary, evaluation = train_then_evaluate(
        ray_session, capsys, str(tmp_path / "run"),
        ["pendulum", "--mode", "sync", "--seed", "0", "--total-env-steps", "1500000", "--stop-return", "-300"])
    assert summary["reason"] == "solved", summary
    assert evaluation["mean_return"] >= -300, evaluation


def test_lunarlander_discrete_reaches_100(ray_session, tmp_path, capsys):
    summary, evaluation = train_then_evaluate(
        ray_session, capsys, str(tmp_path / "run"),
        ["lunarlander", "--seed", "0", "--total-env-steps", "3000000", "--stop-return", "100"])
    assert summary["reason"] == "solved", summary
    assert evaluation["mean_return"] >= 100, evaluation


def test_offline_training_from_a_recorded_cartpole_dataset(ray_session, tmp_path, capsys):
    """Record 200 epsilon-greedy episodes from a part-trained run, train on the file only, play live."""
    teacher, data, student = (str(tmp_path / name) for name in ("teacher", "data.npz", "student"))
    assert main(["train", "--seed", "3", "--stop-return", "150", "--run-dir", teacher]) == 0
    capsys.readouterr()
    assert main(["record", "--env", "CartPole-v1", "--policy", teacher, "--epsilon", "0.1", "--episodes", "200",
                 "--out", data]) == 0
    recorded = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mean_return"]
    assert main(["train", "offline_cartpole", "--set", f"env.dataset={data}", "--total-env-steps", "500000",
                 "--seed", "0", "--run-dir", student]) == 0
    capsys.readouterr()
    assert main(["evaluate", student, "--env", "CartPole-v1", "--checkpoint", "latest", "--episodes", "20",
                 "--vs-random", "--seed", "7"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    print(f"recording policy mean {recorded:.1f}; offline-trained mean {result['mean_return']:.1f}; "
          f"random {result['random_mean_return']:.1f}")
    assert result["mean_return"] >= 0.8 * recorded
    assert result["mean_return"] >= result["random_mean_return"] + 100


def test_vizdoom_basic_reaches_50(ray_session, tmp_path, capsys):
    pytest.importorskip("vizdoom")
    summary, evaluation = train_then_evaluate(
        ray_session, capsys, str(tmp_path / "run"),
        ["vizdoom_basic", "--seed", "0", "--total-env-steps", "800000", "--stop-return", "70",
         "--set", "run.eval_episodes=20"], episodes=20)
    assert summary["reason"] == "solved", summary
    assert evaluation["mean_return"] >= 50, evaluation


def test_cartpole_lstm_solves(ray_session, tmp_path, capsys):
    summary, evaluation = train_then_evaluate(
        ray_session, capsys, str(tmp_path / "run"), ["cartpole_lstm", "--seed", "0", "--total-env-steps", "1000000"])
    assert summary["reason"] == "solved", summary
    assert evaluation["mean_return"] >= 475, evaluation
