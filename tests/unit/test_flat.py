import numpy as np
import pytest
import torch

from ray_a3c.common.algo.models import build_model
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.wire.flat import (
    decode_gradient,
    encode_gradient,
    get_flat_grads,
    get_flat_weights,
    num_params,
    set_flat_grads,
    set_flat_weights,
)
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


@pytest.mark.parametrize("dtype, rel", [("float32", 0.0), ("float16", 2**-11), ("bfloat16", 2**-8)])
def test_gradient_transport_round_trip_within_its_precision(dtype, rel):
    grad = np.random.default_rng(0).normal(0, 1e-3, 10_000).astype(np.float32)
    grad[:3] = [0.0, 1e-30 if dtype == "bfloat16" else 0.0, -3.5]
    data = encode_gradient(grad, dtype)
    assert data.nbytes == grad.nbytes // (1 if dtype == "float32" else 2)
    back = decode_gradient(data)
    assert back.dtype == np.float32
    tiny = 1e-7 if dtype == "float16" else 0.0  # float16 flushes the smallest values to subnormals
    np.testing.assert_allclose(back, grad, rtol=rel, atol=tiny)


def test_bfloat16_keeps_nonfinite_values_nonfinite():
    grad = np.array([np.nan, np.inf, -np.inf, 3e38], np.float32)
    back = decode_gradient(encode_gradient(grad, "bfloat16"))
    assert np.isnan(back[0]) and back[1] == np.inf and back[2] == -np.inf and np.isfinite(back[3])
