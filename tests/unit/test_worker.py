"""RolloutWorker + ParameterServer in one process (no Ray): packets, and a seeded learning run."""

import time

import numpy as np
import torch

from ray_a3c.actors.evaluator import Evaluator
from ray_a3c.actors.worker import LocalClient, RolloutWorker
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.reporting import metrics
from ray_a3c.common.wire.flat import get_flat_weights, num_params
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket
from ray_a3c.learner.parameter_server import ParameterServer
from tests.helpers import small_config


def test_packet_contents():
    cfg = small_config(**{"algo.rollout_steps": 7})
    worker = RolloutWorker(cfg, rank=1)
    packet = worker.compute_gradient()
    assert packet.gradient.dtype == np.float32 and packet.gradient.shape == (num_params(worker.model),)
    assert np.isfinite(packet.gradient).all() and np.abs(packet.gradient).sum() > 0
    # 7 steps of 4 envs, less at most one autoreset step per env (CartPole episodes outlast 7 steps)
    assert 7 * 4 - 4 <= packet.env_steps <= 7 * 4 and packet.worker_rank == 1
    assert set(packet.losses) == {"policy", "value", "entropy", "value_mean", "advantage_mean"}


def test_every_reported_loss_is_logged_under_its_tag():
    cfg = small_config(
        **{"env.id": "Pendulum-v1", "model.shared_trunk": False, "algo.policy_epochs": 2, "algo.critic_epochs": 2}
    )
    worker = RolloutWorker(cfg, rank=0)
    packets = [worker.compute_gradient(), worker.compute_surrogate_gradient(), worker.compute_critic_gradient()]
    reported = {key: 1.0 for p in packets for key in p.losses}
    logged = {tag for tag, value in metrics.packet_scalars(reported).items() if value is not None}
    assert logged == set(metrics.PACKET_TAGS)  # continuous actions, extra policy and critic epochs: every one
    assert set(metrics.packet_losses(dict.fromkeys(metrics.PACKET_TAGS, 1.0))) == set(reported)
    assert packets[2].losses[metrics.packet_key(metrics.VALUE_REFIT)] > 0


def test_async_loop_pushes_and_adopts_weights():
    cfg = small_config()
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    worker = RolloutWorker(cfg, rank=0)
    out = worker.run(LocalClient(ps), max_updates=6)
    assert out["pushed"] == 6 and ps.version == 6 and worker.version == 6
    assert ps.counters.env_steps == worker.total_env_steps > 0
    ps.request_stop()
    assert worker.run(LocalClient(ps))["pushed"] == 1  # a stop request ends the loop at the next push


def test_extra_policy_epochs_push_clipped_surrogates_on_the_returned_weights():
    cfg = small_config(**{"algo.policy_epochs": 3, "algo.clip_range": 0.1, "algo.learning_rate": 0.05})
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    worker = RolloutWorker(cfg, rank=0)
    packet = worker.compute_gradient()
    # at the weights that acted the ratio is 1: the surrogate's gradient is the first pass's
    np.testing.assert_allclose(worker.compute_surrogate_gradient().gradient, packet.gradient, rtol=1e-4, atol=1e-6)
    seen = []
    submit = ps.apply_gradients
    ps.apply_gradients = lambda p: seen.append(p) or submit(p)
    out = worker.run(LocalClient(ps), max_updates=4)
    assert out["pushed"] == 4 and ps.version == 12 and worker.version == 12
    extra = [p for p in seen if p.env_steps == 0]
    assert len(extra) == 8 and all(set(p.losses) == {"clip_fraction"} for p in extra)
    # a large rate moves the policy past the 10% range within a rollout's passes
    assert max(p.losses["clip_fraction"] for p in extra) > 0
    assert ps.counters.env_steps == worker.total_env_steps - packet.env_steps


def test_normalized_advantages_weigh_the_same_rollout_with_mean_0_std_1():
    plain = RolloutWorker(small_config(**{"algo.rollout_steps": 8}), rank=0)
    first = plain.compute_gradient()  # before the next worker re-seeds torch: each samples from the same seed
    normed = RolloutWorker(small_config(**{"algo.rollout_steps": 8, "algo.normalize_advantages": True}), rank=0)
    second = normed.compute_gradient()
    a, b = plain._last_batch, normed._last_batch  # same seed: the same rollout and value targets
    torch.testing.assert_close(a.returns, b.returns)
    mask = b.mask.bool()
    assert (
        abs(float(b.advantages[mask].mean())) < 1e-5 and abs(float(b.advantages[mask].std(unbiased=False)) - 1) < 1e-4
    )
    assert abs(float(a.advantages[mask].std(unbiased=False)) - 1) > 0.05  # CartPole's raw advantages are not
    assert first.losses["advantage_mean"] == second.losses["advantage_mean"]  # logged before standardizing
    assert not np.allclose(first.gradient, second.gradient)


def test_cartpole_learns_in_process_within_a_step_budget():
    cfg = small_config(
        **{
            "env.num_envs_per_worker": 8,
            "model.hidden_sizes": [64, 64],
            "algo.learning_rate": 1e-3,
            "algo.entropy_coef": 0.0,
            "run.seed": 3,
        }
    )
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    client = LocalClient(ps)
    workers = [RolloutWorker(cfg, rank) for rank in range(2)]
    evaluator = Evaluator(cfg)
    random_mean = evaluator.run_episodes(10, seed=7, random_policy=True).mean_return
    best = 0.0
    while ps.counters.env_steps < 120_000 and best < 300:
        for worker in workers:
            worker.run(client, max_updates=50)
        best = max(best, evaluator.evaluate_latest(ps, 10, seed=7).mean_return)
    assert random_mean < 40
    assert best >= 300, f"eval mean {best} after {ps.counters.env_steps} env steps"


def test_sampled_evaluation_is_seeded_and_differs_from_greedy():
    greedy = Evaluator(small_config())
    sampled = Evaluator(small_config(**{"run.eval_policy": "sample"}))
    sampled.model.load_state_dict(greedy.model.state_dict())
    with torch.no_grad():  # a sure policy: greedy always pushes right and fails fast; sampling hesitates
        greedy.model.policy_head.bias.copy_(torch.tensor([-1.0, 1.0]))
        sampled.model.policy_head.bias.copy_(torch.tensor([-1.0, 1.0]))
    first, again = sampled.run_episodes(6, seed=5).returns, sampled.run_episodes(6, seed=5).returns
    assert first == again
    assert first != sampled.run_episodes(6, seed=6).returns
    assert greedy.run_episodes(6, seed=5).returns != first


def test_sync_gradients_count_the_wait_between_rounds_as_communication():
    cfg = small_config()
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    worker = RolloutWorker(cfg, rank=0)
    version, weights, _ = ps.get_weights()
    first = worker.gradient_at(version, weights, fetch_s=0.01)
    assert first.comm_s == 0.01 and first.compute_s > 0  # no earlier round to wait on
    time.sleep(0.2)  # the other workers and the PS's step
    second = worker.gradient_at(version, weights, fetch_s=0.05)
    assert 0.2 <= second.comm_s < 0.2 + 0.05 + 0.1 and second.compute_s > 0


class _StampingClient:
    """A sharded PS's client as the worker sees it: every reply carries new weights and shard versions."""

    def __init__(self, weights: np.ndarray):
        self.weights, self.stamps = weights, []

    @property
    def shard_versions(self) -> list[int]:
        return [0, 0]

    def get_weights(self):
        return 0, self.weights, 0

    def submit(self, packet: GradientPacket):
        self.stamps.append(packet.routing.shard_versions)
        n = len(self.stamps)
        result = ApplyResult(accepted=True, version=n, weights=self.weights, shard_versions=[n, n + 10])

        class Done:
            def result(self):
                return result

        return Done()


def test_a_worker_stamps_the_shard_versions_its_gradient_came_from_with_overlapped_pushes():
    """With overlap the reply to push k is adopted after gradient k+1 was computed: push k+1 must carry the
    versions of the weights before that reply, not the client's newest."""
    cfg = small_config(**{"algo.rollout_steps": 5})
    assert cfg.algo.overlap_push
    worker = RolloutWorker(cfg, rank=0)
    client = _StampingClient(get_flat_weights(worker.model).copy())
    worker.run(client, max_updates=3)
    assert client.stamps == [[0, 0], [0, 0], [1, 11]]
    assert worker.shard_versions == [3, 13]
