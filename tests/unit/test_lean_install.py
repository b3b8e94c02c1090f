"""The wheel in a fresh venv with no extras (`make test-slow`; minutes: pip installs torch, Ray and gymnasium):
`a3c train cartpole` runs, and a ViZDoom preset is refused with an error naming the extra that brings it."""

import glob
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd: list, cwd: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_a_wheel_without_extras_trains_cartpole_and_names_the_doom_extra(tmp_path):
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), ROOT], ROOT)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = glob.glob(str(tmp_path / "dist" / "ray_a3c-*.whl"))
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], str(tmp_path)).returncode == 0
    pip, a3c = str(venv / "bin" / "pip"), str(venv / "bin" / "a3c")
    # torch first, pinned (as the Makefile does): left to itself pip would pick a CUDA build
    torch = run([pip, "install", "-q", "torch==2.13.0"], str(tmp_path))
    assert torch.returncode == 0, torch.stderr[-2000:]
    installed = run([pip, "install", "-q", wheel], str(tmp_path))
    assert installed.returncode == 0, installed.stderr[-2000:]
    listed = run([pip, "list", "--format=freeze"], str(tmp_path)).stdout.lower()
    assert "vizdoom" not in listed and "matplotlib" not in listed and "ale-py" not in listed, listed
    trained = run(
        [
            a3c,
            "train",
            "cartpole",
            "--total-env-steps",
            "3000",
            "--run-dir",
            "cp",
            "--set",
            "run.stop_return=null",
            "cluster.include_dashboard=false",
        ],
        str(tmp_path),
    )
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    assert '"reason": "env_steps"' in trained.stdout.strip().splitlines()[-1]
    refused = run([a3c, "train", "vizdoom_basic", "--run-dir", "doom"], str(tmp_path))
    assert refused.returncode == 2 and "pip install 'ray-a3c[doom]'" in refused.stderr, refused.stderr
    assert not (tmp_path / "doom").exists()  # refused before anything was written
