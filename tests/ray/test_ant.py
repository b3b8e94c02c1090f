"""The `ant` preset on MuJoCo Ant-v5 (the A2C-GAE notebook's spider robot): a short real run end to end."""

import json
import math

import pytest

from ray_a3c.cluster.cli import main
from ray_a3c.common.settings.config import from_dict, load_yaml, validate
from ray_a3c.common.storage import checkpoint

pytestmark = pytest.mark.integration


def _require_mujoco():
    try:
        import mujoco  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"mujoco is not installed (pip install 'ray-a3c[mujoco]'): {exc}")


def test_ant_preset_is_the_notebook_recipe():
    cfg = validate(from_dict(load_yaml("ant"), source="ant"))
    assert cfg.env.id == "Ant-v5" and cfg.algo.mode == "async"  # measured better than the notebook's sync
    assert cfg.model.normalize_obs and cfg.model.normalize_rewards and not cfg.model.shared_trunk
    assert cfg.algo.gae_lambda < 1.0 and cfg.algo.critic_epochs > 1


def test_ant_trains_checkpoints_its_statistics_and_evaluates(ray_session, tmp_path, capsys):
    _require_mujoco()
    run_dir = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "ant",
                "--total-env-steps",
                "4000",
                "--run-dir",
                run_dir,
                "--set",
                "env.num_envs_per_worker=2",
                "run.evaluate=false",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["reason"] == "env_steps" and summary["env_steps"] >= 4000 and summary["version"] > 0
    state = checkpoint.load_from_run(run_dir, checkpoint.LATEST)[1]["model"]
    # both running statistics were merged from the workers and travel in the checkpoint
    assert float(state["obs_norm.count"]) >= 4000 * 0.9
    assert float(state["reward_norm.count"]) >= 4000 * 0.9 and float(state["reward_norm.var"]) > 0
    assert main(["evaluate", run_dir, "--checkpoint", "latest", "--episodes", "2", "--seed", "3"]) == 0
    evaluation = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluation["episodes"] == 2 and math.isfinite(evaluation["mean_return"])
