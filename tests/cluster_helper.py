"""A real two-node Ray cluster on one machine, owned by this process (tests talk to it over stdin/stdout).

Prints one JSON line {address, dashboard, metrics_port, worker_node_id}; then obeys lines on stdin:
`remove` removes the second node (its raylet and every actor on it die), `add` adds a node of 2 CPUs and prints
its id, `exit` shuts the cluster down.
"""

import json
import socket
import sys

from ray.cluster_utils import Cluster


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    # Ports of its own, so clusters of two test files (pytest-xdist runs files side by side) never collide.
    dashboard_port, metrics_port = free_port(), free_port()
    # Agent ports of our own: a local Ray already running on this machine (the test session's) holds the default
    # 52365, and a head whose agent cannot bind it accepts no job ("No available agent to submit job").
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 4,
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": dashboard_port,
            "metrics_export_port": metrics_port,
            "dashboard_agent_listen_port": free_port(),
        },
    )
    worker_node = cluster.add_node(num_cpus=2, dashboard_agent_listen_port=free_port())
    cluster.wait_for_nodes()
    print(
        json.dumps(
            {
                "address": cluster.address,
                "dashboard": f"http://127.0.0.1:{dashboard_port}",
                "metrics_port": metrics_port,
                "worker_node_id": worker_node.node_id,
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() == "remove":
            cluster.remove_node(worker_node, allow_graceful=False)
            print("removed", flush=True)
        elif line.strip() == "add":
            node = cluster.add_node(num_cpus=2, dashboard_agent_listen_port=free_port())
            cluster.wait_for_nodes()
            print(node.node_id, flush=True)
        elif line.strip() == "exit":
            break
    cluster.shutdown()


if __name__ == "__main__":
    main()
