"""Node aggregation without Ray: what an aggregator forwards, what the PS makes of it (the same step and the
same counts as the packets sent one by one), resends counted once, and what each member is told."""

import copy
import dataclasses

import numpy as np
import pytest

from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.wire.flat import decode_gradient, get_flat_weights, num_params
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket, Routing
from ray_a3c.learner.aggregator import Window, member_results, reduce_packets
from ray_a3c.learner.parameter_server import ParameterServer
from tests.helpers import small_config


def make_ps(**overrides):
    cfg = small_config(**{"algo.max_grad_norm": 0.0, **overrides})
    return ParameterServer(cfg, probe_spaces(cfg.env))


def packets_for(ps, n, seed=0, version=None, critic_only=False):
    rng = np.random.default_rng(seed)
    return [
        GradientPacket(
            gradient=rng.normal(size=num_params(ps.model)).astype(np.float32),
            version=ps.version if version is None else version,
            env_steps=10 + i,
            worker_rank=i,
            episode_returns=[float(i)],
            episode_lengths=[i + 1],
            critic_only=critic_only,
            routing=Routing(sender=f"w{i}", seq=seed * 100 + 1),
        )
        for i in range(n)
    ]


def test_reduce_averages_the_accepted_and_keeps_every_member_for_counting():
    ps = make_ps()
    packets = packets_for(ps, 4, version=10)
    packets[1].gradient[5] = np.nan
    packets[2].version = 3  # stale against version 10 with max_policy_lag 5
    expected = np.mean([packets[0].gradient, packets[3].gradient], axis=0)
    (aggregate,), reasons = reduce_packets(copy.deepcopy(packets), version=10, max_policy_lag=5)
    assert reasons == ["", "nonfinite", "stale", ""]
    np.testing.assert_allclose(aggregate.gradient, expected, rtol=1e-6)
    assert aggregate.version == 3 and aggregate.env_steps == sum(p.env_steps for p in packets)
    assert [m.routing.rejected for m in aggregate.routing.members] == reasons
    assert all(m.gradient.size == 0 for m in aggregate.routing.members)  # the members travel without gradients


def test_reduce_keeps_policy_and_critic_packets_apart_and_encodes_bf16():
    ps = make_ps()
    packets = packets_for(ps, 2) + packets_for(ps, 2, seed=1, critic_only=True)
    aggregates, _ = reduce_packets(copy.deepcopy(packets), version=0, max_policy_lag=5, grad_dtype="bfloat16")
    assert [a.critic_only for a in aggregates] == [False, True]
    for aggregate, group in zip(aggregates, (packets[:2], packets[2:]), strict=False):
        assert aggregate.gradient.dtype == np.uint16
        np.testing.assert_allclose(
            decode_gradient(aggregate.gradient), np.mean([p.gradient for p in group], 0), rtol=1e-2, atol=1e-2
        )


@pytest.mark.parametrize("split", [(4,), (1, 3), (2, 2)])
def test_aggregates_give_the_step_and_counts_of_the_packets_sent_as_one_batch(split):
    """Nodes with `split` workers each: their aggregates, applied as one batch, move the weights exactly as
    the same packets applied as one batch without aggregation, and every counter agrees."""
    direct, via = make_ps(), make_ps()
    packets = packets_for(direct, sum(split))
    direct.apply_batch(copy.deepcopy(packets))
    aggregates, start = [], 0
    for size in split:
        (aggregate,), _ = reduce_packets(copy.deepcopy(packets[start : start + size]), via.version, 5)
        aggregates.append(aggregate)
        start += size
    results = via.apply_batch(aggregates)
    assert all(r.accepted for r in results) and via.version == direct.version == 1
    np.testing.assert_allclose(get_flat_weights(via.model), get_flat_weights(direct.model), atol=1e-6)
    assert via.counters == direct.counters and via.packets_from == direct.packets_from
    a, b = via.pull_stats(), direct.pull_stats()
    assert a.episode_returns == b.episode_returns and a.policy_lag_mean == b.policy_lag_mean


def test_members_left_out_by_the_aggregator_are_counted_as_rejected_by_the_ps():
    ps = make_ps()
    packets = packets_for(ps, 3)
    packets[0].gradient[0] = np.inf
    (aggregate,), _ = reduce_packets(packets, ps.version, 5)
    before = get_flat_weights(ps.model).copy()
    (result,) = ps.apply_batch([aggregate])
    assert result.accepted and ps.version == 1 and not np.allclose(get_flat_weights(ps.model), before)
    assert ps.counters.rejected_nonfinite == 1 and ps.counters.env_steps == 10 + 11 + 12
    assert ps.counters.episodes == 3 and sum(ps.packets_from.values()) == 3


def test_an_aggregate_whose_oldest_accepted_member_is_stale_at_the_ps_is_rejected_whole():
    ps = make_ps(**{"algo.max_policy_lag": 2})
    for seed in range(4):
        assert ps.apply_gradients(packets_for(ps, 1, seed=10 + seed)[0]).accepted
    assert ps.version == 4
    (aggregate,), reasons = reduce_packets(packets_for(ps, 3, version=1), version=1, max_policy_lag=2)
    assert reasons == ["", "", ""]  # the aggregator had not yet seen the PS move
    before = get_flat_weights(ps.model).copy()
    (result,) = ps.apply_batch([aggregate])
    assert result.reason == "stale" and result.weights is not None and ps.counters.rejected_stale == 3
    np.testing.assert_array_equal(get_flat_weights(ps.model), before)


def test_a_packet_resent_directly_after_its_aggregator_forwarded_it_is_counted_once():
    ps = make_ps()
    packets = packets_for(ps, 2)
    (aggregate,), _ = reduce_packets(copy.deepcopy(packets), ps.version, 5)
    ps.apply_batch([aggregate])
    counters, weights = dataclasses.replace(ps.counters), get_flat_weights(ps.model).copy()
    result = ps.apply_gradients(copy.deepcopy(packets[1]))  # the worker thought the aggregator had died
    assert not result.accepted and result.reason == "duplicate"
    assert ps.counters == counters
    np.testing.assert_array_equal(get_flat_weights(ps.model), weights)
    fresh = copy.deepcopy(packets[1]).rerouted(seq=packets[1].routing.seq + 1)  # the worker's next packet: new
    assert ps.apply_gradients(fresh).accepted and ps.counters.env_steps == counters.env_steps + 11


def test_each_member_hears_its_own_verdict_and_gets_weights_where_it_needs_them():
    reply = ApplyResult(accepted=True, version=12, stop=True, weights="W")
    results = member_results(reply, ["", "stale", ""], versions=[11, 2, 8], weight_sync_every=3)
    assert [r.accepted for r in results] == [True, False, True]
    assert [r.weights for r in results] == [None, "W", "W"]  # 12-11 < 3: the fresh one keeps its weights
    assert all(r.stop and r.version == 12 for r in results)
    rejected = member_results(
        ApplyResult(accepted=False, version=12, reason="stale", weights="W"),
        ["", ""],
        versions=[1, 1],
        weight_sync_every=1,
    )
    assert [r.reason for r in rejected] == ["stale", "stale"]


def test_window_flushes_on_count_or_age():
    window = Window(max_packets=3, interval_s=0.01)
    window.add("a", now=0.0)
    window.add("b", now=0.001)
    assert not window.due(0.005) and window.due(0.0101)
    window.add("c", now=0.006)
    assert window.due(0.006) and window.take() == ["a", "b", "c"] and not window.due(1.0)
