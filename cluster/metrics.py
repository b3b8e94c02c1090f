"""Application metrics through ray.util.metrics, so they reach Prometheus and the dashboard's metrics view."""
from __future__ import annotations

from typing import Optional

from ray.util import metrics as ray_metrics

from ray_a3c.common import metrics

GAUGES = [metrics.ENV_STEPS_PER_S, metrics.EPISODE_RETURN, metrics.EVAL_RETURN, metrics.PS_VERSION,
          metrics.POLICY_LAG, metrics.REJECTED_STALE, metrics.REJECTED_NONFINITE, metrics.UPDATES_PER_S,
          metrics.COMM_FRACTION]
RESTARTS = "a3c/restarts"  # tagged by role: worker | evaluator | ps
ENV_RECREATIONS = "a3c/env_recreations"
ENV_STEPS = "a3c/env_steps_total"


class RayMetrics:
    """Gauges named as the TensorBoard tags with '/' -> '_' (Ray prefixes them with `ray_` for Prometheus),
    tagged with the run name so several runs can share a cluster."""

    def __init__(self, run_name: str):
        self._tags = {"run": run_name}
        self._gauges = {tag: ray_metrics.Gauge(metrics.ray_metric_name(tag), description=tag, tag_keys=("run",))
                        for tag in GAUGES + [ENV_STEPS, ENV_RECREATIONS]}
        self._restarts = ray_metrics.Gauge(metrics.ray_metric_name(RESTARTS), description="actor restarts",
                                           tag_keys=("run", "role"))

    def update(self, values: dict[str, Optional[float]], restarts: dict[str, int]) -> None:
        for tag, value in values.items():
            if tag in self._gauges and value is not None:
                self._gauges[tag].set(float(value), tags=self._tags)
        for role, count in restarts.items():
            self._restarts.set(float(count), tags={**self._tags, "role": role})
