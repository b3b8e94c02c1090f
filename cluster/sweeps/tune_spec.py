"""A Tune sweep's spec (`a3c tune SPEC.yaml`, `ray_a3c.tune`), checked whole before Ray starts: no Ray import
here. cluster/sweeps/tune.py runs it."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ray_a3c.cluster.run.launch import RESUMABLE_ALGO_KEYS, _check_writable_dir, build_config, resume_refuses
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config, from_dict, from_flat, load_yaml, preset_names

SPEC_KEYS = (
    "config",
    "search",
    "scheduler",
    "num_samples",
    "max_concurrent_trials",
    "metric",
    "mode",
    "stop",
    "storage_path",
    "name",
    "seed",
    "keep_checkpoints",
)
DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint", "grid")
SCHEDULER_OPTIONS = {
    "fifo": (),
    "asha": ("grace_period", "reduction_factor", "brackets"),
    "pbt": (
        "perturbation_interval",
        "hyperparam_mutations",
        "quantile_fraction",
        "resample_probability",
        "burn_in_period",
        "synch",
    ),
}
STOP_KEYS = {"env_steps": "run.total_env_steps", "time_limit_s": "run.time_limit_s"}
# what a trial may be scheduled on (present in every report): the last screening's mean (run.eval_episodes
# episodes of the newest weights), or the best confirmed mean (run.confirm_episodes episodes: best.pt's)
METRICS = ("eval_return_mean", "best_eval_return")
TIME_ATTR = "env_steps"  # ASHA's and PBT's clock: the PS's env-step count
CKPT_FILE = "checkpoint.pt"  # a Tune checkpoint: a directory of the PS's state as common/storage/checkpoint writes it


@dataclass
class TuneSpec:
    base: dict  # the validated config, with the spec's fixed values and stop, as {section: {key: value}}
    search: dict = field(default_factory=dict)  # "section.key" -> (distribution, arguments)
    scheduler: str = "fifo"
    options: dict = field(default_factory=dict)  # the scheduler's, hyperparam_mutations parsed like `search`
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    metric: str = METRICS[0]
    mode: str = "max"
    storage_path: str = ""
    name: str = ""
    seed: int | None = None
    keep_checkpoints: int = 4


def load_spec(source: str | dict, **overrides: Any) -> TuneSpec:
    """A sweep spec from a YAML path or a mapping, then `overrides` of its top-level keys; checked whole
    (A3CError on the first problem) without importing Ray."""
    if isinstance(source, str):
        if not os.path.isfile(source):
            raise A3CError(f"tune spec '{source}' does not exist")
        data = load_yaml(source)
    elif isinstance(source, dict):
        data = dict(source)
    else:
        raise A3CError(f"a tune spec is a YAML path or a mapping, got {type(source).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise A3CError(f"unknown key '{unknown[0]}' in the tune spec; keys are {', '.join(SPEC_KEYS)}")
    if "config" not in data:
        raise A3CError(
            f"the tune spec needs `config`: a preset ({', '.join(preset_names())}), a YAML path or a "
            "{section: {key: value}} mapping"
        )
    search_in = _mapping(data.get("search", {}), "search")
    fixed = {k: v for k, v in search_in.items() if _distribution(k, v) is None}
    search = {k: _distribution(k, v) for k, v in search_in.items() if k not in fixed}
    stop = _mapping(data.get("stop", {}), "stop")
    for key in stop:
        if key not in STOP_KEYS:
            raise A3CError(f"unknown stop '{key}'; a sweep stops at {', '.join(STOP_KEYS)} (per trial)")
    base_cfg = build_config(data["config"], {**fixed, **{STOP_KEYS[k]: v for k, v in stop.items()}})
    _check_run(base_cfg)
    for key, dist in search.items():
        _check_values(base_cfg, key, dist, f"search.{key}")
    spec = TuneSpec(base=base_cfg.to_dict(), search=search)
    spec.scheduler, spec.options = _scheduler(data.get("scheduler"), base_cfg, search)
    spec.num_samples = _int(data.get("num_samples", 1), "num_samples", 1)
    if data.get("max_concurrent_trials") is not None:
        spec.max_concurrent_trials = _int(data["max_concurrent_trials"], "max_concurrent_trials", 1)
    spec.keep_checkpoints = _int(
        data.get("keep_checkpoints", 4), "keep_checkpoints", 1 if spec.scheduler != "pbt" else 3
    )
    if data.get("seed") is not None:
        spec.seed = _int(data["seed"], "seed", 0)
    spec.metric = str(data.get("metric", METRICS[0]))
    if spec.metric not in METRICS:
        raise A3CError(f"metric '{spec.metric}' is not reported; one of {', '.join(METRICS)}")
    spec.mode = str(data.get("mode", "max"))
    if spec.mode not in ("max", "min"):
        raise A3CError(f"mode must be max or min, got '{spec.mode}'")
    spec.name = str(data.get("name") or _default_name(data["config"], base_cfg, spec.scheduler))
    if not spec.name or os.sep in spec.name or spec.name.startswith("."):
        raise A3CError(f"name '{spec.name}' must be a plain directory name")
    spec.storage_path = os.path.abspath(str(data.get("storage_path") or os.path.join("runs", "tune")))
    _check_storage(spec)
    return spec


def _mapping(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise A3CError(f"`{what}` must be a mapping, got {type(value).__name__}")
    return value


def _int(value: Any, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise A3CError(f"{what} must be an integer >= {low}, got {value!r}")
    return value


def _distribution(key: str, value: Any) -> tuple[str, Any] | None:
    """(name, arguments) for `{loguniform: [low, high]}` and the like; None for a fixed value."""
    if not (isinstance(value, dict) and len(value) == 1):
        return None
    ((name, args),) = value.items()
    if name not in DISTRIBUTIONS:
        section, _, attr = key.partition(".")
        if isinstance(getattr(getattr(Config(), section, None), attr, None), dict):
            return None  # a mapping-valued key (env.kwargs): a fixed value
        raise A3CError(f"{key}: unknown distribution '{name}'; use {', '.join(DISTRIBUTIONS)} or a fixed value")
    if name in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise A3CError(f"{key}: {name} takes a non-empty list of values, got {args!r}")
        return name, list(args)
    bounds = args if isinstance(args, list) and len(args) == 2 else None
    numeric = bounds and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
    if not numeric or not math.isfinite(bounds[0]) or not math.isfinite(bounds[1]) or bounds[0] >= bounds[1]:
        raise A3CError(f"{key}: {name} takes [low, high] with low < high, got {args!r}")
    if name == "loguniform" and bounds[0] <= 0:
        raise A3CError(f"{key}: loguniform needs low > 0, got {args!r}")
    if name == "randint" and not all(isinstance(b, int) for b in bounds):
        raise A3CError(f"{key}: randint takes integers [low, high) (high excluded), got {args!r}")
    return name, list(bounds)


def _check_values(base: Config, key: str, dist: tuple[str, Any], where: str) -> None:
    """Every value the distribution can give must be a valid config value: its bounds, each choice."""
    name, args = dist
    values = args if name in ("choice", "grid") else [args[0], args[1] - 1 if name == "randint" else args[1]]
    for value in values:
        try:
            build_config(base, {key: value})
        except A3CError as exc:
            raise A3CError(f"{where}: {exc}") from None


def _check_run(cfg: Config) -> None:
    c = cfg.cluster
    if not cfg.run.num_workers:
        raise A3CError("a trial's resources are reserved before it starts: set run.num_workers (not auto)")
    if not cfg.run.evaluate:
        raise A3CError("trials are scored by their evaluations: run.evaluate must be true")
    if min(c.ps_num_cpus, c.worker_num_cpus, c.eval_num_cpus) <= 0:
        raise A3CError(
            "each of a trial's actors has a bundle of its own: cluster.ps_num_cpus, worker_num_cpus "
            "and eval_num_cpus must be > 0"
        )


def _scheduler(value: Any, base: Config, search: dict) -> tuple[str, dict]:
    """`asha`, `pbt`, `fifo` or a mapping {type: asha|pbt|fifo, option: value, ...}."""
    if value is None or isinstance(value, str):
        value = {"type": value or "fifo"}
    value = dict(_mapping(value, "scheduler"))
    kind = value.pop("type", None)
    if kind not in SCHEDULER_OPTIONS:
        raise A3CError(f"scheduler type must be one of {', '.join(SCHEDULER_OPTIONS)}, got {kind!r}")
    for key in value:
        if key not in SCHEDULER_OPTIONS[kind]:
            raise A3CError(f"unknown {kind} option '{key}'; options are {', '.join(SCHEDULER_OPTIONS[kind]) or 'none'}")
    budget = base.run.total_env_steps
    for key in ("grace_period", "perturbation_interval", "burn_in_period", "brackets"):
        if key in value:
            _int(value[key], f"scheduler.{key}", 0 if key == "burn_in_period" else 1)
    if kind == "asha":
        value.setdefault("grace_period", max(1, budget // 8))
        value.setdefault("reduction_factor", 2)
        if not isinstance(value["reduction_factor"], (int, float)) or value["reduction_factor"] <= 1:
            raise A3CError(f"scheduler.reduction_factor must be > 1, got {value['reduction_factor']!r}")
    if kind == "pbt":
        if "perturbation_interval" not in value:
            raise A3CError("pbt needs perturbation_interval (env steps between exploit/explore steps)")
        mutations = _mapping(value.get("hyperparam_mutations"), "scheduler.hyperparam_mutations")
        if not mutations:
            raise A3CError("pbt needs hyperparam_mutations: {algo.key: {loguniform: [low, high]} | [values]}")
        parsed = {}
        for key, spec in mutations.items():
            section, _, name = key.partition(".")
            if section != "algo" or name not in RESUMABLE_ALGO_KEYS:
                raise A3CError(
                    f"pbt cannot mutate '{key}': a restored trial may change only "
                    + ", ".join(f"algo.{k}" for k in sorted(RESUMABLE_ALGO_KEYS))
                )
            parsed[key] = _distribution(key, {"choice": spec} if isinstance(spec, list) else spec)
            if parsed[key] is None or parsed[key][0] == "grid":
                raise A3CError(f"scheduler.hyperparam_mutations.{key}: a distribution or a list of values")
            _check_values(base, key, parsed[key], f"scheduler.hyperparam_mutations.{key}")
        value["hyperparam_mutations"] = parsed
        fixed = [k for k in search if resume_refuses(k)]
        if fixed:
            raise A3CError(
                f"pbt trials take each other's checkpoints, so they cannot differ in {fixed[0]}: search "
                "only keys a resume may change"
            )
        for key in ("quantile_fraction", "resample_probability"):
            if key in value and not (isinstance(value[key], (int, float)) and 0 <= value[key] <= 1):
                raise A3CError(f"scheduler.{key} must be in [0, 1], got {value[key]!r}")
    return kind, value


def _default_name(source: Any, cfg: Config, scheduler: str) -> str:
    base = source if isinstance(source, str) and source in preset_names() else cfg.env.id.split(":")[-1]
    base = os.path.basename(base.replace("/", "_")).removesuffix(".yaml")
    return f"{base}-{scheduler}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_storage(spec: TuneSpec) -> None:
    experiment = os.path.join(spec.storage_path, spec.name)
    _check_writable_dir(experiment)
    if os.path.isdir(experiment) and os.listdir(experiment):
        raise A3CError(f"'{experiment}' already exists; choose another name or storage_path")


def trial_config(base: dict, params: dict) -> Config:
    """A trial's config: the spec's base with the trial's sampled values (unchecked: cheap, for its bundles)."""
    return from_flat(dict(params), from_dict(base))
