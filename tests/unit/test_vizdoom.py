"""ViZDoom from pixels: frames, rewards, flags, check_env, engine crashes, GIFs."""

import os
import signal

import numpy as np
import pytest
from PIL import Image

from ray_a3c.actors.evaluator import Evaluator
from ray_a3c.actors.worker import RolloutWorker
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.env.vizdoom_env import VizdoomEnv
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config, EnvConfig, from_flat, validate
from tests.helpers import doom_config

vzd = pytest.importorskip("vizdoom")


def play(env, seed, policy=lambda env: env.action_space.sample(), limit=3000):
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    total, frames = 0.0, [obs]
    for _ in range(limit):
        obs, r, term, trunc, _ = env.step(policy(env))
        total += r
        frames.append(obs)
        if term or trunc:
            return total, term, trunc, frames
    raise AssertionError("episode did not end")


def test_frames_flags_at_timeout_and_at_death():
    env = VizdoomEnv("basic")
    total, term, trunc, frames = play(env, 1, policy=lambda env: 0)  # only strafing: never kills, times out
    assert frames[0].shape == (1, 84, 84) and frames[0].dtype == np.uint8 and frames[0].std() > 0
    assert trunc and not term and total < 0
    env.close()
    env = VizdoomEnv("health_gathering")  # standing still: the acid floor kills the player before the timeout
    _, term, trunc, _ = play(env, 2, policy=lambda env: 0)
    assert term and not trunc
    env.close()


def test_unknown_scenario_is_a_clear_error():
    with pytest.raises(A3CError, match="unknown ViZDoom scenario 'nope'"):
        VizdoomEnv("nope")


# Found by the fuzz suite (tests/unit/test_fuzz_inputs.py): each was a traceback from the engine or gymnasium.
@pytest.mark.parametrize(
    "text, needle",
    [
        ("available_buttons = { NOPE }\n", "has no available_buttons"),  # was ValueError: Discrete(0)
        ("doom_scenario_path = nope.wad\navailable_buttons = { ATTACK }\n", "FileDoesNotExistException"),
    ],
)
def test_a_cfg_the_engine_cannot_play_is_a_clear_error(tmp_path, text, needle):
    (tmp_path / "mine.cfg").write_text(text)
    with pytest.raises(A3CError) as info:
        probe_spaces(EnvConfig(id=f"vizdoom:{tmp_path / 'mine.cfg'}"))
    assert needle in str(info.value) and "mine.cfg" in str(info.value)


def test_passes_gymnasium_check_env():
    from gymnasium.utils.env_checker import check_env

    env = VizdoomEnv("basic")
    check_env(env, skip_render_check=True)
    env.close()


def test_rewards_are_scaled_for_learning_and_raw_for_reports():
    worker = RolloutWorker(doom_config(**{"algo.rollout_steps": 90}), rank=0)
    from ray_a3c.actors.rollout import collect_rollout

    ro = collect_rollout(worker.runner, worker.model, 90, 0.01)
    assert ro.obs.dtype == np.uint8 and ro.obs.shape[2:] == (1, 84, 84)
    assert ro.finished, "a basic episode lasts at most 75 agent steps"
    raw = ro.finished[0][0]
    assert abs(raw) >= 1 and np.abs(ro.rewards).max() <= 1.01  # -1 per step, +100 kill: scaled by 0.01


def test_screen_size_sets_the_frames_the_network_and_the_evaluator_see():
    cfg = doom_config(**{"env.screen_size": [128, 72]})
    worker = RolloutWorker(cfg, rank=0)
    packet = worker.compute_gradient()
    assert np.isfinite(packet.gradient).all() and packet.env_steps > 0
    assert worker.runner.venv.envs[0].unwrapped.observation_space.shape == (1, 72, 128)
    evaluator = Evaluator(cfg)
    evaluator.load_state_dict(worker.model.state_dict())  # same shapes: the CNN was built for 128x72 on both
    assert np.isfinite(evaluator.run_episodes(1, seed=5).mean_return)
    evaluator.close()
    wide, narrow = VizdoomEnv("basic", screen_size=(128, 72)), VizdoomEnv("basic")
    try:
        a, b = wide.reset(seed=3)[0], narrow.reset(seed=3)[0]
        assert a.shape == (1, 72, 128) and b.shape == (1, 84, 84)
        # the same scene: the wide frame squeezed to 84x84 matches the default frame
        squeezed = np.asarray(Image.fromarray(a[0]).resize((84, 84), Image.BILINEAR), np.int32)
        assert np.abs(squeezed - b[0]).mean() < 8
    finally:
        wide.close()
        narrow.close()


@pytest.mark.parametrize("bad", [[84], [20, 84], [84, 120], [200, 84], [84.0, 84]])
def test_a_screen_size_outside_the_cropped_screen_is_refused(bad):
    with pytest.raises(A3CError, match="env.screen_size"):
        doom_config(**{"env.screen_size": bad})
    with pytest.raises(A3CError, match="vizdoom: envs only"):
        validate(from_flat({"env.screen_size": [64, 64]}, Config()))


def test_a_killed_engine_is_recreated_and_the_rollout_continues():
    worker = RolloutWorker(doom_config(), rank=0)
    worker.compute_gradient()
    env = worker.runner.venv.envs[0].unwrapped
    pid = env.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    packet = worker.compute_gradient()
    assert np.isfinite(packet.gradient).all() and packet.env_steps > 0
    assert packet.env_recreations == 1 and env.pid() not in (None, pid)
    assert worker.compute_gradient().env_steps > 0


def test_gif_is_the_colour_screen_named_by_its_return(tmp_path):
    evaluator = Evaluator(doom_config())
    count, episode_return = evaluator.record_gif(str(tmp_path / "7_{return}.gif"), seed=3)
    path = tmp_path / f"7_{episode_return:g}.gif"
    assert os.listdir(tmp_path) == [path.name]  # written under another name, then moved into place
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == count and gif.size == (320, 240)
        colours = np.asarray(gif.convert("RGB"))
    assert np.abs(colours[..., 0].astype(int) - colours[..., 2]).max() > 30, "frames are in colour, not gray"
    assert 2 <= count <= 76  # reset frame + one per agent step; basic times out after 75 steps
    assert -400 <= episode_return <= 100


def test_rendering_keeps_the_observation_a_gray_84x84_frame_close_to_training():
    plain, rendered = VizdoomEnv("basic"), VizdoomEnv("basic", render_mode="rgb_array")
    try:
        a, _ = plain.reset(seed=3)
        b, _ = rendered.reset(seed=3)
        assert a.shape == b.shape == (1, 84, 84) and b.dtype == np.uint8
        # the engine draws 320x240 instead of 160x120: finer detail, the same scene and brightness
        assert abs(float(a.mean()) - float(b.mean())) < 3 and np.abs(a.astype(int) - b).mean() < 12
    finally:
        plain.close()
        rendered.close()


def test_an_interrupted_gif_write_leaves_no_gif(tmp_path, monkeypatch):
    evaluator = Evaluator(doom_config())

    def stopped_before_the_move(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", stopped_before_the_move)
    with pytest.raises(KeyboardInterrupt):
        evaluator.record_gif(str(tmp_path / "episode.gif"), seed=3)
    assert not (tmp_path / "episode.gif").exists()


def test_medkit_bonus_adds_reward_exactly_when_health_rises():
    shaped, plain = VizdoomEnv("health_gathering", health_bonus=1.0), VizdoomEnv("health_gathering")
    try:
        shaped.reset(seed=1)
        plain.reset(seed=1)
        actions = np.random.default_rng(0).integers(3, size=400)
        differences = []
        for action in actions:
            _, r_shaped, term, trunc, _ = shaped.step(int(action))
            _, r_plain, *_ = plain.step(int(action))
            differences.append(r_shaped - r_plain)
            if term or trunc:
                break
        assert set(differences) <= {0.0, 1.0} and sum(differences) >= 1, differences
    finally:
        shaped.close()
        plain.close()


def test_variable_rewards_cost_each_shot_and_pay_nothing_else():
    shaped = VizdoomEnv("defend_the_center", variable_rewards={"AMMO2": 0.25})
    plain = VizdoomEnv("defend_the_center")
    try:
        shaped.reset(seed=2)
        plain.reset(seed=2)
        ammo = shaped.game.get_game_variable(vzd.GameVariable.AMMO2)
        actions = np.random.default_rng(0).integers(3, size=300)
        for action in actions:
            _, r_shaped, term, trunc, _ = shaped.step(int(action))
            _, r_plain, *_ = plain.step(int(action))
            if term or trunc:
                break
            now = shaped.game.get_game_variable(vzd.GameVariable.AMMO2)
            assert r_shaped - r_plain == pytest.approx(0.25 * (now - ammo)), (action, now, ammo)
            ammo = now
        assert ammo < 20  # shots were fired, so the cost was paid
    finally:
        shaped.close()
        plain.close()


@pytest.mark.parametrize(
    "rewards, message",
    [({"AMMO": 0.1}, "unknown ViZDoom game variable 'AMMO'"), ({"AMMO2": "x"}, "AMMO2 must map to a finite number")],
)
def test_variable_rewards_with_a_wrong_name_or_value_are_refused(rewards, message):
    with pytest.raises(A3CError, match=message):
        validate(from_flat({"env.id": "vizdoom:defend_the_center", "env.variable_rewards": rewards}, Config()))
    with pytest.raises(A3CError, match="applies to vizdoom: envs only"):
        validate(from_flat({"env.variable_rewards": {"AMMO2": 0.1}}, Config()))


def test_the_defend_preset_as_shipped_passes_twice_observes_and_anneals():
    from ray_a3c.actors.worker import LocalClient
    from ray_a3c.common.env.envs import probe_spaces
    from ray_a3c.common.settings.config import from_dict, load_yaml
    from ray_a3c.learner.parameter_server import ParameterServer

    cfg = validate(from_flat({"env.num_envs_per_worker": 2}, from_dict(load_yaml("vizdoom_defend_the_center"))))
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    worker = RolloutWorker(cfg, rank=0)
    try:
        # the preset keeps the measured layout: ammo and health as channels the fc layer reads beside the frame
        assert worker.model.actor_trunk.variable_index == [1, 2]
        seen = []
        submit = ps.apply_gradients
        ps.apply_gradients = lambda p: seen.append(p) or submit(p)
        assert worker.run(LocalClient(ps), max_updates=3)["pushed"] == 3
        # every rollout: its gradient, then one clipped-surrogate pass on the weights that came back
        assert ps.version == 6 and [p.env_steps > 0 for p in seen] == [True, False] * 3
        assert all("clip_fraction" in p.losses for p in seen[1::2])
        # full rates for the first half of the budget, then a linear fall to 0 at its end
        assert ps.lr_fraction() == 1.0
        ps.counters.env_steps = int(0.75 * cfg.run.total_env_steps)
        assert ps.lr_fraction() == pytest.approx(0.5)
    finally:
        worker.close()


def test_the_evaluator_scores_without_the_training_bonus():
    cfg = validate(
        from_flat(
            {
                "env.id": "vizdoom:health_gathering",
                "env.medkit_bonus": 1.0,
                "env.variable_rewards": {"HEALTH": 0.5},
                "env.observe_variables": {"HEALTH": 100},
            },
            Config(),
        )
    )
    evaluator = Evaluator(cfg)
    try:
        (env,) = evaluator._env_pool(1)
        assert env.unwrapped.health_bonus == 0.0 and not env.unwrapped._variable_rewards
        assert env.observation_space["variables"].shape == (1,)  # what the network sees stays: only rewards go
    finally:
        evaluator.close()


@pytest.mark.parametrize("policy_kind", ["greedy", "sample"])
def test_the_episode_diagnosis_accounts_for_every_bullet_and_press(tmp_path, policy_kind):
    from bench.vizdoom_episodes import play
    from tests.helpers import make_run

    run = make_run(
        str(tmp_path),
        "defend",
        **{"env.id": "vizdoom:defend_the_center", "env.num_envs_per_worker": 1, "env.variable_rewards": {"AMMO2": 5.0}},
    )
    stats = play(run, "latest", episodes=2, seed=5, policy_kind=policy_kind)
    assert -1 <= stats["return"] <= stats["kills"] + 1  # the scenario's own reward: +1 a kill, -1 at death; no shaping
    assert stats["shots"] + stats["ammo_left"] == 26  # the scenario's pistol starts with 26 bullets
    assert 0 <= stats["kills"] <= stats["shots"]
    assert sum(stats["button_shares"].values()) == pytest.approx(1.0, abs=2e-3)
    assert set(stats["button_shares"]) == {"TURN_LEFT", "TURN_RIGHT", "ATTACK"}
    assert stats["length"] > 0 and stats["episodes"] == 2
