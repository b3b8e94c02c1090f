"""A sharded PS's shard actors on the session's Ray: a checkpoint is one consistent cut even while a packet
has reached one shard and not yet the other, and the worker's client assembles the weights a PS publishes."""

import threading
import time

import numpy as np
import pytest

from ray_a3c.common.envs import probe_spaces
from ray_a3c.common.packet import GradientPacket
from ray_a3c.learner.parameter_server import ParameterServer
from ray_a3c.learner.shards import split_packet
from tests.helpers import small_config

pytestmark = pytest.mark.integration


def packets(num_params: int, count: int) -> list[GradientPacket]:
    rng = np.random.default_rng(0)
    return [
        GradientPacket(
            gradient=rng.standard_normal(num_params).astype(np.float32),
            version=i,
            env_steps=10,
            episode_returns=[1.0],
            episode_lengths=[10],
            sender="w",
            seq=i + 1,
        )
        for i in range(count)
    ]


def test_a_cut_waits_for_the_packet_in_flight_and_the_client_assembles_the_weights(ray_session):
    import ray

    from ray_a3c.cluster.sharding import RemoteShardServer, ShardedClient, ShardedTarget, take_cut

    cfg = small_config(**{"learner.num_shards": 2, "model.hidden_sizes": [64, 64], "algo.max_policy_lag": 100})
    spaces = probe_spaces(cfg.env)
    shards = [RemoteShardServer.options(num_cpus=0).remote(cfg, spaces, i) for i in range(2)]
    plan = ray.get(shards[0].shard_plan.remote())
    stream = packets(plan.num_params, 4)
    reference = ParameterServer(small_config(**{"model.hidden_sizes": [64, 64], "algo.max_policy_lag": 100}), spaces)
    for packet in stream[:3]:
        reference.apply_gradients(packet)
    for packet in stream[:2]:  # two packets through both shards
        ray.get(
            [
                s.apply_gradients.remote(p)
                for s, p in zip(shards, split_packet(packet, plan, [packet.version] * 2), strict=True)
            ]
        )
    third = split_packet(stream[2], plan, [2, 2])
    ray.get(shards[0].apply_gradients.remote(third[0]))  # the third has reached the lead only...
    late = threading.Timer(1.0, lambda: shards[1].apply_gradients.remote(third[1]))  # ...the rest comes during the cut
    late.start()
    started = time.monotonic()
    state = take_cut(shards, 30, print)
    assert time.monotonic() - started >= 0.9  # it waited for the slice in flight
    expected = reference.state_dict()
    np.testing.assert_array_equal(
        np.concatenate([v.reshape(-1).numpy() for v in state["model"].values()]),
        np.concatenate([v.reshape(-1).numpy() for v in expected["model"].values()]),
    )
    assert state["counters"]["version"] == 3 and state["counters"]["env_steps"] == 30

    # the client: whole weights from both shards, equal to the one PS's after the same packets
    target = ShardedTarget(shards, ["", ""], "")
    version, weights, env_steps = ShardedClient(target).get_weights()
    assert (version, env_steps) == (3, 30)
    np.testing.assert_array_equal(weights, reference.flat.weights())
    for shard in shards:
        ray.kill(shard)
