"""Node aggregation in front of a sharded PS, without Ray: an aggregate cut into one part per shard moves S
shards exactly as one PS fed the unsharded aggregate; each member is counted once on every shard, resends
included; each shard leaves out a member stale by its own version."""

import copy
import dataclasses

import numpy as np
import pytest

from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.wire.flat import decode_gradient, finite_norm, gradient_tensor
from ray_a3c.common.wire.packet import GradientPacket, Routing, senders
from ray_a3c.learner.aggregator import reduce_for_shards, reduce_packets, shard_member_results
from ray_a3c.learner.parameter_server import ParameterServer
from ray_a3c.learner.shards import gather, join_replies, scatter, split_packet
from tests.helpers import assembled_weights, small_config

CASES = {  # name -> config overrides
    "cartpole shared adam": {"env.id": "CartPole-v1", "model.shared_trunk": True},
    "pendulum separate adam, obs statistics": {
        "env.id": "Pendulum-v1",
        "model.shared_trunk": False,
        "algo.critic_learning_rate": 3e-3,
        "model.normalize_obs": True,
    },
}
LAG = 3


def config(case: str, shards: int):
    return small_config(
        **{
            "algo.learning_rate": 1e-3,
            "algo.max_grad_norm": 0.5,
            "algo.max_policy_lag": LAG,
            "learner.num_shards": shards,
            "model.hidden_sizes": [64, 64],  # a few 1024-element blocks per group: every shard owns some of each
            **CASES[case],
        }
    )


def servers_for(case: str, shards: int) -> list[ParameterServer]:
    cfg = config(case, shards)
    return [ParameterServer(cfg, probe_spaces(cfg.env), shard_index=s) for s in range(shards)]


def obs_dim(ps: ParameterServer) -> int | None:
    return ps.model.obs_norm.mean.numel() if ps.model.obs_norm is not None else None


def node_rounds(num_params: int, dim: int | None, rounds: int = 12, seed: int = 0) -> list[list[dict]]:
    """Per round, one node's packets as (gradient, lag behind the PS, ...): mixed scales (most clipped), a
    value-only round, one non-finite member, members stale at the aggregator, a round whose oldest member the
    aggregator still took but the PS finds stale."""
    rng = np.random.default_rng(seed)
    out, seq = [], 0
    for r in range(rounds):
        members = []
        for w in range(3):
            seq += 1
            grad = (rng.standard_normal(num_params) * (0.001 if (r + w) % 4 == 0 else 1.0)).astype(np.float32)
            if (r, w) == (3, 1):
                grad[num_params - 1] = np.nan  # in the last shard's slice
            # round 5: one member past max_policy_lag; round 8: one the aggregator (3 behind) takes, the PS does not
            lag = 5 if (r, w) in ((5, 2), (8, 0)) else (1 if w == 0 else 0)
            members.append(
                {
                    "gradient": grad,
                    "lag": lag,
                    "sender": f"w{w}",
                    "seq": seq,
                    "critic_only": r % 4 == 3,
                    "moments": (4, rng.standard_normal(dim).astype(np.float32), np.ones(dim, np.float32))
                    if dim
                    else None,
                }
            )
        out.append(members)
    return out


def packets_of(members: list[dict], versions: list[int]) -> list[GradientPacket]:
    """The node's packets, each from `lag` versions behind on every shard (a worker's ShardedClient stamps)."""
    return [
        GradientPacket(
            gradient=m["gradient"].copy(),
            version=versions[0] - m["lag"],
            env_steps=20,
            worker_rank=int(m["sender"][1:]),
            episode_returns=[float(m["seq"])],
            episode_lengths=[m["seq"]],
            losses={"policy": float(m["seq"])},
            critic_only=m["critic_only"],
            obs_moments=m["moments"],
            routing=Routing(sender=m["sender"], seq=m["seq"], shard_versions=[v - m["lag"] for v in versions]),
        )
        for m in members
    ]


def aggregator_view(versions: list[int], r: int) -> list[int]:
    """What the aggregator has seen: round 8's aggregator is 3 versions behind, so the PS rejects its aggregate."""
    return [v - 3 for v in versions] if r == 8 else list(versions)


def run_one_ps(case: str, rounds: list[list[dict]]) -> ParameterServer:
    (ps,) = servers_for(case, 1)
    for r, members in enumerate(rounds):
        packets = packets_of(members, [ps.version])
        (aggregate,), _ = reduce_packets(packets, aggregator_view([ps.version], r)[0], LAG)
        ps.apply_gradients(aggregate)
    return ps


def run_shards(case: str, shards: int, rounds: list[list[dict]]) -> list[ParameterServer]:
    servers = servers_for(case, shards)
    for r, members in enumerate(rounds):
        versions = [s.version for s in servers]
        parts, _ = reduce_for_shards(packets_of(members, versions), servers[0].plan, aggregator_view(versions, r), LAG)
        for server, part in zip(servers, parts, strict=True):
            server.apply_gradients(part)
    return servers


@pytest.mark.parametrize("case", list(CASES))
def test_an_aggregate_cut_per_shard_moves_the_shards_exactly_as_one_ps(case):
    (probe,) = servers_for(case, 1)
    rounds = node_rounds(probe.flat.num_params, obs_dim(probe))
    single = run_one_ps(case, rounds)
    c = single.counters
    assert c.rejected_nonfinite == 1 and c.rejected_stale == 1 + 3 and c.version == len(rounds) - 1
    b = single.pull_stats()
    for shards in (1, 2):
        servers = run_shards(case, shards, rounds)
        np.testing.assert_array_equal(assembled_weights(servers), single.flat.weights())  # bit for bit
        assert servers[0].counters == single.counters
        assert servers[0].packets_from == single.packets_from
        for server in servers[1:]:  # every shard counts the members; episodes are the lead's
            assert dataclasses.replace(server.counters, episodes=c.episodes) == c
        a = servers[0].pull_stats()
        assert (a.episode_returns, a.losses, a.policy_lag_mean) == (b.episode_returns, b.losses, b.policy_lag_mean)


def test_each_shard_leaves_out_a_member_stale_by_its_own_version():
    """Shard 1 ran ahead (it took packets the lead refused): a member fresh on the lead but past max_policy_lag
    on shard 1 is in the lead's mean and counted accepted there, and left out of shard 1's mean alone."""
    servers = servers_for("cartpole shared adam", 2)
    servers[1].counters.version = 8
    plan = servers[0].plan
    rng = np.random.default_rng(1)
    packets = [
        GradientPacket(
            gradient=rng.standard_normal(plan.num_params).astype(np.float32),
            version=0,
            env_steps=10,
            routing=Routing(sender=f"w{i}", seq=1, shard_versions=[0, v1]),
        )
        for i, v1 in enumerate([8, 1, 7])  # w1: 8 - 1 > 3 behind on shard 1
    ]
    grads = [p.gradient.copy() for p in packets]
    parts, reasons = reduce_for_shards(copy.deepcopy(packets), plan, [0, 8], LAG)
    assert reasons == [["", "", ""], ["", "stale", ""]]
    whole = np.zeros(plan.num_params, np.float32)
    scatter(whole, plan.shards[0].grad_chunks, gather(np.mean(grads, axis=0), plan.shards[0].grad_chunks))
    scatter(
        whole, plan.shards[1].grad_chunks, gather(np.mean([grads[0], grads[2]], axis=0), plan.shards[1].grad_chunks)
    )
    for shard, part in zip(plan.shards, parts, strict=True):
        np.testing.assert_allclose(decode_gradient(part.gradient), gather(whole, shard.grad_chunks), rtol=1e-6)
        assert part.routing.grad_norm == pytest.approx(finite_norm(gradient_tensor(whole)), rel=1e-6)
    assert [m.version for m in parts[1].routing.members] == [8, 1, 7] and parts[1].version == 1
    replies = [server.apply_gradients(part) for server, part in zip(servers, parts, strict=True)]
    assert all(r.accepted for r in replies) and [s.version for s in servers] == [1, 9]
    assert servers[0].counters.rejected_stale == 0 and servers[1].counters.rejected_stale == 1
    assert servers[0].counters.env_steps == servers[1].counters.env_steps == 30
    told = shard_member_results(replies, reasons, [[0, 0, 0], [8, 1, 7]], weight_sync_every=1)
    lead, shard1 = told[1]
    assert lead.accepted and not shard1.accepted and shard1.reason == "stale" and shard1.weights is not None
    assert join_replies(told[1]).accepted and join_replies(told[1]).version == 1  # the lead counted it


def test_a_whole_aggregate_stale_on_one_shard_is_refused_there_and_taken_on_the_lead():
    servers = servers_for("cartpole shared adam", 2)
    servers[1].counters.version = 8
    plan = servers[0].plan
    packets = [
        GradientPacket(
            gradient=np.ones(plan.num_params, np.float32),
            version=0,
            env_steps=10,
            routing=Routing(shard_versions=[0, 2]),
        )
    ]
    parts, reasons = reduce_for_shards(packets, plan, [0, 2], LAG)  # the aggregator had not seen shard 1 move
    assert reasons == [[""], [""]]
    replies = [server.apply_gradients(part) for server, part in zip(servers, parts, strict=True)]
    assert replies[0].accepted and replies[1].reason == "stale" and [s.version for s in servers] == [1, 8]
    assert join_replies(replies).accepted


def test_every_member_is_counted_once_on_every_shard_whatever_reached_which():
    """The aggregator's parts reached the lead only, then it died; the workers resend through their
    ShardedClient: the lead drops the resends, shard 1 takes them, and each shard has counted each member once.
    A resend after a whole aggregate changes nothing anywhere."""
    servers = servers_for("cartpole shared adam", 2)
    plan = servers[0].plan
    rng = np.random.default_rng(2)
    packets = [
        GradientPacket(
            gradient=rng.standard_normal(plan.num_params).astype(np.float32),
            version=0,
            env_steps=10 + i,
            episode_returns=[1.0],
            routing=Routing(sender=f"w{i}", seq=1, shard_versions=[0, 0]),
        )
        for i in range(3)
    ]
    parts, _ = reduce_for_shards(copy.deepcopy(packets), plan, [0, 0], LAG)
    assert senders(parts[1]) == [("w0", 1), ("w1", 1), ("w2", 1)]  # the senders a checkpoint cut follows
    assert servers[0].apply_gradients(parts[0]).accepted
    for packet in packets:
        results = [s.apply_gradients(p) for s, p in zip(servers, split_packet(packet, plan, [0, 0]), strict=True)]
        assert results[0].reason == "duplicate" and results[1].accepted
    for server in servers:
        assert server.counters.env_steps == 33 and sum(server.packets_from.values()) == 3
    assert servers[0].counters.episodes == 3 and servers[0].version == 1 and servers[1].version == 3

    whole = servers_for("cartpole shared adam", 2)
    packets = [packet.rerouted(seq=2) for packet in packets]
    parts, _ = reduce_for_shards(copy.deepcopy(packets), plan, [0, 0], LAG)
    for server, part in zip(whole, parts, strict=True):
        server.apply_gradients(part)
    before = [(dataclasses.replace(s.counters), s.flat.weights().copy()) for s in whole]
    for packet in packets:
        results = [s.apply_gradients(p) for s, p in zip(whole, split_packet(packet, plan, [0, 0]), strict=True)]
        assert [r.reason for r in results] == ["duplicate", "duplicate"]
    for server, (counters, weights) in zip(whole, before, strict=True):
        assert server.counters == counters
        np.testing.assert_array_equal(server.flat.weights(), weights)
