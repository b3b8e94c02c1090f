"""Environment construction (any env.id form, the wrapper pipeline, the image layout) and a lockstep batch of
env copies."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np

from ray_a3c.common.data.offline import OfflineEnv, cached_dataset
from ray_a3c.common.env.ale_vector import AleGame, AleVectorEnv, native_plan
from ray_a3c.common.env.env_ids import VIZDOOM_PREFIX, EnvIdKind, env_builder, missing_package_hint, parse_env_id
from ray_a3c.common.env.observations import EnvSpaces, describe_spaces
from ray_a3c.common.env.spaces_io import space_to_data
from ray_a3c.common.env.step_markers import StepMarkers, marked
from ray_a3c.common.env.vizdoom_env import VizdoomEnv
from ray_a3c.common.env.wrappers import (
    GameStatistics,
    ImagesFirst,
    apply_wrappers,
    images_first_space,
    needs_layout,
    parse_wrappers,
)
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import EnvConfig

VIZDOOM_FRAME_SKIP = 4  # game tics per action when env.frame_skip is not set


def _construct(what: str, build, kwargs: dict) -> gym.Env:
    """Call an env constructor with `kwargs` (a dict: a user's key can clash with no parameter of this function);
    its failure, or an env without spaces, becomes one clear error naming the env."""
    try:
        env = build(**kwargs)
    except A3CError:
        raise
    except (gym.error.DependencyNotInstalled, ImportError) as exc:
        raise A3CError(f"env '{what}' needs an extra package: {missing_package_hint(exc)}") from None
    except TypeError as exc:
        raise A3CError(f"env '{what}' rejected env.kwargs: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any error of the user's env is reported the same way
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise A3CError(f"env '{what}' failed to start: {type(exc).__name__}: {message}") from None
    for name in ("observation_space", "action_space"):
        if not isinstance(getattr(env, name, None), gym.spaces.Space):
            env.close()
            raise A3CError(f"env '{what}' has no {name} (a gymnasium.spaces.Space): set it in the env's __init__")
    return env


def make_env(cfg: EnvConfig, render_mode: str | None = None) -> gym.Env:
    """One env from `cfg.id` (see common/env/env_ids.py) behind `cfg.wrappers` and the frame stack, as the env
    gives its observations (before the [C, H, W] reordering); bad ids raise A3CError."""
    kwargs = dict(cfg.kwargs)
    if render_mode:
        kwargs["render_mode"] = render_mode
    if parse_env_id(cfg.id).kind is EnvIdKind.VIZDOOM:
        env = _make_vizdoom(cfg, kwargs)
    else:
        build, registered = env_builder(cfg.id)
        if cfg.max_episode_steps and registered:
            kwargs["max_episode_steps"] = cfg.max_episode_steps
        env = _construct(cfg.id, build, kwargs)
        if cfg.max_episode_steps and not registered:
            env = gym.wrappers.TimeLimit(env, cfg.max_episode_steps)
    env = apply_wrappers(GameStatistics(env), parse_wrappers(cfg.wrappers), training=True)
    # A Dict observation is stacked entry by entry: ViZDoom's observed variables too, not only the latest, as
    # the first design's channels were (one set per frame): their change over the stack (health falling: being
    # hit now) is what one frame's values cannot say, and any Dict env stacks the same way, with no special case.
    return gym.wrappers.FrameStackObservation(env, cfg.frame_stack) if cfg.frame_stack > 1 else env


def scoring_env_config(cfg: EnvConfig) -> EnvConfig:
    """The env as evaluations score it: the task's own reward, without training-only shaping."""
    kept = [
        entry for entry, spec in zip(cfg.wrappers, parse_wrappers(cfg.wrappers), strict=False) if not spec.training_only
    ]
    return replace(cfg, medkit_bonus=0.0, variable_rewards={}, wrappers=kept)


def _make_vizdoom(cfg: EnvConfig, kwargs: dict) -> gym.Env:
    try:
        import vizdoom  # noqa: F401 - the doom extra, checked here: vizdoom_env imports it only when a game starts
    except ImportError as exc:
        raise A3CError(f"ViZDoom envs need the vizdoom package: pip install 'ray-a3c[doom]' ({exc})") from None
    if cfg.medkit_bonus:
        kwargs["health_bonus"] = cfg.medkit_bonus
    if cfg.variable_rewards:
        kwargs["variable_rewards"] = dict(cfg.variable_rewards)
    if cfg.observe_variables:
        kwargs["observe_variables"] = dict(cfg.observe_variables)
        kwargs["variables_as_channels"] = cfg.observe_variables_as_channels
    kwargs.setdefault("screen_size", tuple(cfg.screen_size))
    frame_skip = cfg.frame_skip or VIZDOOM_FRAME_SKIP
    # the engine's own exceptions (a missing WAD or map the .cfg names) become one error naming the env
    scenario = cfg.id.removeprefix(VIZDOOM_PREFIX)
    env = _construct(cfg.id, lambda **kw: VizdoomEnv(scenario, frame_skip=frame_skip, **kw), kwargs)
    if cfg.max_episode_steps:
        env = gym.wrappers.TimeLimit(env, cfg.max_episode_steps)
    return env


def variable_channels(cfg: EnvConfig) -> tuple:
    """The image channels that carry env.observe_variables in the first design's layout
    (env.observe_variables_as_channels, kept for its checkpoints): after each stacked frame's picture, one per
    variable. () otherwise: the variables are a Dict entry of their own."""
    if not (cfg.observe_variables_as_channels and cfg.id.startswith(VIZDOOM_PREFIX)):
        return ()
    per_frame = 1 + len(cfg.observe_variables)
    return tuple(f * per_frame + 1 + v for f in range(cfg.frame_stack) for v in range(per_frame - 1))


def make_policy_env(cfg: EnvConfig, render_mode: str | None = None) -> gym.Env:
    """One env as the policy sees it: `make_env`, images as [C, H, W], actions rescaled when configured; the
    ALE's own preprocessing where it implements `cfg`'s pipeline (common/env/ale_vector.py)."""
    plan = native_plan(cfg, render_mode)
    if plan is not None:
        return AleGame(plan)
    return _policy_wrap(make_env(cfg, render_mode), cfg)


def _policy_wrap(env: gym.Env, cfg: EnvConfig) -> gym.Env:
    if needs_layout(env.observation_space):
        env = ImagesFirst(env)
    if cfg.rescale_actions and isinstance(env.action_space, gym.spaces.Box):
        space = env.action_space
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            env.close()
            raise A3CError(
                f"env.rescale_actions needs finite action bounds; '{cfg.id}' has {space}: set env.rescale_actions=false"
            )
        ones = np.ones(space.shape, np.float32)  # float32 bounds: no precision-loss warnings
        env = gym.wrappers.RescaleAction(env, -ones, ones)
    return env


def spaces_from_env(obs: gym.Space, act: gym.Space, cfg: EnvConfig) -> EnvSpaces:
    """What the model needs, from the spaces `make_env` gives (no env built): the policy's view of them
    (`_policy_wrap`'s: images [C, H, W], actions in [-1, 1] when rescaled), and the env's own, as plain data
    (`EnvSpaces.env_spaces`, stored in checkpoints so that `load_policy` builds no env)."""
    policy_act = act
    if cfg.rescale_actions and isinstance(act, gym.spaces.Box):
        policy_act = gym.spaces.Box(-1.0, 1.0, act.shape, np.float32)
    spaces = describe_spaces(images_first_space(obs), policy_act, variable_channels(cfg))
    spaces.env_spaces = {"observation": space_to_data(obs), "action": space_to_data(act)}
    return spaces


def probe_spaces(cfg: EnvConfig) -> EnvSpaces:
    """Build one env to validate the id and read its spaces (as the policy sees them), then close it.
    With a dataset, its file is validated too and its spaces must agree with the live env's."""
    if cfg.dataset:
        data = cached_dataset(cfg.dataset)
        spaces = describe_spaces(data.observation_space, data.action_space, variable_channels(cfg))
        if cfg.id:
            live = _probe_live(cfg)
            if (live.obs_dim, str(live.action_space)) != (spaces.obs_dim, str(spaces.action_space)):
                raise A3CError(
                    f"dataset '{cfg.dataset}' spaces ({data.observation_space}, {data.action_space}) "
                    f"differ from env '{cfg.id}' ({live.action_space}); fix env.id or the dataset"
                )
        return spaces
    return _probe_live(cfg)


def _probe_live(cfg: EnvConfig) -> EnvSpaces:
    env = make_env(cfg)
    obs, act = env.observation_space, env.action_space
    _policy_wrap(env, cfg).close()  # refuses what the policy's view cannot hold (unbounded actions rescaled)
    return spaces_from_env(obs, act, cfg)


class RandomWarmup(gym.Wrapper):
    """On the first reset only, take `steps` random actions (resetting on episode ends) so that the envs
    of a vector env start at different points of their episodes."""

    def __init__(self, env: gym.Env, steps: int, seed: int):
        super().__init__(env)
        self._steps = steps
        self._seed = seed

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        steps, self._steps = self._steps, 0
        self.env.action_space.seed(self._seed)
        for _ in range(steps):
            obs, _, term, trunc, info = self.env.step(self.env.action_space.sample())
            if term or trunc:
                obs, info = self.env.reset()
        return obs, info


def _env_factory(cfg: EnvConfig, warmup: int, seed: int):
    def build() -> gym.Env:
        env = make_policy_env(cfg)
        return RandomWarmup(env, warmup, seed) if warmup else env

    return build


def _offline_factory(cfg: EnvConfig, shard: int, num_shards: int, copy: int, num_copies: int):
    def build() -> gym.Env:
        return OfflineEnv(cfg.dataset, shard, num_shards, copy, num_copies)

    return build


def make_vector_env(
    cfg: EnvConfig, num_envs: int, seed: int, shard: int = 0, num_shards: int = 1, markers: StepMarkers | None = None
) -> gym.vector.VectorEnv:
    """gymnasium vector env of `num_envs` copies, autoreset on the NEXT step (gymnasium 1.x default); the ALE's
    own vector env where it implements `cfg`'s pipeline (common/env/ale_vector.py).

    Env i is seeded with seed + i and, with `warmup_steps`, first takes a random number of random steps.
    With `cfg.dataset` the copies replay shard `shard` of `num_shards` of the recorded episodes instead,
    each copy its own part of that shard (see OfflineEnv). `markers` (for actors/watchdog.py): the copies
    of a SyncVectorEnv (in this process) report their calls there, so that a hung one can be named.
    """
    plan = native_plan(cfg)
    if plan is not None:
        return AleVectorEnv(plan, num_envs, cfg.ale_threads)
    rng = np.random.default_rng(seed)
    warmups = rng.integers(0, cfg.warmup_steps + 1, num_envs) if cfg.warmup_steps else np.zeros(num_envs, int)
    if cfg.dataset:
        fns = [_offline_factory(cfg, shard, num_shards, i, num_envs) for i in range(num_envs)]
    else:
        fns = [_env_factory(cfg, int(w), seed + i) for i, w in enumerate(warmups)]
    if cfg.vector_mode == "async":
        return gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    if markers is not None:
        fns = [marked(fn, markers, i) for i, fn in enumerate(fns)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
