"""The `a3c` command: train, tune, evaluate, record, export, plot, replay, config, submit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np
import yaml

from ray_a3c.cluster.launch import (
    build_config,
    build_family_config,
    prepare_new,
    prepare_resume,
    run_training,
    use_working_directory,
)
from ray_a3c.cluster.plot import plot_run
from ray_a3c.cluster.tune_spec import load_spec
from ray_a3c.common.config import (
    Config,
    EnvConfig,
    from_dict,
    from_flat,
    load_run_config,
    load_yaml,
    parse_override,
    preset_names,
    validate,
)
from ray_a3c.common.config_reference import reference_table
from ray_a3c.common.dataset import save_dataset
from ray_a3c.common.envs import probe_spaces
from ray_a3c.common.errors import A3CError
from ray_a3c.common.export import EXPORT_FORMATS
from ray_a3c.common.families import describe
from ray_a3c.common.keys import CKPT_COUNTERS, CKPT_MODEL
from ray_a3c.common.logs import LEVELS, console, log, terminal_progress
from ray_a3c.common.minari_io import dataset_dir, save_minari

DEFAULT_PRESET = "cartpole"


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one `error:` line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise A3CError(f"{message} (see `{self.prog} --help`)")


def _workers(text: str) -> int:
    """'auto' -> 0 (sized from the cluster's free CPUs at start), else a positive int."""
    if text == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: '{text}' (a number or auto)") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1, or auto")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="a3c", description="Distributed A3C on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    logging_flags = argparse.ArgumentParser(add_help=False)
    logging_flags.add_argument(
        "--log-level", choices=list(LEVELS), help="messages of the ray_a3c logger shown (default info: progress lines)"
    )
    logging_flags.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    logging_flags.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    t = sub.add_parser("train", help="train a policy (local Ray by default)", parents=[logging_flags])
    t.add_argument("preset", nargs="?", help=f"preset name ({', '.join(preset_names())}) or a YAML file")
    t.add_argument(
        "--env",
        help="env.id: a gymnasium id (ALE/Pong-v5), module:EnvId, module:ClassName or "
        "vizdoom:<scenario>; without a preset, the defaults of its family",
    )
    t.add_argument("--mode", choices=["async", "sync"], help="async A3C or synchronous A2C (algo.mode)")
    t.add_argument("--num-workers", type=_workers, help="rollout workers, or auto (run.num_workers)")
    t.add_argument("--total-env-steps", type=int, help="env-step budget (run.total_env_steps)")
    t.add_argument("--time-limit", type=float, help="seconds of training (run.time_limit_s)")
    t.add_argument("--stop-return", type=float, help="stop at this eval mean return (run.stop_return)")
    t.add_argument("--seed", type=int, help="base seed (run.seed)")
    t.add_argument("--run-dir", help="run directory (run.run_dir)")
    t.add_argument("--address", help="join this Ray cluster instead of starting one (cluster.address)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest checkpoint")
    t.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="K=V",
        help="config override section.key=value (repeatable)",
    )
    u = sub.add_parser(
        "tune", help="a Ray Tune sweep of runs (ASHA, PBT) from a spec YAML (examples/tune/)", parents=[logging_flags]
    )
    u.add_argument("spec", help="the sweep spec: config, search, scheduler, num_samples, metric, stop, ...")
    u.add_argument("--name", help="the experiment's name (default: the config, scheduler and time)")
    u.add_argument("--storage-path", help="where experiments are written (default runs/tune)")
    u.add_argument("--num-samples", type=int, help="trials sampled from the search space")
    e = sub.add_parser("evaluate", help="evaluate a run's checkpoint (no Ray needed)", parents=[logging_flags])
    e.add_argument("run_dir")
    e.add_argument("--checkpoint", default="best", help="latest | best | PATH (default best, else latest)")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--random", action="store_true", help="evaluate a uniform random policy instead")
    e.add_argument("--vs-random", action="store_true", help="evaluate the checkpoint and a random policy")
    e.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    e.add_argument("--env", help="evaluate in this live env instead of the run's env.id (offline-trained runs)")
    e.add_argument("--gif", help="also record one episode to this .gif")
    e.add_argument(
        "--policy", choices=("greedy", "sample"), help="how actions are chosen (default: the run's run.eval_policy)"
    )
    r = sub.add_parser("record", help="record episodes from a live env into a dataset .npz", parents=[logging_flags])
    r.add_argument("--env", required=True, help="gymnasium id or package.module:ClassName")
    r.add_argument("--policy", default="random", help="random | RUN_DIR (its best checkpoint, else latest)")
    r.add_argument("--epsilon", type=float, help="epsilon-greedy around the policy's mode action")
    r.add_argument("--episodes", type=int, required=True)
    r.add_argument(
        "--out", required=True, help="the .npz to write, or with --format minari the new dataset id (never overwritten)"
    )
    r.add_argument(
        "--format",
        default="npz",
        choices=("npz", "minari"),
        help="npz (this tool's schema) | minari (a local Minari dataset, `minari` extra)",
    )
    r.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    j = sub.add_parser("submit", help="run `a3c train [train args]` as a job on a Ray cluster (Jobs API)")
    j.add_argument("--address", required=True, help="the cluster's dashboard, e.g. http://HEAD:8265")
    j.add_argument(
        "--working-dir",
        help="directory shipped to the cluster, where the job runs: your env modules, "
        "datasets and YAML files (default: the current directory)",
    )
    j.add_argument("--pip", nargs="+", default=[], help="pip packages the job installs")
    j.add_argument("--no-follow", action="store_true", help="print the job id and return")
    p = sub.add_parser(
        "plot", help="six training panels from a run's TensorBoard data, as a PNG", parents=[logging_flags]
    )
    p.add_argument("run_dir")
    p.add_argument("--out", help="PNG path (default RUN_DIR/plots/training.png)")
    x = sub.add_parser(
        "export", help="write a run's policy as a self-contained ONNX or torch.export file", parents=[logging_flags]
    )
    x.add_argument("run_dir")
    x.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="onnx (onnxruntime) | pt2 (torch)")
    x.add_argument("--out", required=True, help="the file to write (never overwritten)")
    x.add_argument("--checkpoint", default="best", help="latest | best | PATH (default best, else latest)")
    y = sub.add_parser(
        "replay",
        help="recompute an async run in one process from its update log; check it ends at the same weights",
        parents=[logging_flags],
    )
    y.add_argument("run_dir")
    y.add_argument("--updates", type=int, help="replay only the first N updates (default: all)")
    c = sub.add_parser("config", help="print a resolved config, or the reference of every key")
    c.add_argument("preset", nargs="?", default=DEFAULT_PRESET)
    c.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="K=V")
    c.add_argument("--reference", action="store_true", help="print every key, its default and its meaning")
    return parser


FLAG_KEYS = {
    "env": "env.id",
    "mode": "algo.mode",
    "num_workers": "run.num_workers",
    "total_env_steps": "run.total_env_steps",
    "time_limit": "run.time_limit_s",
    "stop_return": "run.stop_return",
    "seed": "run.seed",
    "run_dir": "run.run_dir",
    "address": "cluster.address",
}


def resolve_config(base: dict, overrides: list[str], flags: dict | None = None, source: str = "") -> Config:
    cfg = from_dict(base, source=source or "config")
    cfg = from_flat(_flat_overrides(overrides, flags), cfg)
    return validate(cfg)


def _flat_overrides(overrides: list[str], flags: dict | None) -> dict:
    """--set K=V and the named flags as one {"section.key": value} mapping (flags win)."""
    values = dict(parse_override(o) for o in overrides)
    values.update({FLAG_KEYS[k]: v for k, v in (flags or {}).items() if v is not None})
    return values


def cmd_train(args: argparse.Namespace) -> int:
    use_working_directory()
    flags = {k: getattr(args, k) for k in FLAG_KEYS}
    if args.resume:
        if args.preset:
            print(f"note: resuming uses the run dir's config.yaml; the preset '{args.preset}' is ignored")
        prepared = prepare_resume(args.run_dir, _flat_overrides(args.overrides, flags))
    elif args.preset or "env.id" not in _flat_overrides(args.overrides, flags):
        preset = args.preset or DEFAULT_PRESET
        prepared = prepare_new(build_config(preset, _flat_overrides(args.overrides, flags)), preset)
    else:  # an env and no preset: the defaults of its family
        cfg, family = build_family_config(_flat_overrides(args.overrides, flags))
        print(describe(family), flush=True)
        prepared = prepare_new(cfg)
    print(f"run dir: {prepared.run_dir}", flush=True)
    summary = run_training(prepared)  # Ray starts only once the input is known to be good
    print(json.dumps(summary.result()))
    return 130 if summary.reason == "interrupted" else 0


def cmd_tune(args: argparse.Namespace) -> int:
    use_working_directory()
    spec = load_spec(args.spec, name=args.name, storage_path=args.storage_path, num_samples=args.num_samples)
    print(
        f"experiment: {os.path.join(spec.storage_path, spec.name)} ({spec.scheduler}, {spec.num_samples} "
        f"sample(s), metric {spec.metric} {spec.mode})",
        flush=True,
    )
    from ray_a3c.cluster.tune import best_trial, run_sweep  # Ray starts only once the spec is known to be good

    best = best_trial(run_sweep(spec), spec)
    print(
        f"best trial {best['trial']}: {best['config']}, best confirmed {best.get('best_eval_return')}, last "
        f"{spec.metric} {best.get(spec.metric)} at {best.get('env_steps')} env steps; run dir {best['run_dir']}"
    )
    print(json.dumps(best))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.run_dir)
    if args.policy:
        cfg.run.eval_policy = args.policy
    if args.env:
        cfg.env.id = args.env
        probe_spaces(cfg.env)  # the live env must exist and match the model's spaces
    if args.episodes < 1:
        raise A3CError("--episodes must be >= 1")
    if args.gif:
        _check_new_file(args.gif, ".gif", "--gif")
    if args.random and args.vs_random:
        raise A3CError("--random and --vs-random exclude each other")
    # torch (here and in the commands below): imported at the top, it would load before a local Ray starts
    from ray_a3c.actors.evaluator import STATISTICS, Evaluator
    from ray_a3c.common import checkpoint

    evaluator = Evaluator(cfg)
    if args.random:
        result = _report(evaluator, args, cfg, "uniform random policy", random_policy=True)
    else:
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
            baseline = _report(evaluator, args, cfg, "uniform random policy", random_policy=True)
            result.update(
                random_mean_return=baseline["mean_return"], difference=result["mean_return"] - baseline["mean_return"]
            )
            print(f"  trained - random: {result['difference']:+.2f}")
    evaluator.close()
    # the statistics but the per-episode lists and the mean length, then this command's own fields
    keys = [k for k in STATISTICS if k not in ("returns", "mean_length")]
    keys += ["seed", "random_mean_return", "difference"]
    result["seed"] = args.seed
    print(json.dumps({k: result[k] for k in keys if k in result}))
    return 0


def _check_new_file(path: str, suffix: str, flag: str, overwrite: bool = True) -> None:
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


def _report(evaluator, args: argparse.Namespace, cfg: Config, label: str, random_policy: bool) -> dict:
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
    from ray_a3c.actors.recorder import BehaviourPolicy, record_episodes  # torch: not before Ray (cmd_evaluate)
    from ray_a3c.common import checkpoint

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
    rng = np.random.default_rng(args.seed)
    if args.policy == "random":
        env_cfg, model, label = EnvConfig(id=args.env), None, "uniform random"
    else:
        run_cfg = load_run_config(args.policy)
        env_cfg = run_cfg.env
        env_cfg.id, env_cfg.dataset = args.env, None
        from ray_a3c.actors.evaluator import Evaluator  # torch: not before Ray (cmd_evaluate)

        evaluator = Evaluator(run_cfg)
        path, state = checkpoint.load_from_run(args.policy, checkpoint.BEST)
        evaluator.load_state_dict(state[CKPT_MODEL])
        model, label = (
            evaluator.model,
            f"{path}" + (f" epsilon-greedy {args.epsilon}" if args.epsilon is not None else " (sampled)"),
        )
    spaces = probe_spaces(env_cfg)
    if spaces.parts:  # refused before playing: save_dataset would refuse the episodes only once played
        raise A3CError(
            f"a dataset holds Box or Discrete observations; '{args.env}' gives a Dict "
            f"({', '.join(p.key for p in spaces.parts)})"
        )
    policy = BehaviourPolicy(spaces.action_space, model, args.epsilon, rng)
    data = record_episodes(env_cfg, policy, args.episodes, args.seed, on_episode=terminal_progress("recording"))
    returns = data.pop("returns")
    if args.format == "minari":
        where = save_minari(args.out, data, args.env, f"{args.episodes} episodes of {args.env} from {label}")
        print(f"Minari dataset {args.out} at {where}; train with env.dataset=minari:{args.out}")
    else:
        save_dataset(args.out, source=f"{args.env} {label}", **data)
    print(
        f"{args.out}: {args.episodes} episodes, {len(data['rewards']):,} steps from {label}; "
        f"behaviour log-probs {'stored' if 'behaviour_log_probs' in data else 'not stored'}"
    )
    print(
        json.dumps(
            {
                "mean_return": float(returns.mean()),
                "std_return": float(returns.std()),
                "episodes": int(len(returns)),
                "steps": int(len(data["rewards"])),
            }
        )
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    load_run_config(args.run_dir)
    try:  # the plot extra, checked before any work (cluster/plot.py imports it when it draws)
        import matplotlib  # noqa: F401
        import tensorboard  # noqa: F401
    except ImportError as exc:
        raise A3CError(f"a3c plot needs the plot extra: pip install 'ray-a3c[plot]' ({exc})") from None
    out = args.out or os.path.join(args.run_dir, "plots", "training.png")
    if not out.lower().endswith(".png"):
        raise A3CError(f"--out must name a .png file, got '{out}'")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    drawn = plot_run(args.run_dir, out)
    print(f"{out} ({len(drawn)} of 6 panels with data)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _check_new_file(args.out, "." + args.format, "--out", overwrite=False)
    from ray_a3c.common.policy import load_policy  # torch: not before Ray (cmd_evaluate)

    policy = load_policy(args.run_dir, args.checkpoint)
    policy.export(args.out, args.format)
    inputs = ", ".join(policy.graph.obs_keys + (["h", "c"] if policy.recurrent else []))  # a Dict: one per entry
    outputs = "action, h_out, c_out" if policy.recurrent else "action"
    print(f"{args.out}: {args.format} policy, inputs ({inputs}), outputs ({outputs}), batch dimension first")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Exit 0 when the replay ends at the run's weights bit for bit, 1 when it diverges (the line says where)."""
    from ray_a3c.learner.replay import replay_run  # torch: not before Ray (cmd_evaluate)

    outcome = replay_run(args.run_dir, args.updates, say=log.info)
    print(outcome.message, flush=True)
    return 0 if outcome.identical else 1


def cmd_config(args: argparse.Namespace) -> int:
    if args.reference:
        print(reference_table(), end="")
        return 0
    cfg = resolve_config(load_yaml(args.preset), args.overrides, source=args.preset)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def cmd_submit(args: argparse.Namespace, train_args: list[str]) -> int:
    from ray_a3c.cluster.submit import submit  # Ray's job client: only once the train arguments parse

    build_parser().parse_args(["train", *train_args])  # bad train arguments fail here, not on the cluster
    return submit(args.address, train_args, args.working_dir or os.getcwd(), args.pip, not args.no_follow)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if args.command == "submit":
            return cmd_submit(args, [a for a in extra if a != "--"])
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        with console(_log_level(args)):
            return _dispatch(args)
    except A3CError as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2


def error_line(exc: A3CError) -> str:
    """The message as one line: the user input or space it quotes may hold newlines of its own."""
    return " ".join(str(exc).split())


def _log_level(args: argparse.Namespace) -> int:
    """--log-level, else -q (warnings) or -v (debug), else info."""
    if getattr(args, "log_level", None):
        return LEVELS[args.log_level]
    if getattr(args, "quiet", False):
        return logging.WARNING
    return logging.DEBUG if getattr(args, "verbose", False) else logging.INFO


def _dispatch(args: argparse.Namespace) -> int:
    commands = {
        "train": cmd_train,
        "tune": cmd_tune,
        "evaluate": cmd_evaluate,
        "plot": cmd_plot,
        "record": cmd_record,
        "export": cmd_export,
        "replay": cmd_replay,
        "config": cmd_config,
    }
    return commands[args.command](args)


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
