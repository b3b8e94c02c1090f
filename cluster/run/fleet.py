"""The run's actors and their lifecycle: placement, restarts, replacement, and PS recovery from checkpoints."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from ray_a3c.cluster.comms.aggregation import spawn_aggregators
from ray_a3c.cluster.comms.remote import (
    RemoteBatchingParameterServer,
    RemoteEvaluator,
    RemoteParameterServer,
    RemoteWorker,
)
from ray_a3c.cluster.comms.sharding import RemoteShardServer, take_cut
from ray_a3c.cluster.comms.transport import ShardedTarget
from ray_a3c.cluster.run.loops import RESTART_WAIT_S, WorkerLoops
from ray_a3c.cluster.run.placement import PlacementWatch
from ray_a3c.cluster.run.reservation import Reservation, shard_role
from ray_a3c.common.env.envs import EnvSpaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.storage.keys import CKPT_COUNTERS
from ray_a3c.common.wire.counters import PSCounters

PS_POLL_TIMEOUT_S = 60.0  # a shard that does not answer a poll within this is treated as dead


def run_tag(run_dir: str) -> str:
    """A run's part of its actors' names: the run dir's name and a hash of its path (two `runs/cp` differ)."""
    run_dir = os.path.abspath(run_dir)
    return f"{os.path.basename(run_dir)}-{hashlib.sha1(run_dir.encode()).hexdigest()[:6]}"


class Fleet:
    """Spawns the parameter server, the workers and the evaluator as named actors, keeps the asynchronous
    worker loops running (relaunching them after a crash, replacing dead or hung workers), and recreates a
    dead parameter server from the newest checkpoint. Every restart is logged and counted."""

    def __init__(self, config: Config, spaces: EnvSpaces, ckpt_dir: str, say: Callable[[str], None]):
        self.config, self.spaces, self.ckpt_dir, self.say = config, spaces, ckpt_dir, say
        self.restarts = {"worker": 0, "evaluator": 0, "ps": 0}
        self.lost_updates = 0
        self.ps: Any = None  # the PS, or a sharded PS's lead
        self.ps_shards: list = []  # every shard, the lead first (learner.num_shards > 1)
        self.shard_counters: dict[int, PSCounters] = {}  # each shard's counters when last polled (recovery floors)
        self.clock_start: float | None = None  # training start (epoch s), handed to every PS spawned after it
        self.workers: dict[int, Any] = {}
        self.evaluator: Any = None
        self.aggregators: dict[str, Any] = {}  # node id -> aggregator (cluster.aggregate=node)
        self._worker_nodes: dict[int, str] = {}  # rank -> node id, learnt at the first synchronous round
        self.loops = WorkerLoops(self, config.cluster.worker_timeout_s, config.cluster.max_worker_failures, say)
        self.placement = PlacementWatch(config.cluster.start_timeout_s, say)
        self.reservation: Reservation | None = None  # the run's placement group, made by spawn_all
        self.run_tag = run_tag(os.path.dirname(os.path.abspath(ckpt_dir)))

    # -- actor options ---------------------------------------------------------------------------------
    def _options(
        self,
        name: str,
        num_cpus: float,
        num_gpus: float = 0.0,
        restarts: int = 0,
        spread: bool = False,
        role: str | None = None,
    ) -> dict:
        # No runtime_env: CPU actors hide the GPUs themselves (transport.hide_gpus, first thing in their constructor).
        # With one, Ray starts a fresh process per actor instead of taking a Python worker it prestarted.
        # No task events: the PS serves hundreds of calls a second, and the GCS would keep an event for each
        # (it grew ~17 MB/min in the soak); the dashboard's actor and metrics views are unaffected.
        opts: dict = {
            "name": name,
            "namespace": self.config.cluster.namespace,
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "max_restarts": restarts,
            "max_task_retries": 0,
            "enable_task_events": False,
        }
        reserved = self.reservation.strategy(role) if self.reservation is not None and role else None
        if reserved is not None:
            opts["scheduling_strategy"] = reserved  # the role's bundle of the run's placement group
        elif spread:
            opts["scheduling_strategy"] = "SPREAD"
        return opts

    def actor_name(self, role: str) -> str:
        """Per-run names (`a3c:<run>:ps`), so that runs share a cluster and the dashboard tells them apart."""
        return f"a3c:{self.run_tag}:{role}"

    @property
    def ps_target(self) -> Any:
        """What workers and the evaluator are handed to reach the PS: its handle, or the sharded PS's target."""
        if len(self.ps_shards) <= 1:
            return self.ps
        names = [self.actor_name(shard_role(i)) for i in range(len(self.ps_shards))]
        return ShardedTarget(list(self.ps_shards), names, self.config.cluster.namespace)

    def spawn_ps(self, state: dict | None = None, counter_floor: PSCounters | None = None) -> Any:
        """The PS (every shard of it), restored from `state` with counters no lower than `counter_floor`."""
        shards = self.config.learner.num_shards
        self.ps_shards = [self._spawn_shard(i, state, counter_floor) for i in range(shards)]
        self.ps = self.ps_shards[0]
        return self.ps

    def _spawn_shard(self, index: int, state: dict | None, counter_floor: PSCounters | None) -> Any:
        c, learner = self.config.cluster, self.config.learner
        role = shard_role(index)
        options = self._options(self.actor_name(role), c.ps_num_cpus, learner.num_gpus, role=role)
        if learner.num_shards > 1:
            actor = _create(RemoteShardServer, options, self.config, self.spaces, index)
        else:
            actor_class = RemoteBatchingParameterServer if learner.max_batch_packets > 1 else RemoteParameterServer
            log_dir = os.path.dirname(os.path.abspath(self.ckpt_dir)) if self.config.run.update_log else None
            actor = actor_class.options(**options).remote(self.config, self.spaces, log_dir)
        self.placement.watch(role, actor, {"CPU": c.ps_num_cpus, "GPU": learner.num_gpus})
        if index == 0:
            self.placement.device = actor.get_counters.remote()
        if self.clock_start is not None:
            actor.start_clock.remote(self.clock_start)  # a recreated PS keeps the run's time budget
        if state is not None or counter_floor is not None:
            ref = (
                actor.load_state_dict.remote(state, counter_floor)
                if state is not None
                else actor.raise_counters.remote(counter_floor)
            )
            try:
                ray.get(ref, timeout=c.start_timeout_s)
            except GetTimeoutError:
                raise A3CError(
                    f"the parameter server ({role}) was not placed within {c.start_timeout_s:g}s: it waits for "
                    f"CPU {c.ps_num_cpus:g}, GPU {learner.num_gpus:g}; the cluster has "
                    f"{ray.available_resources()} free"
                ) from None
        return actor

    def spawn_worker(self, rank: int) -> Any:
        c = self.config.cluster
        self._worker_nodes.pop(rank, None)  # a replacement may land on another node
        self.workers[rank] = _create(
            RemoteWorker,
            self._options(
                self.actor_name(f"worker-{rank}"),
                c.worker_num_cpus,
                restarts=c.max_restarts,
                spread=c.placement == "spread",
                role=f"worker-{rank}",
            ),
            self.config,
            rank,
        )
        self.placement.watch(f"worker-{rank}", self.workers[rank], {"CPU": c.worker_num_cpus})
        return self.workers[rank]

    def spawn_evaluator(self) -> Any:
        c = self.config.cluster
        self.evaluator = _create(
            RemoteEvaluator,
            self._options(self.actor_name("eval"), c.eval_num_cpus, restarts=c.max_restarts, role="eval"),
            self.config,
        )
        self.placement.watch("eval", self.evaluator, {"CPU": c.eval_num_cpus})
        return self.evaluator

    @property
    def aggregator_prefix(self) -> str | None:
        """What a worker needs to find its node's aggregator (None: push to the PS directly)."""
        return self.actor_name("") if self.aggregators else None

    def spawn_aggregators(self) -> None:
        self.aggregators = spawn_aggregators(self.config, self.actor_name(""), self._options)
        self.say(f"aggregation: one aggregator on each of {len(self.aggregators)} node(s)")

    def reduce_round(self, packets: dict[int, Any]) -> list:
        """Sync mode with aggregation: each node's packets of the round -> one aggregate made on that node
        (a worker on a node without an aggregator sends its packet as it is). -> refs for the PS."""
        if not self.aggregators:
            return list(packets.values())
        missing = [rank for rank in packets if rank not in self._worker_nodes]
        if missing:
            nodes = ray.get([self.workers[rank].node_id.remote() for rank in missing], timeout=RESTART_WAIT_S)
            self._worker_nodes.update(zip(missing, nodes, strict=False))
        by_node: dict[str, list] = {}
        for rank, ref in packets.items():
            by_node.setdefault(self._worker_nodes[rank], []).append(ref)
        out = []
        for node, refs in by_node.items():
            aggregator = self.aggregators.get(node)
            out += [aggregator.reduce_round.remote(*refs)] if aggregator is not None else refs
        return out

    def spawn_all(self, resume_state: dict | None) -> None:
        """Ask Ray for the PS and the workers and return at once: calls queue behind each actor's constructor,
        so each worker starts as soon as it is ready. The evaluator is not started here (`spawn_evaluator`,
        once training runs): on a small machine it would compete with the workers' start-up for the CPU."""
        self.reservation = Reservation(self.config, self.config.run.num_workers, f"a3c:{self.run_tag}")
        self.reservation.wait(self.config.cluster.start_timeout_s)
        self.spawn_ps(resume_state)
        if self.config.cluster.aggregate == "node":
            self.spawn_aggregators()
        for rank in range(self.config.run.num_workers):
            self.spawn_worker(rank)

    def start_clock(self, epoch_s: float) -> None:
        """Training starts now: the PS's linear schedule counts run.time_limit_s from here."""
        self.clock_start = epoch_s
        for shard in self.ps_shards:
            shard.start_clock.remote(epoch_s)

    def wait_for_ps(self, poll_s: float = 0.1) -> None:
        """Block until the PS runs; after `cluster.start_timeout_s` the placement watch raises, naming what
        the PS waits for (no PS call may wait on an actor the cluster cannot place)."""
        while any(shard_role(i) in self.placement.pending for i in range(len(self.ps_shards))):
            self.poll_placement()
            time.sleep(poll_s)

    def poll_placement(self) -> None:
        """Logs where every actor runs once all have started; names the ones the cluster cannot place."""
        evaluators = 1 if self.config.run.evaluate else 0  # a run without one would never print the line
        self.placement.poll(expected=len(self.workers) + len(self.ps_shards) + evaluators)

    # -- asynchronous worker loops -----------------------------------------------------------------------
    def start_loops(self) -> None:
        self.loops.start(list(self.workers))

    def check_loops(self, packets: dict) -> None:
        self.loops.check(packets)

    def count_restart(self, role: str) -> int:
        """The one count of restarts and replacements by role (worker | evaluator | ps), whoever noticed the
        failure (the loop supervision, a failed synchronous round, evaluation, PS recovery). -> the new count."""
        self.restarts[role] += 1
        return self.restarts[role]

    def ensure_worker(self, rank: int) -> None:
        """Wait for Ray to restart the worker; if it is dead for good (restarts spent, node lost), replace it.
        Blocking: sync mode needs every worker for its next round anyway."""
        try:
            ray.get(self.workers[rank].node_id.remote(), timeout=RESTART_WAIT_S)
        except (RayActorError, GetTimeoutError):
            ray.kill(self.workers[rank], no_restart=True)
            self.say(f"worker-{rank} is gone: starting a replacement")
            self.spawn_worker(rank)

    def ensure_evaluator(self) -> None:
        self.count_restart("evaluator")
        try:
            ray.get(self.evaluator.node_id.remote(), timeout=RESTART_WAIT_S)
        except (RayActorError, GetTimeoutError):
            ray.kill(self.evaluator, no_restart=True)
            self.say("evaluator is gone: starting a replacement")
            self.spawn_evaluator()

    # -- parameter server recovery -----------------------------------------------------------------------
    def ps_alive(self) -> bool:
        return not self._dead_shards()

    def _dead_shards(self) -> list[int]:
        pings = [shard.ping.remote() for shard in self.ps_shards]
        dead = []
        for index, ping in enumerate(pings):
            try:
                ray.get(ping, timeout=30)
            except (RayActorError, GetTimeoutError):
                dead.append(index)
        return dead

    def poll_shards(self) -> None:
        """Every shard but the lead (whose counters the driver polls itself) answers, and its counters are kept
        as its floor should it be recreated; a dead one raises RayActorError."""
        counters = ray.get([shard.get_counters.remote() for shard in self.ps_shards[1:]], timeout=PS_POLL_TIMEOUT_S)
        self.shard_counters.update(enumerate(counters, start=1))

    def ps_state(self, timeout_s: float) -> dict:
        """The PS's checkpoint state; a sharded PS's as one consistent cut of every shard."""
        if len(self.ps_shards) <= 1:
            return ray.get(self.ps.state_dict.remote(), timeout=timeout_s)
        return take_cut(self.ps_shards, timeout_s, self.say)

    def recover_ps(self, last_counters: PSCounters) -> None:
        """Recreate the PS from the newest readable checkpoint (an unreadable newer one is skipped with a warning;
        fresh weights if none was written yet; A3CError if none can be read); counters continue and never go
        backwards. A sharded PS whose lead lives recreates only its dead shards (each from its part of that
        checkpoint): the lead's counters are intact and the workers find the new shards themselves. A dead lead
        takes every shard."""
        restart = self.count_restart("ps")
        dead = self._dead_shards() or [0]
        whole = 0 in dead
        found = checkpoint.list_checkpoints(self.ckpt_dir)
        source, state = checkpoint.load_newest(found) if found else ("fresh weights", None)
        saved_version = PSCounters.from_dict(state[CKPT_COUNTERS]).version if state else 0
        for index in range(len(self.ps_shards)) if whole else dead:
            ray.kill(self.ps_shards[index], no_restart=True)
        if whole:
            self.spawn_ps(state, last_counters.totals())
            lost = last_counters.version - saved_version
        else:
            for index in dead:
                floor = self.shard_counters.get(index, last_counters)
                self.ps_shards[index] = self._spawn_shard(index, state, floor.totals())
            lost = max(self.shard_counters.get(i, last_counters).version - saved_version for i in dead)
        # a lower bound: the driver knows the version of its last poll (every 0.1 s), not the one the PS died at,
        # and a checkpoint taken after that poll can be newer than it (then none is known lost)
        lost = max(0, lost)
        self.lost_updates += lost
        what = "parameter server died" if whole else f"parameter-server shard(s) {dead} died"
        self.say(
            f"{what}: recreated from {source} (version {saved_version}; at least {lost} updates lost); "
            f"restart #{restart}"
        )
        if whole:
            self.loops.relaunch_all()  # their loops fail on the dead PS; relaunch them on the new one

    # -- sync mode ---------------------------------------------------------------------------------------
    def repair_after_sync_failure(self, last_counters: PSCounters) -> None:
        if not self.ps_alive():
            self.recover_ps(last_counters)
        for rank in list(self.workers):
            try:
                ray.get(self.workers[rank].node_id.remote(), timeout=5)
            except (RayActorError, GetTimeoutError):
                self.say(f"worker-{rank} does not answer yet: waiting for its restart")
                self.ensure_worker(rank)

    def kill_all(self) -> None:
        for actor in [*self.ps_shards, *self.workers.values(), self.evaluator, *self.aggregators.values()]:
            if actor is not None:
                ray.kill(actor, no_restart=True)
        if self.reservation is not None:
            self.reservation.release()  # a shared Ray (a notebook's, a cluster) gets the resources back


def _create(actor_class: Any, options: dict, *args: Any, wait_s: float = 10.0) -> Any:
    """A named actor; a replacement may find the name of the one just killed still registered for a moment
    (ray.kill is asynchronous), so a taken name is retried for `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return actor_class.options(**options).remote(*args)
        except ValueError as exc:
            if "already taken" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
