"""Watching the actors start: where each runs, and which ones still wait.

The run's resources are reserved first (cluster/run/reservation.py), so its actors normally start at once. Where
the run reserved nothing of its own (inside a Tune trial's placement group) an actor may still wait: after
`cluster.start_timeout_s` the run names each waiting actor and what it asks for: without the parameter server
or without any worker it ends with that error; a missing worker or evaluator is reported and training goes on
with what runs (the late actor joins whenever it can be placed)."""

from __future__ import annotations

import time
from collections.abc import Callable

import ray

from ray_a3c.common.reporting.errors import A3CError


def _fmt(resources: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items()) if v) + "}"


class PlacementWatch:
    def __init__(self, timeout_s: float, say: Callable[[str], None], clock: Callable[[], float] = time.perf_counter):
        self.timeout_s, self.say, self.clock = timeout_s, say, clock
        self.started = clock()
        self.pending: dict[str, tuple[ray.ObjectRef, dict]] = {}  # name -> (node-id ref, resources asked)
        self.nodes: dict[str, str] = {}
        self.device: ray.ObjectRef | None = None
        self.reported = self.warned = False

    def watch(self, name: str, actor, resources: dict) -> None:
        if not self.pending:  # a new wave (the start, or a replacement): its own clock
            self.started, self.warned = self.clock(), False
        self.pending[name] = (actor.node_id.remote(), resources)
        self.nodes.pop(name, None)
        self.reported = False

    def poll(self, expected: int) -> None:
        """Non-blocking. `expected`: how many actors make the full set (the placement line waits for all)."""
        for name, (ref, _) in list(self.pending.items()):
            if ray.wait([ref], timeout=0)[0]:
                try:
                    self.nodes[name] = ray.get(ref)
                except ray.exceptions.RayError:
                    pass  # it died while starting: its supervisor (loops, evaluator restarts) deals with that
                del self.pending[name]
        if not self.pending and len(self.nodes) >= expected and not self.reported:
            self._report()
        elif self.pending and not self.warned and self.clock() - self.started > self.timeout_s:
            self._warn()

    def _report(self) -> None:
        self.reported = True
        addresses = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes()}
        device = ray.get(self.device).device if self.device is not None else "?"
        self.say(
            "placement: "
            + ", ".join(f"{name}@{addresses.get(node, '?')}/{node[:8]}" for name, node in self.nodes.items())
            + f"; learner on {device}"
        )

    def _warn(self) -> None:
        self.warned = True
        free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
        waiting = "; ".join(f"{name} waits for {_fmt(res)}" for name, (_, res) in self.pending.items())
        message = f"after {self.timeout_s:g}s {waiting}; the cluster has {_fmt(free) or 'nothing'} free"
        workers_up = any(name.startswith("worker-") for name in self.nodes)
        if "ps" in self.pending or not workers_up:
            raise A3CError(message + ": add nodes or lower cluster.*_num_cpus / learner.num_gpus")
        self.say(f"warning: {message}: training goes on without them until the cluster can place them")
