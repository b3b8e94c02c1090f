import numpy as np
import pytest
import torch

from ray_a3c.common.envs import probe_spaces
from ray_a3c.common.flat import get_flat_grads, get_flat_weights, num_params, set_flat_grads, set_flat_weights
from ray_a3c.common.models import build_model
from tests.helpers import small_config


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_weights_and_grads_round_trip(env_id):
    cfg = small_config(**{"env.id": env_id})
    model = build_model(probe_spaces(cfg.env), cfg.model)
    n = num_params(model)
    flat = np.random.default_rng(0).normal(size=n).astype(np.float32)
    set_flat_weights(model, flat)
    np.testing.assert_array_equal(get_flat_weights(model), flat)
    set_flat_grads(model, flat * 2)
    np.testing.assert_array_equal(get_flat_grads(model), flat * 2)
    assert all(torch.equal(p.grad, p.data * 2) for p in model.parameters())


def test_wrong_size_is_refused():
    cfg = small_config()
    model = build_model(probe_spaces(cfg.env), cfg.model)
    with pytest.raises(ValueError):
        set_flat_weights(model, np.zeros(num_params(model) + 1, np.float32))
