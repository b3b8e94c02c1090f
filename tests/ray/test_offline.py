"""Recorded datasets: schema round trip, malformed files, shards, exact replay, importance weights."""

import json
import os
import subprocess
import sys
import zipfile

import gymnasium as gym
import numpy as np
import pytest

from ray_a3c.actors.rollout import VectorEnvRunner, collect_rollout
from ray_a3c.common.algo.models import build_model
from ray_a3c.common.algo.returns import importance_weights, vtrace
from ray_a3c.common.data.dataset import OPTIONAL, REQUIRED, load_dataset, save_dataset
from ray_a3c.common.data.offline import OfflineEnv, shard_episodes
from ray_a3c.common.env.envs import describe_spaces, make_vector_env
from ray_a3c.common.reporting.errors import A3CError
from tests.helpers import listing, random_rollout, small_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def recorded_arrays(episodes=6, seed=0):
    """Random CartPole episodes, recorded by hand (the reference the replay must reproduce)."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in REQUIRED + OPTIONAL}
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            action = int(rng.integers(2))
            nxt, r, term, trunc, _ = env.step(action)
            for k, v in zip(cols, (obs, nxt, action, r, term, trunc, ep, np.log(0.5)), strict=False):
                cols[k].append(v)
            obs, done = nxt, term or trunc
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    arrays["observations"] = arrays["observations"].astype(np.float32)
    arrays["next_observations"] = arrays["next_observations"].astype(np.float32)
    return arrays, env.observation_space, env.action_space


@pytest.fixture
def dataset_file(tmp_path):
    arrays, obs_space, act_space = recorded_arrays()
    path = str(tmp_path / "data.npz")
    save_dataset(path, observation_space=obs_space, action_space=act_space, source="test", **arrays)
    return path, arrays


def test_round_trip(dataset_file):
    path, arrays = dataset_file
    ds = load_dataset(path)
    for name, arr in arrays.items():  # rewards and log-probs are stored as float32
        np.testing.assert_allclose(getattr(ds, name), arr, rtol=1e-6)
    assert ds.action_space == gym.spaces.Discrete(2) and ds.observation_space.shape == (4,)
    assert len(ds.episode_bounds()) == 6 and ds.source == "test"


def rewrite(path, out, **changes):
    """Copy an npz with arrays replaced (None deletes); object arrays are written with pickle on purpose."""
    with np.load(path) as src:
        arrays = {k: src[k] for k in src.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(out, **arrays)


def malformed_variants(path, tmp_path):
    with np.load(path) as src:
        meta = json.loads(str(src["metadata"]))
        n = len(src["rewards"])
    old = dict(meta, schema_version=0)
    variants = {
        "missing": (dict(rewards=None), "lacks the array(s) rewards"),
        "length": (dict(terminated=np.zeros(n - 1, bool)), "'terminated' has"),
        "shape": (dict(observations=np.zeros((n, 3), np.float32)), "observation space says (4,)"),
        "object": (dict(rewards=np.array([object()] * n, dtype=object)), "object arrays"),
        "version": (dict(metadata=np.array(json.dumps(old))), "schema version 0"),
    }
    files = {}
    for name, (changes, needle) in variants.items():
        out = str(tmp_path / f"{name}.npz")
        rewrite(path, out, **changes)
        files[name] = (out, needle)
    not_npz = tmp_path / "plain.npz"
    not_npz.write_text("observations,actions\n1,2\n")
    files["not_npz"] = (str(not_npz), "not a readable .npz")
    return files


def test_each_malformed_file_is_one_error_line_and_exit_2(dataset_file, tmp_path):
    path, _ = dataset_file
    for name, (bad, needle) in malformed_variants(path, tmp_path).items():
        with pytest.raises(A3CError, match="."):
            load_dataset(bad)
        before = listing(tmp_path)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ray_a3c.cluster.cli",
                "train",
                "offline_cartpole",
                "--set",
                f"env.dataset={bad}",
                "--run-dir",
                str(tmp_path / "run"),
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
            capture_output=True,
            text=True,
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, proc.stderr)
        assert needle in lines[0], (name, lines[0])
        assert listing(tmp_path) == before, name


def test_shards_are_disjoint_and_cover_every_episode():
    for episodes, shards in [(200, 6), (7, 3), (5, 5)]:
        parts = shard_episodes(episodes, shards)
        flat = np.concatenate(parts)
        assert sorted(flat.tolist()) == list(range(episodes)) and len(set(flat.tolist())) == episodes
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_offline_env_reproduces_the_logged_transitions_exactly(dataset_file):
    path, arrays = dataset_file
    env = OfflineEnv(path, shard=1, num_shards=2)
    bounds = load_dataset(path).episode_bounds()[3:]  # shard 1 of 2 = episodes 3, 4, 5
    for start, end in bounds:
        obs, info = env.reset()
        np.testing.assert_array_equal(obs, arrays["observations"][start])
        for i in range(start, end):
            assert info["logged_action"] == arrays["actions"][i]
            assert info["behaviour_log_prob"] == pytest.approx(np.log(0.5))
            obs, r, term, trunc, info = env.step(1 - arrays["actions"][i])  # the action passed is ignored
            np.testing.assert_array_equal(obs, arrays["next_observations"][i])
            assert (r, term, trunc) == (arrays["rewards"][i], arrays["terminated"][i], arrays["truncated"][i])
        assert term or trunc
    from gymnasium.utils.env_checker import check_env

    check_env(OfflineEnv(path), skip_render_check=True)


def test_vector_replay_feeds_the_logged_actions_to_the_rollout(dataset_file):
    path, arrays = dataset_file
    cfg = small_config(**{"env.dataset": path})
    venv = make_vector_env(cfg.env, 1, seed=0)
    runner = VectorEnvRunner(venv, describe_spaces(venv.single_observation_space, venv.single_action_space), 0)
    ro = collect_rollout(runner, build_model(runner.spaces, cfg.model), steps=60, reward_scale=1.0)
    valid = ro.valid[:, 0]
    n = int(valid.sum())
    np.testing.assert_array_equal(ro.actions[valid, 0], arrays["actions"][:n])
    np.testing.assert_array_equal(ro.obs[valid, 0], arrays["observations"][:n])
    np.testing.assert_allclose(ro.behaviour_log_probs[valid, 0], np.log(0.5), rtol=1e-6)


def reference_vtrace(r, v, nv, term, trunc, rho, c, gamma):
    """Espeholt et al.'s definition, summed explicitly per env and start step."""
    T, N = r.shape
    vs = np.zeros((T, N))
    for n in range(N):
        for s in range(T):
            total, trace, t = v[s, n], 1.0, s
            while True:
                boot = 0.0 if term[t, n] else nv[t, n] if (term[t, n] or trunc[t, n] or t == T - 1) else v[t + 1, n]
                total += gamma ** (t - s) * trace * rho[t, n] * (r[t, n] + gamma * boot - v[t, n])
                if term[t, n] or trunc[t, n] or t == T - 1:
                    break
                trace *= c[t, n]
                t += 1
            vs[s, n] = total
    return vs


@pytest.mark.parametrize("seed", range(3))
def test_importance_weights_and_vtrace_match_numpy(seed):
    r, v, nv, term, trunc = random_rollout(seed)
    rng = np.random.default_rng(seed)
    target, behaviour = rng.normal(size=r.shape), rng.normal(size=r.shape)
    rho = importance_weights(target, behaviour, clip=1.0)
    np.testing.assert_allclose(rho, np.minimum(1.0, np.exp(target) / np.exp(behaviour)), rtol=1e-5)
    assert rho.max() <= 1.0 and (rho == 1.0).any() and (rho < 1.0).any()
    vs, adv = vtrace(r, v, nv, term, trunc, rho, rho, 0.95)
    np.testing.assert_allclose(vs, reference_vtrace(r, v, nv, term, trunc, rho, rho, 0.95), rtol=1e-4, atol=1e-4)


def test_record_cli_writes_a_valid_dataset_and_never_overwrites(tmp_path):
    out = str(tmp_path / "rec.npz")
    cmd = [
        sys.executable,
        "-m",
        "ray_a3c.cluster.cli",
        "record",
        "--env",
        "CartPole-v1",
        "--episodes",
        "3",
        "--out",
        out,
    ]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ds = load_dataset(out)
    assert len(ds.episode_bounds()) == 3 and ds.behaviour_log_probs is not None
    assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] == ds.num_steps
    before = open(out, "rb").read()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and open(out, "rb").read() == before


def test_recorded_continuous_actions_give_ratio_one_when_pi_is_mu_even_where_clipped():
    """The dataset keeps the Gaussian sample as drawn (the env got it clipped): with pi = mu every importance
    ratio is 1, on clipped steps too (storing the clipped action made them up to 77x off)."""
    import torch

    from ray_a3c.actors.recorder import BehaviourPolicy, record_episodes
    from ray_a3c.common.algo.models import build_model
    from ray_a3c.common.env.envs import probe_spaces
    from ray_a3c.common.settings.config import Config, from_flat, validate

    cfg = validate(
        from_flat({"env.id": "Pendulum-v1", "model.hidden_sizes": [16], "model.init_log_std": 1.0}, Config())
    )
    spaces = probe_spaces(cfg.env)
    torch.manual_seed(0)
    model = build_model(spaces, cfg.model)
    policy = BehaviourPolicy(spaces.action_space, model, None, np.random.default_rng(0))
    data = record_episodes(cfg.env, policy, episodes=2, seed=0)
    actions = torch.as_tensor(data["actions"], dtype=torch.float32)
    clipped = (actions.abs() > float(spaces.action_space.high[0])).reshape(len(actions), -1).any(-1)
    assert clipped.sum() > 50  # std e^1 on bounds +-2: many samples fall outside
    with torch.no_grad():
        dist, _ = model(torch.as_tensor(data["observations"]))
        ratios = torch.exp(dist.log_prob(actions) - torch.as_tensor(data["behaviour_log_probs"]))
    np.testing.assert_allclose(ratios.numpy(), 1.0, rtol=1e-4)


def test_env_copies_split_their_workers_shard(dataset_file):
    """2 workers x 3 copies over the fixture's episodes: within a worker no two copies replay the same episode,
    and together the copies of both workers replay every episode."""
    path, _ = dataset_file
    episodes = len(load_dataset(path).episode_bounds())
    seen = []
    for shard in range(2):
        per_copy = [{tuple(b) for b in OfflineEnv(path, shard, 2, copy, 3).episodes} for copy in range(3)]
        for a in range(3):
            for b in range(a + 1, 3):
                assert not per_copy[a] & per_copy[b], (shard, a, b)
        seen += [ep for part in per_copy for ep in part]
    assert len(seen) == len(set(seen)) == episodes
    # More copies than the shard has episodes: every copy still replays, offset from the ones it shares with.
    many = [OfflineEnv(path, 0, 2, copy, 8) for copy in range(8)]
    assert all(env.episodes for env in many)
    assert {(tuple(env.episodes[0]), env._start) for env in many} != {(tuple(many[0].episodes[0]), 0)}


@pytest.mark.integration
def test_offline_runs_report_dataset_passes(ray_session, dataset_file, tmp_path, capsys):
    import glob
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ray_a3c.cluster.cli import main
    from ray_a3c.common.reporting import metrics

    path, _ = dataset_file
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
                f"env.dataset={path}",
                "run.stop_return=null",
                "run.log_interval_s=0.5",
                "env.num_envs_per_worker=3",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    steps = load_dataset(path).num_steps
    assert summary["dataset_passes"] == pytest.approx(summary["env_steps"] / steps) and summary["dataset_passes"] > 1
    acc = EventAccumulator(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))[0])
    acc.Reload()
    epochs = [e.value for e in acc.Scalars(metrics.OFFLINE_EPOCHS)]
    assert epochs and epochs[-1] == pytest.approx(summary["dataset_passes"], rel=1e-3)


def test_awr_weights_match_numpy_and_are_never_negative():
    from ray_a3c.common.algo.returns import awr_weights

    advantages = np.random.default_rng(0).normal(scale=4.0, size=(16, 3)).astype(np.float32)
    weights = awr_weights(advantages, temperature=0.5, max_weight=20.0)
    np.testing.assert_allclose(weights, np.minimum(np.exp(advantages / 0.5), 20.0), rtol=1e-5)
    assert weights.dtype == np.float32 and (weights > 0).all() and weights.max() == pytest.approx(20.0)


def test_awr_worker_pulls_towards_logged_actions_with_gae_value_targets(dataset_file):
    """offline_update=awr: the policy coefficients are exp(A/T) of the GAE advantages (not V-trace's), and the
    value targets are GAE's returns on the logged rewards."""
    from ray_a3c.actors.worker import RolloutWorker
    from ray_a3c.common.algo.returns import awr_weights, gae

    path, _ = dataset_file
    worker = RolloutWorker(
        small_config(**{"env.dataset": path, "algo.offline_update": "awr", "algo.awr_temperature": 0.7}), rank=0
    )
    ro = collect_rollout(worker.runner, worker.model, 20, 1.0)
    assert ro.behaviour_log_probs is not None  # the file has them: awr ignores them
    coefficients, returns = worker._targets(ro, np.zeros_like(ro.rewards))
    advantages, gae_returns = gae(
        ro.rewards,
        ro.values,
        ro.next_values,
        ro.terminated,
        ro.truncated,
        worker.config.algo.gamma,
        worker.config.algo.gae_lambda,
    )
    np.testing.assert_allclose(coefficients, awr_weights(advantages, 0.7, 20.0), rtol=1e-6)
    np.testing.assert_allclose(returns, gae_returns, rtol=1e-6)
    assert (coefficients > 0).all()


def flipped_member(path, out, member="rewards.npy"):
    """A copy of an npz whose `member` has one byte changed inside its data: its CRC no longer matches."""
    raw = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2] ^= 0xFF
    open(out, "wb").write(bytes(raw))


# Found by the fuzz suite (tests/unit/test_fuzz_inputs.py): each was a traceback instead of an A3CError.
def test_files_the_fuzzing_broke_are_refused_with_one_message(dataset_file, tmp_path):
    path, arrays = dataset_file
    n = len(arrays["rewards"])
    with np.load(path) as src:
        meta = json.loads(str(src["metadata"]))
    infinite = json.dumps(meta).replace('"n": 2', '"n": Infinity')
    variants = {
        "scalar": (dict(rewards=np.float32(1)), "'rewards' has shape (); it needs one row per step"),  # TypeError
        "float flags": (dict(terminated=np.ones(n)), "'terminated' holds float64; store booleans"),  # TypeError
        "2-D flags": (dict(terminated=np.zeros((n, 2), bool)), "'terminated' has shape"),  # ValueError
        "2-D ids": (dict(episode_ids=np.zeros((n, 2), np.int64)), "'episode_ids' has shape"),  # TypeError
        "text obs": (dict(observations=np.full((n, 4), "a")), "'observations' holds <U1; store numbers"),  # accepted
        "inf n": (dict(metadata=np.array(infinite)), "malformed space (cannot convert float infinity"),  # Overflow
    }
    for name, (changes, needle) in variants.items():
        out = str(tmp_path / f"{name}.npz")
        rewrite(path, out, **changes)
        with pytest.raises(A3CError) as info:
            load_dataset(out)
        assert needle in str(info.value), name
    flipped_member(path, str(tmp_path / "crc.npz"))  # was zipfile.BadZipFile (zlib.error when compressed)
    with pytest.raises(A3CError, match="array 'rewards' is damaged"):
        load_dataset(str(tmp_path / "crc.npz"))
