"""The run's actors and their lifecycle: placement, restarts, replacement, and PS recovery from checkpoints."""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError
from ray_a3c.cluster.remote import RemoteEvaluator, RemoteParameterServer, RemoteWorker
from ray_a3c.common import checkpoint
from ray_a3c.common.config import Config
from ray_a3c.common.envs import EnvSpaces

RESTART_WAIT_S = 120.0  # how long a crashed actor may take to come back before it is replaced


class Fleet:
    """Spawns the parameter server, the workers and the evaluator as named actors, keeps the asynchronous
    worker loops running (relaunching them after a crash, replacing dead or hung workers), and recreates a
    dead parameter server from the newest checkpoint. Every restart is logged and counted."""

    def __init__(self, config: Config, spaces: EnvSpaces, ckpt_dir: str, say: Callable[[str], None]):
        self.config, self.spaces, self.ckpt_dir, self.say = config, spaces, ckpt_dir, say
        self.restarts = {"worker": 0, "evaluator": 0, "ps": 0}
        self.lost_updates = 0
        self.ps: Any = None
        self.workers: dict[int, Any] = {}
        self.evaluator: Any = None
        self.loops: dict[int, ray.ObjectRef] = {}
        self._launched_at: dict[int, float] = {}
        self._placement: dict[str, ray.ObjectRef] = {}  # actor -> its node id, until they have all started
        self._placement_reported = False

    # -- actor options ---------------------------------------------------------------------------------
    def _options(self, name: str, num_cpus: float, num_gpus: float = 0.0, restarts: int = 0,
                 spread: bool = False, sees_gpus: bool = False) -> dict:
        # No task events: the PS serves hundreds of calls a second, and the GCS would keep an event for each
        # (it grew ~17 MB/min in the soak); the dashboard's actor and metrics views are unaffected.
        opts: dict = {"name": name, "namespace": self.config.cluster.namespace, "num_cpus": num_cpus,
                      "num_gpus": num_gpus, "max_restarts": restarts, "max_task_retries": 0,
                      "enable_task_events": False}
        if not sees_gpus:
            # Ray >= 2.56 no longer hides GPUs from actors that reserve none; a CPU actor must not touch one.
            opts["runtime_env"] = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
        if spread:
            opts["scheduling_strategy"] = "SPREAD"
        return opts

    def spawn_ps(self, state: Optional[dict] = None, counter_floor: Optional[dict] = None) -> Any:
        c, learner = self.config.cluster, self.config.learner
        self.ps = RemoteParameterServer.options(**self._options(
            "a3c:ps", c.ps_num_cpus, learner.num_gpus, sees_gpus=learner.num_gpus > 0 or learner.device != "cpu",
        )).remote(self.config, self.spaces)
        if state is not None or counter_floor:
            ray.get(self.ps.load_state_dict.remote(state, counter_floor) if state is not None
                    else self.ps.raise_counters.remote(counter_floor))
        return self.ps

    def spawn_worker(self, rank: int) -> Any:
        c = self.config.cluster
        self.workers[rank] = RemoteWorker.options(**self._options(
            f"a3c:worker-{rank}", c.worker_num_cpus, restarts=c.max_restarts, spread=c.placement == "spread",
        )).remote(self.config, rank)
        return self.workers[rank]

    def spawn_evaluator(self) -> Any:
        c = self.config.cluster
        self.evaluator = RemoteEvaluator.options(**self._options(
            "a3c:eval", c.eval_num_cpus, restarts=c.max_restarts)).remote(self.config)
        return self.evaluator

    def spawn_all(self, resume_state: Optional[dict]) -> None:
        """Ask Ray for the PS and the workers and return at once: calls queue behind each actor's constructor,
        so each worker starts as soon as it is ready. The evaluator is not started here (`spawn_evaluator`,
        once training runs): on a small machine it would compete with the workers' start-up for the CPU."""
        self.spawn_ps(resume_state)
        for rank in range(self.config.run.num_workers):
            self.spawn_worker(rank)
        actors = {"ps": self.ps, **{f"worker-{r}": w for r, w in self.workers.items()}}
        self._placement = {name: actor.node_id.remote() for name, actor in actors.items()}
        self._placement["device"] = self.ps.get_counters.remote()

    def poll_placement(self) -> Optional[dict]:
        """Once every actor has started: log the node each runs on (node id -> address) and return them."""
        if self._placement_reported:
            return None
        if "eval" not in self._placement and self.evaluator is not None:
            self._placement["eval"] = self.evaluator.node_id.remote()
        refs = list(self._placement.values())
        if self.evaluator is None:
            return None
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if len(ready) < len(refs):
            return None
        values = dict(zip(self._placement, ray.get(refs)))
        self._placement, self._placement_reported = {}, True
        device = values.pop("device")["device"]
        addresses = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes()}
        self.say("placement: " + ", ".join(f"{name}@{addresses.get(node, '?')}/{node[:8]}"
                                            for name, node in values.items()) + f"; learner on {device}")
        return values

    # -- asynchronous worker loops -----------------------------------------------------------------------
    def start_loops(self) -> None:
        for rank in self.workers:
            self._launch(rank)

    def _launch(self, rank: int) -> None:
        self.loops[rank] = self.workers[rank].run_remote.remote(self.ps)
        self._launched_at[rank] = time.time()

    def check_loops(self, last_seen: dict) -> None:
        """Relaunch loops that ended in an error (crashed worker, dead PS), replacing workers that are gone
        for good; kill workers that sent nothing for `worker_timeout_s` so that Ray restarts them."""
        for rank, ref in list(self.loops.items()):
            ready, _ = ray.wait([ref], timeout=0)
            if ready:
                try:
                    ray.get(ref)
                except RayError as exc:
                    self.restarts["worker"] += 1
                    self.say(f"worker-{rank} failed ({type(exc).__name__}); restart #{self.restarts['worker']}")
                    self.ensure_worker(rank)
                    self._launch(rank)
        timeout = self.config.cluster.worker_timeout_s
        now = time.time()
        for rank in self.loops:
            seen = max(last_seen.get(rank, 0.0), self._launched_at[rank])
            if now - seen > timeout:
                self.say(f"worker-{rank} sent nothing for {now - seen:.0f}s: killing it for a restart")
                ray.kill(self.workers[rank], no_restart=False)
                self._launched_at[rank] = now

    def ensure_worker(self, rank: int) -> None:
        """Wait for Ray to restart the worker; if it is dead for good (restarts spent, node lost), replace it."""
        try:
            ray.get(self.workers[rank].node_id.remote(), timeout=RESTART_WAIT_S)
        except (RayActorError, GetTimeoutError):
            ray.kill(self.workers[rank], no_restart=True)
            self.say(f"worker-{rank} is gone: starting a replacement")
            self.spawn_worker(rank)

    def ensure_evaluator(self) -> None:
        self.restarts["evaluator"] += 1
        try:
            ray.get(self.evaluator.node_id.remote(), timeout=RESTART_WAIT_S)
        except (RayActorError, GetTimeoutError):
            ray.kill(self.evaluator, no_restart=True)
            self.say("evaluator is gone: starting a replacement")
            self.spawn_evaluator()

    # -- parameter server recovery -----------------------------------------------------------------------
    def ps_alive(self) -> bool:
        try:
            ray.get(self.ps.ping.remote(), timeout=30)
            return True
        except (RayActorError, GetTimeoutError):
            return False

    def recover_ps(self, last_counters: dict) -> None:
        """Recreate the PS from the newest checkpoint; counters continue and never go backwards."""
        self.restarts["ps"] += 1
        ray.kill(self.ps, no_restart=True)
        found = checkpoint.list_checkpoints(self.ckpt_dir)
        state = checkpoint.load(found[-1]) if found else None
        saved_version = state["counters"]["version"] if state else 0
        self.lost_updates += max(0, last_counters.get("version", 0) - saved_version)
        floor = {k: last_counters[k] for k in ("version", "env_steps", "episodes", "rejected_stale",
                                                "rejected_nonfinite") if k in last_counters}
        self.spawn_ps(state, floor)
        self.say(f"parameter server died: recreated from {found[-1] if found else 'fresh weights'} "
                 f"(version {saved_version}; {last_counters.get('version', 0) - saved_version} updates lost); "
                 f"restart #{self.restarts['ps']}")
        for rank in self.loops:  # their loops fail on the dead PS; relaunch them on the new one
            self.ensure_worker(rank)
            ray.cancel(self.loops[rank], force=False)
            self._launch(rank)

    # -- sync mode ---------------------------------------------------------------------------------------
    def repair_after_sync_failure(self, last_counters: dict) -> None:
        if not self.ps_alive():
            self.recover_ps(last_counters)
        for rank in list(self.workers):
            try:
                ray.get(self.workers[rank].node_id.remote(), timeout=5)
            except (RayActorError, GetTimeoutError):
                self.restarts["worker"] += 1
                self.say(f"worker-{rank} failed; restart #{self.restarts['worker']}")
                self.ensure_worker(rank)

    def kill_all(self) -> None:
        for actor in [self.ps, *self.workers.values(), self.evaluator]:
            if actor is not None:
                ray.kill(actor, no_restart=True)
