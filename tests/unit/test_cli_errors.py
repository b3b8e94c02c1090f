"""Bad input: one `error:` line on stderr, exit code 2, nothing created or overwritten (real subprocesses)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.settings.config import Config, from_flat, save_yaml
from ray_a3c.common.storage.checkpoint import save_atomic
from ray_a3c.learner.parameter_server import ParameterServer
from tests.helpers import listing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def a3c(*args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "ray_a3c.cluster.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_error_line(proc):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


@pytest.fixture
def fake_run(tmp_path):
    """A run dir as training leaves it: config.yaml and one checkpoint (made without training)."""
    cfg = from_flat({"model.hidden_sizes": [8]}, Config())
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_yaml(cfg, str(run / "config.yaml"))
    save_atomic(ParameterServer(cfg, probe_spaces(cfg.env)).state_dict(), str(run / "checkpoints" / "ckpt-0.pt"))
    return run


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
        (["train", "--set", "algo.learning_rate=-0.001"], "algo.learning_rate must be > 0"),
        (["train", "--set", "algo.no_such_key=1"], "unknown config key 'algo.no_such_key'"),
        (["train", "--set", "algo.policy_epochs=2", "algo.clip_range=1.5"], "algo.clip_range must be in (0, 1)"),
        (["train", "list.yaml"], "must be a YAML mapping"),
        (["train", "--num-workers", "two"], "invalid int value"),
        (["evaluate", "no/such/run"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle):
    (tmp_path / "list.yaml").write_text("- env\n- model\n")
    before = listing(tmp_path)
    extra = ["--run-dir", "out"] if args[0] == "train" else []
    line = assert_one_error_line(a3c(*args, *extra, cwd=tmp_path))
    assert needle in line
    assert listing(tmp_path) == before


def test_truncated_checkpoint(fake_run):
    ckpt = fake_run / "checkpoints" / "ckpt-0.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    before = {p: (fake_run / p).read_bytes() for p in listing(fake_run)}
    line = assert_one_error_line(a3c("evaluate", str(fake_run), "--checkpoint", "latest", cwd=fake_run.parent))
    assert "corrupt" in line
    assert {p: (fake_run / p).read_bytes() for p in listing(fake_run)} == before


def test_existing_run_dir_is_not_overwritten(fake_run):
    before = {p: (fake_run / p).read_bytes() for p in listing(fake_run)}
    line = assert_one_error_line(a3c("train", "--run-dir", str(fake_run), cwd=fake_run.parent))
    assert "--resume" in line
    assert {p: (fake_run / p).read_bytes() for p in listing(fake_run)} == before


def test_evaluate_a_checkpoint_and_random_baseline(fake_run):
    proc = a3c("evaluate", str(fake_run), "--episodes", "3", "--random", cwd=fake_run.parent)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == {"mean_return", "std_return", "ci95_return", "min_return", "max_return", "episodes", "seed"}
    assert result["episodes"] == 3 and 5 < result["mean_return"] < 100 and result["seed"] == 0
    assert result["ci95_return"] == pytest.approx(1.959964 * result["std_return"] / 3**0.5)
    proc = a3c("evaluate", str(fake_run), "--episodes", "2", cwd=fake_run.parent)
    assert proc.returncode == 0 and json.loads(proc.stdout.strip().splitlines()[-1])["episodes"] == 2
    assert np.isfinite(json.loads(proc.stdout.strip().splitlines()[-1])["mean_return"])
