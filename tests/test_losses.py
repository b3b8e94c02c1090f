"""The A3C loss's gradient against a hand computation, and global-norm clipping."""
import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from ray_a3c.common.losses import a3c_loss, clip_by_global_norm


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


def test_clip_by_global_norm():
    grad = np.array([3.0, 4.0], np.float32)
    clipped, norm = clip_by_global_norm(grad, 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(np.linalg.norm(clipped), 1.0, rtol=1e-5)
    same, _ = clip_by_global_norm(grad, 10.0)
    np.testing.assert_array_equal(same, grad)
    unclipped, _ = clip_by_global_norm(grad, 0.0)
    np.testing.assert_array_equal(unclipped, grad)
