"""The evaluator beside training: screenings every `run.eval_interval_s`, their extension to
`run.confirm_episodes` when they could be the best or solve the run, best.pt, and the solved moment."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from ray_a3c.actors.evaluator import EvalResult
from ray_a3c.cluster.run.fleet import Fleet
from ray_a3c.cluster.run.summary import RunSummary
from ray_a3c.common.algo.models import build_model
from ray_a3c.common.algo.selection import EvalJudge, episode_stats
from ray_a3c.common.env.envs import EnvSpaces
from ray_a3c.common.reporting import metrics
from ray_a3c.common.settings.config import Config
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.storage.keys import (
    CKPT_BEST_EVAL_RETURN,
    CKPT_COUNTERS,
    CKPT_EVAL_EPISODES,
    CKPT_EVAL_RETURN_MEAN,
    CKPT_EVAL_RETURN_STD,
    CKPT_EVAL_SEED,
    CKPT_MODEL,
    CKPT_SPACES,
)
from ray_a3c.common.wire.flat import set_flat_weights

EVAL_SEED_OFFSET = 100_000


def within_share(busy_s: float, elapsed_s: float, max_share: float) -> bool:
    """Whether the evaluator, busy `busy_s` of training's first `elapsed_s` seconds, may start another
    screening under `run.eval_max_share` (1: always). On two cores a pixel evaluator takes a core from training
    while it plays, so its share is what a user's run loses in frames/s."""
    return max_share >= 1.0 or busy_s <= max_share * elapsed_s


class EvalCycle:
    def __init__(
        self,
        config: Config,
        spaces: EnvSpaces,
        run_dir: str,
        summary: RunSummary,
        writer: metrics.ScalarWriter,
        say: Callable[[str], None],
        write_failures: checkpoint.WriteFailures | None = None,
    ):
        self.config, self.spaces, self.run_dir, self.summary = config, spaces, run_dir, summary
        self.writer, self.say = writer, say
        # best.pt's failed writes (disk full) warn and count with the driver's checkpoints': training goes on
        self.write_failures = write_failures or checkpoint.WriteFailures(config.run.max_checkpoint_failures)
        self.judge = EvalJudge(config.run.confirm_episodes, config.run.stop_return, summary.best_eval)
        self.seed = config.run.seed + EVAL_SEED_OFFSET
        self._ref: ray.ObjectRef | None = None
        self._candidate: EvalResult | None = None  # the screening being extended on its own weights
        self._taken_at = 0.0  # training time when the weights under evaluation were taken
        self._last_start, self._screenings = -1e9, 0
        self._request_start = 0.0
        self.decided: list[dict] = []  # evaluations decided since the driver last took them (its on_eval hook)
        self._evaluator_pid: int | None = None  # the process of the last result (None: a restart was counted)

    def poll(self, fleet: Fleet, t0: float, now: float, start_next: bool = True) -> None:
        """Collect a finished evaluation (extending it if it is a candidate), and start the next screening
        when its time has come. Raises RayActorError when the PS died under the evaluator."""
        if fleet.evaluator is None or "eval" in fleet.placement.pending:
            return  # not started yet, or waiting for resources: an evaluation would queue behind it
        if self._ref is not None:
            if not ray.wait([self._ref], timeout=0)[0]:
                return
            ref, self._ref = self._ref, None
            self.summary.eval_s += now - self._request_start
            try:
                self._on_result(ray.get(ref), fleet)
            except RayError as exc:
                self._candidate = None
                if not fleet.ps_alive():
                    raise RayActorError() from exc  # recover the PS first
                self.say(f"evaluator failed ({type(exc).__name__}); restarting it")
                fleet.ensure_evaluator()
                self._evaluator_pid = None  # counted: its next result comes from a new process
        run = self.config.run
        due = now - self._last_start >= run.eval_interval_s
        if self._ref is None and start_next and due and within_share(self.summary.eval_s, now - t0, run.eval_max_share):
            self._last_start, self._taken_at = now, now - t0
            self._screenings += 1
            gif = (
                os.path.join(os.path.abspath(self.run_dir), "gifs", "{env_steps}_{return}.gif")
                if run.gif_every and self._screenings % run.gif_every == 0
                else None
            )
            self._request_start = now
            self._ref = fleet.evaluator.evaluate_remote.remote(fleet.ps_target, run.eval_episodes, self.seed, gif)

    def finish(self, fleet: Fleet, t0: float, wait_s: float) -> None:
        """At a normal stop: let the evaluation in flight end, extensions included (its result may be the best,
        its GIF half written), within `wait_s`."""
        deadline = time.perf_counter() + wait_s
        while self._ref is not None and time.perf_counter() < deadline:
            ray.wait([self._ref], timeout=max(deadline - time.perf_counter(), 0.0))
            try:
                self.poll(fleet, t0, time.perf_counter(), start_next=False)
            except RayError:
                return  # the evaluator or the PS failed at the very end: the run's checkpoint still follows

    def note_process(self, result: EvalResult, fleet: Fleet) -> None:
        """An evaluator killed between two evaluations is restarted by Ray before the next call, which then
        succeeds: only its results' process id shows the restart, counted here (once, as every restart is)."""
        pid = result.evaluator_pid
        if self._evaluator_pid is not None and pid is not None and pid != self._evaluator_pid:
            restart = fleet.count_restart("evaluator")
            self.say(
                f"evaluator restarted between evaluations (process {self._evaluator_pid} -> {pid}); restart #{restart}"
            )
        self._evaluator_pid = pid

    def _on_result(self, result: EvalResult, fleet: Fleet) -> None:
        self.note_process(result, fleet)
        if self._candidate is None:
            self._on_screening(result)
        else:
            result = dataclasses.replace(self._candidate, returns=self._candidate.returns + result.returns)
        verdict = self.judge.judge(result.returns)
        if verdict.more_episodes:
            self._candidate, self._request_start = result, time.perf_counter()
            self._ref = fleet.evaluator.evaluate_weights.remote(
                result.weights, verdict.more_episodes, self.seed + len(result.returns)
            )
            return
        self._candidate = None
        decided = {"eval_return_mean": result.mean_return, "eval_env_steps": result.env_steps}
        self.decided.append(decided)
        if len(result.returns) < self.config.run.confirm_episodes:
            return  # not a candidate: decided on the screening
        stats = episode_stats(result.returns)
        decided["eval_confirmed_return_mean"] = stats.mean
        self.writer.write({metrics.EVAL_CONFIRMED_RETURN: stats.mean}, result.env_steps)
        s = self.summary
        if verdict.best:
            s.best_eval, s.best_eval_std, s.best_eval_episodes = stats.mean, stats.std, stats.episodes
            s.best_eval_env_steps = result.env_steps
            self._save_best(result, stats)
        if verdict.solved and s.solved_at_s is None:
            s.solved_at_s, s.solved_at_env_steps = self._taken_at, result.env_steps
            self.say(
                f"solved: mean {stats.mean:.1f} +- {stats.ci95:.1f} (95% CI) over {stats.episodes} episodes "
                f">= {self.config.run.stop_return} at {result.env_steps:,} env steps"
            )

    def take_decided(self) -> list[dict]:
        """The evaluations decided since the last call: the screening's mean, the pooled mean when it was
        extended to run.confirm_episodes, and the env steps of the weights evaluated."""
        decided, self.decided = self.decided, []
        return decided

    def _on_screening(self, result: EvalResult) -> None:
        s = self.summary
        s.last_eval = result.mean_return
        s.evals.append((result.env_steps, result.mean_return))
        self.writer.write({metrics.EVAL_RETURN: result.mean_return}, result.env_steps)

    def _save_best(self, result: EvalResult, stats: Any) -> None:
        extra = {
            CKPT_EVAL_RETURN_MEAN: stats.mean,
            CKPT_EVAL_RETURN_STD: stats.std,
            CKPT_EVAL_EPISODES: stats.episodes,
            CKPT_EVAL_SEED: self.seed,
            CKPT_BEST_EVAL_RETURN: stats.mean,
        }
        path = os.path.join(self.run_dir, "checkpoints", checkpoint.BEST_FILE)
        self.write_failures.attempt(path, save_weights, self.spaces, self.config, vars(result), path, extra)


def save_weights(spaces: EnvSpaces, config: Config, taken: dict, path: str, extra: dict) -> None:
    """A loadable checkpoint (model state dict and counters, no optimiser) of flat weights the PS handed out:
    `taken` holds weights, version and env_steps."""
    model = build_model(spaces, config.model)
    set_flat_weights(model, taken["weights"])
    counters = {"version": taken["version"], "env_steps": taken["env_steps"]}
    state = {
        CKPT_MODEL: model.state_dict(),
        CKPT_COUNTERS: counters,
        **({CKPT_SPACES: spaces.env_spaces} if spaces.env_spaces else {}),
        **extra,
    }
    checkpoint.save_atomic(state, path)
