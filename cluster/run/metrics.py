"""Application metrics through ray.util.metrics, so they reach Prometheus and the dashboard's metrics view:
running totals as Counters, rates and levels as Gauges, each tagged with the run name. `reference_table` and
`grafana_dashboard` are generated from the same list (`make docs`: docs/metrics.md and the dashboard JSON)."""

from __future__ import annotations

import enum
import json
import os
import shutil
from dataclasses import dataclass

from ray.util import metrics as ray_metrics

from ray_a3c.common.reporting import metrics

RESTARTS = "a3c/restarts"  # tagged by role: worker | evaluator | ps
ENV_RECREATIONS = "a3c/env_recreations"
ENV_HANGS = "a3c/env_hangs"
ENV_STEPS = "a3c/env_steps"  # a Counter: Prometheus reads it as ray_a3c_env_steps_total
RUN_TAG, ROLE_TAG = "run", "role"
DASHBOARD_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy", "grafana", "ray_a3c_dashboard.json"
)


class Kind(enum.Enum):
    COUNTER = "counter"  # a running total: Prometheus appends `_total`; rate() gives its speed
    GAUGE = "gauge"  # a level or a rate, set at each log tick


@dataclass(frozen=True)
class RayMetric:
    tag: str  # the TensorBoard tag (or our own name), '/' -> '_' in Prometheus
    kind: Kind
    meaning: str
    tag_keys: tuple = (RUN_TAG,)

    @property
    def prometheus_name(self) -> str:
        name = "ray_" + metrics.ray_metric_name(self.tag)
        return name + "_total" if self.kind is Kind.COUNTER else name


RAY_METRICS = (
    RayMetric(ENV_STEPS, Kind.COUNTER, "env steps the parameter server has counted"),
    RayMetric(metrics.REJECTED_STALE, Kind.COUNTER, "gradients rejected as older than algo.max_policy_lag"),
    RayMetric(metrics.REJECTED_NONFINITE, Kind.COUNTER, "gradients rejected as non-finite"),
    RayMetric(RESTARTS, Kind.COUNTER, "actor restarts and replacements", (RUN_TAG, ROLE_TAG)),
    RayMetric(ENV_RECREATIONS, Kind.COUNTER, "env processes (ViZDoom) restarted after a crash"),
    RayMetric(ENV_HANGS, Kind.COUNTER, "env steps or resets that hung (env.step_timeout_s): vector envs rebuilt"),
    RayMetric(metrics.ENV_STEPS_PER_S, Kind.GAUGE, "env steps per second over the last log interval"),
    RayMetric(metrics.UPDATES_PER_S, Kind.GAUGE, "parameter-server updates per second"),
    RayMetric(metrics.COMM_FRACTION, Kind.GAUGE, "share of the workers' loop spent communicating"),
    RayMetric(metrics.EPISODE_RETURN, Kind.GAUGE, "mean return of the training games that ended in the interval"),
    RayMetric(metrics.EVAL_RETURN, Kind.GAUGE, "the last screening's mean return"),
    RayMetric(metrics.PS_VERSION, Kind.GAUGE, "the parameter server's weight version"),
    RayMetric(metrics.POLICY_LAG, Kind.GAUGE, "mean versions between a gradient's weights and the PS's"),
)


class RayMetrics:
    """The driver's publisher: counters advance by what the totals grew since the last tick (a PS recreated
    from a checkpoint reports floors, never less), gauges are set."""

    def __init__(self, run_name: str):
        self._tags = {RUN_TAG: run_name}
        self._last: dict[tuple, float] = {}
        self._metrics = {}
        for m in RAY_METRICS:
            cls = ray_metrics.Counter if m.kind is Kind.COUNTER else ray_metrics.Gauge
            self._metrics[m.tag] = (m, cls(metrics.ray_metric_name(m.tag), description=m.meaning, tag_keys=m.tag_keys))

    def update(self, values: dict[str, float | None], restarts: dict[str, int]) -> None:
        for tag, value in values.items():
            if tag in self._metrics and value is not None:
                self._publish(tag, float(value), self._tags)
        for role, count in restarts.items():
            self._publish(RESTARTS, float(count), {**self._tags, ROLE_TAG: role})

    def _publish(self, tag: str, value: float, tags: dict) -> None:
        spec, metric = self._metrics[tag]
        if spec.kind is Kind.GAUGE:
            metric.set(value, tags=tags)
            return
        key = (tag, tuple(sorted(tags.items())))
        grown = value - self._last.get(key, 0.0)
        if grown > 0:  # Ray's counters take positive increments only
            metric.inc(grown, tags=tags)
            self._last[key] = value


def reference_table() -> str:
    """docs/metrics.md's table: every Ray metric with its Prometheus name, kind, tags and meaning."""
    rows = ["| Prometheus name | kind | tags | name in the code (TensorBoard tag) | meaning |", "|---|---|---|---|---|"]
    rows += [
        f"| `{m.prometheus_name}` | {m.kind.value} | {', '.join(m.tag_keys)} | `{m.tag}` | {m.meaning} |"
        for m in RAY_METRICS
    ]
    return "\n".join(rows) + "\n"


def grafana_dashboard() -> dict:
    """A Grafana dashboard of one run (picked by its `run` tag): a panel per metric; counters as rates."""
    panels = []
    for i, m in enumerate(RAY_METRICS):
        expr = f'sum by ({", ".join(m.tag_keys)}) ({m.prometheus_name}{{run=~"$run"}})'
        if m.kind is Kind.COUNTER:
            expr = f'sum by ({", ".join(m.tag_keys)}) (rate({m.prometheus_name}{{run=~"$run"}}[1m]))'
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": m.tag + (" (per s)" if m.kind is Kind.COUNTER else ""),
                "description": m.meaning,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"x": (i % 3) * 8, "y": (i // 3) * 8, "w": 8, "h": 8},
                "targets": [{"expr": expr, "legendFormat": "{{" + "}} {{".join(m.tag_keys) + "}}", "refId": "A"}],
            }
        )
    run_query = f"label_values({RAY_METRICS[0].prometheus_name}, run)"
    return {
        "title": "ray-a3c run",
        "uid": "ray-a3c-run",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "tags": ["ray-a3c"],
        "panels": panels,
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": "run",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": run_query,
                    "definition": run_query,
                    "includeAll": True,
                    "multi": True,
                    "refresh": 2,
                },
            ]
        },
    }


def dashboard_json() -> str:
    return json.dumps(grafana_dashboard(), indent=2) + "\n"


def install_dashboard(session_dir: str) -> str | None:
    """Copy the dashboard beside the ones Ray generates for its session (`metrics/grafana/dashboards`), where a
    Grafana started with Ray's provisioning config finds it; None when Ray generated none."""
    target = os.path.join(session_dir, "metrics", "grafana", "dashboards")
    if not os.path.isdir(target):
        return None
    path = os.path.join(target, os.path.basename(DASHBOARD_FILE))
    shutil.copyfile(DASHBOARD_FILE, path)
    return path
