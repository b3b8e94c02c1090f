"""The bodies of `a3c evaluate` and `a3c record`, the commands that play episodes in a live env (no Ray): each
takes the parsed arguments and returns the exit code.

The modules that import torch (the evaluator, the recorder, checkpoints) load inside the functions, once the
cheap checks passed: bad input gets its `error:` line without the ~2 s torch import."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

import numpy as np

from ray_a3c.common.data.dataset import save_dataset
from ray_a3c.common.data.minari_io import dataset_dir, save_minari
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.reporting.logs import terminal_progress
from ray_a3c.common.settings.config import Config, EnvConfig, load_run_config
from ray_a3c.common.storage.keys import CKPT_COUNTERS, CKPT_MODEL

if TYPE_CHECKING:  # torch: the functions import these when they run
    from ray_a3c.actors.evaluator import Evaluator
    from ray_a3c.common.algo.models import ActorCritic

RANDOM_LABEL = "uniform random policy"


def check_new_file(path: str, suffix: str, flag: str, overwrite: bool = True) -> None:
    """Before any work: the file an option names can be written (checked again by the writer itself)."""
    if not overwrite and os.path.exists(path):
        raise A3CError(f"'{path}' exists; choose another {flag} (it is never overwritten)")
    if not path.lower().endswith(suffix):
        raise A3CError(f"{flag} must name a {suffix} file, got '{path}'")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise A3CError(f"{flag} '{path}' is a directory")
    if not os.path.isdir(directory):
        raise A3CError(f"{flag} '{path}': directory '{directory}' does not exist")
    if not os.access(directory, os.W_OK):
        raise A3CError(f"{flag} '{path}': directory '{directory}' is not writable")


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = _evaluation_config(args)
    from ray_a3c.actors.evaluator import STATISTICS, Evaluator  # torch: see the module's docstring

    evaluator = Evaluator(cfg)
    if args.random:
        result = _report(evaluator, args, cfg, RANDOM_LABEL, random_policy=True)
    else:
        result = _evaluate_checkpoint(evaluator, args, cfg)
    evaluator.close()
    # the statistics but the per-episode lists and the mean length, then this command's own fields
    keys = [k for k in STATISTICS if k not in ("returns", "mean_length")]
    keys += ["seed", "random_mean_return", "difference"]
    result["seed"] = args.seed
    print(json.dumps({k: result[k] for k in keys if k in result}))
    return 0


def _evaluation_config(args: argparse.Namespace) -> Config:
    """The run's config with this command's choices, once every argument is known to be good."""
    cfg = load_run_config(args.run_dir)
    if args.policy:
        cfg.run.eval_policy = args.policy
    if args.env:
        cfg.env.id = args.env
        probe_spaces(cfg.env)  # the live env must exist and match the model's spaces
    if args.episodes < 1:
        raise A3CError("--episodes must be >= 1")
    if args.gif:
        check_new_file(args.gif, ".gif", "--gif")
    if args.random and args.vs_random:
        raise A3CError("--random and --vs-random exclude each other")
    return cfg


def _evaluate_checkpoint(evaluator: Evaluator, args: argparse.Namespace, cfg: Config) -> dict:
    """The checkpoint's episodes, then its GIF and the random baseline when asked for."""
    from ray_a3c.common.storage import checkpoint  # torch: see the module's docstring

    path, state = checkpoint.load_from_run(args.run_dir, args.checkpoint)
    try:
        evaluator.load_state_dict(state[CKPT_MODEL])
    except (RuntimeError, KeyError) as exc:
        raise A3CError(f"checkpoint '{path}' does not match the run's model: {str(exc).splitlines()[0]}") from None
    label = f"{path} (version {state.get(CKPT_COUNTERS, {}).get('version', '?')}, {cfg.run.eval_policy} actions)"
    result = _report(evaluator, args, cfg, label, random_policy=False)
    if args.gif:
        frames, episode_return = evaluator.record_gif(args.gif, args.seed)
        print(f"  {args.gif}: {frames} frames, return {episode_return:g}")
    if args.vs_random:
        baseline = _report(evaluator, args, cfg, RANDOM_LABEL, random_policy=True)
        result.update(
            random_mean_return=baseline["mean_return"], difference=result["mean_return"] - baseline["mean_return"]
        )
        print(f"  trained - random: {result['difference']:+.2f}")
    return result


def _report(evaluator: Evaluator, args: argparse.Namespace, cfg: Config, label: str, random_policy: bool) -> dict:
    result = evaluator.run_episodes(
        args.episodes, args.seed, random_policy=random_policy, on_episode=terminal_progress("evaluating")
    )
    print(f"{cfg.env.id}: {label}")
    print(
        f"  {result.episodes} episodes (seeds {args.seed}..{args.seed + result.episodes - 1}), return "
        f"{result.mean_return:.2f} +- {result.ci95_return:.2f} (95% CI; std {result.std_return:.2f}, "
        f"min {result.min_return:.2f}, max {result.max_return:.2f}), mean length {result.mean_length:.1f}"
    )
    return result.to_dict()


def cmd_record(args: argparse.Namespace) -> int:
    _check_record_args(args)
    env_cfg, model, label = _behaviour(args)
    spaces = probe_spaces(env_cfg)
    if spaces.parts:  # refused before playing: save_dataset would refuse the episodes only once played
        raise A3CError(
            f"a dataset holds Box or Discrete observations; '{args.env}' gives a Dict "
            f"({', '.join(p.key for p in spaces.parts)})"
        )
    from ray_a3c.actors.recorder import BehaviourPolicy, record_episodes  # torch: see the module's docstring

    policy = BehaviourPolicy(spaces.action_space, model, args.epsilon, np.random.default_rng(args.seed))
    data = record_episodes(env_cfg, policy, args.episodes, args.seed, on_episode=terminal_progress("recording"))
    returns = data.pop("returns")
    _save_recording(args, data, label)
    summary = {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "episodes": int(len(returns)),
        "steps": int(len(data["rewards"])),
    }
    print(json.dumps(summary))
    return 0


def _check_record_args(args: argparse.Namespace) -> None:
    if args.episodes < 1:
        raise A3CError("--episodes must be >= 1")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        raise A3CError("--epsilon must be in [0, 1]")
    if args.format == "minari":
        if os.path.exists(dataset_dir(args.out)):
            raise A3CError(f"Minari dataset '{args.out}' exists; choose another --out (datasets are never overwritten)")
    elif os.path.exists(args.out):
        raise A3CError(f"'{args.out}' exists; choose another --out (datasets are never overwritten)")
    elif not args.out.endswith(".npz"):
        raise A3CError(f"--out must end in .npz, got '{args.out}'")


def _behaviour(args: argparse.Namespace) -> tuple[EnvConfig, ActorCritic | None, str]:
    """(the env to record, the behaviour policy's model or None for uniform random actions, its label)."""
    if args.policy == "random":
        return EnvConfig(id=args.env), None, "uniform random"
    run_cfg = load_run_config(args.policy)
    env_cfg = run_cfg.env
    env_cfg.id, env_cfg.dataset = args.env, None
    from ray_a3c.actors.evaluator import Evaluator  # torch: see the module's docstring
    from ray_a3c.common.storage import checkpoint

    evaluator = Evaluator(run_cfg)
    path, state = checkpoint.load_from_run(args.policy, checkpoint.BEST)
    evaluator.load_state_dict(state[CKPT_MODEL])
    actions = f" epsilon-greedy {args.epsilon}" if args.epsilon is not None else " (sampled)"
    return env_cfg, evaluator.model, f"{path}{actions}"


def _save_recording(args: argparse.Namespace, data: dict, label: str) -> None:
    if args.format == "minari":
        where = save_minari(args.out, data, args.env, f"{args.episodes} episodes of {args.env} from {label}")
        print(f"Minari dataset {args.out} at {where}; train with env.dataset=minari:{args.out}")
    else:
        save_dataset(args.out, source=f"{args.env} {label}", **data)
    print(
        f"{args.out}: {args.episodes} episodes, {len(data['rewards']):,} steps from {label}; "
        f"behaviour log-probs {'stored' if 'behaviour_log_probs' in data else 'not stored'}"
    )
