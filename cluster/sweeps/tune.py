"""Ray Tune over ray-a3c runs (`a3c tune SPEC.yaml`, `ray_a3c.tune`): the only module that imports Ray Tune.
Each trial is one run (the driver's Trainer, as `a3c train`) whose PS, workers and evaluator are one placement
group; the driver's on_eval hook reports every decided evaluation with a checkpoint, and a trial restored from a
checkpoint (PBT's exploit, a paused trial) continues it through the resume path. The spec: cluster/sweeps/tune_spec.py.
Ray Tune is the `tune` extra: each function imports it where it is used, so this module loads without it."""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import shutil
import time
from typing import Any

import ray

from ray_a3c.cluster.run.launch import (
    LOCAL_CPU_OVERCOMMIT,
    RESUME_LOG,
    build_config,
    check_resume_fits,
    prepare_new,
    run_training,
)
from ray_a3c.cluster.run.reservation import run_bundles
from ray_a3c.cluster.run.runtime import local_init_options, required_cpus, start_ray
from ray_a3c.cluster.sweeps.tune_spec import CKPT_FILE, TIME_ATTR, TuneSpec, trial_config
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import from_dict
from ray_a3c.common.storage.keys import CKPT_MODEL

METRICS_FILE = "metrics.json"
REASONS = {"env_steps": "step budget spent", "time_limit": "time limit reached"}


# -- the sweep ------------------------------------------------------------------------------------------------
def run_sweep(spec: TuneSpec, quiet: bool = False):
    """Start (or reuse, or join) Ray, run the sweep, return Tune's ResultGrid."""
    # Tune warns each time reports with checkpoints outpace its experiment snapshots; a trial checkpoints at
    # every evaluation, which is how PBT gets the newest state to clone
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune  # the tune extra; imported after the setting above, which it reads

    base = from_dict(spec.base)
    started = False
    if not ray.is_initialized():
        if base.cluster.join_address():
            started = start_ray(base)[0]
        else:
            wanted = math.ceil(required_cpus(base) * (spec.max_concurrent_trials or 1))  # the trials at once
            cores = os.cpu_count() or 1
            cpus = base.cluster.num_cpus or max(cores, min(wanted, LOCAL_CPU_OVERCOMMIT * cores))
            ray.init(**{**local_init_options(base), "num_cpus": cpus}, log_to_driver=False)  # trials are quiet
            started = True
    try:
        per_trial = required_cpus(base)
        if ray.cluster_resources().get("CPU", 0.0) < per_trial:
            raise A3CError(
                f"a trial needs {per_trial:g} CPUs (PS, {base.run.num_workers} worker(s), evaluator); "
                f"the cluster has {ray.cluster_resources().get('CPU', 0.0):g}"
            )
        strategy = "SPREAD" if base.cluster.placement == "spread" else "PACK"

        def resources(params: dict) -> tune.PlacementGroupFactory:  # an empty head: the trial's driver takes none
            return tune.PlacementGroupFactory([{}] + run_bundles(trial_config(spec.base, params)), strategy=strategy)

        trainable = tune.with_resources(a3c_trial_fn(spec.base, os.path.join(spec.storage_path, spec.name)), resources)
        tuner = tune.Tuner(
            trainable,
            param_space=_space(spec.search),
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.mode,
                scheduler=_make_scheduler(spec),
                num_samples=spec.num_samples,
                reuse_actors=False,
                search_alg=_searcher(spec),
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=spec.storage_path,
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
                callbacks=[] if quiet else [progress_callback(spec)],
            ),
        )
        return tuner.fit()
    finally:
        if started:
            ray.shutdown()


def _domain(dist: tuple[str, Any]):
    from ray import tune  # the tune extra

    name, args = dist
    if name == "grid":
        return tune.grid_search(args)
    return getattr(tune, name)(*args) if name != "choice" else tune.choice(args)


def _space(search: dict) -> dict:
    return {key: _domain(dist) for key, dist in search.items()}


def _searcher(spec: TuneSpec):  # the seed fixes the sampled values
    from ray.tune.search.basic_variant import BasicVariantGenerator  # the tune extra

    return BasicVariantGenerator(random_state=spec.seed, max_concurrent=spec.max_concurrent_trials or 0)


def _make_scheduler(spec: TuneSpec):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining  # the tune extra

    options = dict(spec.options)
    if spec.scheduler == "asha":
        return ASHAScheduler(time_attr=TIME_ATTR, max_t=from_dict(spec.base).run.total_env_steps, **options)
    if spec.scheduler == "pbt":
        mutations = {
            k: (args if name == "choice" else _domain((name, args)))
            for k, (name, args) in options.pop("hyperparam_mutations").items()
        }
        return PopulationBasedTraining(time_attr=TIME_ATTR, hyperparam_mutations=mutations, **options)
    return FIFOScheduler()


def best_trial(results, spec: TuneSpec) -> dict:
    """The best trial as one JSON-able line, ranked as best.pt is: by the best confirmed mean (a screening is a
    few episodes of weights that training has moved on from). `run_dir` is the trial's newest run (`a3c
    evaluate RUN_DIR` plays its best.pt)."""
    ranked = [r for r in results if r.error is None and "best_eval_return" in (r.metrics or {})]
    if not ranked:
        raise A3CError(
            f"no trial reported an evaluation ({len(results.errors)} of {len(results)} failed; "
            f"see {results.experiment_path})"
        )
    best = max(
        ranked,
        key=lambda r: (
            (1 if spec.mode == "max" else -1) * r.metrics["best_eval_return"],
            -r.metrics.get("env_steps", 0),
        ),
    )  # a tie: the one that got there first
    runs = sorted(glob.glob(os.path.join(best.path, "run-*")), key=lambda p: int(p.rsplit("-", 1)[1]))
    keep = ("eval_return_mean", "best_eval_return", "env_steps", "train_s", "solved", "reason")
    return {
        "trial": os.path.basename(best.path),
        "config": {k: best.config[k] for k in sorted(best.config)},
        **{k: best.metrics[k] for k in keep if k in best.metrics},
        "run_dir": runs[-1] if runs else None,
        "checkpoint": best.checkpoint.path if best.checkpoint else None,
        "trials": len(results),
        "errors": len(results.errors),
        "experiment": results.experiment_path,
    }


# -- one trial: one run -------------------------------------------------------------------------------------
def a3c_trial_fn(base: dict, experiment_dir: str):
    """The trainable: a function of the trial's sampled values, the spec's base config bound in."""

    def a3c_trial(params: dict) -> None:
        run_trial(params, base, experiment_dir)

    return a3c_trial


def run_trial(params: dict, base: dict, experiment_dir: str) -> None:
    """One run in the trial's directory of the experiment (written there directly, not in Tune's staging
    directory, which Tune's driver copies over while we write), quiet, on Tune's Ray; restored from
    `tune.get_checkpoint()` (PBT's exploit: another trial's state, with this trial's new values) through the
    resume path's checks."""
    from ray import tune  # the tune extra

    from ray_a3c.common.storage import checkpoint  # torch: loaded in the trial's process, not by the sweep's driver

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # a line per reported checkpoint otherwise
    trial_dir = os.path.join(experiment_dir, os.path.basename(tune.get_context().get_trial_dir()))
    run_dir = os.path.join(trial_dir, f"run-{len(glob.glob(os.path.join(trial_dir, 'run-*')))}")
    cfg = build_config(base, {**params, "run.run_dir": run_dir})  # run dir: the actors' names follow it
    restored = tune.get_checkpoint()
    state, changes, reported = None, {}, {}
    if restored is not None:
        with restored.as_directory() as directory:
            state = checkpoint.load(os.path.join(directory, CKPT_FILE))
            reported = _read_metrics(directory)  # what was reported with it
        changes = check_resume_fits(state, cfg, cfg)
    prepared = prepare_new(cfg)
    if state is not None:
        prepared.resume_state = state
        with open(os.path.join(run_dir, RESUME_LOG), "a") as fh:
            fh.write(
                f"{time.strftime('%Y-%m-%dT%H:%M:%S')} restored from {restored.path} at version "
                f"{state['counters'].get('version')}, env steps {state['counters'].get('env_steps')}: "
                + ("; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changes.items())) or "no change")
                + "\n"
            )
    summary = run_training(prepared, quiet=True, on_eval=_Reporter(run_dir))
    found = checkpoint.list_checkpoints(os.path.join(run_dir, "checkpoints"))
    last_eval = summary.last_eval if summary.last_eval is not None else reported.get("eval_return_mean")
    best_eval = summary.best_eval
    if last_eval is None and found:  # a short trial ended before its first evaluation: Tune wants the metric,
        last_eval = best_eval = evaluate_checkpoint(cfg, found[-1])  # and its final weights are its best
    if last_eval is None:
        return  # no checkpoint either: nothing to report
    final = {
        "eval_return_mean": last_eval,
        "best_eval_return": best_eval,
        "env_steps": summary.env_steps,
        "version": summary.version,
        "train_s": summary.train_s,
        "solved": summary.reason == "solved",
        "reason": summary.reason,
    }
    _Reporter(run_dir)(final, found[-1] if found else None)


def evaluate_checkpoint(cfg, path: str) -> float:
    """The mean return of a checkpoint over fresh episodes, as many as a confirmed evaluation plays, in the
    trial's own process, on the evaluator's seeds."""
    from ray_a3c.actors.evaluator import Evaluator  # torch: loaded in the trial's process
    from ray_a3c.cluster.run.evaluation import EVAL_SEED_OFFSET
    from ray_a3c.common.storage import checkpoint

    evaluator = Evaluator(cfg)
    try:
        evaluator.load_state_dict(checkpoint.load(path)[CKPT_MODEL])
        episodes = max(cfg.run.eval_episodes, cfg.run.confirm_episodes)
        return evaluator.run_episodes(episodes, cfg.run.seed + EVAL_SEED_OFFSET).mean_return
    finally:
        evaluator.close()


class _Reporter:
    """The driver's on_eval hook inside a trial: each decided evaluation goes to `tune.report` with the
    checkpoint written for it (Tune copies the directory into the trial's storage; ours is removed after)."""

    def __init__(self, run_dir: str):
        self.directory = os.path.join(run_dir, "tune-checkpoint")

    def __call__(self, report: dict, path: str | None) -> None:
        from ray import tune  # the tune extra

        metrics = {k: v for k, v in report.items() if v is not None}
        if path is None:
            tune.report(metrics)
            return
        try:
            directory = copy_for_tune(path, self.directory, metrics)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def copy_for_tune(path: str, directory: str, metrics: dict) -> str:
    """A directory holding the checkpoint file as Tune reports it (Tune copies it into the trial's storage),
    and the metrics reported with it (a run restored from it that ends before evaluating reports them)."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    shutil.copyfile(path, os.path.join(directory, CKPT_FILE))
    with open(os.path.join(directory, METRICS_FILE), "w") as fh:
        json.dump(metrics, fh)
    return directory


def _read_metrics(directory: str) -> dict:
    try:
        with open(os.path.join(directory, METRICS_FILE)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def progress_callback(spec: TuneSpec):
    """One line per trial as it ends (the sweep itself runs with Tune's own output off)."""
    from ray import tune  # the tune extra

    class TrialLines(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            m = trial.last_result or {}  # a run that ended on its own reported its reason last
            values = ", ".join(f"{k}={_short(trial.config[k])}" for k in sorted(trial.config))
            last, best = m.get("eval_return_mean"), m.get("best_eval_return")
            reason = REASONS.get(m.get("reason"), m.get("reason") or "stopped by the scheduler")
            print(
                f"trial {trial.trial_id} ({values}): {reason} at "
                f"{m.get('env_steps', 0):,} env steps; eval {_short(last)}, best confirmed {_short(best)}",
                flush=True,
            )

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(f"trial {trial.trial_id} failed: see {trial.path}", flush=True)

    return TrialLines()


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
