"""The training driver: spawns and wires the actors, monitors, logs, checkpoints, evaluates, stops."""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from ray_a3c.actors.worker import passes
from ray_a3c.cluster.run.evaluation import EvalCycle, save_weights
from ray_a3c.cluster.run.fleet import Fleet
from ray_a3c.cluster.run.loops import fatal_cause
from ray_a3c.cluster.run.metrics import ENV_HANGS, ENV_RECREATIONS, ENV_STEPS, RayMetrics, install_dashboard
from ray_a3c.cluster.run.runtime import resolve_num_workers, session_dir, start_ray
from ray_a3c.cluster.run.summary import RunSummary, eta_s, process_age_s, progress_line
from ray_a3c.common.data.offline import cached_dataset
from ray_a3c.common.env.envs import EnvSpaces
from ray_a3c.common.reporting import metrics
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.reporting.logs import log
from ray_a3c.common.settings.config import Config, from_dict
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.storage.keys import CKPT_BEST_EVAL_RETURN, CKPT_COUNTERS, CKPT_TRAIN_S
from ray_a3c.common.wire.counters import PSCounters, PSStatus

POLL_S = 0.1
FINAL_EVAL_WAIT_S = 60.0  # at a normal stop, how long the evaluation in flight may take to finish
LOOP_FINISH_WAIT_S = 30.0  # at a normal stop, how long the worker loops may take to push their last gradient
PS_TIMEOUT_S = 60.0  # a PS call unanswered for this long: the PS is hung (treated as dead)

EPISODES_CSV = "episodes.csv"


class Trainer:
    """Drives one run; `train()` returns a RunSummary. Usable from the CLI or from Python."""

    def __init__(
        self,
        config: Config,
        spaces: EnvSpaces,
        run_dir: str,
        resume_state: dict | None = None,
        quiet: bool = False,
        on_eval: Callable[[dict, str], None] | None = None,
    ):
        self.config = from_dict(config.to_dict())  # a copy: resolving `auto` must not change the caller's
        self.spaces, self.run_dir, self.resume_state, self.quiet = spaces, run_dir, resume_state, quiet
        # Called with each decided evaluation (plus counters and times) and a checkpoint written for it, in the
        # driver's thread: how a caller reports on the way (cluster/sweeps/tune.py reports them to Ray Tune).
        self.on_eval = on_eval
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        self.summary = RunSummary(run_dir=run_dir, best_eval=(resume_state or {}).get(CKPT_BEST_EVAL_RETURN))
        self.fleet: Fleet | None = None
        self.writer: metrics.ScalarWriter | None = None
        self.ray_metrics: RayMetrics | None = None
        self._last_counters = PSStatus.from_dict((resume_state or {}).get(CKPT_COUNTERS))
        self._first_version = self._last_counters.version
        # the highest totals any answer of the PS showed (its polls and the log's pull_stats): a recreated PS
        # starts from no lower, so no progress line or metric ever goes back
        self._seen_counters = self._last_counters.totals()
        self.t0: float | None = None  # when the workers were started
        self._t0_epoch = 0.0  # the same moment on the wall clock (the PS stamps snapshots with it)
        self._last_log = self._last_ckpt = 0.0
        self._log_state: tuple | None = None  # (time, counters) of the last progress line
        self.evals: EvalCycle | None = None
        self._queued_round: tuple | None = None
        self._saved_counters = PSCounters(version=-1)  # of the newest state taken for a checkpoint (written or not)
        self._write_failures = checkpoint.WriteFailures(self.config.run.max_checkpoint_failures)
        self._dataset_steps = _dataset_steps(self.config)
        self._last_100: collections.deque = collections.deque(maxlen=100)  # training episodes' returns

    # -- set-up ------------------------------------------------------------------------------------------
    def train(self, ray_start: tuple[bool, float, str] | None = None) -> RunSummary:
        """Train to the end; `ray_start` is `start_ray`'s answer when the caller already started Ray."""
        started, self.summary.ray_start_s, dashboard = ray_start or start_ray(self.config)
        _catch_stop_signals()
        self._say(
            f"ray ready in {self.summary.ray_start_s:.1f}s; dashboard {dashboard} "
            "(token: ~/.ray/auth_token, see README)"
        )
        if started and session_dir():
            install_dashboard(session_dir())  # our Grafana dashboard beside Ray's own
        self.writer = metrics.ScalarWriter(self.run_dir)
        self.evals = EvalCycle(
            self.config, self.spaces, self.run_dir, self.summary, self.writer, self._say, self._write_failures
        )
        try:
            self.config = dataclasses.replace(
                self.config, run=dataclasses.replace(self.config.run, num_workers=resolve_num_workers(self.config))
            )
            self.ray_metrics = RayMetrics(os.path.basename(os.path.abspath(self.run_dir)))
            t_spawn = time.perf_counter()
            self.fleet = Fleet(self.config, self.spaces, self.ckpt_dir, self._say)
            self.fleet.spawn_all(self.resume_state)
            self.summary.spawn_s = time.perf_counter() - t_spawn
            self._loop()
        except KeyboardInterrupt as exc:
            self.summary.reason = "interrupted"
            self._say(f"interrupted ({exc or 'SIGINT'}): writing a final checkpoint")
        finally:
            self._finish(started)
        if self._write_failures.exhausted:  # the final checkpoint's failure, raised once the run has shut down
            raise self._write_failures.error()
        return self.summary

    # -- the monitoring loop -----------------------------------------------------------------------------
    @property
    def ps(self):
        return self.fleet.ps

    def _loop(self) -> None:
        sync = self.config.algo.mode == "sync"
        self.fleet.wait_for_ps()
        if self.resume_state is not None and not checkpoint.list_checkpoints(self.ckpt_dir):
            # a run dir of its own continuing another's state (a Tune trial restored from another trial's
            # checkpoint): the state it starts from is its first checkpoint, so a PS lost before the next one
            # is recreated from it and not from fresh weights
            self._save_checkpoint()
        self.t0, self._t0_epoch = time.perf_counter(), time.time()
        self.fleet.start_clock(self._t0_epoch)
        self.summary.train_start_s = process_age_s()
        if not sync:
            self.fleet.start_loops()
        self._last_log = self._last_ckpt = self.t0
        self._log_state = (self.t0, self._counters())
        while True:
            try:
                reason = self._tick(sync)
            except (RayActorError, GetTimeoutError):
                if self.fleet.ps_alive():
                    raise
                self.fleet.recover_ps(self._seen_counters)
                self._queued_round = None
                self._log_state = (time.perf_counter(), self._counters())
                continue
            if reason:
                self.summary.reason = reason
                return

    def _ps_call(self, method: str, *args):
        """A PS call that cannot block the driver forever: a PS that does not answer within PS_TIMEOUT_S is
        treated as dead (the loop checks it and recreates it from the newest checkpoint)."""
        return ray.get(getattr(self.ps, method).remote(*args), timeout=PS_TIMEOUT_S)

    def _counters(self) -> PSStatus:
        counters = self._ps_call("get_counters")
        if self.fleet.ps_shards[1:]:
            self.fleet.poll_shards()  # a dead shard raises here: the loop then recovers it
        self._note_counters(counters)
        return counters

    def _note_counters(self, counters: PSStatus) -> None:
        self._last_counters = counters
        self._seen_counters = self._seen_counters.highest(counters)
        if self.summary.first_gradient_s is None and counters.version > self._first_version:
            self.summary.first_gradient_s = process_age_s()
            self._say(f"first gradient applied {self.summary.first_gradient_s:.1f}s after the command started")
            if self.config.run.evaluate:
                self.fleet.spawn_evaluator()  # now: at start-up it would take CPU from the workers

    def _tick(self, sync: bool) -> str:
        run = self.config.run
        if sync:
            counters = self._sync_step()
        else:
            time.sleep(POLL_S)
            counters = self._counters()
            self.fleet.check_loops(counters.packets)
        now = time.perf_counter()
        self.fleet.poll_placement()
        self.evals.poll(self.fleet, self.t0, now)
        if self.on_eval is not None:
            self._report_evaluations(now)
        if now - self._last_log >= run.log_interval_s:
            self._log(now)
            self._last_log = now
        if now - self._last_ckpt >= run.checkpoint_interval_s:
            self._save_checkpoint()
            self._last_ckpt = now
        return self._stop_reason(now, counters)

    def _sync_step(self) -> PSStatus:
        """Waits for one synchronous round while the next is already queued behind it (the PS runs calls in
        order), so workers start the next round as soon as the PS has stepped, not after this loop's
        bookkeeping. Returns the PS's counters after the finished round."""
        current = self._queued_round or self._sync_round()
        self._queued_round = self._sync_round()
        try:
            result = ray.get(current[0], timeout=self.config.cluster.worker_timeout_s)
        except (RayError, GetTimeoutError) as exc:
            self._queued_round = None  # it depends on the failed round's actors; a fresh one follows
            if isinstance(exc, GetTimeoutError):
                self._kill_hung(current[1])
            else:
                self._count_failed(current[1])
            self.fleet.repair_after_sync_failure(self._seen_counters)
            return self._counters()
        self._note_counters(result.counters)
        return result.counters

    def _count_failed(self, packets: dict) -> None:
        """The workers whose packet of the failed round is an error: each is a restart (Ray's or ours), unless
        the error ends the run (`fatal_cause`)."""
        for rank, ref in packets.items():
            if ray.wait([ref], timeout=0)[0]:
                try:
                    ray.get(ref)
                except RayError as exc:
                    if fatal := fatal_cause(exc):
                        raise A3CError(fatal) from None
                    restart = self.fleet.count_restart("worker")
                    self._say(f"worker-{rank} failed in a synchronous round ({type(exc).__name__}); restart #{restart}")

    def _kill_hung(self, packets: dict) -> None:
        """A round that outlived worker_timeout_s: the workers whose packets are not in are hung (stopped,
        stuck in their env); kill them so that Ray restarts them, and the next round goes on."""
        for rank, ref in packets.items():
            if not ray.wait([ref], timeout=0)[0]:
                self._say(
                    f"worker-{rank} gave no gradient for {self.config.cluster.worker_timeout_s:g}s in a "
                    "synchronous round: killing it for a restart"
                )
                ray.kill(self.fleet.workers[rank], no_restart=False)
                self.fleet.count_restart("worker")

    def _sync_round(self) -> tuple:
        """A2C: every worker computes a gradient from the same published weights; the PS averages them.
        Extra policy epochs repeat that with clipped-surrogate gradients, extra critic epochs with value-only
        ones. The data never passes through here: the weights and the packets go between the actors as object
        references. Returns (the PS's answer for the round, {rank: the first epoch's packet}) ."""
        result, first = None, {}
        for which in passes(self.config.algo):
            published = self.ps.get_weights.remote()  # runs after the previous step: one caller, in order
            packets = {rank: w.sync_gradient.remote(published, which) for rank, w in self.fleet.workers.items()}
            first = first or packets
            result = self.ps.apply_mean_gradients.remote(*self.fleet.reduce_round(packets))
        return result, first

    def _stop_reason(self, now: float, counters: PSCounters) -> str:
        run = self.config.run
        if self.summary.solved_at_s is not None:
            return "solved"
        if counters.env_steps >= run.total_env_steps:
            return "env_steps"
        if run.time_limit_s is not None and now - self.t0 >= run.time_limit_s:
            return "time_limit"
        return ""

    def _log(self, now: float) -> None:
        self._write_snapshots()
        stats = self._ps_call("pull_stats")
        self._seen_counters = self._seen_counters.highest(stats)  # it may be newer than the last poll
        t_prev, c_prev = self._log_state
        dt = max(now - t_prev, 1e-9)
        fps = (stats.env_steps - c_prev.env_steps) / dt
        ups = (stats.version - c_prev.version) / dt
        self._log_state = (now, stats.totals())
        for report in stats.hang_reports:
            self._say(f"{report.describe()}: its vector env was rebuilt ({report.budget_text()})")
        rets, lens = stats.episode_returns, stats.episode_lengths
        mean_ret = sum(rets) / len(rets) if rets else None
        self._record_episodes(now - self.t0, stats.env_steps, rets, lens)
        self.writer.write(
            {
                metrics.EPISODE_RETURN: mean_ret,
                metrics.EPISODE_LENGTH: sum(lens) / len(lens) if lens else None,
                **metrics.packet_scalars(stats.losses),
                metrics.GRAD_NORM: stats.grad_norm_mean,
                metrics.WEIGHT_NORM: stats.weight_norm,
                metrics.ENV_STEPS_PER_S: fps,
                metrics.UPDATES_PER_S: ups,
                metrics.COMM_FRACTION: stats.comm_fraction,
                metrics.PS_VERSION: stats.version,
                metrics.POLICY_LAG: stats.policy_lag_mean,
                metrics.LR_FRACTION: stats.lr_fraction,
                metrics.REJECTED_STALE: stats.rejected_stale,
                metrics.REJECTED_NONFINITE: stats.rejected_nonfinite,
            },
            stats.env_steps,
        )
        if self._dataset_steps:
            self.writer.write({metrics.OFFLINE_EPOCHS: stats.env_steps / self._dataset_steps}, stats.env_steps)
        self.ray_metrics.update(
            {
                metrics.ENV_STEPS_PER_S: fps,
                metrics.EPISODE_RETURN: mean_ret,
                metrics.EVAL_RETURN: self.summary.last_eval,
                metrics.PS_VERSION: stats.version,
                metrics.POLICY_LAG: stats.policy_lag_mean,
                metrics.UPDATES_PER_S: ups,
                metrics.REJECTED_STALE: stats.rejected_stale,
                metrics.REJECTED_NONFINITE: stats.rejected_nonfinite,
                metrics.COMM_FRACTION: stats.comm_fraction,
                ENV_STEPS: stats.env_steps,
                ENV_RECREATIONS: self._last_counters.env_recreations,
                ENV_HANGS: stats.env_hangs,
            },
            self.fleet.restarts,
        )
        run = self.config.run
        eta = eta_s(now - self.t0, stats.env_steps, fps, run.total_env_steps, run.time_limit_s)
        self._say(
            progress_line(now - self.t0, stats, fps, self.summary.train_return_mean100, self.summary.last_eval, eta)
        )

    def _record_episodes(self, train_s: float, env_steps: int, returns: list, lengths: list) -> None:
        """Training episodes as they finish, in RUN_DIR/episodes.csv (train_s, env_steps, return, length; time
        and steps of the log tick that collected them), and the running mean of the last 100: the statistic
        Sample Factory and SB3 log, so runs compare like with like."""
        if not returns:
            return
        self._last_100.extend(returns)
        self.summary.train_return_mean100 = sum(self._last_100) / len(self._last_100)
        self.writer.write({metrics.EPISODE_RETURN_100: self.summary.train_return_mean100}, env_steps)
        path = os.path.join(self.run_dir, EPISODES_CSV)
        new = not os.path.exists(path)
        with open(path, "a") as fh:
            if new:
                fh.write("train_s,env_steps,return,length\n")
            for ret, length in zip(returns, lengths, strict=False):
                fh.write(f"{train_s:.3f},{env_steps},{ret:.6g},{length}\n")

    def _report_evaluations(self, now: float) -> None:
        """Hands each decided evaluation to the on_eval hook with a checkpoint written for it (the PS's newest
        state: weights, optimizers, observation statistics, counters)."""
        for decided in self.evals.take_decided():
            path = self._save_checkpoint()
            self._last_ckpt = now
            s, counters = self.summary, self._saved_counters
            self.on_eval(
                {
                    **decided,
                    "env_steps": counters.env_steps,
                    "version": counters.version,
                    "train_s": now - self.t0,
                    "best_eval_return": s.best_eval,
                    "solved": s.solved_at_s is not None,
                },
                path,
            )

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _save_checkpoint(self, final: bool = False) -> str | None:
        """The PS's state as ckpt-<version>.pt -> its path, or None when the write failed (the earlier checkpoints
        kept, warned once per errno). The run.max_checkpoint_failures-th failure in a row raises A3CError; in the
        `final` checkpoint, `train` raises it once the run has shut down."""
        state = self.fleet.ps_state(PS_TIMEOUT_S)
        state[CKPT_BEST_EVAL_RETURN] = self.summary.best_eval
        self._saved_counters = PSCounters.from_dict(state[CKPT_COUNTERS])
        path = self._write_failures.attempt(
            self.ckpt_dir,
            checkpoint.save_versioned,
            state,
            self.ckpt_dir,
            self._saved_counters.version,
            self.config.run.keep_checkpoints,
        )
        if self._write_failures.exhausted and not final:
            raise self._write_failures.error()
        return path

    def _write_snapshots(self) -> None:
        if not self.config.run.snapshot_every_env_steps:
            return
        for snap in self._ps_call("pop_snapshots"):
            extra = {CKPT_TRAIN_S: snap["time"] - self._t0_epoch}
            path = os.path.join(self.run_dir, "snapshots", f"{snap['env_steps']}.pt")
            self._write_failures.attempt(path, save_weights, self.spaces, self.config, snap, path, extra)

    # -- shutdown ------------------------------------------------------------------------------------------
    def _finish(self, started_ray: bool) -> None:
        s = self.summary
        s.train_s = time.perf_counter() - self.t0 if self.t0 is not None else 0.0
        try:
            if self.fleet is not None and self.fleet.ps is not None:
                s.restarts, s.lost_updates = dict(self.fleet.restarts), self.fleet.lost_updates
                if "ps" in self.fleet.placement.pending:
                    self._say("stopped before the parameter server ever ran: no checkpoint")
                    return
                try:
                    self._final_checkpoint()
                    self._ps_call("close_update_log")  # its last digest: the weights the run ends with
                except (RayError, GetTimeoutError) as exc:  # keep the error that ended the run, if any
                    self._say(f"no final checkpoint: the parameter server did not answer ({type(exc).__name__})")
        finally:
            if self.writer is not None:
                self.writer.close()
            if self.fleet is not None:
                self.fleet.kill_all()
            if started_ray:
                ray.shutdown()

    def _final_checkpoint(self) -> None:
        s = self.summary
        self._ps_call("request_stop")
        # Checkpoint first: `ray job stop` and SIGTERM from a scheduler follow up with SIGKILL soon.
        path = self._save_checkpoint(final=True)
        refs = self.fleet.loops.refs()
        if refs and s.reason != "interrupted":
            ray.wait(refs, num_returns=len(refs), timeout=LOOP_FINISH_WAIT_S)
            s.worker_env_steps = _delivered_env_steps(refs)
        if s.reason != "interrupted":
            self.evals.finish(self.fleet, self.t0, FINAL_EVAL_WAIT_S)
            s.settle()
        if self._log_state is not None:
            self._log(time.perf_counter())  # a last tick, so even short runs log every tag
        counters = self._ps_call("get_counters")
        if counters.version != self._saved_counters.version:
            path = self._save_checkpoint(final=True) or path  # the pushes that landed while the loops finished
            # An interrupted run does not wait for its loops, so pushes can land between the two calls: the
            # summary reports what the checkpoint holds, not the earlier reading.
            counters = dataclasses.replace(counters, **dataclasses.asdict(self._saved_counters))
        s.env_steps, s.version, s.episodes = counters.env_steps, counters.version, counters.episodes
        s.rejected_stale, s.rejected_nonfinite = counters.rejected_stale, counters.rejected_nonfinite
        s.restarts = dict(self.fleet.restarts)
        s.env_recreations, s.env_hangs = counters.env_recreations, counters.env_hangs
        if self._dataset_steps:
            s.dataset_passes = s.env_steps / self._dataset_steps
        self._say(
            f"stopped ({s.reason or 'error'}) at {s.env_steps:,} env steps, version {s.version:,}; "
            f"checkpoint {path or 'not written'}"
        )

    def _say(self, text: str) -> None:
        if not self.quiet:
            log.info(text)


def _delivered_env_steps(refs: list) -> int | None:
    """The env steps the workers say reached the PS, summed over loops that ended normally (None if any did
    not: a worker that crashed took its count with it)."""
    ready, waiting = ray.wait(refs, num_returns=len(refs), timeout=0)
    if waiting:
        return None
    try:
        return sum(int(r["env_steps"]) for r in ray.get(ready))
    except RayError:
        return None


def _dataset_steps(config: Config) -> int | None:
    """Transitions in the run's dataset (the driver already loaded it to check it; cached per process)."""
    if not config.env.dataset:
        return None
    return cached_dataset(config.env.dataset).num_steps


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _catch_stop_signals() -> None:
    """Ctrl-C and SIGTERM both end the run with a final checkpoint. Installed after ray.init, which sets a
    SIGTERM handler of its own, and also re-enabled where a background launch left SIGINT ignored."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _raise_interrupt)
