"""Does a reply's weights reference outlive a killed caller? (`python -m bench.objstore_probe`)

The chaos soak's object store grew +80% over an hour of kills. Our parameter server answers each push with a
reference to the newest weights (one `ray.put` per version, `cluster/comms/transport.publish_weights`); a worker
SIGKILLed while its push is queued may leave Ray believing it still borrows that version. This probe isolates
the pattern with the PS's sizes and no training: a publisher actor puts `--mb` MB per call and answers with the
reference; two caller actors (restarted by Ray) loop on it, and the driver SIGKILLs one every `--every-s` seconds.
Afterwards, with every loop stopped, it reads the store's exact counters (objects, bytes in use, bytes that
are primary copies) and does the same for a control phase of equal length without kills. One copy left per
kill is a leak; about one object in all (the publisher's newest) is none.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

import numpy as np

from bench.soak import object_store_stats


def _wait_restarted(actor, timeout_s: float = 60.0) -> None:
    """Until Ray's restart of a killed actor answers (a call while it restarts fails at once)."""
    import ray

    deadline = time.time() + timeout_s
    while True:
        try:
            ray.get(actor.pid.remote(), timeout=10)
            return
        except ray.exceptions.RayError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--every-s", type=float, default=2.0)
    parser.add_argument("--mb", type=float, default=2.7, help="weights per version (the Doom CNN: ~2.7 MB)")
    args = parser.parse_args(argv)
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    n = int(args.mb * 2**20 / 4)

    @ray.remote(num_cpus=1)
    class Publisher:
        def __init__(self):
            self.weights, self.published = np.zeros(n, np.float32), None

        def apply(self, gradient: np.ndarray) -> dict:
            self.weights += 1e-6 * gradient[:1]
            self.published = ray.put(self.weights)  # one per version, kept until the next, as the PS does
            return {"weights": self.published}

    @ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)
    class Caller:
        def pid(self) -> int:
            return os.getpid()

        def loop(self, publisher, seconds: float) -> int:
            gradient, calls, deadline = np.ones(n, np.float32), 0, time.time() + seconds
            while time.time() < deadline:
                reply = ray.get(publisher.apply.remote(gradient))
                np.array(ray.get(reply["weights"]))  # adopted as a copy, as set_weights does
                calls += 1
            return calls

    def phase(kills: int) -> dict:
        publisher, callers = Publisher.remote(), [Caller.remote() for _ in range(2)]
        seconds = (kills + 1) * args.every_s
        loops = {i: c.loop.remote(publisher, seconds) for i, c in enumerate(callers)}
        started = time.time()
        for k in range(kills):
            time.sleep(max(started + (k + 1) * args.every_s - time.time(), 0))
            victim = k % 2
            os.kill(ray.get(callers[victim].pid.remote()), signal.SIGKILL)
            _wait_restarted(callers[victim])
            loops[victim] = callers[victim].loop.remote(publisher, max(started + seconds - time.time(), 0.5))
        for ref in loops.values():
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                pass  # the loop the kill cut short
        time.sleep(3.0)  # the raylet deletes freed objects in batches
        store = object_store_stats(address)
        after = {"objects": store.objects, "used_mb": store.used_bytes / 2**20, "pinned_mb": store.pinned_bytes / 2**20}
        for actor in (*callers, publisher):
            ray.kill(actor)
        time.sleep(3.0)
        return after

    try:
        control, killed = phase(0), phase(args.kills)
    finally:
        ray.shutdown()
    print(f"control, no kills:   {control}")
    print(f"{args.kills} caller kills:   {killed}")
    extra = killed["objects"] - control["objects"]
    print(f"objects left beyond the control: {extra} ({extra / max(args.kills, 1):.2f} per kill)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
