"""A sharded PS's shard actors on the session's Ray: a checkpoint is one consistent cut even while a packet
has reached one shard and not yet the other, and the worker's client assembles the weights a PS publishes."""

import threading
import time

import numpy as np
import pytest

from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.wire.packet import GradientPacket, Routing
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
            routing=Routing(sender="w", seq=i + 1),
        )
        for i in range(count)
    ]


def test_a_cut_waits_for_the_packet_in_flight_and_the_client_assembles_the_weights(ray_session):
    import ray

    from ray_a3c.cluster.comms.sharding import RemoteShardServer, take_cut
    from ray_a3c.cluster.comms.transport import ShardedClient, ShardedTarget

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


def node_packets(num_params: int, round_: int, version: int) -> list[GradientPacket]:
    """Two workers' packets of one round, from `version` (workers a and b, packet number round_ + 1)."""
    rng = np.random.default_rng(10 + round_)
    return [
        GradientPacket(
            gradient=rng.standard_normal(num_params).astype(np.float32),
            version=version,
            env_steps=10,
            episode_returns=[1.0],
            episode_lengths=[10],
            routing=Routing(sender=sender, seq=round_ + 1),
        )
        for sender in ("a", "b")
    ]


def assert_same_weights(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal to the last bit or two: here the shards step in Ray actors and the reference in this process, and a
    few elements round differently (1 ulp, ~2% of them, seen with an aggregator in front). The split itself is
    bit for bit one PS's when both run in one process (tests/unit/test_shards.py,
    tests/unit/test_shards_aggregation.py)."""
    np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-9)


def test_an_aggregator_in_front_of_shards_gives_one_ps_weights_and_a_cut_follows_its_members(ray_session):
    """Two workers' clients push through one aggregator (window of 2) to two shards: each reply joins both
    shards' slices into one PS's weights on the same aggregates; a cut waits for an aggregate's part that
    reached the lead only; with the aggregator gone the workers push through their ShardedClient."""
    import copy

    import ray

    from ray_a3c.cluster.comms.aggregation import RemoteAggregator
    from ray_a3c.cluster.comms.sharding import RemoteShardServer, take_cut
    from ray_a3c.cluster.comms.transport import AggregatedClient, ShardedClient, ShardedTarget
    from ray_a3c.learner.aggregator import reduce_for_shards, reduce_packets

    common = {
        "model.hidden_sizes": [64, 64],
        "algo.max_policy_lag": 100,
        "cluster.namespace": "a3c-tests",
        "cluster.aggregate_packets": 2,
        "cluster.aggregate_interval_s": 30.0,  # flushed by count: both packets of a round make one aggregate
    }
    cfg = small_config(**{"learner.num_shards": 2, "cluster.aggregate": "node", **common})
    spaces = probe_spaces(cfg.env)
    names = ["shardagg-test:ps", "shardagg-test:ps-shard-1"]
    shards = [
        RemoteShardServer.options(name=name, namespace="a3c-tests", num_cpus=0).remote(cfg, spaces, i)
        for i, name in enumerate(names)
    ]
    aggregator = RemoteAggregator.options(num_cpus=0).remote(cfg, names)
    target = ShardedTarget(shards, names, "a3c-tests")
    clients = [AggregatedClient(ShardedClient(target), aggregator, retry_s=60.0) for _ in range(2)]
    for client in clients:
        client.get_weights()
    plan = clients[0].direct.plan
    reference = ParameterServer(small_config(**common), spaces)

    for round_ in range(2):  # through the aggregator
        pair = node_packets(plan.num_params, round_, reference.version)
        (aggregate,), _ = reduce_packets(copy.deepcopy(pair), reference.version, 100)
        reference.apply_gradients(aggregate)
        pending = [client.submit(packet) for client, packet in zip(clients, pair, strict=True)]
        results = [p.result() for p in pending]
        assert all(r.accepted and r.version == reference.version for r in results), results
        for result in results:
            assert result.shard_versions == [reference.version] * 2
            assert_same_weights(result.weights, reference.flat.weights())

    pair = node_packets(plan.num_params, 2, reference.version)  # an aggregate that reached the lead only...
    pair = [packet.rerouted(shard_versions=[reference.version] * 2) for packet in pair]
    (aggregate,), _ = reduce_packets(copy.deepcopy(pair), reference.version, 100)
    reference.apply_gradients(aggregate)
    parts, _ = reduce_for_shards(copy.deepcopy(pair), plan, [reference.version - 1] * 2, 100)
    ray.get(shards[0].apply_gradients.remote(parts[0]))
    late = threading.Timer(1.0, lambda: shards[1].apply_gradients.remote(parts[1]))  # ...the rest comes in the cut
    late.start()
    started = time.monotonic()
    state = take_cut(shards, 30, print)
    assert time.monotonic() - started >= 0.9  # it waited for the part in flight: its members are the senders
    expected = reference.state_dict()
    assert_same_weights(
        np.concatenate([v.reshape(-1).numpy() for v in state["model"].values()]),
        np.concatenate([v.reshape(-1).numpy() for v in expected["model"].values()]),
    )
    assert state["counters"]["version"] == 3 and state["counters"]["env_steps"] == 60

    ray.kill(aggregator, no_restart=True)  # the workers fall back to their ShardedClient
    for client in clients:
        client.get_weights()
    for packet, client in zip(node_packets(plan.num_params, 3, reference.version), clients, strict=True):
        reference.apply_gradients(copy.deepcopy(packet))
        result = client.submit(packet).result()
        assert result.accepted and client.fallbacks == 1
    _, weights, env_steps = clients[1].get_weights()
    assert_same_weights(weights, reference.flat.weights())
    assert env_steps == 80
    for shard in shards:
        ray.kill(shard)
