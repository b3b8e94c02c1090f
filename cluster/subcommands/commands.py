"""The bodies of `a3c train`, `tune`, `submit`, `config`, `plot`, `export` and `replay` (evaluate and record are in
episode_commands.py): each takes the parsed arguments and returns the exit code. Ray starts only inside
`launch.run_training`, `run_sweep` and `submit`, once the input is known to be good; torch loads after Ray."""

from __future__ import annotations

import argparse
import json
import os

import yaml

from ray_a3c.cluster.run import launch  # by module: `launch.run_training` is looked up per call (tests replace it)
from ray_a3c.cluster.subcommands.episode_commands import check_new_file
from ray_a3c.cluster.subcommands.overrides import DEFAULT_PRESET, FLAG_KEYS, flat_overrides, resolve_config
from ray_a3c.cluster.subcommands.plot import plot_run
from ray_a3c.cluster.sweeps.tune_spec import load_spec
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.reporting.logs import log
from ray_a3c.common.settings.config import load_run_config, load_yaml
from ray_a3c.common.settings.config_reference import reference_table
from ray_a3c.common.settings.families import describe


def cmd_train(args: argparse.Namespace) -> int:
    launch.use_working_directory()
    if args.resume and args.preset:
        print(f"note: resuming uses the run dir's config.yaml; the preset '{args.preset}' is ignored")
    overrides = flat_overrides(args.overrides, {k: getattr(args, k) for k in FLAG_KEYS})
    if args.resume:
        prepared = launch.prepare_resume(args.run_dir, overrides)
    elif args.preset or "env.id" not in overrides:
        preset = args.preset or DEFAULT_PRESET
        prepared = launch.prepare_new(launch.build_config(preset, overrides), preset)
    else:  # an env and no preset: the defaults of its family
        cfg, family = launch.build_family_config(overrides)
        print(describe(family), flush=True)
        prepared = launch.prepare_new(cfg)
    print(f"run dir: {prepared.run_dir}", flush=True)
    summary = launch.run_training(prepared)  # Ray starts only once the input is known to be good
    print(json.dumps(summary.result()))
    return 130 if summary.reason == "interrupted" else 0


def cmd_tune(args: argparse.Namespace) -> int:
    launch.use_working_directory()
    spec = load_spec(args.spec, name=args.name, storage_path=args.storage_path, num_samples=args.num_samples)
    print(
        f"experiment: {os.path.join(spec.storage_path, spec.name)} ({spec.scheduler}, {spec.num_samples} "
        f"sample(s), metric {spec.metric} {spec.mode})",
        flush=True,
    )
    # imported here: the module imports Ray, which a refused spec (above) must never load
    from ray_a3c.cluster.sweeps.tune import best_trial, run_sweep

    best = best_trial(run_sweep(spec), spec)  # Ray starts only once the spec is known to be good
    print(
        f"best trial {best['trial']}: {best['config']}, best confirmed {best.get('best_eval_return')}, last "
        f"{spec.metric} {best.get(spec.metric)} at {best.get('env_steps')} env steps; run dir {best['run_dir']}"
    )
    print(json.dumps(best))
    return 0


def cmd_submit(args: argparse.Namespace, train_args: list[str]) -> int:
    """`train_args` have been parsed as `a3c train` arguments already: bad ones fail here, not on the cluster."""
    from ray_a3c.cluster.subcommands.submit import submit  # imports Ray's job client: only once a job is sent

    return submit(args.address, train_args, args.working_dir or os.getcwd(), args.pip, not args.no_follow)


def cmd_config(args: argparse.Namespace) -> int:
    if args.reference:
        print(reference_table(), end="")
        return 0
    cfg = resolve_config(load_yaml(args.preset), args.overrides, source=args.preset)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    load_run_config(args.run_dir)
    try:  # the `plot` extra, optional: checked here, imported by plot_run
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
    check_new_file(args.out, "." + args.format, "--out", overwrite=False)
    from ray_a3c.common.inference.policy import load_policy  # torch: only once the output file is known to be good

    policy = load_policy(args.run_dir, args.checkpoint)
    policy.export(args.out, args.format)
    inputs = ", ".join(policy.graph.obs_keys + (["h", "c"] if policy.recurrent else []))  # a Dict: one per entry
    outputs = "action, h_out, c_out" if policy.recurrent else "action"
    print(f"{args.out}: {args.format} policy, inputs ({inputs}), outputs ({outputs}), batch dimension first")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Exit 0 when the replay ends at the run's weights bit for bit, 1 when it diverges (the line says where)."""
    from ray_a3c.learner.replay import replay_run  # torch: the parser and bad input stay fast without it

    outcome = replay_run(args.run_dir, args.updates, say=log.info)
    print(outcome.message, flush=True)
    return 0 if outcome.identical else 1
