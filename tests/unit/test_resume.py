"""`--resume` compares the overrides with the config the checkpoint was trained with: changes that do not fit
are refused with nothing written; safe ones are applied and recorded."""

import os

import pytest

from ray_a3c.cluster.cli import main
from ray_a3c.cluster.run.launch import RESUME_LOG, prepare_resume
from ray_a3c.common.reporting.errors import A3CError
from tests.helpers import make_run


@pytest.fixture
def run_dir(tmp_path):
    return make_run(str(tmp_path), "run", **{"env.id": "CartPole-v1", "model.hidden_sizes": [8]})


@pytest.mark.parametrize(
    "override",
    ["model.hidden_sizes=[16]", "env.id=CartPole-v0", "algo.mode=sync", "run.seed=3", "algo.optimizer=rmsprop"],
)
def test_a_change_that_does_not_fit_exits_2_and_leaves_the_run_untouched(run_dir, override, capsys):
    config_path = os.path.join(run_dir, "config.yaml")
    before = open(config_path, "rb").read()
    listing = sorted(os.listdir(run_dir))
    assert main(["train", "--resume", "--run-dir", run_dir, "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot resume with a changed " + override.split("=")[0])
    assert open(config_path, "rb").read() == before
    assert sorted(os.listdir(run_dir)) == listing


def test_env_flag_counts_as_a_change(run_dir, capsys):
    assert main(["train", "--resume", "--run-dir", run_dir, "--env", "Acrobot-v1"]) == 2
    assert "env.id" in capsys.readouterr().err


def test_safe_changes_are_applied_and_recorded(run_dir):
    prepared = prepare_resume(run_dir, {"algo.learning_rate": 1e-4, "run.total_env_steps": 5000})
    assert prepared.config.algo.learning_rate == 1e-4 and prepared.resume_state is not None
    log = open(os.path.join(run_dir, RESUME_LOG)).read()
    assert "algo.learning_rate 0.0007 -> 0.0001" in log and "run.total_env_steps" in log
    with open(os.path.join(run_dir, "config.yaml")) as fh:
        assert "learning_rate: 0.0001" in fh.read()


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    with pytest.raises(A3CError, match="config.yaml"):
        prepare_resume(str(run), {})
