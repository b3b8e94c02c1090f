"""A real two-node Ray cluster on one machine, owned by this process (tests talk to it over stdin/stdout).

Prints one JSON line {address, dashboard, metrics_port, worker_node_id}; then obeys lines on stdin:
`remove` removes the second node (its raylet and every actor on it die), `exit` shuts the cluster down.
"""
import json
import sys

from ray.cluster_utils import Cluster


def main() -> None:
    dashboard_port, metrics_port = int(sys.argv[1]), int(sys.argv[2])
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 4, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port,
        "metrics_export_port": metrics_port})
    worker_node = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "dashboard": f"http://127.0.0.1:{dashboard_port}",
                      "metrics_port": metrics_port, "worker_node_id": worker_node.node_id}), flush=True)
    for line in sys.stdin:
        if line.strip() == "remove":
            cluster.remove_node(worker_node, allow_graceful=False)
            print("removed", flush=True)
        elif line.strip() == "exit":
            break
    cluster.shutdown()


if __name__ == "__main__":
    main()
