"""load_policy and `a3c export`: exported files act exactly as load_policy does, in a process that cannot
import ray_a3c (discrete, Gaussian with normalisation and rescaling, CNN on ViZDoom frames, ViZDoom's Dict of
frame and game variables, LSTM)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ray_a3c.cluster.cli import main
from ray_a3c.common.env.envs import make_env
from ray_a3c.common.inference.policy import load_policy
from tests.helpers import make_run

CASES = {
    "discrete": {"env.id": "CartPole-v1", "model.hidden_sizes": [16]},
    "gaussian": {
        "env.id": "Pendulum-v1",
        "env.rescale_actions": True,
        "model.normalize_obs": True,
        "model.hidden_sizes": [16],
        "model.init_log_std": -1.0,
    },
    "cnn": {"env.id": "vizdoom:basic", "model.conv_channels": [4, 8], "model.cnn_fc_size": 16},
    "cnn_variables": {
        "env.id": "vizdoom:defend_the_center",
        "env.observe_variables": {"AMMO2": 26, "HEALTH": 100},
        "model.conv_channels": [4, 8],
        "model.cnn_fc_size": 16,
    },
    # the first design's layout, which runs saved before the Dict keep (env.observe_variables_as_channels)
    "cnn_variable_channels": {
        "env.id": "vizdoom:defend_the_center",
        "env.observe_variables": {"AMMO2": 26, "HEALTH": 100},
        "env.observe_variables_as_channels": True,
        "model.conv_channels": [4, 8],
        "model.cnn_fc_size": 16,
    },
    "lstm": {"env.id": "CartPole-v1", "model.hidden_sizes": [16], "model.lstm_size": 8, "model.shared_trunk": True},
}

# Runs in a fresh interpreter where `import ray_a3c` fails: the files must stand alone. Argument: a JSON file of
# {case: {"inputs": npz, "files": [[format, file], ...]}}; one interpreter plays every case and format, so the
# module pays one interpreter start (torch, onnxruntime) in all.
RUNNER = r"""
import json, sys
sys.modules["ray_a3c"] = None
import numpy as np


def play_onnx(path, data, names, steps, recurrent):
    import onnxruntime
    session = onnxruntime.InferenceSession(path)
    h, c = (data["h"], data["c"]) if recurrent else (None, None)
    actions = []
    for t in range(steps):
        feeds = {name: data[name][t][None] for name in names}
        if recurrent:
            feeds.update(h=h, c=c)
        out = session.run(None, feeds)
        actions.append(out[0][0].tolist())
        if recurrent:
            h, c = out[1], out[2]
    return actions


def play_pt2(path, data, names, steps, recurrent):
    import torch
    policy = torch.export.load(path).module()
    state = (torch.as_tensor(data["h"]), torch.as_tensor(data["c"])) if recurrent else ()
    actions = []
    for t in range(steps):
        out = policy(*(torch.as_tensor(data[name][t][None]) for name in names), *state)
        if recurrent:
            out, state = out[0], out[1:]
        actions.append(out[0].tolist())
    return actions


played = {}
for case, spec in json.load(open(sys.argv[1])).items():
    data = np.load(spec["inputs"])
    names = [k for k in data.files if k not in ("h", "c")]  # the graph's observation inputs, in order
    steps, recurrent = len(data[names[0]]), "h" in data
    players = {"onnx": play_onnx, "pt2": play_pt2}
    played[case] = {fmt: players[fmt](path, data, names, steps, recurrent) for fmt, path in spec["files"]}
imported = any(name.startswith("ray_a3c") for name, module in sys.modules.items() if module)
print(json.dumps({"actions": played, "ray_a3c_imported": imported}))
"""


def recorded_observations(run_dir: str, steps: int = 12) -> list:
    policy = load_policy(run_dir)
    env = make_env(policy.config.env)
    obs, _ = env.reset(seed=3)
    env.action_space.seed(3)
    frames = []
    for _ in range(steps):
        frames.append(obs)
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    return frames


def graph_inputs(policy, observations: list) -> dict:
    """The observations as the exported graph's inputs, by name: one array [steps, ...] per input."""
    names = policy.graph.obs_keys
    if not policy.spaces.parts:
        return {names[0]: np.stack([np.asarray(ob) for ob in observations])}
    return {name: np.stack([np.asarray(ob[name]) for ob in observations]) for name in names}


def reference_actions(run_dir: str, observations: list):
    policy = load_policy(run_dir)
    actions, state = [], None
    for ob in observations:
        action, state = policy.act(ob, state)
        actions.append(np.asarray(action, np.float64).reshape(-1))
    return np.stack(actions), policy


def exported_case(case: str, root) -> tuple[np.ndarray, dict]:
    """A run of `case`, its policy's actions on recorded observations, and its exports' spec for RUNNER."""
    run = make_run(str(root), case, **CASES[case])
    observations = recorded_observations(run)
    expected, policy = reference_actions(run, observations)
    if policy.graph.continuous:
        assert np.all(expected >= policy.env_action_space.low - 1e-6)
        assert np.all(expected <= policy.env_action_space.high + 1e-6)
        assert np.ptp(expected) > 0  # the test would pass vacuously if every action were clipped alike
    data = {
        name: np.asarray(x, np.uint8 if x.dtype == np.uint8 else np.float32)
        for name, x in graph_inputs(policy, observations).items()
    }
    if policy.recurrent:
        data["h"], data["c"] = policy.initial_state()
    inputs = str(root / f"{case}-inputs.npz")
    np.savez(inputs, **data)
    files = []
    for fmt in ("onnx", "pt2"):
        out = str(root / f"{case}.{fmt}")
        assert main(["export", run, "--format", fmt, "--out", out]) == 0
        files.append([fmt, out])
    return expected, {"inputs": inputs, "files": files}


@pytest.fixture(scope="module")
def played(tmp_path_factory) -> dict:
    """case -> (load_policy's actions, what the exported files did in an interpreter without ray_a3c)."""
    root = tmp_path_factory.mktemp("export")
    cases = {case: exported_case(case, root) for case in CASES}
    spec = root / "cases.json"
    spec.write_text(json.dumps({case: files for case, (_, files) in cases.items()}))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(spec)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["ray_a3c_imported"]
    return {case: (expected, result["actions"][case]) for case, (expected, _) in cases.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_exported_policy_acts_like_load_policy_without_ray_a3c(case, played):
    expected, actions = played[case]
    assert set(actions) == {"onnx", "pt2"}
    for fmt, taken in actions.items():
        got = np.asarray(taken, np.float64).reshape(expected.shape)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=f"{case} {fmt}")


def test_lstm_policy_carries_its_state(tmp_path):
    run = make_run(str(tmp_path), "lstm", **CASES["lstm"])
    policy = load_policy(run)
    obs = np.array([0.01, 0.2, -0.03, 0.1], np.float32)
    _, first = policy.act(obs)
    _, second = policy.act(obs, first)
    assert first[0].shape == (1, 8) and not np.allclose(first[0], second[0])
    assert not np.allclose(first[0], policy.initial_state()[0])


def test_discrete_actions_with_an_offset_start(tmp_path):
    """Discrete(n, start=k): the policy answers in the env's own action values."""
    import gymnasium as gym

    run = make_run(str(tmp_path), "cartpole", **CASES["discrete"])
    policy = load_policy(run)
    policy.env_action_space = gym.spaces.Discrete(2, start=5)
    from ray_a3c.common.inference.policy import PolicyGraph

    policy.graph = PolicyGraph(policy.graph.model, policy.spaces, policy.env_obs_space, policy.env_action_space)
    action, _ = policy.act(np.zeros(4, np.float32))
    assert action in (5, 6)


def test_export_refuses_to_overwrite_and_checks_the_suffix(tmp_path, capsys):
    run = make_run(str(tmp_path), "cartpole", **CASES["discrete"])
    existing = tmp_path / "policy.onnx"
    existing.write_bytes(b"keep me")
    assert main(["export", run, "--format", "onnx", "--out", str(existing)]) == 2
    assert existing.read_bytes() == b"keep me"
    assert main(["export", run, "--format", "pt2", "--out", str(tmp_path / "policy.onnx2")]) == 2
    assert "error: " in capsys.readouterr().err
    assert not (tmp_path / "policy.onnx2").exists()


def test_act_takes_a_batch_and_samples_when_asked(tmp_path):
    """A batch of observations gives the batch of actions that one-by-one calls give; deterministic=False draws
    from the policy (both actions of CartPole show up), within the env's bounds for a Gaussian."""
    policy = load_policy(make_run(str(tmp_path), "cartpole", **CASES["discrete"]))
    observations = np.random.default_rng(0).normal(0, 0.5, (6, 4)).astype(np.float32)
    batch, _ = policy.act(observations)
    assert batch.shape == (6,) and list(batch) == [policy.act(ob)[0] for ob in observations]
    sampled = {int(policy.act(observations[0], deterministic=False)[0]) for _ in range(40)}
    assert sampled == {0, 1}
    gaussian = load_policy(make_run(str(tmp_path), "gaussian", **CASES["gaussian"]))
    draws, _ = gaussian.act(np.zeros((50, 3), np.float32), deterministic=False)
    assert draws.shape == (50, 1) and np.ptp(draws) > 0
    assert np.all(np.abs(draws) <= 2.0)  # Pendulum's torque bounds
    lstm = load_policy(make_run(str(tmp_path), "lstm", **CASES["lstm"]))
    actions, state = lstm.act(observations[:3])
    assert actions.shape == (3,) and state[0].shape == (3, 8)


def test_a_policy_loads_from_its_checkpoint_without_building_the_env(tmp_path, monkeypatch):
    """The checkpoint stores the env's spaces: loading a ViZDoom policy starts no game, and it acts as the
    policy built beside a live env does."""
    run = make_run(str(tmp_path), "cnn", **CASES["cnn"])
    frame = np.random.default_rng(0).integers(0, 255, (1, 84, 84), dtype=np.uint8)
    expected, _ = load_policy(run).act(frame)

    def no_env(*args, **kwargs):
        raise AssertionError("load_policy built an env")

    import ray_a3c.common.env.envs as envs
    import ray_a3c.common.inference.policy as policy_module

    monkeypatch.setattr(envs, "make_env", no_env)
    monkeypatch.setattr(policy_module, "make_env", no_env)
    policy = load_policy(run)
    assert policy.env_obs_space.shape == (1, 84, 84) and policy.act(frame)[0] == expected


def test_spaces_survive_a_round_trip_through_plain_data():
    import gymnasium as gym

    from ray_a3c.common.env.spaces_io import space_from_data, space_to_data

    spaces = [
        gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
        gym.spaces.Box(np.array([-1.0, -2.0]), np.array([1.0, 3.0])),
        gym.spaces.Discrete(5, start=-2),
        gym.spaces.Dict({"camera": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), "n": gym.spaces.Discrete(3)}),
    ]
    for space in spaces:
        data = space_to_data(space)
        assert space_from_data(data) == space, space
        assert "array" not in repr(data)  # plain lists and numbers: weights_only-loadable
