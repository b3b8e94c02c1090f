"""A real asynchronous run (Ray, two workers pushing on their own) replayed in one process to its weights, bit for
bit, from the update log its parameter server wrote."""

import os

import pytest

from ray_a3c.cluster.cli import main
from ray_a3c.learner.update_log import LOG_FILE, RecordKind, read_log

pytestmark = pytest.mark.integration


def test_an_async_cartpole_run_replays_to_its_final_weights(ray_session, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    args = ["train", "cartpole", "--num-workers", "2", "--total-env-steps", "12000", "--seed", "3"]
    overrides = ["run.evaluate=false", "run.stop_return=null", "env.num_envs_per_worker=2", "run.log_interval_s=1"]
    assert main([*args, "--run-dir", run_dir, "--set", *overrides]) == 0
    log = read_log(os.path.join(run_dir, LOG_FILE))
    updates = log.updates
    assert len(updates) >= 1100 and len(log.headers) == 1
    switches = sum(a.rank != b.rank for a, b in zip(updates, updates[1:], strict=False))
    assert switches > len(updates) // 10, "the two workers' packets interleave, as async pushes do"
    kinds = [kind for kind, _ in log.digests]
    assert kinds.count(RecordKind.END) == 1 and RecordKind.CHECKPOINT in kinds
    assert "placement: " in capsys.readouterr().out  # printed once every actor runs, with no evaluator too
    assert main(["replay", run_dir]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"replayed {len(updates)} updates: weights identical (max abs diff 0.0) to ckpt-"), line
