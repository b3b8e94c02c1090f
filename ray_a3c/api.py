"""The Python API: the same runs as the `a3c` command, from code.

`import ray_a3c` runs this module, and every `ray_a3c.*` import (a worker's, the CLI's) imports `ray_a3c`
first: so the functions import cluster/ and torch where they are called, never here at the top."""

from __future__ import annotations

from typing import Any

from ray_a3c.common.reporting.logs import console, has_destination
from ray_a3c.common.settings.config import Config, parse_override

ConfigSource = str | dict | Config


def _flat_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """`run__seed=1` or `**{"run.seed": 1}` -> {"run.seed": 1}."""
    return {key.replace("__", ".", 1) if "." not in key else key: value for key, value in overrides.items()}


def make_config(config: ConfigSource = "cartpole", **overrides: Any) -> Config:
    """A validated Config from a preset name, a YAML path, a mapping or a Config, plus overrides
    (`section__key=value` or `**{"section.key": value}`; a list of "section.key=value" strings also works
    as `overrides=[...]`). The source is never changed."""
    from ray_a3c.cluster.run.launch import build_config  # cluster/: where called (the module's docstring)

    texts = overrides.pop("overrides", [])
    return build_config(config, {**dict(parse_override(t) for t in texts), **_flat_overrides(overrides)})


def train(
    config: ConfigSource = "cartpole",
    *,
    run_dir: str | None = None,
    resume: bool = False,
    quiet: bool = False,
    **overrides: Any,
):
    """Train one run and return its `RunSummary` (`.result()` gives the CLI's JSON fields).

    `config` is a preset name, a YAML path, a {section: {key: value}} mapping or a `Config`; overrides are
    `section__key=value` (or `**{"section.key": value}`). With `resume=True`, `run_dir`'s run continues from
    its newest checkpoint and `config` is ignored. Uses an already initialised Ray (a notebook's, a test's)
    and leaves it running; otherwise starts a local one (or joins `cluster.address`) and stops it after.
    Bad input raises `ray_a3c.A3CError` before anything is written or started.
    """
    # cluster/: where called (the module's docstring)
    from ray_a3c.cluster.run.launch import (
        build_config,
        prepare_new,
        prepare_resume,
        run_training,
        use_working_directory,
    )

    use_working_directory()
    flat = _flat_overrides(overrides)
    if run_dir is not None:
        flat["run.run_dir"] = run_dir
    if resume:
        prepared = prepare_resume(run_dir or "", flat)
    else:
        preset = config if isinstance(config, str) else None
        prepared = prepare_new(build_config(config, flat), preset)
    if quiet or has_destination():
        return run_training(prepared, quiet)
    with console():  # nothing routes the ray_a3c logger: show progress on stdout, as the CLI does
        return run_training(prepared, quiet)


def tune(spec: str | dict, *, quiet: bool = False, **spec_overrides: Any):
    """A Ray Tune sweep of runs, as `a3c tune SPEC.yaml`; returns Tune's `ResultGrid`.

    `spec` is a YAML path or a mapping: `config` (a preset name, a YAML path or a {section: {key: value}}
    mapping), `search` ({"section.key": {loguniform | uniform | randint: [low, high]} | {choice | grid: [...]} |
    a fixed value}), `scheduler` (asha, pbt or fifo, with options), `num_samples`, `max_concurrent_trials`,
    `metric` (default eval_return_mean, `mode` max), `stop` ({env_steps: N}), `storage_path`, `name`, `seed`;
    `spec_overrides` replace top-level keys. Checked before Ray starts (bad input raises `A3CError`); reuses an
    initialised Ray and leaves it running. Each trial is one run with PS, workers and evaluator reserved as one
    placement group, reporting each evaluation with a checkpoint; see docs/design.md#tune-a-sweep-of-runs.
    """
    from ray_a3c.cluster.run.launch import use_working_directory  # cluster/: where called (the module's docstring)
    from ray_a3c.cluster.sweeps.tune import run_sweep
    from ray_a3c.cluster.sweeps.tune_spec import load_spec

    use_working_directory()
    return run_sweep(load_spec(spec, **spec_overrides), quiet)


def load_policy(run_dir: str, checkpoint: str = "best"):
    """The run's policy (`best`, `latest` or a checkpoint path) as an object with
    `act(obs, state=None) -> (action, state)`; runs in this process, without Ray."""
    from ray_a3c.common.inference.policy import load_policy as _load  # torch: where called (the module's docstring)

    return _load(run_dir, checkpoint)
