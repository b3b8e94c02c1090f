"""`a3c submit`: run `a3c train` as a Ray job on a cluster, through the Jobs API, and follow its logs."""

from __future__ import annotations

import asyncio
import shlex
import sys
import time

from ray.job_submission import JobSubmissionClient

from ray_a3c.common.reporting.errors import A3CError

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
EXCLUDES = [".venv", ".git", "runs", "*.npz", "__pycache__", "*.egg-info", ".pytest_cache", "bench/out"]


def submit(
    address: str,
    train_args: list[str],
    working_dir: str | None,
    pip: list[str],
    follow: bool = True,
    poll_s: float = 1.0,
) -> int:
    """Submit, print the job id, stream the logs until the job ends; exit 0 only if it SUCCEEDED."""
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
    job_id = _submit_with_retries(client, entrypoint, runtime_env or None)
    print(f"submitted job {job_id}: {entrypoint}", flush=True)
    if not follow:
        return 0
    try:
        return _follow(client, job_id, poll_s)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job_id} keeps running. Follow it: ray job logs -f {job_id} "
            f"--address {address}; stop it: ray job stop {job_id} --address {address}",
            flush=True,
        )
        return 130
    except Exception as exc:  # noqa: BLE001 - the connection can fail in many ways over days
        raise A3CError(
            f"lost the Jobs API while following job {job_id} ({type(exc).__name__}); it may still run: "
            f"ray job status {job_id} --address {address}"
        ) from None


SUBMIT_TRIES, SUBMIT_RETRY_S = 6, 5.0


def _submit_with_retries(client, entrypoint: str, runtime_env: dict | None) -> str:
    """A freshly started or busy head answers 'No available agent to submit job, please try again later'
    for a while: try again, a bounded number of times; any other refusal is one clear error."""
    for attempt in range(1, SUBMIT_TRIES + 1):
        try:
            return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
        except Exception as exc:  # noqa: BLE001 - the SDK raises RuntimeError with the HTTP answer
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "try again" not in message or attempt == SUBMIT_TRIES:
                raise A3CError(f"the cluster refused the job: {message}") from None
            print(f"the cluster is not ready for jobs ({message}); retrying in {SUBMIT_RETRY_S:g}s", flush=True)
            time.sleep(SUBMIT_RETRY_S)
    raise AssertionError("unreachable")


def _follow(client, job_id: str, poll_s: float) -> int:
    """Stream the job's log as it grows (one websocket, not the whole log every second), then its status."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(tail())
    while (status := str(client.get_job_status(job_id)).split(".")[-1]) not in TERMINAL:
        time.sleep(poll_s)  # the log closed before the status settled
    print(f"job {job_id} {status}", flush=True)
    return 0 if status == "SUCCEEDED" else 1
