"""ViZDoom scenarios as a gymnasium env: headless, frame skip, small gray frames, a process that survives crashes."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

from ray_a3c.common.reporting.errors import A3CError

SCENARIOS = (
    "basic",
    "defend_the_center",
    "defend_the_line",
    "health_gathering",
    "health_gathering_supreme",
    "my_way_home",
    "deadly_corridor",
    "predict_position",
    "take_cover",
)
PREFIX = "vizdoom:"
BT709 = np.array([0.2126, 0.7152, 0.0722], np.float32)


def scenario_path(name: str) -> str:
    """A scenario shipped in the vizdoom package by name, or a user's own .cfg path."""
    import vizdoom  # the doom extra: imported where a game needs it, so this module loads without it

    if name.endswith(".cfg"):
        if not os.path.isfile(name):
            raise A3CError(f"ViZDoom config '{name}' does not exist")
        return os.path.abspath(name)
    if name not in SCENARIOS:
        raise A3CError(f"unknown ViZDoom scenario '{name}'; use one of {', '.join(SCENARIOS)} or a .cfg path")
    return os.path.join(vizdoom.scenarios_path, f"{name}.cfg")


class VizdoomEnv(gym.Env):
    """One DoomGame. Actions press one of the scenario's buttons for `frame_skip` tics. Observations are
    uint8 [1, H, W] (`screen_size` (W, H), 84x84 by default): the 160x120 grayscale screen less 10 rows top and
    bottom, resized (the Doom notebook also
    cropped 30 columns a side; in `basic` the target can stand there). Rewards are raw
    (scale them with env.reward_scale). At the scenario's timeout the episode is truncated, at death or goal
    terminated. If the engine process dies it is started again and the episode ends as truncated;
    `recreations` counts that. With render_mode rgb_array the engine draws a 320x240 colour screen, which
    `render()` returns (for GIFs people can watch); the observation is that screen in grayscale, cropped and
    resized the same way. `health_bonus` adds that raw reward on every step the player's health rises (reward
    shaping for the gathering scenarios, off by default); `variable_rewards` ({game variable name: reward per
    unit}) adds reward times each variable's change on every step, e.g. {"AMMO2": 0.1} costs 0.1 a shot.
    `observe_variables` ({game variable name: full scale}) shows those variables to the network (the frame has no
    HUD, so ammo and health are otherwise invisible): the observation becomes a Dict, {"screen": the frame,
    "variables": float32 [one per variable] of value / full scale, clipped to [0, 1]}. `variables_as_channels`
    keeps the first design's layout instead, for checkpoints trained with it: one extra uint8 channel per variable
    after the frame, filled with that level x 255 (`variable_planes`; models.VariableChannelsEncoder reads it)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(
        self,
        scenario: str = "basic",
        frame_skip: int = 4,
        render_mode: str | None = None,
        seed: int | None = None,
        health_bonus: float = 0.0,
        screen_size: tuple = (84, 84),
        variable_rewards: dict | None = None,
        observe_variables: dict | None = None,
        variables_as_channels: bool = False,
    ):
        self.config_path = scenario_path(scenario)
        self.frame_skip, self.render_mode = frame_skip, render_mode
        self._colour: np.ndarray | None = None  # the last colour screen, when rendering
        self.health_bonus = health_bonus
        self._health = 0.0
        self._variable_rewards = _game_variables(variable_rewards or {})
        self._variables = np.zeros(len(self._variable_rewards))
        self._observed = _game_variables(observe_variables or {})
        self._as_channels = bool(variables_as_channels and self._observed)
        self.recreations = 0
        self._seed = seed
        self.game = self._start()
        self._buttons = self.game.get_available_buttons_size()
        if not self._buttons:
            self.game.close()
            raise A3CError(f"ViZDoom config '{self.config_path}' has no available_buttons: the agent could not act")
        self.action_space = gym.spaces.Discrete(self._buttons)
        self.screen_size = (int(screen_size[0]), int(screen_size[1]))  # (width, height)
        width, height = self.screen_size
        self._last = np.zeros((1, height, width), np.uint8)  # the last frame: the final observation of an episode
        self._levels = np.zeros(len(self._observed))  # the observed variables' last levels, in [0, 1]
        self.observation_space = observation_space((1, height, width), len(self._observed), self._as_channels)

    def _start(self):
        import vizdoom  # the doom extra: imported where a game needs it, so this module loads without it

        game = vizdoom.DoomGame()
        game.load_config(self.config_path)
        game.set_window_visible(False)
        if self.render_mode == "rgb_array":
            game.set_screen_format(vizdoom.ScreenFormat.RGB24)
            game.set_screen_resolution(vizdoom.ScreenResolution.RES_320X240)
        else:
            game.set_screen_format(vizdoom.ScreenFormat.GRAY8)
            game.set_screen_resolution(vizdoom.ScreenResolution.RES_160X120)
        game.set_mode(vizdoom.Mode.PLAYER)
        game.set_sound_enabled(False)
        # The engine saves its settings on exit; by default into the working directory (a user's checkout).
        ini_dir = os.path.join(tempfile.gettempdir(), f"ray-a3c-vizdoom-{os.getuid()}")
        os.makedirs(ini_dir, exist_ok=True)
        game.set_doom_config_path(os.path.join(ini_dir, "_vizdoom.ini"))
        if self._seed is not None:
            game.set_seed(int(self._seed) % 2**31)
        game.init()
        return game

    def _frame(self) -> Any:
        """The observation now: the frame (with the observed variables' levels when there are any)."""
        state = self.game.get_state()
        if state is not None:  # else the episode is over: the last frame and levels are the final observation
            self._last[0] = self._screen(state)
            values = [self.game.get_game_variable(variable) for variable, _ in self._observed]
            self._levels = variable_levels(values, [full_scale for _, full_scale in self._observed])
        return self._observation()

    def _observation(self) -> Any:
        if not self._observed:
            return self._last.copy()
        if self._as_channels:
            return variable_planes(self._last, self._levels)
        return {SCREEN: self._last.copy(), VARIABLES: self._levels.astype(np.float32)}

    def _screen(self, state) -> np.ndarray:
        """The engine's screen as the network's frame: gray, cropped, resized, uint8 [H, W]."""
        screen = Image.fromarray(state.screen_buffer)
        if self.render_mode == "rgb_array":
            self._colour = np.asarray(state.screen_buffer, np.uint8).copy()
            gray = self._colour.astype(np.float32) @ BT709  # the weights that match the engine's GRAY8 best
            screen = Image.fromarray(gray.astype(np.uint8)).resize((160, 120), Image.BOX)
        screen = screen.crop((0, 10, 160, 110))  # rows only: the sides can hold the target
        return np.asarray(screen.resize(self.screen_size, Image.BILINEAR), np.uint8)

    def pid(self) -> int | None:
        """The engine's process id (a child of this process), for tests that kill it."""
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and b"vizdoom" in cmd:
                return int(pid)
        return None

    def _recreate(self) -> None:
        self.recreations += 1
        try:
            self.game.close()
        except Exception:  # noqa: BLE001 - the old engine is already gone
            pass
        self.game = self._start()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.game.set_seed(int(seed) % 2**31)
        try:
            self.game.new_episode()
        except _crashes():
            self._recreate()
            self.game.new_episode()
        self._health = self._read_health()
        self._variables = self._read_variables()
        return self._frame(), {"env_recreations": self.recreations}

    def _read_health(self) -> float:
        import vizdoom  # the doom extra: imported where a game needs it, so this module loads without it

        return float(self.game.get_game_variable(vizdoom.GameVariable.HEALTH))

    def _read_variables(self) -> np.ndarray:
        return np.array([self.game.get_game_variable(v) for v, _ in self._variable_rewards], np.float64)

    def step(self, action: Any):
        buttons = [0] * self._buttons
        buttons[int(action)] = 1
        try:
            reward = self.game.make_action(buttons, self.frame_skip)
            finished = self.game.is_episode_finished()
        except _crashes():
            self._recreate()  # the episode is lost; end it as truncated so the worker carries on
            return self._observation(), 0.0, False, True, {"env_recreations": self.recreations}
        obs = self._frame()
        if self.health_bonus and not finished:
            health = self._read_health()
            reward += self.health_bonus if health > self._health else 0.0
            self._health = health
        if self._variable_rewards and not finished:
            values = self._read_variables()
            reward += float(np.dot([w for _, w in self._variable_rewards], values - self._variables))
            self._variables = values
        truncated = finished and self._timed_out()
        return obs, float(reward), finished and not truncated, truncated, {"env_recreations": self.recreations}

    def _timed_out(self) -> bool:
        timeout = self.game.get_episode_timeout()
        return timeout > 0 and self.game.get_episode_time() >= timeout - 1

    def render(self) -> np.ndarray:
        if self._colour is not None:
            return self._colour.copy()
        return np.repeat(self._last[0][:, :, None], 3, axis=2)

    def close(self) -> None:
        self.game.close()


SCREEN, VARIABLES = "screen", "variables"  # the entries of the Dict observation with observe_variables


def observation_space(frame_shape: tuple, observed: int, as_channels: bool) -> gym.Space:
    """The frame's uint8 Box alone; with `observed` variables, the Dict of the frame and their levels, or (the
    first design: `as_channels`) the frame with one channel per variable after it."""
    frame = gym.spaces.Box(0, 255, frame_shape, np.uint8)
    if not observed:
        return frame
    if as_channels:
        return gym.spaces.Box(0, 255, (frame_shape[0] + observed,) + tuple(frame_shape[1:]), np.uint8)
    return gym.spaces.Dict({SCREEN: frame, VARIABLES: gym.spaces.Box(0.0, 1.0, (observed,), np.float32)})


def variable_levels(values: list, full_scales: list) -> np.ndarray:
    """Game variables as the network reads them: value / full scale, clipped to [0, 1] (float64)."""
    return np.clip(np.asarray(values, np.float64) / np.asarray(full_scales, np.float64), 0.0, 1.0)


def variable_planes(frame: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The first design's observation: uint8 [1 + variables, H, W], the frame then one constant plane per
    variable at round(level x 255) (kept for checkpoints trained on it: env.observe_variables_as_channels)."""
    planes = [np.full(frame.shape[1:], round(float(level) * 255), np.uint8) for level in levels]
    return np.concatenate([frame, np.stack(planes)]) if planes else frame.copy()


def _game_variables(values: dict) -> list:
    """{"AMMO2": 0.1} -> [(GameVariable.AMMO2, 0.1)]."""
    import vizdoom  # the doom extra: imported where a game needs it, so this module loads without it

    return [(getattr(vizdoom.GameVariable, name), float(w)) for name, w in values.items()]


def _crashes() -> tuple:
    import vizdoom  # the doom extra: imported where a game needs it, so this module loads without it

    return (
        vizdoom.ViZDoomUnexpectedExitException,
        vizdoom.ViZDoomIsNotRunningException,
        vizdoom.ViZDoomErrorException,
        vizdoom.MessageQueueException,
        vizdoom.SharedMemoryException,
    )
