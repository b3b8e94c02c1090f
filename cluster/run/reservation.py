"""The run's resources reserved as one placement group: a bundle for the parameter server, one per worker and
one for the evaluator, placed together or not at all (inside a Tune trial, the trial's group laid out so). A
cluster that cannot hold them ends the run after `cluster.start_timeout_s` with one error naming what each
actor asks and what is free; a replacement (a worker, the evaluator, a recreated PS) goes back into its role's
bundle."""

from __future__ import annotations

import dataclasses

import ray
from ray.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    placement_group,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config

STRATEGIES = {"spread": "SPREAD", "default": "PACK"}  # cluster.placement -> the group's strategy


def shard_role(index: int) -> str:
    """A PS shard's role (its actor's name and bundle): the lead is `ps`, as an unsharded PS is."""
    return "ps" if index == 0 else f"ps-shard-{index}"


def role_resources(config: Config, num_workers: int) -> dict[str, dict]:
    """What each actor of the run asks for, in bundle order: ps (and its shards), worker-0.., eval (when the
    run evaluates)."""
    c = config.cluster
    ps = {"CPU": c.ps_num_cpus, "GPU": config.learner.num_gpus}
    roles = {shard_role(i): dict(ps) for i in range(config.learner.num_shards)}
    roles.update({f"worker-{rank}": {"CPU": c.worker_num_cpus} for rank in range(num_workers)})
    if config.run.evaluate:
        roles["eval"] = {"CPU": c.eval_num_cpus}
    return {role: {k: float(v) for k, v in res.items() if v} for role, res in roles.items()}


def run_bundles(config: Config) -> list[dict]:
    """The run's placement-group bundles in role order (ps, workers by rank, eval), roles asking nothing left
    out: what a Tune trial reserves for its run (cluster/sweeps/tune.py) and what `Reservation` finds there."""
    return [res for res in role_resources(config, config.run.num_workers).values() if res]


def current_run_group(config: Config) -> PlacementGroup | None:
    """The placement group this process runs in when it is laid out as `run_bundles(config)` (a Tune trial's),
    else None."""
    group = get_current_placement_group()
    if group is None:
        return None
    specs = [{k: float(v) for k, v in bundle.items() if v} for bundle in group.bundle_specs]
    return group if specs == run_bundles(config) else None


def describe(resources: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items()) if v) + "}"


class Reservation:
    """One placement group for the run. Roles that ask for nothing (0 CPUs, no GPU) take no bundle. Inside a
    placement group already (a Tune trial's), the run uses that one and reserves nothing of its own."""

    def __init__(self, config: Config, num_workers: int, name: str):
        self.roles = role_resources(config, num_workers)
        self.index = {role: i for i, role in enumerate(r for r, res in self.roles.items() if res)}
        self.group, self.owned = None, False
        if not self.index:
            return
        if get_current_placement_group() is not None:  # a Tune trial's: its bundles are ours when laid out so
            self.group = current_run_group(
                dataclasses.replace(config, run=dataclasses.replace(config.run, num_workers=num_workers))
            )
            return
        bundles = [self.roles[role] for role in self.index]
        # shards go on different nodes where the cluster has them: SPREAD is best effort, never a refusal
        strategy = "SPREAD" if config.learner.num_shards > 1 else STRATEGIES[config.cluster.placement]
        self.group = placement_group(bundles, strategy=strategy, name=name)
        self.owned = True

    def wait(self, timeout_s: float) -> None:
        """Block until the group is placed; else remove it and raise the one error that says why."""
        if not self.owned:
            return
        ready, _ = ray.wait([self.group.ready()], timeout=timeout_s)
        if ready:
            return
        remove_placement_group(self.group)
        self.group = None
        free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
        total: dict = {}
        for res in self.roles.values():
            for key, value in res.items():
                total[key] = total.get(key, 0.0) + value
        asks = "; ".join(f"{role} waits for {describe(res)}" for role, res in self.roles.items() if res)
        raise A3CError(
            f"after {timeout_s:g}s the cluster cannot hold the run's actors together ({asks}; "
            f"{describe(total)} in all); it has {describe(free) or 'nothing'} free: add nodes or lower "
            "run.num_workers / cluster.*_num_cpus / learner.num_gpus"
        )

    def strategy(self, role: str) -> PlacementGroupSchedulingStrategy | None:
        """Where `role`'s actor goes: its bundle (a replacement reuses it), or None outside the group."""
        if self.group is None or role not in self.index:
            return None
        return PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=self.index[role])

    def release(self) -> None:
        if self.owned and self.group is not None:
            remove_placement_group(self.group)
            self.group = None
