"""Sample Factory's side of bench/atari.py, run inside bench/.sf-venv (gymnasium 0.29, ale-py 0.9): SF's own
train/enjoy entry points with its Atari env factory pointed at the ALE v5 env. Its spawned processes import this
module (the env factory is registered by reference), so it imports nothing from the project's venv
(bench.atari_sides needs only the standard library)."""

from __future__ import annotations

import os

from bench.atari_sides import BUDGET_ENV, Deadline


def clock_schedule() -> bool:
    """Under a clock budget (run_sf puts the side's Deadline in BUDGET_ENV), SF's linear_decay falls to 0 at the
    deadline, as the other sides' schedules do, instead of at --train_for_env_steps (out of reach then). SF's
    learner runs in a spawned process of its own, which imports this module to unpickle the env factory before
    it builds its scheduler: the schedule is swapped at import. True if it was."""
    text = os.environ.get(BUDGET_ENV)
    if not text:
        return False
    deadline = Deadline.decode(text)
    from sample_factory.algo.learning import learner

    def update(self, current_lr, recent_kls):
        return self.linear_decay.at(0) * deadline.fraction_left()

    learner.LinearDecayScheduler.update = update
    return True


clock_schedule()


def sf_make_env(full_env_name, cfg, env_config, render_mode=None):
    """SF's own Atari env factory (sf_examples.atari.atari_utils.make_atari_env) on ALE/<Game>-v5 (frameskip=1)
    instead of its <Game>NoFrameskip-v4 (no sticky actions); in `enjoy` without EpisodicLifeEnv and ClipRewardEnv,
    each game's own return printed as it ends. Runs inside bench/.sf-venv (gymnasium 0.29)."""
    import ale_py  # noqa: F401 - registers the ALE ids
    import gymnasium as gym
    from sf_examples.atari import atari_utils

    spec = atari_utils.atari_env_by_name(full_env_name)
    game = spec.env_id.split("NoFrameskip")[0]
    bench_id = f"BenchALE/{game}-v5"
    if bench_id not in gym.registry:
        v5 = gym.spec(f"ALE/{game}-v5")
        gym.register(bench_id, entry_point=v5.entry_point, kwargs={**v5.kwargs, "frameskip": 1})
    if os.environ.get("BENCH_ATARI_MODE") != "enjoy":
        original, spec.env_id = spec.env_id, bench_id  # SF's spec objects are shared: put the id back after
        try:
            return atari_utils.make_atari_env(full_env_name, cfg, env_config, render_mode)
        finally:
            spec.env_id = original
    # enjoy: SF's wrappers but the training-only two, whole games at the game's own reward
    from sample_factory.envs.env_wrappers import FireResetEnv, MaxAndSkipEnv, NoopResetEnv, NumpyObsWrapper

    class PrintGames(gym.Wrapper):
        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            if "episode" in info:
                print(f"BENCH game {float(info['episode']['r'])}", flush=True)
            return obs, reward, terminated, truncated, info

    env = gym.make(bench_id, render_mode=render_mode)
    env.reset(seed=cfg.seed)  # the ALE's generator, once; SF's own resets carry no seed
    env = NoopResetEnv(PrintGames(gym.wrappers.RecordEpisodeStatistics(env)), noop_max=30)
    env = MaxAndSkipEnv(env, skip=cfg.env_frameskip)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)
    env = gym.wrappers.GrayScaleObservation(gym.wrappers.ResizeObservation(env, (84, 84)))
    return NumpyObsWrapper(gym.wrappers.FrameStack(env, cfg.env_framestack))


def sf_main(argv: list[str]) -> int:
    """`train ARGS` / `enjoy ARGS` inside bench/.sf-venv: SF's Atari example with `sf_make_env` registered; in
    training, each stats report also prints the 100-game window of whole-game returns SF keeps and the frames so
    far (print_stats(fps_stats, sample_throughput, total_env_steps))."""
    import numpy as np
    from sample_factory.envs.env_utils import register_env
    from sf_examples.atari.atari_utils import ATARI_ENVS
    from sf_examples.atari.train_atari import parse_atari_args

    mode, rest = argv[0], argv[1:]
    os.environ["BENCH_ATARI_MODE"] = mode  # spawned workers inherit it
    for spec in ATARI_ENVS:
        register_env(spec.name, sf_make_env)
    cfg = parse_atari_args(argv=rest, evaluation=mode == "enjoy")
    if mode == "enjoy":
        from sample_factory.enjoy import enjoy

        return int(enjoy(cfg)[0])
    from sample_factory.algo.runners.runner import Runner
    from sample_factory.train import run_rl

    print_stats = Runner.print_stats

    def with_games(self, *args):
        print_stats(self, *args)
        games = self.policy_avg_stats.get("RecordEpisodeStatistics_reward", [[]])[0]
        if games:
            print(f"BENCH games {len(games)} mean {float(np.mean(games))} frames {int(args[-1])}", flush=True)

    Runner.print_stats = with_games
    return int(run_rl(cfg))
