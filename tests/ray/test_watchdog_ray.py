"""A hung env in a real run on the session's Ray: named by the driver and rebuilt while the run goes on, or, once
its env.max_hang_restarts are spent, the run ends with exit 2 naming it."""

import json
import time

import pytest

from ray_a3c.cluster.cli import main

pytestmark = pytest.mark.integration

HANGING = "tests.hanging_env:HangingEnv"


def train(run_dir, kwargs: str, *sets: str) -> int:
    return main(
        [
            "train",
            "--env",
            HANGING,
            "--num-workers",
            "1",
            "--run-dir",
            str(run_dir),
            "--set",
            f"env.kwargs={kwargs}",
            "env.num_envs_per_worker=2",
            "env.step_timeout_s=1",
            "model.hidden_sizes=[16]",
            "run.evaluate=false",
            "run.stop_return=null",
            "run.log_interval_s=1",
            *sets,
        ]
    )


def test_a_hung_env_is_named_and_rebuilt_while_the_run_goes_on(ray_session, tmp_path, capsys):
    code = train(tmp_path / "run", "{hang_at_step: 5, hang_seeds: [1]}", "run.total_env_steps=3000")
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert (
        "worker 0: env 1 (seed 1) hung in step 5 of its episode: no answer after 1.0s: its vector env was rebuilt "
        "(hang 1 of env 1, env.max_hang_restarts=3)" in out + err
    ), out + err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reason"] == "env_steps" and summary["env_hangs"] == 1, summary
    assert summary["episodes"] > 100 and summary["restarts"].get("worker", 0) == 0, summary


def test_an_env_that_keeps_hanging_ends_the_run_naming_it(ray_session, tmp_path, capsys):
    t0 = time.perf_counter()
    code = train(tmp_path / "run", "{hang_at_step: 2}", "env.max_hang_restarts=1", "run.total_env_steps=100000")
    out, err = capsys.readouterr()
    assert code == 2, out + err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: worker 0: env 0 (seed ") and "hung in step 2 of its episode" in line, line
    assert line.endswith("; hang 2 of env 0, env.max_hang_restarts=1: see env.step_timeout_s"), line
    assert time.perf_counter() - t0 < 60
