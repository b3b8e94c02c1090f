"""Real Ray, real actors: train CartPole to solved, evaluate it, read TensorBoard back, resume."""

import glob
import json
import os

import pytest
import torch

from ray_a3c.cluster.cli import main
from ray_a3c.cluster.run.fleet import run_tag
from ray_a3c.common.reporting import metrics
from ray_a3c.common.storage.checkpoint import list_checkpoints

pytestmark = pytest.mark.integration


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def scalars(event_file: str) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(event_file)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def solved_run(ray_session, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("cartpole") / "run")
    code = main(
        [
            "train",
            "--env",
            "CartPole-v1",
            "--num-workers",
            "2",
            "--stop-return",
            "475",
            "--seed",
            "1",
            "--total-env-steps",
            "400000",
            "--run-dir",
            run_dir,
            "--set",
            "run.log_interval_s=1",
        ]
    )
    return code, run_dir


def test_cartpole_is_solved_within_the_step_budget(solved_run):
    code, run_dir = solved_run
    assert code == 0
    best = torch.load(os.path.join(run_dir, "checkpoints", "best.pt"), weights_only=True)
    assert best["eval_return_mean"] >= 475 and best["eval_episodes"] == 100  # run.confirm_episodes
    assert best["counters"]["env_steps"] <= 400_000
    assert os.path.isfile(os.path.join(run_dir, "config.yaml"))


def test_evaluate_reports_the_solved_policy(solved_run, capsys):
    _, run_dir = solved_run
    capsys.readouterr()
    assert main(["evaluate", run_dir, "--episodes", "20"]) == 0
    result = last_json(capsys.readouterr().out)
    # confirmed >= 475 over 100 episodes; 20 other episodes land near it, not always above it (472.95 once in CI)
    assert result["episodes"] == 20 and result["mean_return"] >= 0.9 * 475
    assert main(["evaluate", run_dir, "--episodes", "20", "--random"]) == 0
    assert last_json(capsys.readouterr().out)["mean_return"] < 50


def test_tensorboard_holds_the_design_tags(solved_run):
    _, run_dir = solved_run
    (event_file,) = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    data = scalars(event_file)
    missing = [tag for tag in metrics.ALL_TAGS if tag not in data]
    assert not missing
    steps = [step for step, _ in data[metrics.PS_VERSION]]
    assert steps == sorted(steps) and steps[-1] > 0, "x axis is total env steps"
    # the stop is decided on a screening extended to 100 episodes: that pooled mean, not every screening's
    # 20-episode mean, is what reached 475 (a screening of 471 once led to a confirmed 475+)
    assert max(v for _, v in data[metrics.EVAL_CONFIRMED_RETURN]) >= 475 and data[metrics.EVAL_RETURN]
    assert 0.0 <= data[metrics.COMM_FRACTION][-1][1] <= 1.0


def test_training_episodes_are_recorded_with_their_running_mean(solved_run):
    """episodes.csv holds every training episode the PS counted; TensorBoard's running mean (also the
    summary's train_return_mean100) is the mean of the last 100 of them."""
    import csv

    _, run_dir = solved_run
    with open(os.path.join(run_dir, "episodes.csv")) as fh:
        rows = list(csv.DictReader(fh))
    latest = torch.load(
        sorted(
            glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.pt")), key=lambda p: int(p.rsplit("-", 1)[1][:-3])
        )[-1],
        weights_only=True,
    )
    assert len(rows) == latest["counters"]["episodes"] > 100
    times = [float(r["train_s"]) for r in rows]
    assert times == sorted(times) and all(0 < int(r["length"]) <= 500 for r in rows)
    assert all(float(r["return"]) == float(r["length"]) for r in rows)  # CartPole: +1 per step
    last_100 = [float(r["return"]) for r in rows[-100:]]
    (event_file,) = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    assert scalars(event_file)[metrics.EPISODE_RETURN_100][-1][1] == pytest.approx(sum(last_100) / 100, rel=1e-5)


def test_resume_continues_counters_and_optimizer(ray_session, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    overrides = ["run.stop_return=null", "run.evaluate=false"]  # counters and optimizer state are what resume keeps
    assert main(["train", "--total-env-steps", "6000", "--run-dir", run_dir, "--set", *overrides]) == 0
    first = last_json(capsys.readouterr().out)
    # A stop checkpoints first, then again once the loops' last pushes landed: the newest holds the end.
    saved = torch.load(list_checkpoints(os.path.join(run_dir, "checkpoints"))[-1], weights_only=True)
    assert saved["counters"]["version"] == first["version"] and saved["optimizers"]["actor"]["state"]

    assert main(["train", "--resume", "--run-dir", run_dir, "--total-env-steps", "12000"]) == 0
    second = last_json(capsys.readouterr().out)
    assert second["env_steps"] >= 12000 and second["version"] > first["version"], (first, second)
    events = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")), key=os.path.getmtime)
    assert len(events) == 2
    resumed = scalars(events[1])
    # The first tick may come before the first new gradient: counters start at the saved ones, never below.
    assert resumed[metrics.PS_VERSION][0][1] >= first["version"], "the resumed PS starts from the saved version"
    assert resumed[metrics.PS_VERSION][0][0] >= first["env_steps"], "and from the saved env-step count"
    assert resumed[metrics.PS_VERSION][-1][1] > first["version"]


def test_sigterm_checkpoints_and_exits_cleanly_when_joining_by_address(ray_session, tmp_path):
    import signal
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    address = ray_session.get_runtime_context().gcs_address
    run_dir = str(tmp_path / "run")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray_a3c.cluster.cli",
            "train",
            "--address",
            address,
            "--run-dir",
            run_dir,
            "--set",
            "run.stop_return=null",
            "run.log_interval_s=0.5",
        ],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in proc.stdout:
            if "steps/s" in line:  # training is under way
                break
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    summary = last_json(out)
    assert summary["reason"] == "interrupted" and summary["version"] > 0
    ckpt = list_checkpoints(os.path.join(run_dir, "checkpoints"))[-1]
    assert torch.load(ckpt, weights_only=True)["counters"]["version"] == summary["version"]
    names = {a["name"] for a in ray_session.util.list_named_actors(all_namespaces=True)}
    assert not [n for n in names if n.startswith(f"a3c:{run_tag(run_dir)}:")], "the run's actors were cleaned up"


def test_sync_mode_smoke_then_plot_and_vs_random(ray_session, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "--mode",
                "sync",
                "--total-env-steps",
                "6000",
                "--run-dir",
                run_dir,
                "--set",
                "run.log_interval_s=0.2",
                "run.stop_return=null",
                "algo.critic_epochs=2",
                "algo.policy_epochs=2",
            ]
        )
        == 0
    )
    summary = last_json(capsys.readouterr().out)
    assert summary["reason"] == "env_steps" and summary["env_steps"] >= 6000
    # one averaged step per round, one more per extra policy epoch (clipped surrogate), one per extra critic epoch
    assert summary["version"] % 3 == 0 and summary["version"] > 0
    data = scalars(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))[0])
    assert [v for _, v in data[metrics.POLICY_LAG]] == [0.0] * len(data[metrics.POLICY_LAG])
    assert all(0.0 <= v <= 1.0 for _, v in data[metrics.CLIP_FRACTION]) and data[metrics.CLIP_FRACTION]

    from PIL import Image

    from ray_a3c.cluster.subcommands.plot import plot_run

    out = str(tmp_path / "history.png")
    assert main(["plot", run_dir, "--out", out]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 600
    titles = plot_run(run_dir, str(tmp_path / "again.png"))
    assert len(titles) == 6 and "episode return" in titles and "action entropy" in titles

    capsys.readouterr()
    assert main(["evaluate", run_dir, "--vs-random", "--episodes", "5"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["difference"] == pytest.approx(result["mean_return"] - result["random_mean_return"])


def test_offline_smoke_from_a_recorded_random_dataset(ray_session, tmp_path, capsys):
    data, run_dir = str(tmp_path / "random.npz"), str(tmp_path / "run")
    assert main(["record", "--env", "CartPole-v1", "--episodes", "20", "--out", data]) == 0
    assert (
        main(
            [
                "train",
                "offline_cartpole",
                "--set",
                f"env.dataset={data}",
                "--total-env-steps",
                "5000",
                "--run-dir",
                run_dir,
            ]
        )
        == 0
    )
    summary = last_json(capsys.readouterr().out)
    assert summary["reason"] == "env_steps" and summary["env_steps"] >= 5000
    assert summary["episodes"] >= 20, "the workers replayed whole recorded episodes"


def test_vizdoom_basic_preset_smoke_with_gifs(ray_session, tmp_path, capsys):
    pytest.importorskip("vizdoom")
    run_dir = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "vizdoom_basic",
                "--total-env-steps",
                "1500",
                "--run-dir",
                run_dir,
                "--set",
                "env.num_envs_per_worker=2",
                "run.eval_interval_s=0.5",
                "run.eval_episodes=1",
                "run.gif_every=1",
                "run.stop_return=null",
            ]
        )
        == 0
    )
    summary = last_json(capsys.readouterr().out)
    assert summary["reason"] == "env_steps" and summary["version"] > 0 and summary["env_recreations"] == 0
    from PIL import Image

    gifs = glob.glob(os.path.join(run_dir, "gifs", "*.gif"))
    assert gifs, "the evaluator writes a GIF every evaluation with gif_every=1"
    with Image.open(gifs[0]) as gif:
        assert gif.format == "GIF" and gif.n_frames >= 2 and gif.size == (320, 240)
    steps, episode_return = os.path.basename(gifs[0])[:-4].split("_")
    assert int(steps) <= summary["env_steps"] and -400 <= float(episode_return) <= 100


def train_batched_bf16(run_dir: str, *sets: str) -> dict:
    """learner.max_batch_packets > 1 runs the asyncio PS; bfloat16 gradients, 4 workers on half a CPU each, so
    pushes queue up. Returns the newest checkpoint's counters."""
    batched = ["learner.max_batch_packets=4", "cluster.worker_num_cpus=0.5", "learner.grad_dtype=bfloat16"]
    argv = ["train", "--num-workers", "4", "--seed", "2", "--run-dir", run_dir, "--set", *batched, *sets]
    assert main(argv) == 0
    newest = torch.load(list_checkpoints(os.path.join(run_dir, "checkpoints"))[-1], weights_only=True)
    return newest["counters"]


def assert_batched(counters: dict) -> None:
    packets = counters["env_steps"] / 40  # each packet: 8 envs x 5 steps, less masked autoreset steps
    assert counters["version"] < packets, counters  # some steps applied more than one packet


def test_a_batched_bf16_parameter_server_applies_queued_packets_together(ray_session, tmp_path):
    counters = train_batched_bf16(
        str(tmp_path / "run"), "run.total_env_steps=30000", "run.stop_return=null", "run.evaluate=false"
    )
    assert counters["env_steps"] >= 30000
    assert_batched(counters)


@pytest.mark.slow  # a learning check: minutes on 2 cores
def test_batched_bf16_parameter_server_solves_cartpole(ray_session, tmp_path):
    run_dir = str(tmp_path / "run")
    counters = train_batched_bf16(
        run_dir, "run.stop_return=475", "run.total_env_steps=300000", "run.confirm_episodes=20"
    )
    best = torch.load(os.path.join(run_dir, "checkpoints", "best.pt"), weights_only=True)
    assert best["eval_return_mean"] >= 475
    assert_batched(counters)


def test_ray_workers_start_with_the_actor_modules_imported(ray_session):
    """A local Ray preloads torch and our actor classes in every Python worker it starts, so an actor's
    first seconds are not spent importing. The probe is defined by exec: pickled by value, it imports nothing."""
    namespace: dict = {}
    exec(
        "def loaded():\n    import sys\n    return sorted(m for m in ('torch', 'ray_a3c.cluster.comms.remote') "
        "if m in sys.modules)",
        namespace,
    )
    probe = ray_session.remote(num_cpus=0)(namespace["loaded"])
    assert ray_session.get(probe.remote(), timeout=60) == ["ray_a3c.cluster.comms.remote", "torch"]
