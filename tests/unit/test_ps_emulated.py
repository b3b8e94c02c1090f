"""The pure parts of the PS benches: the cluster model's arithmetic with shards (bench.ps_model) and the
emulated-worker bench's offered rate and knee (bench.ps_emulated). No Ray, nothing measured."""

import pytest

from bench.ps_emulated import knee, knee_line, offered_rate
from bench.ps_model import NIC_BYTES_S, cluster_model, finest, mean_batch, meets, model_section

MS = 1e-3
COSTS = {
    "receive": 0.1 * MS,
    "checks": 0.1 * MS,
    "clip": 0.2 * MS,
    "adam": 0.4 * MS,
    "flatten": 0.0,
    "publish": 1.2 * MS,
}
PER_PACKET, PER_STEP = 0.2 * MS, 1.8 * MS  # receive + checks; clip + Adam + flatten + publish
WEIGHTS = 2_000_000  # bytes


def test_direct_pushes_offer_every_worker_and_one_packet_a_step_while_the_ps_keeps_up():
    m = cluster_model(COSTS, WEIGHTS, WEIGHTS, packets_per_worker_s=1.0, nodes=10, cores=10, k=8)
    assert m["offered"] == pytest.approx(100.0)
    assert m["batch"] == 1.0  # 100 x 2 ms = 20% busy: one packet a step keeps up
    assert m["busy"] == pytest.approx(100 * (PER_PACKET + PER_STEP))
    assert m["in"] == pytest.approx(100 * WEIGHTS)
    assert m["out"] == pytest.approx(10 * 10 * WEIGHTS)  # 100 versions/s, each node hears of 10 of them


def test_s_shards_divide_busy_and_both_nics_by_s():
    one = cluster_model(COSTS, WEIGHTS // 2, WEIGHTS, 1.0, 10, 10, 8, 0.0, shards=1)
    four = cluster_model(COSTS, WEIGHTS // 2, WEIGHTS, 1.0, 10, 10, 8, 0.0, shards=4)
    assert four["offered"] == one["offered"]
    for key in ("busy", "in", "out"):
        assert four[key] == pytest.approx(one[key] / 4)


def test_node_aggregation_offers_one_packet_per_node_per_interval_and_bounds_the_weights_out():
    m = cluster_model(COSTS, WEIGHTS, WEIGHTS, packets_per_worker_s=5.0, nodes=20, cores=8, k=16, aggregate_s=0.5)
    assert m["offered"] == pytest.approx(20 / 0.5)
    assert m["steps"] == pytest.approx(40.0)
    assert m["out"] == pytest.approx(20 * 2.0 * WEIGHTS)  # a node hears of 2 versions/s, not of all 40


def test_past_one_packet_a_step_the_greedy_batcher_takes_what_arrived_and_is_always_busy():
    offered = 1000.0  # 1000 x 2 ms = 200%: one at a time cannot keep up
    b = mean_batch(offered, PER_PACKET, PER_STEP, k=64)
    assert b == pytest.approx(offered * PER_STEP / (1 - offered * PER_PACKET))  # 2.25 packets a step
    assert offered * (PER_PACKET + PER_STEP / b) == pytest.approx(1.0)
    assert mean_batch(offered, PER_PACKET, PER_STEP, k=2) == 2.0  # capped at k: busy past 100%, a queue grows
    assert mean_batch(offered, 1.5 * MS, PER_STEP, k=8) == 8.0  # per-packet work alone saturates it
    m = cluster_model(COSTS, WEIGHTS, WEIGHTS, 10.0, 10, 10, k=2)
    assert m["busy"] == pytest.approx(1000 * (PER_PACKET + PER_STEP / 2))


def test_meeting_both_targets_needs_busy_and_each_nic_under_half():
    fine = {"busy": 0.49, "in": 0.49 * NIC_BYTES_S, "out": 0.1 * NIC_BYTES_S}
    assert meets(fine)
    assert not meets({**fine, "busy": 0.5})
    assert not meets({**fine, "out": 0.5 * NIC_BYTES_S})


def test_more_shards_allow_finer_aggregation():
    costs = {"float32": COSTS, "bfloat16": COSTS}
    found = [finest(costs, WEIGHTS, 10.0, nodes=100, cores=16, shards=s) for s in (1, 2, 4, 8)]
    intervals = [f[0] for f in found if f is not None]
    assert len(intervals) == 4
    assert intervals == sorted(intervals, reverse=True) and intervals[-1] < intervals[0]
    for _, m in found:
        assert meets(m)


def test_the_model_section_has_a_row_per_mode_and_a_finest_line_per_shard_count():
    costs = {(w, d): COSTS for w in ("a", "b") for d in ("float32", "bfloat16")}
    text = model_section(costs, {"a": 10.0, "b": 100.0}, {"a": WEIGHTS, "b": 40_000}, nodes=100, cores=16)
    assert text.startswith("### A model of 100 nodes x 16 cores")
    assert text.count("\n| a | 10.0 |") == 9
    assert "| b | 8 | every" in text


def _rows(absorbed: list[float], env_s: float = 0.1, workers=(4, 8, 16, 32), shards: int = 1) -> list[dict]:
    return [
        {"workers": n, "shards": shards, "offered": offered_rate(n, env_s), "absorbed": a}
        for n, a in zip(workers, absorbed, strict=True)
    ]


def test_the_offered_rate_is_n_over_the_env_time():
    assert offered_rate(64, 0.08) == pytest.approx(800.0)


def test_the_knee_is_the_last_row_whose_step_up_the_absorbed_rate_still_follows():
    rows = _rows([34.0, 66.0, 95.0, 100.0])  # offered 40, 80, 160, 320: +32 of +40, +29 of +80, +5 of +160
    assert knee(rows)["workers"] == 8
    assert knee(list(reversed(rows)))["workers"] == 8  # by offered rate, whatever the order given
    assert knee(rows, follow=0.3)["workers"] == 16  # 29 of 80 is 36%
    assert "up to 8 workers (offered 80/s, absorbed 66/s), not past them; the most absorbed: 100" in knee_line(rows)


def test_a_first_row_already_past_the_knee_and_rows_that_never_saturate():
    saturated = _rows([15.0, 16.0, 16.0, 15.0])
    assert knee(saturated) is None
    assert knee_line(saturated).startswith("S = 1: absorbed does not follow offered even at 4 workers (offered 40/s)")
    linear = _rows([35.0, 70.0, 140.0, 280.0], shards=2)
    assert knee(linear)["workers"] == 32
    assert knee_line(linear).startswith("S = 2: absorbed follows offered up to the largest N tried")
