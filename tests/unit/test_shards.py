"""A sharded parameter server (learner/shards.py) without Ray: S shards fed the split packets end with exactly
the weights, optimizer state and counters of one PS fed the whole ones; clipping and finiteness follow the
sender's global norm; a checkpoint is the same whatever the shard count, and loads into any."""

import dataclasses

import numpy as np
import pytest
import torch

from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.wire.packet import GradientPacket, Routing
from ray_a3c.learner.parameter_server import ParameterServer
from ray_a3c.learner.shards import ALIGN, cut_points, gather, plan_for, scatter, split_packet
from tests.helpers import assembled_weights, small_config

CASES = {  # name -> config overrides
    "cartpole shared adam": {"env.id": "CartPole-v1", "model.shared_trunk": True},
    "pendulum separate adam, obs statistics, linear lr": {
        "env.id": "Pendulum-v1",
        "model.shared_trunk": False,
        "algo.critic_learning_rate": 3e-3,
        "model.normalize_obs": True,
        "algo.lr_schedule": "linear",
    },
    "cartpole separate rmsprop": {"env.id": "CartPole-v1", "model.shared_trunk": False, "algo.optimizer": "rmsprop"},
    "pixel catch cnn adam": {"env.id": "tests.pixel_games:PixelCatch-v0", "model.shared_trunk": True},
}


def config(case: str, shards: int):
    return small_config(
        **{
            "algo.learning_rate": 1e-3,
            "algo.max_grad_norm": 0.5,
            "algo.max_policy_lag": 3,
            "run.total_env_steps": 20_000,
            "learner.num_shards": shards,
            "model.hidden_sizes": [64, 64],  # a few ALIGN blocks per group: every shard owns some of each
            **CASES[case],
        }
    )


def packet_stream(num_params: int, obs_dim: int | None, count: int = 60, seed: int = 0) -> list[GradientPacket]:
    """Gradients of mixed scale (most clipped, some not), a few value-only ones, one non-finite, some stale."""
    rng = np.random.default_rng(seed)
    packets = []
    for i in range(count):
        grad = (rng.standard_normal(num_params) * (0.001 if i % 3 == 0 else 1.0)).astype(np.float32)
        if i == 17:
            grad[num_params - 1] = np.nan  # in the last shard's slice: every shard must refuse it
        moments = (
            (8, rng.standard_normal(obs_dim).astype(np.float32), np.ones(obs_dim, np.float32)) if obs_dim else None
        )
        packets.append(
            GradientPacket(
                gradient=grad,
                version=max(0, i - (6 if i % 11 == 5 else 0)),  # every 11th from 6 versions back: stale
                env_steps=100,
                episode_returns=[float(i)],
                episode_lengths=[10],
                critic_only=i % 7 == 6,
                obs_moments=moments,
                routing=Routing(sender="w", seq=i + 1),
            )
        )
    return packets


def obs_dim(ps: ParameterServer) -> int | None:
    return ps.model.obs_norm.mean.numel() if ps.model.obs_norm is not None else None


def run_shards(case: str, shards: int, packets: list[GradientPacket]) -> list[ParameterServer]:
    cfg = config(case, shards)
    servers = [ParameterServer(cfg, probe_spaces(cfg.env), shard_index=s) for s in range(shards)]
    for packet in packets:
        lag = servers[0].version - packet.version  # the stream's staleness, as each shard's own version sees it
        parts = split_packet(packet, servers[0].plan, [srv.version - lag for srv in servers])
        for server, part in zip(servers, parts, strict=True):
            server.apply_gradients(part)
    return servers


@pytest.mark.parametrize("case", list(CASES))
def test_shards_end_with_exactly_one_ps_weights_counters_and_checkpoint(case):
    single = run_shards(case, 1, [])[0]
    packets = packet_stream(single.flat.num_params, obs_dim(single))
    single = run_shards(case, 1, packets)[0]
    reference = single.flat.weights()
    assert single.counters.rejected_nonfinite == 1 and single.counters.rejected_stale > 0
    for shards in (2, 4):
        servers = run_shards(case, shards, packets)
        np.testing.assert_array_equal(assembled_weights(servers), reference)  # bit for bit
        assert dataclasses.asdict(servers[0].counters) == dataclasses.asdict(single.counters)
        for server in servers[1:]:  # the others count what their schedule and staleness need; episodes: the lead
            assert dataclasses.replace(server.counters, episodes=single.counters.episodes) == single.counters
        merged = servers[0].state_dict(tuple(server.shard_state() for server in servers[1:]))
        expected = single.state_dict()
        for key, value in expected["model"].items():
            torch.testing.assert_close(merged["model"][key], value, rtol=0, atol=0)
        for name, state in expected["optimizers"].items():
            for key, value in state["state"][0].items():
                torch.testing.assert_close(merged["optimizers"][name]["state"][0][key], value, rtol=0, atol=0)
        assert merged["counters"] == expected["counters"]


def test_a_checkpoint_loads_into_any_shard_count_and_training_continues_alike():
    case = "pendulum separate adam, obs statistics, linear lr"
    probe = run_shards(case, 1, [])[0]
    first, then = (packet_stream(probe.flat.num_params, obs_dim(probe), 30, seed) for seed in (1, 2))
    saved = run_shards(case, 1, first)[0].state_dict()
    then = [packet.rerouted(seq=packet.routing.seq + 100) for packet in then]
    continued = {}
    for shards in (1, 2, 3):
        cfg = config(case, shards)
        servers = [ParameterServer(cfg, probe_spaces(cfg.env), shard_index=s) for s in range(shards)]
        for server in servers:
            server.load_state_dict(saved)
        for packet in then:
            for server, part in zip(
                servers, split_packet(packet, servers[0].plan, [s.version for s in servers]), strict=True
            ):
                server.apply_gradients(part)
        continued[shards] = assembled_weights(servers)
    np.testing.assert_array_equal(continued[2], continued[1])
    np.testing.assert_array_equal(continued[3], continued[1])


def test_a_shard_clips_by_the_senders_global_norm_and_refuses_what_it_calls_non_finite():
    cfg = config("cartpole shared adam", 2)
    server = ParameterServer(cfg, probe_spaces(cfg.env), shard_index=1)
    shard = server.plan.shards[1]
    part = np.full(shard.num_grad_values, 0.01, np.float32)  # its own norm is far under max_grad_norm 0.5
    before = server.flat.weights()
    result = server.apply_gradients(
        GradientPacket(gradient=part, version=0, env_steps=1, routing=Routing(grad_norm=5.0))
    )
    assert result.accepted
    assert np.allclose(server.flat.grad[shard.ranges[0][1] : shard.ranges[0][2]].numpy(), 0.01 * 0.5 / 5.0)
    assert not np.array_equal(server.flat.weights(), before)
    refused = server.apply_gradients(
        GradientPacket(gradient=part, version=1, env_steps=1, routing=Routing(grad_norm=float("nan")))
    )
    assert not refused.accepted and refused.reason == "nonfinite"


def test_cuts_are_aligned_balanced_and_cover_every_value_once():
    assert cut_points(0, 10 * ALIGN, 4) == [0, 3 * ALIGN, 5 * ALIGN, 8 * ALIGN, 10 * ALIGN]
    assert cut_points(7, 7 + 500, 3) == [7, 507, 507, 507]  # under one block: the lead takes it all
    for case in CASES:
        plan = plan_for(config(case, 3), probe_spaces(config(case, 3).env))
        grad = np.arange(plan.num_params, dtype=np.float32)
        weights = np.arange(plan.num_weights, dtype=np.float32)
        pieces = [gather(grad, s.grad_chunks) for s in plan.shards]
        assert sorted(np.concatenate(pieces).tolist()) == grad.tolist()
        rebuilt = np.full(plan.num_weights, -1.0, np.float32)
        for shard in plan.shards:
            scatter(rebuilt, shard.weight_chunks, gather(weights, shard.weight_chunks))
        np.testing.assert_array_equal(rebuilt, weights)
        sizes = [s.num_grad_values for s in plan.shards]
        assert max(sizes) - min(sizes) < 2 * ALIGN * len(plan.group_ranges), sizes


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"algo.mode": "sync"}, "algo.mode=async"),
        ({"learner.max_batch_packets": 4}, "learner.max_batch_packets=1"),
        ({"run.snapshot_every_env_steps": 1000}, "run.snapshot_every_env_steps=0"),
        ({"learner.num_shards": 0}, "learner.num_shards must be >= 1"),
    ],
)
def test_what_shards_do_not_combine_with_is_refused_before_ray_with_the_reason(overrides, named):
    from ray_a3c.common.reporting.errors import A3CError

    with pytest.raises(A3CError, match=named.replace(".", r"\.")):
        small_config(**{"learner.num_shards": 2, **overrides})


def test_node_aggregation_combines_with_shards():
    """The aggregator holds the whole mean gradient, so it sends every shard that mean's norm
    (tests/unit/test_shards_aggregation.py); PS-side batching stays refused."""
    cfg = small_config(**{"learner.num_shards": 2, "cluster.aggregate": "node"})
    assert cfg.learner.num_shards == 2 and cfg.cluster.aggregate == "node"
