"""A user's own envs through the CLI on the session's real Ray: every env.id form, a Dict-observation env
trained, evaluated and exported, and a Pong smoke run with the `atari` preset."""

import json

import numpy as np
import pytest

from ray_a3c.cluster.cli import main
from ray_a3c.common.env.envs import make_env
from ray_a3c.common.inference.policy import load_policy

pytestmark = pytest.mark.integration
SMALL = ["env.num_envs_per_worker=4", "run.log_interval_s=1", "model.cnn_fc_size=32", "model.conv_channels=[8,8]"]


def train(capsys, run_dir: str, *args: str) -> tuple[dict, str]:
    code = main(["train", "--run-dir", run_dir, "--seed", "0", *args])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    return json.loads(out.strip().splitlines()[-1]), out


@pytest.mark.parametrize("env_id", ["tests.pixel_games:PixelCatch-v0", "tests.pixel_games:PixelCatch"])
def test_module_env_ids_and_classes_train_with_their_familys_defaults(ray_session, tmp_path, capsys, env_id):
    summary, out = train(
        capsys,
        str(tmp_path / "run"),
        "--env",
        env_id,
        "--total-env-steps",
        "3000",
        "--set",
        *SMALL,
        "env.kwargs={lives: 2}",
    )
    assert out.splitlines()[0] == "defaults: the pixels family (image observations); a preset or --set overrides them"
    assert summary["env_steps"] >= 3000 and summary["episodes"] > 50  # games of 2 balls: 22 steps each


def test_a_dict_observation_env_trains_evaluates_and_exports(ray_session, tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    run_dir = str(tmp_path / "dict")
    summary, _ = train(
        capsys, run_dir, "--env", "tests.pixel_games:DictCatch", "--total-env-steps", "3000", "--set", *SMALL
    )
    assert summary["env_steps"] >= 3000 and summary["version"] > 0  # gradients reached the PS
    assert main(["evaluate", run_dir, "--checkpoint", "latest", "--episodes", "5"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # whole games at the game's own reward: one ball a game, +1 or -1, so 5 games sum to an odd integer
    total = result["mean_return"] * 5
    assert result["episodes"] == 5 and abs(total - round(total)) < 1e-6 and round(total) % 2 == 1, result
    out = str(tmp_path / "dict.onnx")
    assert main(["export", run_dir, "--format", "onnx", "--checkpoint", "latest", "--out", out]) == 0
    session = onnxruntime.InferenceSession(out)
    assert [i.name for i in session.get_inputs()] == ["camera", "lives", "paddle"]
    policy, env = load_policy(run_dir, "latest"), make_env(load_policy(run_dir, "latest").config.env)
    obs, _ = env.reset(seed=1)
    for _ in range(15):
        expected, _ = policy.act(obs)
        feeds = {
            "camera": obs["camera"][None],
            "lives": np.asarray([obs["lives"]], np.int64),
            "paddle": obs["paddle"][None].astype(np.float32),
        }
        assert int(session.run(None, feeds)[0][0]) == expected
        obs, _, terminated, truncated, _ = env.step(expected)
        if terminated or truncated:
            obs, _ = env.reset()


def test_pong_smoke_with_the_atari_preset(ray_session, tmp_path, capsys):
    pytest.importorskip("ale_py")
    run_dir = str(tmp_path / "pong")
    summary, _ = train(
        capsys,
        run_dir,
        "atari",
        "--total-env-steps",
        "2000",
        "--set",
        "env.num_envs_per_worker=4",
        "run.evaluate=false",
    )
    assert summary["env_steps"] >= 2000
    assert main(["evaluate", run_dir, "--checkpoint", "latest", "--episodes", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # one whole game at the game's own score (rewards unclipped, all lives): an untrained agent loses it
    assert result["episodes"] == 1 and -21.0 <= result["mean_return"] < 0
