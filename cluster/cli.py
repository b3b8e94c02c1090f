"""The `a3c` command: train, tune, evaluate, record, export, plot, replay, config, submit. Parsing and dispatch;
the command bodies are in commands.py and episode_commands.py."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from ray_a3c.cluster.subcommands.overrides import DEFAULT_PRESET, resolve_config
from ray_a3c.common.inference.export import EXPORT_FORMATS
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.reporting.logs import LEVELS, console
from ray_a3c.common.settings.config import preset_names

__all__ = ["build_parser", "console_main", "error_line", "main", "resolve_config"]  # resolve_config: users' import


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
    parents = [_logging_flags()]
    _add_train_parser(sub, parents)
    _add_tune_parser(sub, parents)
    _add_evaluate_parser(sub, parents)
    _add_record_parser(sub, parents)
    _add_submit_parser(sub)
    _add_plot_parser(sub, parents)
    _add_export_parser(sub, parents)
    _add_replay_parser(sub, parents)
    _add_config_parser(sub)
    return parser


def _logging_flags() -> argparse.ArgumentParser:
    """The flags of every command that logs, as a parent parser."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--log-level", choices=list(LEVELS), help="messages of the ray_a3c logger shown (default info: progress lines)"
    )
    flags.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    flags.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    return flags


def _add_overrides(parser: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """--set section.key=value ..., repeatable, into args.overrides."""
    parser.add_argument(
        "--set", dest="overrides", nargs="+", action="extend", default=[], metavar="K=V", help=help_text
    )


def _add_train_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("train", help="train a policy (local Ray by default)", parents=parents)
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
    _add_overrides(t, help_text="config override section.key=value (repeatable)")


def _add_tune_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    u = sub.add_parser(
        "tune", help="a Ray Tune sweep of runs (ASHA, PBT) from a spec YAML (examples/tune/)", parents=parents
    )
    u.add_argument("spec", help="the sweep spec: config, search, scheduler, num_samples, metric, stop, ...")
    u.add_argument("--name", help="the experiment's name (default: the config, scheduler and time)")
    u.add_argument("--storage-path", help="where experiments are written (default runs/tune)")
    u.add_argument("--num-samples", type=int, help="trials sampled from the search space")


def _add_evaluate_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("evaluate", help="evaluate a run's checkpoint (no Ray needed)", parents=parents)
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


def _add_record_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("record", help="record episodes from a live env into a dataset .npz", parents=parents)
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


def _add_submit_parser(sub) -> None:
    j = sub.add_parser("submit", help="run `a3c train [train args]` as a job on a Ray cluster (Jobs API)")
    j.add_argument("--address", required=True, help="the cluster's dashboard, e.g. http://HEAD:8265")
    j.add_argument(
        "--working-dir",
        help="directory shipped to the cluster, where the job runs: your env modules, "
        "datasets and YAML files (default: the current directory)",
    )
    j.add_argument("--pip", nargs="+", default=[], help="pip packages the job installs")
    j.add_argument("--no-follow", action="store_true", help="print the job id and return")


def _add_plot_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plot", help="six training panels from a run's TensorBoard data, as a PNG", parents=parents)
    p.add_argument("run_dir")
    p.add_argument("--out", help="PNG path (default RUN_DIR/plots/training.png)")


def _add_export_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    x = sub.add_parser(
        "export", help="write a run's policy as a self-contained ONNX or torch.export file", parents=parents
    )
    x.add_argument("run_dir")
    x.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="onnx (onnxruntime) | pt2 (torch)")
    x.add_argument("--out", required=True, help="the file to write (never overwritten)")
    x.add_argument("--checkpoint", default="best", help="latest | best | PATH (default best, else latest)")


def _add_replay_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    y = sub.add_parser(
        "replay",
        help="recompute an async run in one process from its update log; check it ends at the same weights",
        parents=parents,
    )
    y.add_argument("run_dir")
    y.add_argument("--updates", type=int, help="replay only the first N updates (default: all)")


def _add_config_parser(sub) -> None:
    c = sub.add_parser("config", help="print a resolved config, or the reference of every key")
    c.add_argument("preset", nargs="?", default=DEFAULT_PRESET)
    _add_overrides(c)
    c.add_argument("--reference", action="store_true", help="print every key, its default and its meaning")


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if args.command == "submit":
            train_args = [a for a in extra if a != "--"]
            parser.parse_args(["train", *train_args])  # bad train arguments fail here, not on the cluster
            return _command(args.command)(args, train_args)
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
    return _command(args.command)(args)


def _command(name: str) -> Callable[..., int]:
    """The body of the command `name`. Its modules load here, once the arguments parsed: `a3c --help` and usage
    errors skip them and what they import (gymnasium, numpy: ~0.1 s of the ~0.3 s start)."""
    from ray_a3c.cluster.subcommands import commands, episode_commands

    return {
        "train": commands.cmd_train,
        "tune": commands.cmd_tune,
        "evaluate": episode_commands.cmd_evaluate,
        "plot": commands.cmd_plot,
        "record": episode_commands.cmd_record,
        "export": commands.cmd_export,
        "replay": commands.cmd_replay,
        "config": commands.cmd_config,
        "submit": commands.cmd_submit,
    }[name]


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
