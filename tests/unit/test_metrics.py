"""Ray metrics as Prometheus expects them (no Ray started): counters advance by growth, gauges are set; the
generated reference and Grafana dashboard match the code."""

import json
import os

import pytest

from ray_a3c.cluster.run import metrics as ray_side
from ray_a3c.common.reporting import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeMetric:
    def __init__(self, name, description="", tag_keys=()):
        self.name, self.calls = name, []

    def inc(self, value, tags):
        assert value > 0  # Ray refuses other increments
        self.calls.append(("inc", value, tags))

    def set(self, value, tags):
        self.calls.append(("set", value, tags))


@pytest.fixture
def publisher(monkeypatch):
    from ray.util import metrics as ray_metrics

    monkeypatch.setattr(ray_metrics, "Counter", FakeMetric)
    monkeypatch.setattr(ray_metrics, "Gauge", FakeMetric)
    return ray_side.RayMetrics("run-a")


def calls(publisher, tag):
    return publisher._metrics[tag][1].calls


def test_counters_advance_by_what_the_totals_grew_and_gauges_are_set(publisher):
    publisher.update({ray_side.ENV_STEPS: 1000, metrics.ENV_STEPS_PER_S: 50.0}, {"worker": 0})
    publisher.update({ray_side.ENV_STEPS: 1600, metrics.ENV_STEPS_PER_S: 70.0}, {"worker": 2})
    publisher.update({ray_side.ENV_STEPS: 1500, metrics.ENV_STEPS_PER_S: None}, {"worker": 2})  # a floor, not less
    assert [c[1] for c in calls(publisher, ray_side.ENV_STEPS)] == [1000.0, 600.0]
    assert [c[1] for c in calls(publisher, metrics.ENV_STEPS_PER_S)] == [50.0, 70.0]
    assert calls(publisher, ray_side.RESTARTS) == [("inc", 2.0, {"run": "run-a", "role": "worker"})]


def test_the_generated_reference_and_dashboard_match_the_code():
    with open(os.path.join(ROOT, "docs", "metrics.md")) as fh:
        assert fh.read().split("\n", 2)[2] == ray_side.reference_table()
    with open(ray_side.DASHBOARD_FILE) as fh:
        assert fh.read() == ray_side.dashboard_json()
    dashboard = json.loads(ray_side.dashboard_json())
    exprs = [panel["targets"][0]["expr"] for panel in dashboard["panels"]]
    assert len(exprs) == len(ray_side.RAY_METRICS)
    for expr, metric in zip(exprs, ray_side.RAY_METRICS, strict=False):
        assert metric.prometheus_name in expr and ("rate(" in expr) == (metric.kind is ray_side.Kind.COUNTER)
    assert {m.prometheus_name for m in ray_side.RAY_METRICS if m.kind is ray_side.Kind.COUNTER} >= {
        "ray_a3c_env_steps_total",
        "ray_a3c_restarts_total",
    }


def test_the_dashboard_is_installed_beside_rays_own(tmp_path):
    assert ray_side.install_dashboard(str(tmp_path)) is None  # Ray generated no Grafana files there
    (tmp_path / "metrics" / "grafana" / "dashboards").mkdir(parents=True)
    path = ray_side.install_dashboard(str(tmp_path))
    assert json.loads(open(path).read())["uid"] == "ray-a3c-run"
