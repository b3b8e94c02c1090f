"""The ALE's own vector env (`ale_py.vector_env.AtariVectorEnv`: C++ threads doing the A3C paper's preprocessing)
behind the contract of the wrapper pipeline it replaces, for the runs whose `env.wrappers` are what it provides.

`native_plan(cfg)` decides, one rule for workers, evaluator and recorder: an `ALE/<Game>-v5` id with
`frameskip: 1`, `AtariPreprocessing` (gray, square, no scaling) first, then any of `LifeLossEnd`, `FireReset` and
`ClipReward`, and a frame stack. Anything else (other wrappers, a time limit, warm-up steps, rendering) keeps the
gymnasium wrappers. What stays the same as that pipeline (tests/unit/test_ale_vector.py checks it step by step):
- observations: the ALE's max-pooled, area-resized gray frames (pixel-identical to AtariPreprocessing's); the
  frame stack is kept here, not by the ALE, because the ALE pads a new game's stack with black frames where
  gymnasium's FrameStackObservation repeats the first frame;
- episodes for learning: a lost life ends one (LifeLossEnd's rule: lives fell and some are left), the game goes
  on, and the step after it (the runner's autoreset step, whose action is ignored) presses FIRE when FireReset is
  on, as the pipeline's reset does; rewards clipped as ClipReward's bounds say;
- statistics: `GAME_RETURN` / `GAME_LENGTH` when the game itself ends, at the game's own reward, as
  GameStatistics reports them (length in emulator frames, noops included).
What differs: the ALE's reset presses FIRE for one frame where FireReset presses it for one action (4 frames), and
its no-op starts draw from the ALE's own generator; neither changes what a game is or how it is scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from ray_a3c.common.env.env_ids import ATARI_NAMESPACE, parse_env_id
from ray_a3c.common.env.wrappers import GAME_LENGTH, GAME_RETURN, parse_wrappers
from ray_a3c.common.settings.config import EnvConfig

PREPROCESSING = "AtariPreprocessing"
# AtariPreprocessing's arguments and the values the ALE's vector env implements (None: any value it takes)
_PREPROCESSING_ARGS = {
    "frame_skip": None,
    "screen_size": None,
    "noop_max": None,
    "grayscale_obs": True,
    "scale_obs": False,
    "terminal_on_life_loss": False,
    "grayscale_newaxis": False,
}
_LATER_WRAPPERS = ("LifeLossEnd", "FireReset", "ClipReward")
_ENV_KWARGS = ("frameskip", "repeat_action_probability", "full_action_space", "max_num_frames_per_episode")
V5_STICKY = 0.25  # ALE v5's repeat_action_probability
V5_MAX_FRAMES = 108_000  # ALE v5's max_num_frames_per_episode


@dataclass(frozen=True)
class NativePlan:
    """What an AtariVectorEnv must do to stand in for a config's env pipeline."""

    game: str  # the ROM's snake_case name
    frame_skip: int
    screen_size: int
    noop_max: int
    frame_stack: int
    sticky: float  # repeat_action_probability
    full_action_space: bool
    max_frames: int  # per game, then truncated
    life_loss: bool  # LifeLossEnd
    fire_reset: bool  # FireReset
    reward_bounds: tuple | None  # ClipReward's (min, max), or None


def rom_name(env_name: str) -> str | None:
    """`ALE/MsPacman-v5` -> `ms_pacman`; None when the id is not a v5 ALE id."""
    match = re.fullmatch(rf"{ATARI_NAMESPACE}/([A-Za-z0-9]+)-v5", env_name)
    if not match:
        return None
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", match.group(1)).lower()


def native_plan(cfg: EnvConfig, render_mode: str | None = None) -> NativePlan | None:
    """The AtariVectorEnv settings that reproduce `cfg`'s pipeline, or None where the wrappers must run."""
    if not cfg.ale_vector or render_mode or cfg.dataset or cfg.warmup_steps or cfg.max_episode_steps:
        return None
    if cfg.vector_mode != "sync":
        return None
    parsed = parse_env_id(cfg.id)
    game = rom_name(parsed.name) if parsed.module in ("", "ale_py") else None
    kwargs = dict(cfg.kwargs)
    if game is None or kwargs.get("frameskip") != 1 or set(kwargs) - set(_ENV_KWARGS):
        return None
    specs = parse_wrappers(cfg.wrappers)
    if not specs or specs[0].name != PREPROCESSING or not _preprocessing_ok(specs[0].kwargs):
        return None
    later = [spec.name for spec in specs[1:]]
    if set(later) - set(_LATER_WRAPPERS) or len(set(later)) != len(later):
        return None
    if "FireReset" in later and "LifeLossEnd" in later and later.index("FireReset") < later.index("LifeLossEnd"):
        return None  # FireReset inside LifeLossEnd would not serve after a lost life: the wrappers say what it does
    clip = next((spec.kwargs for spec in specs[1:] if spec.name == "ClipReward"), None)
    if clip is not None and set(clip) - {"min_reward", "max_reward"}:
        return None
    pre = specs[0].kwargs
    size = pre.get("screen_size", 84)
    return NativePlan(
        game=game,
        frame_skip=int(pre.get("frame_skip", 4)),
        screen_size=int(size if isinstance(size, int) else size[0]),
        noop_max=int(pre.get("noop_max", 30)),
        frame_stack=max(1, int(cfg.frame_stack)),
        sticky=float(kwargs.get("repeat_action_probability", V5_STICKY)),
        full_action_space=bool(kwargs.get("full_action_space", False)),
        max_frames=int(kwargs.get("max_num_frames_per_episode", V5_MAX_FRAMES)),
        life_loss="LifeLossEnd" in later,
        fire_reset="FireReset" in later,
        reward_bounds=None if clip is None else (clip.get("min_reward"), clip.get("max_reward")),
    )


def _preprocessing_ok(kwargs: dict) -> bool:
    for key, value in kwargs.items():
        if key not in _PREPROCESSING_ARGS:
            return False
        wanted = _PREPROCESSING_ARGS[key]
        if wanted is not None and value != wanted:
            return False
    size = kwargs.get("screen_size", 84)
    square = isinstance(size, int) or (isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1])
    return square and int(kwargs.get("frame_skip", 4)) >= 1


class AleVectorEnv(gym.vector.VectorEnv):
    """`num_envs` games in one AtariVectorEnv, presented as the wrapper pipeline's SyncVectorEnv presents them
    (gymnasium 1.x's NEXT_STEP autoreset: the step after an episode's end only starts the next one)."""

    def __init__(self, plan: NativePlan, num_envs: int, num_threads: int = 1):
        from ale_py.vector_env import AtariVectorEnv  # the atari extra: only where the ALE's own vector env runs

        self.plan, self.num_envs = plan, num_envs
        self.ale = AtariVectorEnv(
            plan.game,
            num_envs,
            num_threads=num_threads,
            repeat_action_probability=plan.sticky,
            full_action_space=plan.full_action_space,
            max_num_frames_per_episode=plan.max_frames,
            img_height=plan.screen_size,
            img_width=plan.screen_size,
            stack_num=1,  # stacked here: see the module's docstring
            frameskip=plan.frame_skip,
            noop_max=plan.noop_max,
            reward_clipping=False,  # the game's own reward is counted first, then clipped here
            use_fire_reset=plan.fire_reset,
        )
        frame = (plan.frame_stack, plan.screen_size, plan.screen_size)
        self.single_observation_space = gym.spaces.Box(0, 255, frame, np.uint8)
        self.single_action_space = self.ale.single_action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}
        meanings = [str(m).rsplit(".", 1)[-1] for m in self.ale.ale.get_action_set()]
        self._serve_action = meanings.index("FIRE") if plan.fire_reset and "FIRE" in meanings else 0
        self._stack = np.zeros((num_envs, *frame), np.uint8)
        self._lives = np.zeros(num_envs, np.int64)
        self._serving = np.zeros(num_envs, bool)  # the next step follows a lost life: it serves, as a reset would
        self._game_over = np.zeros(num_envs, bool)  # the next step starts a new game (the ALE resets it)
        self._game_return = np.zeros(num_envs)

    def reset(self, *, seed: Any = None, options: dict | None = None):
        seeds = None if seed is None else np.asarray([seed] if np.isscalar(seed) else seed, np.int64)
        if seeds is not None and len(seeds) == 1 and self.num_envs > 1:
            seeds = seeds[0] + np.arange(self.num_envs)
        obs, info = self.ale.reset(seed=seeds)
        # every slot holds the first frame, as FrameStackObservation pads; never changed in place once returned
        self._stack = np.repeat(obs[:, -1:], self.plan.frame_stack, axis=1)
        self._lives = np.asarray(info["lives"], np.int64).copy()
        self._serving[:], self._game_over[:], self._game_return[:] = False, False, 0.0
        return self._stack, _public(info)

    def step(self, actions):
        actions = np.asarray(actions, np.int32).copy()
        actions[self._serving] = self._serve_action
        obs, rewards, terminated, truncated, info = self.ale.step(actions)
        self._game_return[self._game_over] = 0.0  # the ALE reset these games on this step
        # a new episode (a new game, or the serve after a lost life: the pipeline's reset) pads its stack afresh
        self._stack = _stacked(self._stack, obs[:, -1], self._game_over | self._serving)
        lives = np.asarray(info["lives"], np.int64)
        game_over = terminated | truncated
        life_lost = self.plan.life_loss & (0 < lives) & (lives < self._lives) & ~game_over
        self._lives, self._serving, self._game_over = lives.copy(), life_lost, game_over.copy()
        self._game_return += rewards
        info = _public(info)
        if game_over.any():
            info[GAME_RETURN] = np.where(game_over, self._game_return, 0.0)
            info[GAME_LENGTH] = np.where(game_over, info["episode_frame_number"], 0)
            info["_" + GAME_RETURN] = info["_" + GAME_LENGTH] = game_over.copy()
        rewards = rewards.astype(np.float64)
        if self.plan.reward_bounds is not None:
            rewards = np.clip(rewards, *self.plan.reward_bounds)
        return self._stack, rewards, terminated | life_lost, truncated, info

    @property
    def game_over(self) -> np.ndarray:
        """[N] bool: the last step ended the game itself (not only a life)."""
        return self._game_over

    def close(self, **kwargs) -> None:
        self.ale.close()


def _stacked(stack: np.ndarray, frames: np.ndarray, restarted: np.ndarray) -> np.ndarray:
    """[N, K, H, W] stack after one step: the oldest frame out, `frames` [N, H, W] in; games that `restarted`
    hold their first frame in every slot."""
    out = np.empty_like(stack)
    out[:, :-1], out[:, -1] = stack[:, 1:], frames
    out[restarted] = frames[restarted][:, None]
    return out


def _public(info: dict) -> dict:
    """The ALE's per-env info, with gymnasium's `_key` masks (every env reports every key)."""
    n = len(info["lives"])
    out = {key: np.asarray(value) for key, value in info.items()}
    out.update({"_" + key: np.ones(n, bool) for key in info})
    return out


class AleGame(gym.Env):
    """One game of a NativePlan as a single gymnasium env (the evaluator's and recorder's env): an AleVectorEnv of
    one, with single-env semantics (after an end, `reset` starts the next episode: a new game, or after a lost
    life the serve that LifeLossEnd's reset makes)."""

    metadata = {"render_modes": []}

    def __init__(self, plan: NativePlan):
        self.vector = AleVectorEnv(plan, 1)
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space
        self._mid_game = False  # the last episode ended at a lost life: the game goes on

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._mid_game:
            obs, *_, info = self.vector.step(np.zeros(1, np.int32))  # the serve step; the action is replaced
        else:
            obs, info = self.vector.reset(seed=None if seed is None else [int(seed)])
        self._mid_game = False
        return obs[0], _single(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.vector.step(np.asarray([action], np.int32))
        self._mid_game = bool(terminated[0] or truncated[0]) and not self.vector.game_over[0]
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), _single(info)

    def close(self) -> None:
        self.vector.close()


def _single(info: dict) -> dict:
    """A one-env vector info as a single env's: the keys env 0 has."""
    return {key: value[0].item() for key, value in info.items() if not key.startswith("_") and info["_" + key][0]}
