"""The tests' side of the two-node cluster that tests/cluster_helper.py runs: starting it, a training run against it
(`a3c train --address` in a subprocess), and its actors as the State API lists them. Used by the two cluster test
files (tests/ray/conftest.py gives each its own cluster)."""

import json
import os
import re
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRESS = re.compile(r"steps\s+([\d,]+) \|.*version\s+([\d,]+)")


def start_cluster():
    """The helper process's cluster: yields its JSON line (address, dashboard, ports, node id) plus `helper`."""
    env = dict(os.environ, PYTHONPATH=ROOT, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    helper = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster_helper"],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    info = json.loads(helper.stdout.readline())
    info["helper"] = helper
    yield info
    try:
        helper.communicate("exit\n", timeout=60)
    except subprocess.TimeoutExpired:
        helper.kill()


class Run:
    """`a3c train --address` in a subprocess; its output is collected line by line on a thread."""

    def __init__(self, cluster, tmp_path, *args, pythonpath: str = ROOT):
        self.run_dir = str(tmp_path / "run")
        cmd = [
            sys.executable,
            "-m",
            "ray_a3c.cluster.cli",
            "train",
            "--address",
            cluster["address"],
            "--run-dir",
            self.run_dir,
            "--seed",
            "0",
            "--set",
            "run.log_interval_s=0.5",
            *args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=pythonpath),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        self.wait_until(lambda: any(needle in line for line in self.lines), f"'{needle}'", timeout)

    def wait_until(self, done, what: str, timeout: float = 120) -> None:
        """Until `done()` holds; fails naming `what` if the run ends or `timeout` passes first."""
        deadline = time.time() + timeout
        while not done():
            assert self.proc.poll() is None or done(), f"the run ended before {what}:\n" + "".join(self.lines)
            assert time.time() < deadline, f"no {what} after {timeout:g}s in:\n" + "".join(self.lines)
            time.sleep(0.1)

    def versions(self) -> list[int]:
        """The PS versions the progress lines so far showed, in order (0 before any)."""
        return [0] + [version for _, version in self.progress()]

    def progress(self) -> list[tuple[int, int]]:
        """(env steps, version) of every progress line so far."""
        return [tuple(int(g.replace(",", "")) for g in m.groups()) for m in map(PROGRESS.search, self.lines[:]) if m]

    def wait_for_checkpoint(self, timeout: float = 120) -> None:
        """Until the run has written its first `ckpt-*` (a PS killed before it would start from scratch)."""
        folder = os.path.join(self.run_dir, "checkpoints")

        def written() -> bool:
            return os.path.isdir(folder) and any(f.startswith("ckpt-") for f in os.listdir(folder))

        self.wait_until(written, "first checkpoint", timeout)

    def finish(self, timeout: float = 300, code: int = 0) -> dict:
        """Waits for the run's end (exit `code`: 130 after a SIGTERM) -> its summary line."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        out = "".join(self.lines)
        assert self.proc.returncode == code, out
        self.assert_counters_never_go_backwards()
        return json.loads(self.lines[-1])

    def assert_counters_never_go_backwards(self) -> None:
        points = self.progress()
        assert len(points) >= 2
        for (s0, v0), (s1, v1) in zip(points, points[1:], strict=False):
            assert s1 >= s0 and v1 >= v0, f"counters went backwards: {(s0, v0)} -> {(s1, v1)}"


def actors(cluster) -> dict:
    from ray.util.state import list_actors

    alive = list_actors(address=cluster["dashboard"], filters=[("state", "=", "ALIVE")], limit=1000)
    # Names carry the run (`a3c:<run>:ps`); each test runs one training at a time, so the role identifies it.
    return {"a3c:" + a.name.rsplit(":", 1)[1]: a for a in alive if a.name and a.name.startswith("a3c:")}


def pid_of(cluster, name: str) -> int:
    return actors(cluster)[name].pid
