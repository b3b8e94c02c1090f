"""The env watchdog (actors/watchdog.py) on a real VectorEnvRunner: a hung step or reset is named with its worker,
env index, seed and episode step within the timeout, the vector env is rebuilt and the rollouts stay valid; a
spent budget raises EnvHangError; the hangs reach the PS's counters and the driver's fatal-error rule."""

import time

import numpy as np
import pytest

from ray_a3c.actors.rollout import VectorEnvRunner, collect_rollout
from ray_a3c.actors.watchdog import rebuild_seed, worker_vector_env
from ray_a3c.cluster.run.loops import fatal_cause
from ray_a3c.common.algo.models import build_model
from ray_a3c.common.env.envs import describe_spaces, probe_spaces
from ray_a3c.common.env.step_markers import MarkedEnv
from ray_a3c.common.reporting.errors import A3CError, EnvHangError
from ray_a3c.common.wire.packet import GradientPacket, HangReport
from ray_a3c.learner.parameter_server import ParameterServer
from tests.helpers import small_config

TIMEOUT_S = 0.5
SLACK_S = 3.0  # a loaded 2-core CI machine; the rebuild itself takes milliseconds


def hanging_runner(rank=0, num_envs=4, **overrides):
    cfg = small_config(
        **{
            "env.id": "tests.hanging_env:HangingEnv",
            "env.num_envs_per_worker": num_envs,
            "env.step_timeout_s": TIMEOUT_S,
            **overrides,
        }
    )
    venv, watchdog = worker_vector_env(cfg, rank, seed=0)
    said = []
    watchdog.say = said.append
    spaces = describe_spaces(venv.single_observation_space, venv.single_action_space)
    runner = VectorEnvRunner(venv, spaces, 0, watchdog=watchdog)
    return runner, build_model(spaces, cfg.model), said


def test_a_hung_step_is_named_and_its_rollout_collected_again_from_the_rebuilt_envs():
    runner, model, said = hanging_runner(rank=1, **{"env.kwargs": {"hang_at_step": 3, "hang_seeds": [2]}})
    t0 = time.perf_counter()
    ro = collect_rollout(runner, model, steps=6, reward_scale=1.0)
    assert time.perf_counter() - t0 < TIMEOUT_S + SLACK_S
    (line,) = said
    assert line.startswith("worker 1: env 2 (seed 2) hung in step 3 of its episode: no answer after 0.5s"), line
    assert "hang 1 of env 2, env.max_hang_restarts=3" in line
    # the rollout in flight was dropped: this one is whole, from the rebuilt envs' first observations
    assert ro.valid.all() and ro.starts[0].all() and not ro.starts[1:].any() and not ro.truncated.any()
    np.testing.assert_array_equal(ro.obs[0], np.zeros_like(ro.obs[0]))
    np.testing.assert_array_equal(ro.rewards, np.ones_like(ro.rewards))
    assert runner.seed == rebuild_seed(0, 1) != 0 and (runner.ep_length == 6).all()
    (report,) = runner.take_hang_reports()
    assert (report.worker_rank, report.env_index, report.seed, report.episode_step) == (1, 2, 2, 3)
    assert report.waited_s >= TIMEOUT_S and runner.take_hang_reports() == []
    ro = collect_rollout(runner, model, steps=16, reward_scale=1.0)  # the rebuilt envs run whole episodes
    assert len(said) == 1 and ro.valid.sum() == 4 * 15 and sorted(set(ro.finished)) == [(20.0, 20)]


def test_an_env_error_inside_a_timed_rollout_is_raised_in_the_worker():
    runner, model, _ = hanging_runner(num_envs=2, **{"env.kwargs": {"hang_at_step": 0, "hang_seeds": []}})
    runner.venv.step = lambda actions: 1 / 0  # noqa: ARG005 - a simulator that fails, not one that hangs
    with pytest.raises(ZeroDivisionError):
        collect_rollout(runner, model, steps=3, reward_scale=1.0)
    del runner.venv.step
    assert collect_rollout(runner, model, steps=3, reward_scale=1.0).valid.all()  # the next rollout is timed anew


def test_a_hung_reset_rebuilds_before_the_first_step():
    runner, model, said = hanging_runner(num_envs=2, **{"env.kwargs": {"hang_at_step": 0, "hang_seeds": [1]}})
    (line,) = said
    assert line.startswith("worker 0: env 1 (seed 1) hung in its reset"), line
    ro = collect_rollout(runner, model, steps=3, reward_scale=1.0)
    assert ro.valid.all() and ro.starts[0].all()


def test_a_spent_budget_raises_a_named_env_hang_error():
    runner, model, said = hanging_runner(num_envs=2, **{"env.kwargs": {"hang_at_step": 2}, "env.max_hang_restarts": 1})
    t0 = time.perf_counter()
    with pytest.raises(EnvHangError) as caught:
        collect_rollout(runner, model, steps=8, reward_scale=1.0)  # every env hangs: env 0, twice
    assert time.perf_counter() - t0 < 2 * TIMEOUT_S + SLACK_S
    assert len(said) == 1 and said[0].startswith("worker 0: env 0 (seed 0) hung in step 2")
    message = str(caught.value)
    assert message.startswith(f"worker 0: env 0 (seed {rebuild_seed(0, 1)}) hung in step 2 of its episode"), message
    assert "hang 2 of env 0, env.max_hang_restarts=1" in message and isinstance(caught.value, A3CError)


def test_sub_envs_in_other_processes_name_the_vector_env_as_a_whole():
    runner, model, said = hanging_runner(
        num_envs=2, **{"env.vector_mode": "async", "env.kwargs": {"hang_at_step": 2, "hang_seeds": [0]}}
    )
    try:
        ro = collect_rollout(runner, model, steps=4, reward_scale=1.0)
    finally:
        runner.close()
    (line,) = said
    assert line.startswith("worker 0: the vector env (envs 0-1, seeds 0-1) hung in a vector step"), line
    assert "hang 1 of the vector env" in line and ro.valid.all() and ro.starts[0].all()


def test_no_timeout_no_watchdog():
    cfg = small_config(**{"env.step_timeout_s": 0.0})
    venv, watchdog = worker_vector_env(cfg, 0, seed=0)
    assert watchdog is None and not any(isinstance(env, MarkedEnv) for env in venv.envs)
    venv.close()


def test_the_step_timeout_must_be_below_the_worker_timeout():
    with pytest.raises(A3CError, match="env.step_timeout_s .60. must be below cluster.worker_timeout_s .60."):
        small_config(**{"env.step_timeout_s": 60.0})


def test_hangs_are_counted_by_the_ps_and_end_the_run_through_rays_wrapper():
    cfg = small_config()
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    report = HangReport(1, 2, 2, 4, 3, 0.5, 1, 3)
    grad = np.zeros(ps.flat.num_params, np.float32)
    ps.apply_gradients(GradientPacket(grad, ps.version, 10, worker_rank=1, env_hangs=[report]))
    assert ps.get_counters().env_hangs == 1 and ps.pull_stats().hang_reports == [report]

    class Wrapped(Exception):  # what ray.get raises: RayTaskError(EnvHangError), the original as `cause`
        cause = EnvHangError("worker 1: env 2 (seed 2) hung in step 3 of its episode")

    assert fatal_cause(Wrapped()) == "worker 1: env 2 (seed 2) hung in step 3 of its episode"
    Wrapped.cause = RuntimeError("the simulator broke")
    assert fatal_cause(Wrapped()) is None


def test_a_sync_round_failed_by_a_spent_hang_budget_ends_the_run(monkeypatch):
    from ray.exceptions import RayError

    from ray_a3c.cluster.run import driver

    class Failed(RayError):
        cause = EnvHangError("worker 0: env 1 (seed 1) hung in step 3 of its episode")

    def fake_get(ref):
        raise Failed()

    monkeypatch.setattr(driver.ray, "wait", lambda refs, timeout=0: (refs, []))
    monkeypatch.setattr(driver.ray, "get", fake_get)
    trainer = driver.Trainer.__new__(driver.Trainer)
    trainer.fleet = type("Fleet", (), {"count_restart": lambda self, role: 1})()
    with pytest.raises(A3CError, match=r"^worker 0: env 1 \(seed 1\) hung in step 3 of its episode$"):
        trainer._count_failed({0: "packet-ref"})


def test_a_given_up_call_that_returns_late_touches_nothing():
    """hang_s 1.5 with a 0.5 s timeout: the hung step returns a second after it was given up; its thread must
    stop there, not go on stepping the runner the rebuilt envs now belong to."""
    kwargs = {"hang_at_step": 2, "hang_seeds": [0], "hang_s": 1.5}
    runner, model, said = hanging_runner(num_envs=2, **{"env.kwargs": kwargs})
    first = collect_rollout(runner, model, steps=3, reward_scale=1.0)
    assert len(said) == 1
    time.sleep(1.2)  # the given-up call returns meanwhile: without the guard its rollout would step on
    obs, length = runner.obs.copy(), runner.ep_length.copy()
    time.sleep(0.3)
    np.testing.assert_array_equal(runner.obs, obs)
    np.testing.assert_array_equal(runner.ep_length, length)
    assert first.valid.all() and (length == 3).all()
