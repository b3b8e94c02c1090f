"""Minari interop: our recordings round-trip through Minari exactly; Minari's own DataCollector datasets load
with aligned transitions; bad ids are one error line; Ray workers read the dataset the driver resolved."""

import json
import os
import subprocess
import sys
import warnings

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest

from ray_a3c.actors.recorder import BehaviourPolicy, record_episodes
from ray_a3c.common.data.dataset import OPTIONAL, REQUIRED, save_dataset
from ray_a3c.common.data.minari_io import dataset_dir, save_minari
from ray_a3c.common.data.offline import OfflineEnv, open_dataset
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import EnvConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELDS = REQUIRED + OPTIONAL


@pytest.fixture
def minari_path(tmp_path, monkeypatch):
    path = str(tmp_path / "minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", path)
    return path


def collected_dataset(dataset_id: str, episodes: int, seed: int = 0, cut_last: bool = True):
    """Random CartPole play recorded by Minari's own DataCollector; optionally one unfinished episode last."""
    env = minari.DataCollector(gym.make("CartPole-v1"))
    rng = np.random.default_rng(seed)
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        done = False
        while not done:
            _, _, term, trunc, _ = env.step(int(rng.integers(2)))
            done = term or trunc
    if cut_last:
        env.reset(seed=seed + episodes)
        for _ in range(3):
            env.step(0)
    with warnings.catch_warnings():  # Minari asks for author, e-mail, code link...
        warnings.simplefilter("ignore", UserWarning)
        return env.create_dataset(dataset_id=dataset_id, algorithm_name="random")


@pytest.mark.parametrize("env_id, rescale", [("CartPole-v1", False), ("Pendulum-v1", True)])
def test_our_recordings_round_trip_through_minari_exactly(minari_path, tmp_path, env_id, rescale):
    cfg = EnvConfig(id=env_id, rescale_actions=rescale)
    space = gym.make(env_id).action_space if not rescale else gym.spaces.Box(-1, 1, (1,), np.float32)
    data = record_episodes(cfg, BehaviourPolicy(space, None, None, np.random.default_rng(1)), 4, seed=5)
    data.pop("returns")
    npz = str(tmp_path / "d.npz")
    save_dataset(npz, **data)
    save_minari("test/rt-v0", data, env_id, "round trip")
    ours, theirs = open_dataset(npz), open_dataset("minari:test/rt-v0")
    for name in FIELDS:
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    assert str(theirs.action_space) == str(ours.action_space)
    assert str(theirs.observation_space) == str(ours.observation_space)


def test_a_datacollector_dataset_replays_its_transitions(minari_path):
    made = collected_dataset("cartpole/random-v0", episodes=5)
    ds = open_dataset("minari:cartpole/random-v0")
    assert ds.num_steps == made.total_steps and len(ds.episode_bounds()) == 6
    assert ds.behaviour_log_probs is None  # DataCollector records no behaviour policy
    for (start, end), episode in zip(ds.episode_bounds(), made.iterate_episodes(), strict=False):
        np.testing.assert_array_equal(ds.observations[start:end], episode.observations[:-1])
        np.testing.assert_array_equal(ds.next_observations[start:end], episode.observations[1:])
        np.testing.assert_array_equal(ds.actions[start:end], episode.actions)
    last_start, last_end = ds.episode_bounds()[-1]
    assert last_end - last_start == 3 and ds.truncated[-1] and not ds.terminated[-1]
    env = OfflineEnv("minari:cartpole/random-v0")  # the replay env reads the same transitions
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, ds.observations[0])
    nxt, reward, *_ = env.step(info["logged_action"])
    np.testing.assert_array_equal(nxt, ds.next_observations[0])
    assert reward == ds.rewards[0]


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ray_a3c.cluster.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})),
    )


def test_bad_minari_ids_are_one_error_line_and_nothing_is_overwritten(minari_path):
    collected_dataset("cartpole/taken-v0", episodes=2)
    directory = dataset_dir("cartpole/taken-v0")
    before = sorted((p, os.path.getmtime(os.path.join(d, p))) for d, _, files in os.walk(directory) for p in files)
    cases = [
        ("record", "--env", "CartPole-v1", "--episodes", "2", "--format", "minari", "--out", "cartpole/taken-v0"),
        ("record", "--env", "CartPole-v1", "--episodes", "2", "--format", "minari", "--out", "no id.npz"),
        ("train", "offline_cartpole", "--set", "env.dataset=minari:cartpole/absent-v0"),
    ]
    for args in cases:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
    after = sorted((p, os.path.getmtime(os.path.join(d, p))) for d, _, files in os.walk(directory) for p in files)
    assert after == before


# Found by the fuzz suite (tests/unit/test_fuzz_inputs.py): each was a traceback instead of an A3CError.
def test_ids_and_damage_the_fuzzing_found_are_refused_with_one_message(minari_path):
    for bad_id in ("0", "name-v", "-v0"):  # Minari's own parser raised TypeError
        with pytest.raises(A3CError, match="is not a Minari dataset id"):
            open_dataset(f"minari:{bad_id}")
    collected_dataset("cartpole/damaged-v0", episodes=2)
    with h5py.File(os.path.join(dataset_dir("cartpole/damaged-v0"), "data", "main_data.hdf5"), "a") as fh:
        del fh["episode_1"]["rewards"]  # the metadata reads; the episode does not (was KeyError from h5py)
    with pytest.raises(A3CError, match="cannot be read"):
        open_dataset("minari:cartpole/damaged-v0")


def test_record_cli_writes_a_minari_dataset_with_log_probs(minari_path):
    proc = run_cli(
        "record",
        "--env",
        "CartPole-v1",
        "--episodes",
        "3",
        "--format",
        "minari",
        "--out",
        "cartpole/cli-v0",
        "--seed",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout.strip().splitlines()[-1])["steps"]
    made = minari.load_dataset("cartpole/cli-v0")  # Minari itself reads it
    assert made.total_episodes == 3 and made.total_steps == steps
    ds = open_dataset("minari:cartpole/cli-v0")
    np.testing.assert_allclose(ds.behaviour_log_probs, np.log(0.5), rtol=1e-6)


@pytest.mark.integration
def test_ray_workers_train_from_the_dataset_the_driver_resolved(ray_session, minari_path, tmp_path, capsys):
    """The Ray instance started before MINARI_DATASETS_PATH was set: workers find the data only because the
    driver resolved the id to its directory."""
    import yaml

    from ray_a3c.cluster.cli import main

    collected_dataset("cartpole/ray-v0", episodes=20)
    run_dir = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "offline_cartpole",
                "--run-dir",
                run_dir,
                "--total-env-steps",
                "3000",
                "--set",
                "env.dataset=minari:cartpole/ray-v0",
                "run.stop_return=null",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    steps = open_dataset("minari:cartpole/ray-v0").num_steps
    assert summary["env_steps"] >= 3000 and summary["dataset_passes"] == pytest.approx(summary["env_steps"] / steps)
    saved = yaml.safe_load(open(os.path.join(run_dir, "config.yaml")))["env"]["dataset"]
    assert saved == "minari:" + dataset_dir("cartpole/ray-v0")
