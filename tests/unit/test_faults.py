"""Failure modes of long runs, pinned without Ray: poisoned packets, non-finite settings and data, env ids that
are not envs, late failures turned into one `error:` line, small leaks of a long run."""

import os
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

from ray_a3c.cluster.cli import main
from ray_a3c.cluster.run.loops import root_cause
from ray_a3c.common.algo.models import build_model
from ray_a3c.common.data.dataset import load_dataset, save_dataset
from ray_a3c.common.env.envs import make_policy_env, probe_spaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config, EnvConfig, from_flat, load_yaml, validate
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.wire.packet import GradientPacket
from ray_a3c.learner.parameter_server import ParameterServer
from tests.helpers import make_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Raises(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        raise RuntimeError("the simulator licence expired")


class Unbounded(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)


class ChannelsLast(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (24, 32, 3), np.uint8)
    action_space = gym.spaces.Discrete(3, start=1)

    def reset(self, *, seed=None, options=None):
        return np.full((24, 32, 3), 7, np.uint8), {}

    def step(self, action):
        assert action in (1, 2, 3), action
        return np.full((24, 32, 3), 9, np.uint8), 1.0, True, False, {}


def test_a_packet_with_nan_observations_changes_nothing_and_is_counted():
    cfg = validate(from_flat({"model.normalize_obs": True, "model.hidden_sizes": [8]}, Config()))
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    before = {k: v.clone() for k, v in ps.model.state_dict().items()}
    dim = ps.model.obs_norm.mean.numel()
    bad = GradientPacket(
        gradient=np.ones(sum(p.numel() for p in ps.model.parameters()), np.float32) * 0.1,
        version=0,
        env_steps=5,
        obs_moments=(5, np.full(dim, np.nan, np.float32), np.ones(dim, np.float32)),
    )
    result = ps.apply_gradients(bad)
    assert not result.accepted and result.reason == "nonfinite"
    assert ps.counters.rejected_nonfinite == 1 and ps.counters.env_steps == 5 and ps.version == 0
    for key, value in ps.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_weight_norm_counts_parameters_not_normaliser_statistics():
    cfg = validate(from_flat({"model.normalize_obs": True, "model.hidden_sizes": [8]}, Config()))
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    norm = ps.pull_stats().weight_norm
    ps.model.obs_norm.merge(1e6, np.zeros(4, np.float32), np.full(4, 1e6, np.float32))
    assert ps.pull_stats().weight_norm == pytest.approx(norm)


@pytest.mark.parametrize(
    "key, value",
    [
        ("algo.learning_rate", float("inf")),
        ("algo.entropy_coef", float("inf")),
        ("run.stop_return", float("nan")),
        ("algo.gamma", float("nan")),
    ],
)
def test_non_finite_settings_are_refused(key, value):
    with pytest.raises(A3CError, match=key):
        validate(from_flat({key: value}, Config()))


def test_zero_lag_with_overlapped_pushes_is_refused():
    with pytest.raises(A3CError, match="overlap_push"):
        validate(from_flat({"algo.max_policy_lag": 0}, Config()))
    validate(from_flat({"algo.max_policy_lag": 0, "algo.overlap_push": False}, Config()))


def test_datasets_with_nan_or_inf_are_refused(tmp_path):
    obs = np.zeros((4, 2), np.float32)
    obs[2, 1] = np.inf
    args = dict(
        next_observations=np.zeros((4, 2), np.float32),
        actions=np.zeros(4, np.int64),
        rewards=np.ones(4),
        terminated=[0, 0, 0, 1],
        truncated=[0, 0, 0, 0],
        episode_ids=[0, 0, 0, 0],
        observation_space=gym.spaces.Box(-5, 5, (2,)),
        action_space=gym.spaces.Discrete(2),
    )
    with pytest.raises(A3CError, match="NaN or inf .* step 2"):
        save_dataset(str(tmp_path / "bad.npz"), observations=obs, **args)
    assert os.listdir(tmp_path) == []
    save_dataset(str(tmp_path / "ok.npz"), observations=np.zeros((4, 2), np.float32), **args)
    assert sorted(os.listdir(tmp_path)) == ["ok.npz"]  # written via a temp file, none left behind
    assert oct(os.stat(tmp_path / "ok.npz").st_mode & 0o777) == "0o644"
    assert load_dataset(str(tmp_path / "ok.npz")).num_steps == 4


def test_env_ids_must_name_env_classes():
    with pytest.raises(A3CError, match="not a gymnasium.Env subclass"):
        probe_spaces(EnvConfig(id="os:system", kwargs={"command": "touch /tmp/pwned"}))
    with pytest.raises(A3CError, match="failed to start: RuntimeError: the simulator licence expired"):
        probe_spaces(EnvConfig(id="tests.unit.test_faults:Raises"))


def test_unbounded_actions_cannot_be_rescaled():
    with pytest.raises(A3CError, match="finite action bounds"):
        make_policy_env(EnvConfig(id="tests.unit.test_faults:Unbounded", rescale_actions=True))


def test_channels_last_images_and_offset_discrete_actions():
    cfg = validate(from_flat({"env.id": "tests.unit.test_faults:ChannelsLast"}, Config()))
    spaces = probe_spaces(cfg.env)
    assert spaces.image_shape == (3, 24, 32)
    env = make_policy_env(cfg.env)
    obs, _ = env.reset()
    assert obs.shape == (3, 24, 32)
    model = build_model(spaces, cfg.model)
    dist, _ = model(torch.as_tensor(obs)[None])
    action = model.env_actions(dist.sample())[0]
    env.step(action)  # the env asserts the action is in {1, 2, 3}
    assert action in (1, 2, 3)


def test_checkpoints_with_wrong_types_are_refused(tmp_path):
    path = str(tmp_path / "ckpt-1.pt")
    checkpoint.save_atomic({"model": {"w": torch.zeros(2)}, "counters": {"version": "ten"}}, path)
    with pytest.raises(A3CError, match="counters"):
        checkpoint.load(path)
    checkpoint.save_atomic({"model": [1, 2, 3]}, path)
    with pytest.raises(A3CError, match="'model' must map"):
        checkpoint.load(path)


def test_checkpoints_are_readable_and_stale_temp_files_go(tmp_path):
    stale = tmp_path / ".tmp-crashed.pt"
    stale.write_bytes(b"half")
    old = time.time() - 2 * checkpoint.STALE_TMP_S
    os.utime(stale, (old, old))
    fresh = tmp_path / ".tmp-writing.pt"
    fresh.write_bytes(b"in progress")
    path = checkpoint.save_versioned({"model": {"w": torch.zeros(1)}}, str(tmp_path), 3, keep=2)
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert not stale.exists() and fresh.exists()


def test_root_cause_reads_through_rays_wrapper():
    class Wrapped(Exception):
        cause = ValueError("bad value\nmore lines")

    assert root_cause(Wrapped("RayTaskError(ValueError)")) == "ValueError: bad value"
    text = "The actor died because of an error raised in its creation task\nTraceback ...\nA3CError: env 'x' failed"
    assert root_cause(RuntimeError(text)) == "A3CError: env 'x' failed"


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "ray_a3c.cluster.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )


def one_error(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_late_failures_are_one_error_line_before_anything_starts(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("run:\n  seed: 1  # d\xe9j\xe0\n".encode("latin-1"))
    assert "not UTF-8" in one_error(cli("train", "latin1.yaml", cwd=tmp_path))
    (tmp_path / "afile").write_text("")
    assert "not a directory" in one_error(cli("train", "--run-dir", "afile", cwd=tmp_path))
    assert "a cluster (--address)" in one_error(cli("train", "--num-workers", "1000", "--run-dir", "big", cwd=tmp_path))
    assert "failed to start" in one_error(
        cli("train", "--env", "tests.unit.test_faults:Raises", "--run-dir", "r", cwd=ROOT)
    )
    assert sorted(os.listdir(tmp_path)) == ["afile", "latin1.yaml"]
    with pytest.raises(A3CError, match="not UTF-8"):
        load_yaml(str(tmp_path / "latin1.yaml"))


def test_gif_path_is_checked_before_the_episodes(tmp_path, capsys):
    run = make_run(str(tmp_path), "run", **{"env.id": "CartPole-v1", "model.hidden_sizes": [8]})
    assert main(["evaluate", run, "--episodes", "3", "--gif", str(tmp_path / "nowhere" / "x.gif")]) == 2
    out, err = capsys.readouterr()
    assert "does not exist" in err and "episodes" not in out


class FlakyJobs:
    """A Jobs API client whose head is not ready for the first `busy` submissions."""

    def __init__(
        self,
        busy: int,
        refusal: str = "Request failed with status code 500: No available agent "
        "to submit job, please try again later..",
    ):
        self.busy, self.refusal, self.calls = busy, refusal, 0

    def submit_job(self, entrypoint, runtime_env):
        self.calls += 1
        if self.calls <= self.busy:
            raise RuntimeError(self.refusal)
        return "raysubmit_1"


def test_submit_retries_a_busy_head_then_gives_one_error(monkeypatch):
    from ray_a3c.cluster.subcommands import submit

    monkeypatch.setattr(submit, "SUBMIT_RETRY_S", 0.0)
    client = FlakyJobs(busy=2)
    assert submit._submit_with_retries(client, "a3c train", None) == "raysubmit_1" and client.calls == 3
    with pytest.raises(A3CError, match="refused the job: .*try again later"):
        submit._submit_with_retries(FlakyJobs(busy=100), "a3c train", None)
    refused = FlakyJobs(busy=1, refusal="Request failed with status code 401: Unauthorized")
    with pytest.raises(A3CError, match="401"):
        submit._submit_with_retries(refused, "a3c train", None)
    assert refused.calls == 1  # not a transient refusal: no retry


def test_a_worker_ray_is_restarting_is_waited_for_not_replaced(monkeypatch):
    """After a kill for a restart, Ray answers "unavailable: restarting" for a while; the loop asks again
    (same deadline) and relaunches on the restarted actor instead of killing it for a replacement."""
    from ray.exceptions import ActorUnavailableError

    from ray_a3c.cluster.run import loops

    class Method:
        def __init__(self, calls: list, name: str):
            self.calls, self.name = calls, name

        def remote(self, *args):
            self.calls.append(self.name)
            return f"{self.name}-ref-{len(self.calls)}"

    class FakeFleet:
        def __init__(self):
            self.calls, self.spawned, self.ps = [], [], "ps"
            self.ps_target = self.ps  # what the loops hand a worker: an unsharded PS
            actor = type("Actor", (), {})()
            actor.node_id, actor.run_remote = Method(self.calls, "node_id"), Method(self.calls, "run_remote")
            self.workers = {0: actor}
            self.aggregator_prefix = None

        def spawn_worker(self, rank):
            self.spawned.append(rank)

    answers = iter([ActorUnavailableError("The actor is restarting", None), "node-1"])

    def fake_get(ref):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    killed = []
    monkeypatch.setattr(loops.ray, "wait", lambda refs, timeout=0: (refs, []))
    monkeypatch.setattr(loops.ray, "get", fake_get)
    monkeypatch.setattr(loops.ray, "kill", lambda actor, no_restart=True: killed.append(no_restart))
    fleet, said = FakeFleet(), []
    supervisor = loops.WorkerLoops(fleet, timeout_s=60, max_failures=5, say=said.append, clock=lambda: 100.0)
    supervisor.loops[0] = loops._Loop(relaunch_at=0.0)
    for _ in range(3):  # ping; "restarting" -> ping again; answered -> launch
        supervisor._advance_relaunch(0, supervisor.loops[0], 100.0)
    assert fleet.calls == ["node_id", "node_id", "run_remote"]
    assert not fleet.spawned and not killed and not said


def test_an_interrupted_runs_summary_reports_the_versions_its_checkpoint_holds(tmp_path):
    """After SIGTERM the loops are not waited for, so pushes keep landing between the PS calls of the final
    checkpoint; the summary must report the counters of the checkpoint written last, not an earlier reading."""
    from ray_a3c.cluster.run.driver import Trainer

    cfg = Config()
    ps = ParameterServer(cfg, probe_spaces(cfg.env))

    class PushesLanding:  # every call to the PS finds one more applied gradient
        def __getattr__(self, method):
            ps.counters.version += 1
            ps.counters.env_steps += 40
            return getattr(ps, method)

    fleet = type(
        "Fleet", (), {"ps": PushesLanding(), "restarts": {}, "ps_state": lambda self, timeout_s: self.ps.state_dict()}
    )()
    fleet.loops = type("Loops", (), {"refs": staticmethod(lambda: [])})()
    trainer = Trainer(cfg, probe_spaces(cfg.env), str(tmp_path), quiet=True)
    trainer.fleet, trainer.summary.reason = fleet, "interrupted"
    trainer._ps_call = lambda method, *args: getattr(trainer.ps, method)(*args)
    trainer._final_checkpoint()
    saved = checkpoint.list_checkpoints(str(tmp_path / "checkpoints"))
    assert len(saved) == 2  # the pushes that landed after the first save were saved again
    newest = torch.load(saved[-1], weights_only=True)["counters"]
    assert (trainer.summary.version, trainer.summary.env_steps) == (newest["version"], newest["env_steps"])


class _CountingFleet:
    def __init__(self):
        self.restarts = {"evaluator": 0}

    def count_restart(self, role: str) -> int:
        self.restarts[role] += 1
        return self.restarts[role]


def test_an_evaluator_restarted_between_evaluations_is_counted_once_from_its_new_process_id():
    from ray_a3c.actors.evaluator import EvalResult
    from ray_a3c.cluster.run.evaluation import EvalCycle
    from ray_a3c.cluster.run.summary import RunSummary

    said = []
    cycle = EvalCycle(Config(), None, "", RunSummary(), None, said.append)
    fleet = _CountingFleet()

    def result(pid: int) -> EvalResult:
        return EvalResult(1.0, 0.0, 0.0, 1.0, 1.0, 1, 1.0, [1.0], evaluator_pid=pid)

    for pid in (100, 100, 200, 200):  # killed while idle after the second: Ray restarted it, the call succeeded
        cycle.note_process(result(pid), fleet)
    assert fleet.restarts == {"evaluator": 1}
    assert said == ["evaluator restarted between evaluations (process 100 -> 200); restart #1"]
    cycle._evaluator_pid = None  # as after a failed evaluation, which ensure_evaluator counted already
    cycle.note_process(result(300), fleet)
    assert fleet.restarts == {"evaluator": 1}
