"""`a3c submit`: run `a3c train` as a Ray job on a cluster, through the Jobs API, and follow its logs."""
from __future__ import annotations

import shlex
import sys
import time
from typing import Optional

from ray_a3c.common.errors import A3CError

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
EXCLUDES = [".venv", ".git", "runs", "*.npz", "__pycache__", "*.egg-info", ".pytest_cache", "bench/out"]


def submit(address: str, train_args: list[str], working_dir: Optional[str], pip: list[str],
           follow: bool = True, poll_s: float = 1.0) -> int:
    """Submit, print the job id, stream the logs until the job ends; exit 0 only if it SUCCEEDED."""
    from ray.job_submission import JobSubmissionClient

    runtime_env: dict = {}
    if working_dir:
        runtime_env.update(working_dir=working_dir, excludes=EXCLUDES)
    if pip:
        runtime_env["pip"] = pip
    # The console script, not `python -m`: a folder of the working dir must not shadow the installed package.
    entrypoint = "a3c train " + shlex.join(train_args)
    try:
        client = JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - connection and auth failures come in several types
        raise A3CError(f"cannot reach the Ray Jobs API at {address}: {exc}".splitlines()[0]) from None
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env or None)
    print(f"submitted job {job_id}: {entrypoint}", flush=True)
    if not follow:
        return 0
    shown = 0
    while True:
        status = str(client.get_job_status(job_id)).split(".")[-1]
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            sys.stdout.write(logs[shown:])
            sys.stdout.flush()
            shown = len(logs)
        if status in TERMINAL:
            print(f"job {job_id} {status}", flush=True)
            return 0 if status == "SUCCEEDED" else 1
        time.sleep(poll_s)
