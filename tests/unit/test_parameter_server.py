"""ParameterServer without Ray: Adam and RMSprop equivalence, guards, versions, state round trip."""

import copy

import numpy as np
import pytest
import torch

from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.wire.counters import PSCounters
from ray_a3c.common.wire.flat import get_flat_weights, num_params, set_flat_grads
from ray_a3c.common.wire.packet import GradientPacket
from ray_a3c.learner.parameter_server import ParameterServer
from tests.helpers import small_config


def make_ps(**overrides):
    cfg = small_config(**{"algo.max_grad_norm": 0.0, **overrides})
    return ParameterServer(cfg, probe_spaces(cfg.env))


def packet(ps, grad, version=None, steps=10):
    return GradientPacket(
        gradient=grad.astype(np.float32),
        version=ps.version if version is None else version,
        env_steps=steps,
        episode_returns=[1.0],
        episode_lengths=[3],
    )


@pytest.mark.parametrize("critic_lr", [None, 3e-3])
def test_adam_step_equals_torch_adam(critic_lr):
    ps = make_ps(**{"algo.critic_learning_rate": critic_lr, "algo.learning_rate": 1e-3})
    reference = copy.deepcopy(ps.model)
    critic_ids = {id(p) for p in list(reference.critic_trunk.parameters()) + list(reference.value_head.parameters())}
    if critic_lr:
        groups = [
            {"params": [p for p in reference.parameters() if id(p) not in critic_ids], "lr": 1e-3},
            {"params": [p for p in reference.parameters() if id(p) in critic_ids], "lr": critic_lr},
        ]
    else:
        groups = [{"params": list(reference.parameters()), "lr": 1e-3}]
    adam = torch.optim.Adam(groups, lr=1e-3, eps=ps.config.algo.adam_eps)
    rng = np.random.default_rng(0)
    for _ in range(5):
        grad = rng.normal(size=num_params(ps.model)).astype(np.float32)
        assert ps.apply_gradients(packet(ps, grad)).accepted
        set_flat_grads(reference, grad)
        adam.step()
    np.testing.assert_allclose(get_flat_weights(ps.model), get_flat_weights(reference), atol=1e-6)
    assert ps.version == 5


def test_rmsprop_step_equals_a_numpy_reference():
    """Not centred, no momentum: v <- alpha v + (1 - alpha) g^2; w <- w - lr g / (sqrt(v) + eps)."""
    lr, alpha, eps = 1e-3, 0.9, 0.1
    ps = make_ps(
        **{"algo.optimizer": "rmsprop", "algo.learning_rate": lr, "algo.rmsprop_alpha": alpha, "algo.rmsprop_eps": eps}
    )
    weights = get_flat_weights(ps.model).astype(np.float64)
    square_avg = np.zeros_like(weights)
    rng = np.random.default_rng(0)
    for _ in range(5):
        grad = rng.normal(size=weights.size).astype(np.float32)
        assert ps.apply_gradients(packet(ps, grad)).accepted
        square_avg = alpha * square_avg + (1 - alpha) * grad.astype(np.float64) ** 2
        weights -= lr * grad / (np.sqrt(square_avg) + eps)
    np.testing.assert_allclose(get_flat_weights(ps.model), weights, atol=1e-6)


def test_rmsprop_tf_step_equals_a_numpy_reference():
    """TensorFlow's form: v starts at 1 and eps is inside the root: w <- w - lr g / sqrt(v + eps). The first
    step moves a weight by about lr * g, where torch's form (v from 0) moves it by about 10x lr."""
    lr, alpha, eps = 1e-3, 0.99, 1e-5
    settings = {"algo.learning_rate": lr, "algo.rmsprop_alpha": alpha, "algo.rmsprop_eps": eps}
    ps = make_ps(**{"algo.optimizer": "rmsprop_tf", **settings})
    weights = get_flat_weights(ps.model).astype(np.float64)
    square_avg = np.ones_like(weights)
    rng = np.random.default_rng(0)
    for step in range(5):
        grad = (rng.normal(size=weights.size) * 0.05).astype(np.float32)
        before = get_flat_weights(ps.model).copy()
        assert ps.apply_gradients(packet(ps, grad)).accepted
        square_avg = alpha * square_avg + (1 - alpha) * grad.astype(np.float64) ** 2
        weights -= lr * grad / np.sqrt(square_avg + eps)
        if step == 0:
            moved = np.abs(get_flat_weights(ps.model) - before)
            assert moved.max() < 2 * lr * np.abs(grad).max()
    np.testing.assert_allclose(get_flat_weights(ps.model), weights, atol=1e-6)


def test_nonfinite_gradient_is_rejected_counted_and_harmless():
    ps = make_ps()
    before = get_flat_weights(ps.model).copy()
    grad = np.zeros(num_params(ps.model), np.float32)
    grad[3] = np.nan
    result = ps.apply_gradients(packet(ps, grad))
    grad[3] = np.inf
    ps.apply_gradients(packet(ps, grad))
    assert not result.accepted and result.reason == "nonfinite"
    assert ps.counters.rejected_nonfinite == 2 and ps.version == 0
    np.testing.assert_array_equal(get_flat_weights(ps.model), before)


def test_stale_gradient_is_rejected_counted_and_harmless():
    ps = make_ps(**{"algo.max_policy_lag": 2})
    grad = np.ones(num_params(ps.model), np.float32)
    for _ in range(3):
        ps.apply_gradients(packet(ps, grad))
    before = get_flat_weights(ps.model).copy()
    assert ps.apply_gradients(packet(ps, grad, version=1)).accepted  # lag 2: allowed
    before = get_flat_weights(ps.model).copy()
    result = ps.apply_gradients(packet(ps, grad, version=0))  # lag 4 > 2
    assert not result.accepted and result.reason == "stale"
    assert ps.counters.rejected_stale == 1 and ps.version == 4
    np.testing.assert_array_equal(get_flat_weights(ps.model), before)
    stats = ps.pull_stats()
    assert stats.policy_lag_mean == pytest.approx(np.mean([0, 0, 0, 2]))
    assert stats.env_steps == 50, "env steps count even for rejected packets: they were really taken"


def test_each_version_is_published_once():
    calls = []
    cfg = small_config()
    ps = ParameterServer(cfg, probe_spaces(cfg.env), publish=lambda flat: calls.append(flat) or len(calls))
    grad = np.ones(num_params(ps.model), np.float32)
    first = ps.get_weights()[1]
    assert ps.get_weights()[1] == first and len(calls) == 1
    result = ps.apply_gradients(packet(ps, grad))
    assert result.weights == 2 and ps.get_weights()[1] == 2 and len(calls) == 2


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "rmsprop_tf"])
def test_state_round_trip_through_a_weights_only_checkpoint(tmp_path, optimizer):
    ps = make_ps(**{"algo.optimizer": optimizer})
    rng = np.random.default_rng(1)
    for _ in range(3):
        ps.apply_gradients(packet(ps, rng.normal(size=num_params(ps.model))))
    path = str(tmp_path / "ckpt.pt")
    checkpoint.save_atomic(ps.state_dict(), path)
    restored = make_ps(**{"algo.optimizer": optimizer})
    restored.load_state_dict(checkpoint.load(path))
    assert restored.counters == ps.counters
    np.testing.assert_array_equal(get_flat_weights(restored.model), get_flat_weights(ps.model))
    grad = rng.normal(size=num_params(ps.model))
    ps.apply_gradients(packet(ps, grad))
    restored.apply_gradients(packet(restored, grad))
    np.testing.assert_allclose(get_flat_weights(restored.model), get_flat_weights(ps.model), atol=1e-7)


def test_sync_average_equals_one_adam_step_on_the_mean_gradient():
    ps = make_ps(**{"algo.max_grad_norm": 0.5})
    reference = make_ps(**{"algo.max_grad_norm": 0.5})
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=num_params(ps.model)).astype(np.float32) for _ in range(3)]
    result = ps.apply_mean_gradients(*[packet(ps, g) for g in grads])
    reference.apply_gradients(packet(reference, np.mean(grads, axis=0)))
    assert result.accepted and ps.version == 1
    np.testing.assert_allclose(get_flat_weights(ps.model), get_flat_weights(reference.model), atol=1e-6)
    assert ps.counters.env_steps == 30 and ps.counters.episodes == 3


def test_sync_average_leaves_out_nonfinite_packets():
    ps, reference = make_ps(), make_ps()
    good = np.ones(num_params(ps.model), np.float32)
    bad = good.copy()
    bad[0] = np.nan
    ps.apply_mean_gradients(packet(ps, good), packet(ps, bad))
    reference.apply_gradients(packet(reference, good))
    assert ps.counters.rejected_nonfinite == 1
    np.testing.assert_allclose(get_flat_weights(ps.model), get_flat_weights(reference.model), atol=1e-7)


def test_critic_only_step_moves_only_the_critic():
    ps = make_ps()
    critic = ps.model.critic_parameter_ids()
    before = {id(p): p.detach().clone() for p in ps.model.parameters()}
    grad = np.ones(num_params(ps.model), np.float32)
    p = packet(ps, grad)
    p.critic_only = True
    assert ps.apply_gradients(p).accepted and ps.version == 1
    for param in ps.model.parameters():
        moved = not torch.equal(param, before[id(param)])
        assert moved == (id(param) in critic)


def test_observation_statistics_merge_like_one_big_batch():
    ps = make_ps(**{"model.normalize_obs": True})
    rng = np.random.default_rng(3)
    batches = [rng.normal(loc=i, scale=i + 1, size=(50 + 10 * i, 4)).astype(np.float32) for i in range(3)]
    for b in batches:
        p = packet(ps, np.zeros(num_params(ps.model), np.float32))
        p.obs_moments = (len(b), b.mean(0), b.var(0))
        ps.apply_gradients(p)
    allobs = np.concatenate(batches)
    norm = ps.model.obs_norm
    np.testing.assert_allclose(norm.mean.numpy(), allobs.mean(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(norm.var.numpy(), allobs.var(0), rtol=1e-3, atol=1e-3)
    weights = ps.get_weights()[1]
    assert weights.size == num_params(ps.model) + 4 + 4 + 1, "the statistics travel with the weights"


def test_restore_with_counter_floor_never_goes_backwards(tmp_path):
    """A PS recreated from an older checkpoint keeps the env steps really taken and jumps its version past
    every version handed out before the crash."""
    ps = make_ps()
    grad = np.ones(num_params(ps.model), np.float32)
    for _ in range(3):
        ps.apply_gradients(packet(ps, grad))
    saved = ps.state_dict()
    for _ in range(4):
        ps.apply_gradients(packet(ps, grad))
    last_seen = ps.get_counters()
    restored = make_ps()
    restored.load_state_dict(saved, counter_floor=PSCounters(version=last_seen.version, env_steps=last_seen.env_steps))
    assert restored.version == last_seen.version + 1
    assert restored.counters.env_steps == last_seen.env_steps
    np.testing.assert_array_equal(get_flat_weights(restored.model), get_flat_weights(_model_from(saved)))
    stale = packet(restored, grad, version=last_seen.version - 1)
    assert restored.apply_gradients(stale).accepted  # lag 2: within max_policy_lag, not mistaken as fresh


def test_the_floor_is_the_highest_of_every_answer_so_a_restore_never_shows_less_than_a_log_line(tmp_path):
    """The driver polls get_counters every tick and pull_stats every log line; a packet counted between the two
    makes the log line newer than the poll. The floor is each total's highest over both answers, so a PS
    restored from it shows no fewer env steps than the last progress line did."""
    ps = make_ps()
    grad = np.ones(num_params(ps.model), np.float32)
    ps.apply_gradients(packet(ps, grad))
    saved, polled = ps.state_dict(), ps.get_counters()
    ps.apply_gradients(packet(ps, grad))
    logged = ps.pull_stats()
    assert logged.env_steps > polled.env_steps
    floor = PSCounters().highest(polled).highest(logged)
    assert floor == logged.totals() and polled.highest(logged) == logged.totals()
    restored = make_ps()
    restored.load_state_dict(saved, counter_floor=floor)
    assert restored.counters.env_steps == logged.env_steps and restored.version == logged.version + 1


def _model_from(state):
    ps = make_ps()
    ps.model.load_state_dict(state["model"])
    return ps.model


def test_cuda_request_without_a_gpu_falls_back_to_cpu_with_a_warning(monkeypatch):
    from ray_a3c.learner.parameter_server import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="no GPU"):
        assert resolve_device("cuda").type == "cpu"
    assert resolve_device("auto").type == "cpu" and resolve_device("cpu").type == "cpu"
    ps = make_ps(**{"learner.device": "auto"})
    assert ps.get_counters().device == "cpu"


def test_linear_lr_schedule_equals_adam_at_the_decayed_rate():
    ps = make_ps(**{"algo.lr_schedule": "linear", "algo.learning_rate": 1e-3, "run.total_env_steps": 40})
    reference = copy.deepcopy(ps.model)
    adam = torch.optim.Adam(reference.parameters(), lr=1e-3, eps=ps.config.algo.adam_eps)
    rng = np.random.default_rng(1)
    for step in range(5):  # each packet brings 10 env steps: the rate is taken after they are counted
        grad = rng.normal(size=num_params(ps.model)).astype(np.float32)
        ps.apply_gradients(packet(ps, grad))
        adam.param_groups[0]["lr"] = 1e-3 * max(0.0, 1 - 10 * (step + 1) / 40)
        set_flat_grads(reference, grad)
        adam.step()
        np.testing.assert_allclose(get_flat_weights(ps.model), get_flat_weights(reference), atol=1e-6)
    assert ps.lr_fraction() == 0.0  # past the budget the weights stop moving
    before = get_flat_weights(ps.model).copy()
    ps.apply_gradients(packet(ps, rng.normal(size=num_params(ps.model)).astype(np.float32)))
    np.testing.assert_array_equal(get_flat_weights(ps.model), before)


def test_linear_schedule_holds_until_decay_start_and_ends_at_the_time_limit(monkeypatch):
    import ray_a3c.learner.parameter_server as ps_module

    ps = make_ps(
        **{
            "algo.lr_schedule": "linear",
            "algo.lr_decay_start": 0.5,
            "run.total_env_steps": 100,
            "run.time_limit_s": 200.0,
        }
    )
    ps.apply_gradients(packet(ps, np.zeros(num_params(ps.model), np.float32), steps=40))
    assert ps.lr_fraction() == 1.0  # 40% of the env-step budget, before the decay starts
    ps.apply_gradients(packet(ps, np.zeros(num_params(ps.model), np.float32), steps=35))
    assert ps.lr_fraction() == pytest.approx(0.5)  # 75%: half-way down from 50% to 100%
    assert next(iter(ps.optimizers.values())).param_groups[0]["lr"] == pytest.approx(0.5 * ps.config.algo.learning_rate)
    clock = {"now": 1000.0}
    monkeypatch.setattr(ps_module.time, "time", lambda: clock["now"])
    ps.start_clock(1000.0 - 180.0)  # 90% of run.time_limit_s spent: time is now further along than env steps
    assert ps.budget_used() == pytest.approx(0.9) and ps.lr_fraction() == pytest.approx(0.2)
    clock["now"] += 20.0
    assert ps.lr_fraction() == 0.0


def test_lr_decay_start_outside_zero_to_one_is_refused():
    for bad in (-0.1, 1.0):
        with pytest.raises(A3CError, match="lr_decay_start"):
            make_ps(**{"algo.lr_decay_start": bad})


def test_snapshots_are_taken_when_env_steps_pass_each_multiple():
    ps = make_ps(**{"run.snapshot_every_env_steps": 25})
    grad = np.zeros(num_params(ps.model), np.float32)
    for _ in range(6):  # 10 env steps per packet: multiples 25 and 50 are passed at 30 and 50
        ps.apply_gradients(packet(ps, grad))
    taken = ps.pop_snapshots()
    assert [s["env_steps"] for s in taken] == [30, 50] and [s["version"] for s in taken] == [3, 5]
    np.testing.assert_array_equal(taken[-1]["weights"], get_flat_weights(ps.model))
    assert ps.pop_snapshots() == []


def test_a_batch_is_one_adam_step_on_the_mean_of_its_accepted_packets():
    ps = make_ps(**{"algo.learning_rate": 1e-3, "algo.max_policy_lag": 2})
    reference = copy.deepcopy(ps.model)
    adam = torch.optim.Adam(reference.parameters(), lr=1e-3, eps=ps.config.algo.adam_eps)
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=num_params(ps.model)).astype(np.float32) for _ in range(4)]
    ps.apply_gradients(packet(ps, grads[0]))  # version 1
    ps.apply_gradients(packet(ps, grads[0]))  # version 2
    ps.apply_gradients(packet(ps, grads[0]))  # version 3
    set_flat_grads(reference, grads[0])
    for _ in range(3):
        adam.step()
    bad = grads[2].copy()
    bad[5] = np.nan
    batch = [packet(ps, grads[1], version=2), packet(ps, bad), packet(ps, grads[3], version=0)]  # nan; 3 behind
    results = ps.apply_batch(batch)
    assert [r.accepted for r in results] == [True, False, False]
    assert [r.reason for r in results] == ["", "nonfinite", "stale"]
    assert ps.version == 4 and all(r.version == 4 for r in results) and results[0].weights is results[2].weights
    assert ps.counters.env_steps == 60 and ps.counters.rejected_stale == 1  # all counted
    set_flat_grads(reference, grads[1])  # the rejected ones leave the step unchanged
    adam.step()
    np.testing.assert_allclose(get_flat_weights(ps.model), get_flat_weights(reference), atol=1e-6)
    # two accepted packets: one step on their mean, lags recorded per packet
    ps.pull_stats()
    ps.apply_batch([packet(ps, grads[2], version=3), packet(ps, grads[3])])
    set_flat_grads(reference, (grads[2] + grads[3]) / 2)
    adam.step()
    np.testing.assert_allclose(get_flat_weights(ps.model), get_flat_weights(reference), atol=1e-6)
    assert ps.version == 5 and ps.pull_stats().policy_lag_mean == 0.5


def test_bfloat16_packets_are_decoded_before_the_checks_and_the_step():
    ps = make_ps()
    grad = np.random.default_rng(4).normal(size=num_params(ps.model)).astype(np.float32)
    from ray_a3c.common.wire.flat import encode_gradient

    def bf16_packet(values):
        return GradientPacket(gradient=encode_gradient(values, "bfloat16"), version=ps.version, env_steps=1)

    before = get_flat_weights(ps.model).copy()
    assert ps.apply_gradients(bf16_packet(grad)).accepted and not np.array_equal(get_flat_weights(ps.model), before)
    bad = grad.copy()
    bad[0] = np.inf
    assert ps.apply_gradients(bf16_packet(bad)).reason == "nonfinite"


def test_weight_sync_every_skips_replies_to_senders_with_recent_weights():
    ps = make_ps(**{"algo.weight_sync_every": 3})
    grad = np.zeros(num_params(ps.model), np.float32)
    replies = [ps.apply_gradients(packet(ps, grad, version=0)) for _ in range(4)]  # a sender stuck at version 0
    assert [r.weights is not None for r in replies] == [False, False, True, True]  # PS at 1, 2, 3, 4
    fresh = ps.apply_gradients(packet(ps, grad))  # computed on the current version: one behind after the step
    assert fresh.version == 5 and fresh.weights is None
    serial = make_ps()  # default 1: every reply after a step carries the new weights
    assert all(serial.apply_gradients(packet(serial, grad)).weights is not None for _ in range(3))
