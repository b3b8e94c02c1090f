"""The A3C loss's gradient against a hand computation, the clipped surrogate against numpy, global-norm clipping."""

import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from ray_a3c.common.algo.losses import a3c_loss, clip_by_global_norm, clipped_surrogate, mean_weights


def test_loss_gradient_matches_hand_computation():
    logits = torch.tensor([[0.2, -0.1, 0.4], [1.0, 0.0, -1.0]], requires_grad=True)
    values = torch.tensor([0.5, -0.3], requires_grad=True)
    actions = torch.tensor([2, 0])
    advantages = torch.tensor([1.5, -0.5])
    returns = torch.tensor([2.0, 0.1])
    ent_coef, v_coef = 0.01, 0.5
    dist = Categorical(logits=logits)
    terms = a3c_loss(dist.log_prob(actions), dist.entropy(), values, advantages, returns, ent_coef, v_coef)
    terms.total.backward()

    p = torch.softmax(logits, -1).detach().numpy()
    B = 2
    onehot = np.eye(3)[actions.numpy()]
    logp = np.log(p)
    entropy = -(p * logp).sum(-1, keepdims=True)
    d_policy = -(advantages.numpy()[:, None] * (onehot - p)) / B
    d_entropy = -p * (logp + entropy) / B  # d H / d logits
    np.testing.assert_allclose(logits.grad.numpy(), d_policy - ent_coef * d_entropy, rtol=1e-5, atol=1e-6)
    d_values = -v_coef * (returns.numpy() - values.detach().numpy()) / B  # 0.5 * mean((R - V)^2)
    np.testing.assert_allclose(values.grad.numpy(), d_values, rtol=1e-5, atol=1e-6)
    assert terms.entropy == pytest.approx(float(np.mean(entropy)), rel=1e-5)


def test_smooth_l1_value_loss_is_quadratic_near_zero_and_linear_far():
    values = torch.tensor([0.0, 0.0], requires_grad=True)
    returns = torch.tensor([0.5, 3.0])
    zero = torch.zeros(2)
    terms = a3c_loss(zero, zero, values, zero, returns, 0.0, 1.0, "smooth_l1")
    terms.total.backward()
    np.testing.assert_allclose(values.grad.numpy(), [-0.5 / 2, -1.0 / 2])


def _surrogate_reference(logp, old_logp, adv, clip, valid):
    """numpy: the mean over valid steps of -min(r A, clip(r) A), its gradient in logp, and the clipped share."""
    ratio = np.exp(logp - old_logp)
    w = valid / valid.sum()
    inside = np.abs(ratio - 1) <= clip
    # min picks the unclipped term (gradient r A) unless the ratio left the range in the advantage's direction
    active = inside | ((ratio > 1 + clip) & (adv < 0)) | ((ratio < 1 - clip) & (adv > 0))
    loss = -(np.minimum(ratio * adv, np.clip(ratio, 1 - clip, 1 + clip) * adv) * w).sum()
    return loss, -(active * ratio * adv * w), float((~inside * w).sum())


def test_clipped_surrogate_matches_numpy_including_masked_and_clipped_steps():
    old = np.log(np.array([0.5, 0.2, 0.4, 0.3, 0.6, 0.25]))
    new = np.log(np.array([0.5, 0.3, 0.2, 0.3, 0.9, 0.1]))  # ratios 1, 1.5, 0.5, 1, 1.5, 0.4
    adv = np.array([1.0, 2.0, 1.5, -1.0, -0.5, -2.0])
    valid = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])  # the last step is an autoreset step
    logp = torch.tensor(new, requires_grad=True)
    weights = mean_weights(logp, torch.tensor(valid) > 0)
    loss, clipped_share = clipped_surrogate(logp, torch.tensor(old), torch.tensor(adv), 0.2, weights)
    loss.backward()
    ref_loss, ref_grad, ref_share = _surrogate_reference(new, old, adv, 0.2, valid)
    assert float(loss.detach()) == pytest.approx(ref_loss, rel=1e-6)
    np.testing.assert_allclose(logp.grad.numpy(), ref_grad, rtol=1e-6, atol=1e-9)
    assert clipped_share == pytest.approx(ref_share) and clipped_share == pytest.approx(3 / 5)
    # step 1 (r 1.5, A > 0) is past the range in its advantage's direction: no gradient; step 4 (A < 0) keeps one
    assert logp.grad[1] == 0 and logp.grad[4] != 0 and logp.grad[5] == 0


def test_surrogate_at_the_acting_policy_is_the_policy_gradient():
    logits = torch.tensor([[0.2, -0.1, 0.4], [1.0, 0.0, -1.0], [0.3, 0.3, -0.2]], requires_grad=True)
    actions, adv, returns = torch.tensor([2, 0, 1]), torch.tensor([1.5, -0.5, 0.7]), torch.zeros(3)
    grads = []
    for surrogate in (False, True):
        dist = torch.distributions.Categorical(logits=logits)
        logp = dist.log_prob(actions)
        old = logp.detach() if surrogate else None
        a3c_loss(logp, dist.entropy(), torch.zeros(3), adv, returns, 0.01, 0.5, old_log_probs=old).total.backward()
        grads.append(logits.grad.clone())
        logits.grad = None
    np.testing.assert_allclose(grads[1].numpy(), grads[0].numpy(), rtol=1e-6, atol=1e-8)


def test_clip_by_global_norm():
    grad = np.array([3.0, 4.0], np.float32)
    clipped, norm = clip_by_global_norm(grad, 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(np.linalg.norm(clipped), 1.0, rtol=1e-5)
    same, _ = clip_by_global_norm(grad, 10.0)
    np.testing.assert_array_equal(same, grad)
    unclipped, _ = clip_by_global_norm(grad, 0.0)
    np.testing.assert_array_equal(unclipped, grad)
