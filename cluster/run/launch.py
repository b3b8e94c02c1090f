"""Preparing a run before Ray starts, shared by the CLI and the Python API: the config resolved and checked,
the run dir claimed, a resume checked against the checkpoint it continues. Nothing is written until every
check has passed."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import yaml

from ray_a3c.common.data.minari_io import is_minari
from ray_a3c.common.data.minari_io import resolve as resolve_minari
from ray_a3c.common.env.envs import EnvSpaces, probe_spaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import (
    Config,
    from_dict,
    from_flat,
    from_saved,
    load_yaml,
    preset_names,
    save_yaml,
    validate,
)
from ray_a3c.common.settings.families import Family, choose_family, family_source
from ray_a3c.common.storage.keys import CKPT_CONFIG_YAML, CKPT_COUNTERS

# Keys a resume may change: budgets, clocks, logging, optimiser settings. Anything else (the env, the model,
# the mode, the seed, the cluster's shape) would not fit the checkpoint or would silently mix two runs.
RESUMABLE_SECTIONS = {"run", "cluster", "learner"}
RESUMABLE_ALGO_KEYS = {
    "learning_rate",
    "critic_learning_rate",
    "adam_eps",
    "entropy_coef",
    "value_coef",
    "max_grad_norm",
    "max_policy_lag",
    "is_clip",
}
FIXED_RUN_KEYS = {"seed"}
RESUME_LOG = "resume.log"


@dataclass
class PreparedRun:
    config: Config
    spaces: EnvSpaces
    run_dir: str
    resume_state: dict | None = None


def run_training(prepared: PreparedRun, quiet: bool = False, on_eval: Callable[[dict, str], None] | None = None):
    """Start (or join) Ray and train; returns the driver's RunSummary. `on_eval` is the driver's hook (called with
    each decided evaluation and the checkpoint written for it: cluster/sweeps/tune.py reports them to Ray Tune)."""
    from ray_a3c.cluster.run.runtime import start_ray  # Ray loads only once the input is known to be good

    # A local Ray first, torch after: the driver's own torch import then overlaps the prestarted workers' start
    # instead of delaying Ray's start by ~2 s. Joining a cluster (a job's driver included), torch loads first:
    # loaded after ray.init had connected, it failed in a Ray job ("oneMKL: Cannot load libtorch_cpu.so").
    if prepared.config.cluster.join_address():
        import torch  # noqa: F401
    ray_start = start_ray(prepared.config)
    from ray_a3c.cluster.run.driver import Trainer  # torch, with the driver: after a local Ray's start (above)

    return Trainer(
        prepared.config,
        prepared.spaces,
        prepared.run_dir,
        resume_state=prepared.resume_state,
        quiet=quiet,
        on_eval=on_eval,
    ).train(ray_start)


def use_working_directory() -> None:
    """Modules named in `env.id` are found where the user runs the command. Appended, not prepended: a
    folder there that happens to share an installed package's name must not shadow it."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)


def resolve_paths(cfg: Config) -> Config:
    """Relative file paths in the config -> absolute ones, so actors whose working directory differs (Ray
    workers start in their own) read the same files."""
    if is_minari(cfg.env.dataset):
        cfg.env.dataset = resolve_minari(cfg.env.dataset)
    elif cfg.env.dataset:
        cfg.env.dataset = os.path.abspath(cfg.env.dataset)
    if cfg.env.id.endswith(".cfg") and cfg.env.id.startswith("vizdoom:"):
        path = cfg.env.id.removeprefix("vizdoom:")
        if os.path.exists(path):
            cfg.env.id = "vizdoom:" + os.path.abspath(path)
    return cfg


def build_config(source: Any, overrides: dict | None = None) -> Config:
    """A preset name, a YAML path, a {section: {key: value}} mapping or a Config, then {"section.key": value}
    overrides; validated."""
    if isinstance(source, Config):
        cfg = from_dict(source.to_dict(), source="config")
    elif isinstance(source, dict):
        cfg = from_dict(source, source="config")
    elif isinstance(source, str):
        cfg = from_dict(load_yaml(source), source=source)
    else:
        raise A3CError(f"config must be a preset name, a YAML path, a mapping or a Config, got {type(source).__name__}")
    return resolve_paths(validate(from_flat(dict(overrides or {}), cfg)))


def build_family_config(overrides: dict) -> tuple[Config, Family]:
    """No preset named, an env given: the defaults of the env's family (common/settings/families.py), then `overrides`;
    validated. The env is built once, before any file or process, to read its spaces."""
    probe = build_config(yaml.safe_load(family_source(Family.CLASSIC)), overrides)
    family = choose_family(probe.env)
    if family is Family.CLASSIC:
        return probe, family
    overrides = dict(overrides)
    if family is Family.CONTINUOUS and "env.rescale_actions" not in overrides:
        space = probe_spaces(probe.env).action_space
        overrides["env.rescale_actions"] = bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))
    return build_config(yaml.safe_load(family_source(family)), overrides), family


def _new_run_dir(cfg: Config, preset: str | None) -> str:
    name = preset if preset and preset in preset_names() else cfg.env.id.split(":")[-1].replace("/", "_")
    name = os.path.basename(name).removesuffix(".yaml").removesuffix(".cfg")
    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def _check_writable_dir(run_dir: str) -> None:
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise A3CError(f"run dir '{run_dir}' exists and is not a directory")
    parent = os.path.dirname(os.path.abspath(run_dir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    target = run_dir if os.path.isdir(run_dir) else parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise A3CError(f"run dir '{run_dir}' is not writable (no write permission on '{target}')")


LOCAL_CPU_OVERCOMMIT = 4  # a local Ray may reserve at most this many logical CPUs per core


def check_local_size(cfg: Config) -> None:
    """A local Ray is sized from the config: 1,000 workers would start 1,000 processes on this machine."""
    already_running = "ray" in sys.modules and sys.modules["ray"].is_initialized()  # a notebook's, a test's
    if cfg.cluster.join_address() or already_running:
        return
    from ray_a3c.cluster.run.runtime import required_cpus  # Ray loads only once the input is known to be good

    cores = os.cpu_count() or 1
    if required_cpus(cfg) > LOCAL_CPU_OVERCOMMIT * cores:
        raise A3CError(
            f"{cfg.run.num_workers} workers need {required_cpus(cfg):g} CPUs: more than a local Ray on "
            f"this {cores}-core machine should start ({LOCAL_CPU_OVERCOMMIT * cores}); use fewer workers "
            "or a cluster (--address)"
        )


def model_spaces(cfg: Config) -> EnvSpaces:
    """The env's spaces, once the model's options are known to fit them."""
    spaces = probe_spaces(cfg.env)
    if cfg.model.gsde and not isinstance(spaces.action_space, gym.spaces.Box):
        raise A3CError(f"model.gsde needs continuous (Box) actions; '{cfg.env.id}' has {spaces.action_space}")
    if cfg.model.normalize_obs and spaces.has_images:
        raise A3CError(
            f"model.normalize_obs applies to vector observations; '{cfg.env.id}' gives images (the CNN "
            "scales them): set model.normalize_obs=false"
        )
    from ray_a3c.common.algo.models import conv_plan  # torch: only once the cheap checks passed

    for shape in [spaces.image_shape, *(p.image_shape for p in spaces.parts)]:
        if shape is not None:
            conv_plan(cfg.model.cnn_layout, shape[1], shape[2], cfg.model.conv_channels)  # refuses a small frame
    return spaces


def prepare_new(cfg: Config, preset: str | None = None) -> PreparedRun:
    check_local_size(cfg)
    spaces = model_spaces(cfg)
    run_dir = cfg.run.run_dir or _new_run_dir(cfg, preset)
    _check_writable_dir(run_dir)
    if os.path.isdir(run_dir) and os.listdir(run_dir):
        raise A3CError(f"run dir '{run_dir}' already exists; pass --resume to continue it, or another --run-dir")
    cfg.run.run_dir = run_dir
    os.makedirs(run_dir, exist_ok=True)
    save_yaml(cfg, os.path.join(run_dir, "config.yaml"))
    return PreparedRun(cfg, spaces, run_dir)


def config_changes(old: Config, new: Config) -> dict[str, tuple]:
    """{"section.key": (old, new)} for every key that differs."""
    a, b = old.to_dict(), new.to_dict()
    return {f"{s}.{k}": (a[s][k], b[s][k]) for s in a for k in a[s] if a[s][k] != b[s][k]}


def resume_refuses(key: str) -> bool:
    """Whether a resume (or a Tune trial restored from another's checkpoint) refuses a change of "section.key"."""
    section, _, name = key.partition(".")
    if section == "algo":
        return name not in RESUMABLE_ALGO_KEYS
    if section == "run":
        return name in FIXED_RUN_KEYS
    return section not in RESUMABLE_SECTIONS


def prepare_resume(run_dir: str, overrides: dict) -> PreparedRun:
    """Continue `run_dir` from its newest checkpoint with `overrides`; refuses changes that do not fit the
    checkpoint (env, model, mode, seed). config.yaml is rewritten, atomically, only once all checks pass, and
    every accepted change is appended to RUN_DIR/resume.log."""
    if not run_dir:
        raise A3CError("--resume needs --run-dir DIR of the run to continue")
    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(config_path):
        raise A3CError(f"cannot resume: '{config_path}' does not exist")
    stored = validate(from_saved(load_yaml(config_path), source=config_path))
    from ray_a3c.common.storage import checkpoint  # torch: only a resume needs it before Ray starts

    _, state = checkpoint.load_from_run(run_dir, checkpoint.LATEST)  # an unreadable newest one is skipped
    cfg = resolve_paths(validate(from_flat({**overrides, "run.run_dir": run_dir}, stored)))
    check_resume_fits(state, cfg, stored)
    check_local_size(cfg)
    spaces = model_spaces(cfg)
    accepted = config_changes(stored, cfg)
    if accepted:
        with open(os.path.join(run_dir, RESUME_LOG), "a") as fh:
            fh.write(
                f"{time.strftime('%Y-%m-%dT%H:%M:%S')} resume at version {state[CKPT_COUNTERS].get('version')}: "
                + "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in sorted(accepted.items()))
                + "\n"
            )
        save_yaml(cfg, config_path)
    return PreparedRun(cfg, spaces, run_dir, state)


def check_resume_fits(state: dict, cfg: Config, fallback: Config) -> dict[str, tuple]:
    """Refuses (A3CError) a config that does not fit the checkpoint state it would continue (env, model, mode,
    seed); returns the accepted changes {"section.key": (trained, new)}. `fallback`: the config to compare with
    when the checkpoint holds none. Shared by `--resume` and a Tune trial restored from a checkpoint."""
    trained = resolve_paths(_checkpoint_config(state, fallback))
    changes = config_changes(trained, cfg)
    refused = sorted(k for k in changes if resume_refuses(k) and k != "run.run_dir")
    if refused:
        raise A3CError(
            "cannot resume with a changed "
            + ", ".join(f"{k} ({changes[k][0]!r} -> {changes[k][1]!r})" for k in refused)
            + ": it does not fit the checkpoint; start a new run instead"
        )
    return {k: v for k, v in changes.items() if k != "run.run_dir"}


def _checkpoint_config(state: dict, fallback: Config) -> Config:
    """The config the checkpoint was trained with (stored in it by the PS), else the run dir's."""
    text = state.get(CKPT_CONFIG_YAML)
    if not isinstance(text, str):
        return fallback
    try:
        return from_saved(yaml.safe_load(text), source="the checkpoint's config")
    except (yaml.YAMLError, A3CError):
        return fallback
