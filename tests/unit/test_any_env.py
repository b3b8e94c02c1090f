"""Any env a user brings (no Ray): every env.id form, the wrapper pipeline with training-only wrappers,
image layouts, Dict observations, and the defaults by family."""

import dataclasses
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from ray_a3c.actors.evaluator import Evaluator
from ray_a3c.actors.rollout import VectorEnvRunner, collect_rollout
from ray_a3c.cluster.run.launch import build_family_config, model_spaces
from ray_a3c.common.algo.models import build_model
from ray_a3c.common.env.env_ids import EnvIdKind, parse_env_id
from ray_a3c.common.env.envs import make_env, make_policy_env, make_vector_env, probe_spaces, scoring_env_config
from ray_a3c.common.env.observations import describe_spaces, encode_batch
from ray_a3c.common.env.wrappers import GAME_RETURN, chw_plan, parse_wrappers, to_chw
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config, EnvConfig, from_dict, from_flat, load_yaml, validate
from ray_a3c.common.settings.families import Family
from tests.pixel_games import SIZE

CATCH = "tests.pixel_games:PixelCatch-v0"


def catch_optimally(env: gym.Env, seed: int) -> tuple[list, list]:
    """Play until the episode ends, moving under the ball: (rewards, infos)."""
    env.reset(seed=seed)
    rewards, infos, done = [], [], False
    while not done:
        game = env.unwrapped
        action = 1 + int(np.sign(game._ball_col - (game._left + 1)))
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        infos.append(info)
        done = terminated or truncated
    return rewards, infos


def test_env_id_forms_are_parsed_without_importing():
    assert parse_env_id("CartPole-v1").kind is EnvIdKind.REGISTERED
    assert parse_env_id("ALE/Pong-v5") == parse_env_id("ALE/Pong-v5")
    assert parse_env_id("ALE/Pong-v5").module == "ale_py" and parse_env_id("ALE/Pong-v5").is_atari
    module_id = parse_env_id("ale_py:ALE/Pong-v5")
    assert (module_id.kind, module_id.module, module_id.name) == (EnvIdKind.MODULE, "ale_py", "ALE/Pong-v5")
    assert parse_env_id("vizdoom:basic").kind is EnvIdKind.VIZDOOM
    assert parse_env_id("mypkg.envs:Catch-v0").module == "mypkg.envs"


@pytest.mark.parametrize("env_id", [CATCH, "tests.pixel_games:PixelCatch", "PixelCatch-v0"])
def test_registered_ids_module_ids_and_classes_build_with_their_kwargs(env_id):
    if env_id == "PixelCatch-v0":
        import tests.pixel_games  # noqa: F401 - registers the id, as a user's package does on import
    env = make_env(EnvConfig(id=env_id, kwargs={"lives": 3}))
    _, info = env.reset(seed=0)
    assert info["lives"] == 3 and env.observation_space.shape == (SIZE, SIZE, 3)
    env.close()


def test_atari_ids_import_ale_py_in_both_forms():
    pytest.importorskip("ale_py")
    for env_id in ("ALE/Pong-v5", "ale_py:ALE/Pong-v5"):
        env = make_env(EnvConfig(id=env_id, kwargs={"frameskip": 1}))
        assert env.observation_space.shape == (210, 160, 3) and env.action_space.n == 6
        env.close()


def test_bad_ids_and_a_missing_ale_py_name_what_to_do(monkeypatch):
    with pytest.raises(A3CError, match="module 'tests.pixel_games' has no env class 'Nope-v0' and registers no"):
        make_env(EnvConfig(id="tests.pixel_games:Nope-v0"))
    with pytest.raises(A3CError, match="is not a gymnasium.Env subclass"):
        make_env(EnvConfig(id="os:PathLike"))
    monkeypatch.setitem(sys.modules, "ale_py", None)  # as if not installed
    with pytest.raises(A3CError, match=r"pip install 'ray-a3c\[atari\]'"):
        make_env(EnvConfig(id="ALE/Breakout-v5"))


def test_wrapper_entries_in_every_form_and_what_is_training_only():
    specs = parse_wrappers(
        [
            "LifeLossEnd",
            {"ClipReward": {"min_reward": -1, "max_reward": 1}},
            {"wrapper": "GrayscaleObservation", "kwargs": {"keep_dim": True}},
            {"wrapper": "tests.pixel_games_wrappers:Shaping", "training_only": True},
            {"ResizeObservation": {"shape": [8, 8]}},
        ]
    )
    assert [s.training_only for s in specs] == [True, True, False, True, False]
    assert specs[2].kwargs == {"keep_dim": True}
    for bad, message in [
        ([{"ClipReward": 1}], "kwargs must be a mapping"),
        ([3], "must be a name"),
        ([{"wrapper": "ClipReward", "kw": {}}], "unknown keys"),
        ([{"AtariPreprocessing": {"terminal_on_life_loss": True}}], "LifeLossEnd"),
    ]:
        with pytest.raises(A3CError, match=message):
            validate(from_flat({"env.wrappers": bad}, Config()))
    with pytest.raises(A3CError, match="'NoSuchWrapper' is not a gymnasium wrapper"):
        make_env(EnvConfig(id=CATCH, wrappers=["NoSuchWrapper"]))
    with pytest.raises(A3CError, match=r"ResizeObservation\(shape=3\) failed"):
        make_env(EnvConfig(id=CATCH, wrappers=[{"ResizeObservation": {"shape": 3}}]))


# Found by the fuzz suite (tests/unit/test_fuzz_inputs.py): each was a traceback, or memory running out.
@pytest.mark.parametrize(
    "cfg, needle",
    [
        (EnvConfig(id="gymnasium:Env"), "env 'gymnasium:Env' has no observation_space"),  # was AttributeError
        (EnvConfig(id="CartPole-v1", kwargs={"build": 1}), "rejected env.kwargs"),  # was TypeError in the call
        (
            EnvConfig(id="CartPole-v1", wrappers=[{"FrameStackObservation": {"stack_size": 5_000_000}}]),
            "observations of 20,000,000 numbers",  # was a MemoryError (or gigabytes) writing the spaces as data
        ),
    ],
)
def test_envs_the_fuzzing_broke_are_refused_with_one_message(cfg, needle):
    with pytest.raises(A3CError) as info:
        probe_spaces(cfg)
    assert needle in str(info.value)


def test_keys_that_do_not_apply_are_refused():
    with pytest.raises(A3CError, match="env.frame_skip applies to vizdoom: envs only"):
        validate(from_flat({"env.id": CATCH, "env.frame_skip": 4}, Config()))


def test_training_only_wrappers_shape_training_and_evaluations_score_whole_games():
    """Each catch pays 5 and a game has 3 balls: training sees clipped rewards and a lost ball as an episode
    end; the scoring env plays the whole game at the game's own reward."""
    cfg = EnvConfig(
        id=CATCH,
        kwargs={"lives": 3, "catch_reward": 5.0},
        wrappers=["LifeLossEnd", {"ClipReward": {"min_reward": -1, "max_reward": 1}}],
    )
    training = make_env(cfg)
    rewards, infos = catch_optimally(training, seed=0)
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0  # one ball: an episode; its reward clipped
    assert infos[-1]["lives"] == 2 and GAME_RETURN not in infos[-1]  # the game goes on
    training.reset()
    assert training.unwrapped._lives_left == 2  # the reset after a lost life did not restart the game
    for _ in range(2):
        rewards, infos = catch_optimally(training, seed=0)
    assert infos[-1][GAME_RETURN] == 15.0  # the whole game at its own reward, for training statistics
    scoring = make_env(scoring_env_config(cfg))
    rewards, _ = catch_optimally(scoring, seed=0)
    assert rewards.count(5.0) == 3 and sum(rewards) == 15.0
    assert scoring_env_config(cfg).wrappers == []


def test_training_statistics_count_whole_games_at_their_own_reward():
    cfg = validate(
        from_flat(
            {
                "env.id": CATCH,
                "env.kwargs": {"lives": 2, "catch_reward": 5.0},
                "env.wrappers": ["LifeLossEnd", {"ClipReward": {"min_reward": -1, "max_reward": 1}}],
            },
            Config(),
        )
    )
    venv = make_vector_env(cfg.env, 2, seed=0)
    spaces = describe_spaces(venv.single_observation_space, venv.single_action_space)
    runner = VectorEnvRunner(venv, spaces, seed=0)
    rollout = collect_rollout(runner, build_model(spaces, cfg.model), steps=60, reward_scale=1.0)
    assert rollout.terminated.sum() >= 2 * len(rollout.finished)  # two lives, two learning episodes a game
    assert all(length == 2 * (SIZE - 1) for _, length in rollout.finished)
    assert all(ret in (-2.0, 4.0, 10.0) for ret, _ in rollout.finished)  # unclipped: 5 a catch, -1 a miss
    assert rollout.rewards.max() <= 1.0
    runner.close()


@pytest.mark.parametrize(
    "shape, layout",
    [((6, 9), "hw"), ((9, 10, 3), "hwc"), ((2, 9, 10), "chw"), ((4, 9, 10, 3), "khwc"), ((4, 2, 9, 10), "kchw")],
)
def test_image_layouts_become_one_chw_frame_as_numpy_would(shape, layout):
    if layout == "hw":
        assert chw_plan(shape) is None  # 6 rows: a board of numbers, not a picture
        shape = (9, 10)
    frames = np.random.default_rng(0).integers(0, 255, (5, *shape), dtype=np.uint8)
    expected = {
        "hw": lambda f: f[:, None],
        "hwc": lambda f: f.transpose(0, 3, 1, 2),
        "chw": lambda f: f,
        "khwc": lambda f: f.transpose(0, 1, 4, 2, 3).reshape(5, -1, 9, 10),
        "kchw": lambda f: f.reshape(5, -1, 9, 10),
    }[layout](frames)
    plan = chw_plan(shape)
    np.testing.assert_array_equal(to_chw(frames, plan, batch_dims=1), expected)
    np.testing.assert_array_equal(to_chw(torch.as_tensor(frames), plan, batch_dims=1).numpy(), expected)


def test_gray_frames_and_stacks_reach_the_cnn():
    for wrappers, stack, channels in [
        ([{"GrayscaleObservation": {}}], 1, 1),
        ([{"GrayscaleObservation": {}}], 4, 4),
        ([], 2, 6),
    ]:
        cfg = validate(from_flat({"env.id": CATCH, "env.wrappers": wrappers, "env.frame_stack": stack}, Config()))
        spaces = probe_spaces(cfg.env)
        assert spaces.image_shape == (channels, SIZE, SIZE)
        model = build_model(spaces, cfg.model)
        obs, _ = make_policy_env(cfg.env).reset(seed=0)
        assert obs.shape == (channels, SIZE, SIZE)
        dist, _ = model(torch.as_tensor(obs)[None])
        assert dist.dist.logits.shape == (1, 3)


def test_dict_observations_are_encoded_side_by_side_and_split_by_the_model():
    cfg = validate(from_flat({"env.id": "tests.pixel_games:DictCatch", "env.kwargs": {"lives": 2}}, Config()))
    spaces = probe_spaces(cfg.env)
    assert [(p.key, p.image_shape) for p in spaces.parts] == [
        ("camera", (3, SIZE, SIZE)),
        ("lives", None),
        ("paddle", None),
    ]
    env = make_policy_env(cfg.env)
    obs, _ = env.reset(seed=0)
    encoded = encode_batch({k: np.asarray(v)[None] for k, v in obs.items()}, spaces)
    reference = np.concatenate([obs["camera"].reshape(-1), np.eye(3)[obs["lives"]], obs["paddle"]]).astype(np.float32)
    np.testing.assert_array_equal(encoded[0], reference)
    model = build_model(spaces, cfg.model)
    assert len(model.actor_trunk.cnns) == 1 and model.actor_trunk.vector_index == [432, 433, 434, 435]
    dist, values = model(torch.as_tensor(encoded))
    assert dist.dist.logits.shape == (1, 3) and values.shape == (1,)


def test_normalize_obs_is_refused_for_images():
    with pytest.raises(A3CError, match="model.normalize_obs applies to vector observations"):
        model_spaces(build_family_config({"env.id": CATCH, "model.normalize_obs": True})[0])


@pytest.mark.parametrize(
    "env_id, family",
    [
        (CATCH, Family.PIXELS),
        ("tests.pixel_games:DictCatch", Family.PIXELS),
        ("Pendulum-v1", Family.CONTINUOUS),
        ("CartPole-v1", Family.CLASSIC),
    ],
)
def test_an_env_without_a_preset_takes_its_familys_defaults(env_id, family):
    cfg, chosen = build_family_config({"env.id": env_id, "run.seed": 3})
    assert chosen is family and cfg.env.id == env_id and cfg.run.seed == 3
    atari = from_dict(load_yaml("atari"))
    # the pixel family learns with the atari preset's update, less the schedule sized for a 20M-frame budget
    atari_update = dataclasses.replace(atari.algo, lr_schedule=cfg.algo.lr_schedule)
    same_update = cfg.algo == atari_update and cfg.model.normalize_rewards == atari.model.normalize_rewards
    assert same_update == (family is Family.PIXELS)
    assert cfg.env.rescale_actions == (family is Family.CONTINUOUS)
    assert cfg.run.stop_return is None  # no family knows what a good return of an unknown env is


def test_an_atari_id_takes_the_whole_atari_preset():
    pytest.importorskip("ale_py")
    cfg, family = build_family_config({"env.id": "ALE/Breakout-v5"})
    assert family is Family.ATARI and cfg.env.frame_stack == 4
    assert [spec.name for spec in parse_wrappers(cfg.env.wrappers)] == [
        "AtariPreprocessing",
        "LifeLossEnd",
        "FireReset",
        "ClipReward",
    ]
    assert probe_spaces(cfg.env).image_shape == (4, 84, 84)


def test_the_evaluator_scores_a_dict_env_with_its_own_reward():
    cfg = validate(
        from_flat(
            {
                "env.id": "tests.pixel_games:DictCatch",
                "env.kwargs": {"catch_reward": 5.0},
                "env.wrappers": [{"ClipReward": {"min_reward": -1, "max_reward": 1}}],
            },
            Config(),
        )
    )
    evaluator = Evaluator(cfg)
    result = evaluator.run_episodes(40, seed=0, random_policy=True)
    evaluator.close()
    # unclipped: a catch scores 5 (random play catches some of 40 balls), a miss -1
    assert result.max_return == 5.0 and result.min_return == -1.0


def test_a_wrappers_own_module_is_shipped_to_cluster_nodes(tmp_path, monkeypatch):
    from ray_a3c.cluster.run.runtime import user_module_runtime_env

    (tmp_path / "mywrappers").mkdir()
    (tmp_path / "mywrappers" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with user_module_runtime_env("CartPole-v1", [{"mywrappers:Shaping": {"bonus": 1}}, "ClipReward"]) as runtime_env:
        assert runtime_env == {"py_modules": [str(tmp_path / "mywrappers")]}


def test_fire_reset_serves_after_each_reset_where_the_game_has_fire():
    pytest.importorskip("ale_py")
    cfg = validate(
        from_flat(
            {"env.id": "ALE/Breakout-v5", "env.kwargs": {"frameskip": 1}, "env.wrappers": ["FireReset"]}, Config()
        )
    )
    env = make_env(cfg.env)
    _, info = env.reset(seed=0)
    assert info["episode_frame_number"] == 1  # one step (FIRE) taken inside the reset
    catch = make_env(EnvConfig(id=CATCH, wrappers=["FireReset"]))  # no FIRE among its actions: untouched
    _, info = catch.reset(seed=0)
    assert catch.unwrapped._ball_row == 0
