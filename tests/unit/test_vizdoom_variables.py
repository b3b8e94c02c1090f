"""ViZDoom's observed game variables (env.observe_variables): a Dict of the frame and the variables' levels that
the model splits (a CNN for the screen, an MLP for the levels), what load_policy and exports take; and the first
design's layout (one image channel per variable), kept so that run dirs saved with it still load, act and evaluate.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from ray_a3c.actors.worker import RolloutWorker
from ray_a3c.common.env.vizdoom_env import VizdoomEnv, variable_planes
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config, from_flat, validate
from tests.helpers import doom_config, make_run

vzd = pytest.importorskip("vizdoom")

FRAME = 84 * 84
OBSERVED = {"env.observe_variables": {"AMMO2": 26, "HEALTH": 100}}
SMALL_CNN = {"model.conv_channels": [4, 8], "model.cnn_fc_size": 16}


def test_observed_variables_are_a_dict_entry_that_follows_ammo_and_health():
    env = VizdoomEnv("defend_the_center", observe_variables={"AMMO2": 26, "HEALTH": 200})
    plain = VizdoomEnv("defend_the_center")
    try:
        assert env.observation_space == gym.spaces.Dict(
            {
                "screen": gym.spaces.Box(0, 255, (1, 84, 84), np.uint8),
                "variables": gym.spaces.Box(0.0, 1.0, (2,), np.float32),
            }
        )
        obs, _ = env.reset(seed=3)
        plain_obs, _ = plain.reset(seed=3)
        np.testing.assert_array_equal(obs["screen"], plain_obs)  # the frame itself is unchanged
        np.testing.assert_array_equal(obs["variables"], [1.0, 0.5])  # 26 of 26 bullets, 100 of 200 health
        for _ in range(400):
            obs, _, term, trunc, _ = env.step(2)  # ATTACK
            ammo = env.game.get_game_variable(vzd.GameVariable.AMMO2)
            health = env.game.get_game_variable(vzd.GameVariable.HEALTH)
            if term or trunc:
                break
            assert obs in env.observation_space
            np.testing.assert_allclose(obs["variables"], [ammo / 26, health / 200], rtol=1e-6)
        assert ammo <= 16  # at least 10 bullets spent: the entry above followed them down
    finally:
        env.close()
        plain.close()


def test_the_network_reads_the_screen_with_a_cnn_and_the_variables_beside_it():
    worker = RolloutWorker(doom_config("defend_the_center", **{**OBSERVED, "model.lstm_size": 0}), 0)
    try:
        trunk = worker.model.actor_trunk
        assert type(trunk).__name__ == "DictEncoder" and trunk.cnns[0].convs[0].in_channels == 1
        assert trunk.vector_index == [FRAME, FRAME + 1]  # ammo and health, after the frame's pixels
        empty = torch.zeros(1, 1, FRAME + 2)
        full = empty.clone()
        full[..., FRAME] = 1.0  # only the ammo level differs
        with torch.no_grad():
            (empty_dist, empty_value, _), (full_dist, full_value, _) = (worker.model.unroll(o) for o in (empty, full))
        assert not torch.allclose(empty_value, full_value)
        assert not torch.allclose(empty_dist.dist.logits, full_dist.dist.logits)
        packet = worker.compute_gradient()
        assert packet.env_steps == 8 and np.isfinite(packet.gradient).all()
    finally:
        worker.close()


def test_a_frame_stack_stacks_the_screen_and_the_variables():
    from ray_a3c.common.env.envs import make_policy_env, probe_spaces

    cfg = doom_config(**OBSERVED, **{"env.frame_stack": 2})
    spaces = probe_spaces(cfg.env)
    assert [(p.key, p.image_shape, p.size) for p in spaces.parts] == [
        ("screen", (2, 84, 84), 2 * FRAME),
        ("variables", None, 4),  # [frame, variable]: both frames' ammo and health
    ]
    env = make_policy_env(cfg.env)
    try:
        obs, _ = env.reset(seed=1)
        assert obs["screen"].shape == (2, 84, 84) and obs["variables"].shape == (2, 2)
        np.testing.assert_array_equal(obs["variables"][0], obs["variables"][1])  # a reset repeats its observation
    finally:
        env.close()


def test_load_policy_and_the_onnx_export_take_the_dict(tmp_path, capsys):
    from ray_a3c.cluster.cli import main
    from ray_a3c.common.env.envs import make_env
    from ray_a3c.common.inference.policy import load_policy

    run = make_run(str(tmp_path), "dict", **{"env.id": "vizdoom:defend_the_center"}, **OBSERVED)
    policy = load_policy(run)
    assert policy.graph.obs_keys == ["screen", "variables"]
    env = make_env(policy.config.env)
    try:
        obs, _ = env.reset(seed=2)
    finally:
        env.close()
    action, _ = policy.act(obs)
    batch, _ = policy.act({key: np.stack([value, value]) for key, value in obs.items()})
    assert action in range(3) and list(batch) == [action, action]
    onnxruntime = pytest.importorskip("onnxruntime")
    out = str(tmp_path / "dict.onnx")
    assert main(["export", run, "--format", "onnx", "--out", out]) == 0
    assert "inputs (screen, variables)" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(out)
    assert [i.name for i in session.get_inputs()] == ["screen", "variables"]
    feeds = {"screen": obs["screen"][None], "variables": obs["variables"][None]}
    assert int(session.run(None, feeds)[0][0]) == action


def test_a_dict_run_is_refused_by_a3c_record_before_any_episode(tmp_path, capsys):
    from ray_a3c.cluster.cli import main

    run = make_run(str(tmp_path), "dict", **{"env.id": "vizdoom:defend_the_center"}, **OBSERVED, **SMALL_CNN)
    out = tmp_path / "data.npz"
    args = ["record", "--policy", run, "--env", "vizdoom:defend_the_center", "--episodes", "1", "--out", str(out)]
    assert main(args) == 2
    assert "error: a dataset holds Box or Discrete observations" in capsys.readouterr().err
    assert not out.exists()


def test_the_first_designs_channels_are_the_levels_x_255():
    frame = np.full((1, 84, 84), 7, np.uint8)
    planes = variable_planes(frame, np.array([1.0, 0.5, 30 / 100]))
    assert planes.shape == (4, 84, 84) and planes.dtype == np.uint8 and (planes[0] == 7).all()
    assert [int(p[0, 0]) for p in planes[1:]] == [255, 128, 76]  # round(127.5) and round(76.5): half to even
    assert all((p == p[0, 0]).all() for p in planes[1:])  # a constant plane: one number


def test_the_first_designs_channels_follow_the_frame_stack():
    from ray_a3c.common.env.envs import probe_spaces, variable_channels

    stacked = doom_config(**OBSERVED, **{"env.frame_stack": 2, "env.observe_variables_as_channels": True})
    assert variable_channels(stacked.env) == (1, 2, 4, 5)  # [picture, ammo, health] per frame, 2 frames
    spaces = probe_spaces(stacked.env)
    assert spaces.image_shape == (6, 84, 84) and spaces.variable_channels == (1, 2, 4, 5) and not spaces.parts
    assert variable_channels(doom_config(**OBSERVED, **{"env.frame_stack": 2}).env) == ()  # the Dict instead
    assert variable_channels(Config().env) == ()
    with pytest.raises(A3CError, match="observe_variables_as_channels needs env.observe_variables"):
        doom_config(**{"env.observe_variables_as_channels": True})


def test_bad_observed_variables_are_refused():
    with pytest.raises(A3CError, match="AMMO2 must map to a positive number"):
        doom_config(**{"env.observe_variables": {"AMMO2": 0}})
    with pytest.raises(A3CError, match="unknown ViZDoom game variable 'BULLETS'"):
        doom_config(**{"env.observe_variables": {"BULLETS": 26}})
    with pytest.raises(A3CError, match="observe_variables applies to vizdoom: envs only"):
        validate(from_flat({"env.observe_variables": {"AMMO2": 26}}, Config()))


def saved_before_the_dict(run: str) -> None:
    """Make a run dir as the first design left it: its config.yaml, and the config its checkpoint holds, without
    the observe_variables_as_channels key (the layout was the only one), and no stored env spaces (checkpoints
    from before load_policy read them)."""
    import os

    from ray_a3c.common.storage.checkpoint import load, save_atomic
    from ray_a3c.common.storage.keys import CKPT_CONFIG_YAML, CKPT_SPACES

    def without_key(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if "observe_variables_as_channels" not in line) + "\n"

    config_path = os.path.join(run, "config.yaml")
    with open(config_path) as fh:
        text = fh.read()
    with open(config_path, "w") as fh:
        fh.write(without_key(text))
    ckpt = os.path.join(run, "checkpoints", "ckpt-0.pt")
    state = load(ckpt)
    state[CKPT_CONFIG_YAML] = without_key(state[CKPT_CONFIG_YAML])
    state.pop(CKPT_SPACES)
    save_atomic(state, ckpt)


def test_a_run_saved_before_the_dict_still_loads_acts_evaluates_and_resumes(tmp_path, capsys):
    from ray_a3c.cluster.cli import main
    from ray_a3c.cluster.run.launch import check_resume_fits
    from ray_a3c.common.env.envs import make_env
    from ray_a3c.common.inference.policy import load_policy
    from ray_a3c.common.settings.config import load_run_config
    from ray_a3c.common.storage.checkpoint import load

    overrides = {"env.id": "vizdoom:defend_the_center", "env.observe_variables_as_channels": True}
    run = make_run(str(tmp_path), "old", **overrides, **OBSERVED, **SMALL_CNN)
    policy = load_policy(run)
    frame = np.random.default_rng(0).integers(0, 255, (3, 84, 84), dtype=np.uint8)
    expected, _ = policy.act(frame)
    saved_before_the_dict(run)
    cfg = load_run_config(run)
    assert cfg.env.observe_variables_as_channels  # a saved config without the key: the first design
    old = load_policy(run)
    assert type(old.graph.model.actor_trunk).__name__ == "VariableChannelsEncoder"
    assert old.env_obs_space.shape == (3, 84, 84) and old.spaces.variable_channels == (1, 2)
    assert old.act(frame)[0] == expected  # the same weights read the same layout
    env = make_env(cfg.env)
    try:
        obs, _ = env.reset(seed=1)
        assert obs.shape == (3, 84, 84) and old.act(obs)[0] in range(3)
    finally:
        env.close()
    assert main(["evaluate", run, "--checkpoint", "latest", "--episodes", "1"]) == 0
    assert '"episodes": 1' in capsys.readouterr().out
    # a resume compares with the config inside the checkpoint, read the same way: nothing changed
    state = load(f"{run}/checkpoints/ckpt-0.pt")
    assert check_resume_fits(state, cfg, cfg) == {}
