"""Failure modes that are Ray's behaviour, on the session's real Ray (4 CPUs): a starved cluster, a worker
that can never run, two runs side by side, sync rounds with a stopped and a killed worker, and a disk that takes
no checkpoint."""

import errno
import os
import signal
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
import ray
import torch

import ray_a3c
from ray_a3c.cluster.cli import main
from ray_a3c.cluster.run.fleet import run_tag

pytestmark = pytest.mark.integration


class StepRaises(gym.Env):
    """Builds and resets fine (the driver's probe passes); every step fails, as a broken simulator would."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        raise RuntimeError("the simulator broke")


def small(**extra) -> list[str]:
    sets = ["env.num_envs_per_worker=2", "model.hidden_sizes=[16]", "run.log_interval_s=1", *extra.pop("sets", [])]
    return ["--set", *sets]


def test_a_worker_that_can_never_run_ends_the_run_with_its_cause(ray_session, tmp_path, capsys):
    t0 = time.perf_counter()
    code = main(
        [
            "train",
            "--env",
            "tests.ray.test_faults_ray:StepRaises",
            "--num-workers",
            "2",
            "--run-dir",
            str(tmp_path / "run"),
            *small(sets=["cluster.max_worker_failures=2"]),
        ]
    )
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "error: no worker can run" in err and "RuntimeError: the simulator broke" in err
    assert out.count("the simulator broke") >= 4  # each failure is logged with its cause, with back-off
    assert elapsed < 90


def test_a_disk_that_takes_no_checkpoint_ends_the_run_with_one_error(ray_session, tmp_path, monkeypatch, capsys):
    """Every checkpoint write fails as on a full disk (the driver writes them): training goes on past the first,
    warned once, and the run.max_checkpoint_failures-th in a row ends it with exit 2 naming the folder."""

    def full_disk(obj, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    run_dir = tmp_path / "run"
    sets = [
        "run.checkpoint_interval_s=0.5",
        "run.max_checkpoint_failures=2",
        "run.evaluate=false",
        "run.stop_return=null",
    ]
    t0 = time.perf_counter()
    code = main(["train", "--num-workers", "1", "--run-dir", str(run_dir), *small(sets=sets)])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: no checkpoint could be written to '{run_dir / 'checkpoints'}' 2 times in a row")
    assert "No space left on device (ENOSPC)" in line
    assert out.count("checkpoint not written to") == 1  # once per errno
    assert out.strip().splitlines()[-1].endswith("; checkpoint not written")  # the run's last line says so
    assert not list((run_dir / "checkpoints").iterdir()) and (run_dir / "config.yaml").exists()
    assert time.perf_counter() - t0 < 60


def test_a_starved_cluster_ends_the_run_with_one_error_naming_what_is_missing(ray_session, tmp_path, capsys):
    """The run's actors are reserved together (one placement group): an evaluator the cluster cannot hold
    beside the workers ends the run before training, instead of a run that never evaluates."""
    t0 = time.perf_counter()
    code = main(
        [
            "train",
            "--time-limit",
            "25",
            "--num-workers",
            "2",
            "--run-dir",
            str(tmp_path / "run"),
            *small(sets=["cluster.eval_num_cpus=3", "cluster.start_timeout_s=4"]),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2, out + err
    (line,) = err.strip().splitlines()
    assert (
        line.startswith("error: after 4s the cluster cannot hold the run's actors together")
        and "eval waits for {CPU: 3}" in line
        and "{CPU: 6} in all" in line
        and "free" in line
    ), line
    assert "steps/s" not in out  # nothing trained
    assert time.perf_counter() - t0 < 4 + 30
    assert ray.util.placement_group_table() and all(  # the reservation was given back to the shared Ray
        g["state"] == "REMOVED" for g in ray.util.placement_group_table().values()
    )


def test_a_parameter_server_that_cannot_be_placed_is_a_named_error(ray_session, tmp_path, capsys):
    t0 = time.perf_counter()
    code = main(
        [
            "train",
            "--run-dir",
            str(tmp_path / "run"),
            *small(sets=["cluster.ps_num_cpus=5", "cluster.start_timeout_s=3"]),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "ps waits for {CPU: 5}" in err, err
    assert time.perf_counter() - t0 < 60


def test_two_runs_share_one_ray(ray_session, tmp_path):
    results = {}

    def train(name: str) -> None:
        results[name] = ray_a3c.train(
            "cartpole",
            run_dir=str(tmp_path / name),
            quiet=True,
            run__num_workers=1,
            run__total_env_steps=4000,
            run__stop_return=None,
            cluster__worker_num_cpus=0.5,
            cluster__ps_num_cpus=0.5,
            cluster__eval_num_cpus=0.25,
            env__num_envs_per_worker=2,
        )

    threads = [threading.Thread(target=train, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert {name: r.reason for name, r in results.items()} == {"first": "env_steps", "second": "env_steps"}
    assert run_tag(str(tmp_path / "first")) != run_tag(str(tmp_path / "second"))


def actor(run_dir: str, role: str, timeout: float = 60.0):
    deadline = time.time() + timeout
    while True:
        try:
            return ray.get_actor(f"a3c:{run_tag(run_dir)}:{role}", namespace="a3c")
        except ValueError:
            assert time.time() < deadline, f"no actor {role}"
            time.sleep(0.2)


def pid_of(run_dir: str, role: str, timeout: float = 60.0) -> int:
    deadline = time.time() + timeout
    while True:
        try:
            return ray.get(actor(run_dir, role).pid.remote(), timeout=10)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            assert time.time() < deadline, f"{role} never answered"  # it may be restarting: ask again
            time.sleep(0.5)


def wait_for_version(ps, at_least: int, timeout: float = 60.0) -> int:
    deadline = time.time() + timeout
    while (version := ray.get(ps.get_counters.remote()).version) < at_least:
        assert time.time() < deadline, f"version stuck at {version}"
        time.sleep(0.2)
    return version


def test_sync_rounds_survive_a_stopped_and_a_killed_worker(ray_session, tmp_path):
    """The faults come from a thread; the run trains on the main thread (where its stop signals are caught) and
    ends by SIGTERM once rounds went on past both faults, so the test lasts as long as the faults take."""
    run_dir = str(tmp_path / "sync")
    faults: dict = {}

    def inject() -> None:
        try:
            ps = actor(run_dir, "ps")
            version = wait_for_version(ps, 20)
            os.kill(pid_of(run_dir, "worker-0"), signal.SIGSTOP)  # alive, silent
            version = wait_for_version(ps, version + 20)  # rounds go on once the stopped worker is replaced
            os.kill(pid_of(run_dir, "worker-1"), signal.SIGKILL)
            faults["version"] = wait_for_version(ps, version + 20)
        except BaseException as exc:  # reported by the test below, after the run has ended
            faults["error"] = exc
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the run's own stop: a final checkpoint, reason "interrupted"

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=inject, daemon=True)
    thread.start()
    try:
        summary = ray_a3c.train(
            "cartpole",
            run_dir=run_dir,
            quiet=True,
            algo__mode="sync",
            run__time_limit_s=120,  # a bound only: the faults' thread stops the run
            run__stop_return=None,
            run__total_env_steps=10**9,
            cluster__worker_timeout_s=4,
            env__step_timeout_s=0,  # must be below the worker timeout; the env watchdog is not what this tests
            env__num_envs_per_worker=2,
        )
    finally:
        thread.join(timeout=30)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert "error" not in faults, faults.get("error")
    assert summary.reason == "interrupted" and summary.restarts["worker"] >= 2, summary.result()
    assert summary.version >= faults["version"]
