"""The chaos soak itself, shortened: `bench.chaos` at 5 minutes of vizdoom_basic with a dense schedule (a worker
killed every 45 s, the PS every 120 s, the evaluator once, one env hung), run as its own process (its own Ray,
with the dashboard it finds actors through). ~7-9 minutes on 2 cores: `make test-slow` only."""

import json
import os
import subprocess
import sys

import pytest

from bench.chaos_report import Target, Verdict

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DENSE = ["--worker-kill-every-s", "45", "--ps-kill-every-s", "120", "--evaluator-kills", "1", "--hangs", "1"]


def test_five_minutes_of_chaos_restart_every_kill_name_the_hang_and_end_by_the_budget(tmp_path):
    pytest.importorskip("vizdoom")
    out = tmp_path / "chaos"
    cmd = [sys.executable, "-m", "bench.chaos", "--minutes", "5", "--seed", "0", *DENSE]
    cmd += ["--sample-every-s", "20", "--baseline-minute", "1", "--out-dir", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    result = json.loads((out / "samples.json").read_text())
    verdicts = {c["target"]: c["verdict"] for c in result["checks"]}
    assert result["kills"] == {"worker": 6, "ps": 2, "evaluator": 1} and result["skipped"] == [], tail
    for target in (Target.RUN_EXIT, Target.RESTARTS, Target.HANG_NAMED, Target.WENT_ON, Target.PS_LOSS):
        assert verdicts[target.value] == Verdict.PASS.value, (target, result["checks"])
    (named,) = result["named"]
    assert {"worker_rank", "env_index", "seed", "episode_step"} <= set(named) and named["env_index"] >= 0
    samples = result["samples"]
    assert len(samples) >= 12 and all(s["rss_bytes"] > 0 and s["object_store_bytes"] >= 0 for s in samples)
    for target in (Target.RSS_GROWTH, Target.STORE_GROWTH, Target.FINAL_EVAL):
        assert verdicts[target.value] != Verdict.NOT_MEASURED.value, (target, result["checks"])  # figures present
    assert result["final_eval"] is not None and os.path.getsize(out / "table.md") > 0
