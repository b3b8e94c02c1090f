"""A real Prometheus (Debian's `prometheus` package) scraping a local run through the config Ray generates for
its session, and our Grafana dashboard installed beside Ray's own (`make test-slow`; about a minute)."""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_of(metrics_port: int, timeout: float = 60) -> str:
    """The Ray session whose service discovery lists our node's metrics port."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in glob.glob("/tmp/ray/session_*/prom_metrics_service_discovery.json"):
            with open(path) as fh:
                if f":{metrics_port}" in fh.read():
                    return os.path.dirname(path)
        time.sleep(1)
    raise AssertionError(f"no Ray session lists metrics port {metrics_port}")


def query(port: int, expr: str) -> float:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        result = json.loads(resp.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else float("nan")


def test_prometheus_reads_the_env_step_counter_rising(tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus package is not installed (apt-get install prometheus)")
    metrics_port, prom_port = free_port(), free_port()
    train = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray_a3c.cluster.cli",
            "train",
            "--time-limit",
            "90",
            "--run-dir",
            str(tmp_path / "run"),
            "--set",
            "run.stop_return=null",
            "run.log_interval_s=1",
            f"cluster.metrics_export_port={metrics_port}",
            "cluster.namespace=a3c-prometheus-test",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(train.stdout), daemon=True).start()
    prometheus = None
    try:
        session = session_of(metrics_port)
        config = os.path.join(session, "metrics", "prometheus", "prometheus.yml")
        assert os.path.isfile(config), os.listdir(session)
        prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        readings: list[float] = []
        deadline = time.time() + 75
        while time.time() < deadline and not (len(readings) >= 2 and readings[-1] > readings[0] > 0):
            time.sleep(3)
            try:
                value = query(prom_port, 'max(ray_a3c_env_steps_total{run="run"})')
            except OSError:
                continue  # Prometheus still starting
            if value == value and (not readings or value != readings[-1]):
                readings.append(value)
        assert len(readings) >= 2 and readings[-1] > readings[0] > 0, (readings, "".join(lines[-5:]))
        dashboard = os.path.join(session, "metrics", "grafana", "dashboards", "ray_a3c_dashboard.json")
        assert json.loads(open(dashboard).read())["uid"] == "ray-a3c-run"
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        train.terminate()  # SIGTERM: the run checkpoints and stops its Ray
        train.wait(timeout=120)
