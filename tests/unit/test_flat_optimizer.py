"""The PS's flat buffer (learner/flat_params.py), no Ray: the same weights as plain torch optimizers stepping
each parameter tensor, views instead of copies, transport dtypes, published weights and checkpoints."""

import copy
import pickle

import numpy as np
import pytest
import torch

from ray_a3c.common.algo.losses import clip_by_global_norm
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.wire.flat import decode_gradient, encode_gradient, get_flat_weights, num_params, set_flat_grads
from ray_a3c.common.wire.packet import GradientPacket
from ray_a3c.learner.parameter_server import ParameterServer
from ray_a3c.learner.rmsprop_tf import RMSpropTF
from tests.helpers import small_config

STEPS, ATOL = 100, 1e-6  # every weight within ATOL of the reference's after STEPS steps
CASES = [
    (env, shared, opt)
    for env in ("CartPole-v1", "Pendulum-v1")
    for shared in (True, False)
    for opt in ("adam", "rmsprop", "rmsprop_tf")
]


def make_ps(env_id="CartPole-v1", shared=False, optimizer="adam", **overrides):
    cfg = small_config(
        **{
            "env.id": env_id,
            "model.shared_trunk": shared,
            "algo.optimizer": optimizer,
            "algo.learning_rate": 1e-3,
            "algo.max_grad_norm": 0.5,
            "algo.critic_learning_rate": None if shared else 3e-3,
            **overrides,
        }
    )
    return ParameterServer(cfg, probe_spaces(cfg.env))


def reference_of(ps):
    """A plain copy of the PS's model (its own storage per tensor) and per-tensor torch optimizers with
    foreach=False, grouped as the PS groups them."""
    model = copy.deepcopy(ps.model)
    for module in model.modules():  # give every tensor its own storage: nothing shared with a flat buffer
        for name, param in module._parameters.items():
            if param is not None:
                module._parameters[name] = torch.nn.Parameter(param.detach().clone())
        for name, buf in module._buffers.items():
            if buf is not None:
                module._buffers[name] = buf.detach().clone()
    critic = model.critic_parameter_ids()
    algo = ps.config.algo
    groups = (
        {"all": list(model.parameters())}
        if not critic
        else {
            "actor": [p for p in model.parameters() if id(p) not in critic],
            "critic": [p for p in model.parameters() if id(p) in critic],
        }
    )

    def build(params, lr):
        if algo.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, alpha=algo.rmsprop_alpha, eps=algo.rmsprop_eps, foreach=False)
        if algo.optimizer == "rmsprop_tf":  # per tensor: the flat buffer must not change what each weight sees
            return RMSpropTF(params, lr=lr, alpha=algo.rmsprop_alpha, eps=algo.rmsprop_eps)
        return torch.optim.Adam(params, lr=lr, eps=algo.adam_eps, foreach=False)

    lrs = {
        "all": algo.learning_rate,
        "actor": algo.learning_rate,
        "critic": algo.critic_learning_rate or algo.learning_rate,
    }
    return model, {name: build(params, lrs[name]) for name, params in groups.items()}


def reference_step(model, optimizers, grad, max_norm, critic_only=False, fraction=1.0, base=None):
    clipped, _ = clip_by_global_norm(grad, max_norm)
    set_flat_grads(model, clipped)
    for name, opt in optimizers.items():
        if name == "critic" or not critic_only:
            opt.param_groups[0]["lr"] = base[name] * fraction
            opt.step()


def packet(ps, grad, critic_only=False, steps=10, dtype="float32"):
    return GradientPacket(
        gradient=encode_gradient(grad.astype(np.float32), dtype),
        version=ps.version,
        env_steps=steps,
        critic_only=critic_only,
    )


@pytest.mark.parametrize("env_id, shared, optimizer", CASES)
def test_flat_steps_equal_per_tensor_torch_optimizers(env_id, shared, optimizer):
    """100 steps of random gradients (a third of them clipped, every seventh value-only with separate
    networks, the learning rate falling linearly): the flat fused step and the per-tensor reference agree."""
    ps = make_ps(env_id, shared, optimizer, **{"algo.lr_schedule": "linear", "run.total_env_steps": 2 * STEPS * 10})
    model, optimizers = reference_of(ps)
    base = {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}
    rng = np.random.default_rng(0)
    n = num_params(ps.model)
    for i in range(STEPS):
        grad = (rng.normal(size=n) * rng.choice([0.001, 0.01, 0.1])).astype(np.float32)
        critic_only = not shared and i % 7 == 3
        assert ps.apply_gradients(packet(ps, grad, critic_only)).accepted
        fraction = 1.0 - (i + 1) * 10 / (2 * STEPS * 10)
        reference_step(model, optimizers, grad, ps.config.algo.max_grad_norm, critic_only, fraction, base)
    np.testing.assert_allclose(get_flat_weights(ps.model), get_flat_weights(model), atol=ATOL, rtol=0)
    assert ps.version == STEPS


def test_some_steps_were_clipped_and_the_norm_is_the_float64_one():
    ps = make_ps()
    rng = np.random.default_rng(0)
    norms = []
    for scale in (0.001, 0.1):
        grad = (rng.normal(size=num_params(ps.model)) * scale).astype(np.float32)
        ps.apply_gradients(packet(ps, grad))
        norms.append(clip_by_global_norm(grad, 0.0)[1])
    assert norms[0] < 0.5 < norms[1]
    np.testing.assert_allclose(ps.pull_stats().grad_norm_mean, np.mean(norms), rtol=1e-5)


@pytest.mark.parametrize("shared", [True, False])
def test_parameters_and_gradients_are_views_of_one_flat_buffer_each(shared):
    ps = make_ps(shared=shared)
    flat = ps.flat
    base, grad_base = flat.flat.untyped_storage().data_ptr(), flat.grad.untyped_storage().data_ptr()
    for p in ps.model.parameters():
        assert p.untyped_storage().data_ptr() == base and p.grad.untyped_storage().data_ptr() == grad_base
    for b in ps.model.buffers():
        assert b.untyped_storage().data_ptr() == base
    assert list(flat.tensors) == (["all"] if shared else ["actor", "critic"])
    for name, opt in ps.optimizers.items():  # one flat tensor per optimizer, its slice of the buffer
        (tensor,) = opt.param_groups[0]["params"]
        start, end = flat.slices[name]
        assert tensor is flat.tensors[name] and tensor.numel() == end - start
        assert tensor.data_ptr() == flat.flat[start:].data_ptr()
        assert tensor.grad.data_ptr() == flat.grad[start:].data_ptr()
    if not shared:  # the critic's parameters form one contiguous slice
        start, end = flat.slices["critic"]
        critic = ps.model.critic_parameter_ids()
        assert sum(p.numel() for p in ps.model.parameters() if id(p) in critic) == end - start
    grad = np.random.default_rng(1).normal(size=num_params(ps.model)).astype(np.float32)
    ps.flat.set_gradient([(torch.from_numpy(grad), 1.0)], 0.0)
    np.testing.assert_array_equal(np.concatenate([p.grad.reshape(-1).numpy() for p in ps.model.parameters()]), grad)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("scale", [0.01, 0.1])  # the second is clipped: scaled after the conversion
def test_half_precision_packets_step_like_their_float32_decoding(dtype, scale):
    ps, ref = make_ps(), make_ps()
    grad = np.random.default_rng(2).normal(0, scale, num_params(ps.model)).astype(np.float32)
    data = encode_gradient(grad, dtype)
    data.flags.writeable = False  # as Ray hands it over
    wire = packet(ps, grad, dtype=dtype)
    wire.gradient = data
    assert ps.apply_gradients(wire).accepted
    assert ref.apply_gradients(packet(ref, decode_gradient(data))).accepted
    assert (ps.pull_stats().grad_norm_mean > 0.5) == (scale == 0.1)
    np.testing.assert_array_equal(get_flat_weights(ps.model), get_flat_weights(ref.model))
    np.testing.assert_array_equal(ps.flat.grad.numpy(), ref.flat.grad.numpy())  # decoded in the one copy


def test_a_huge_but_finite_gradient_is_clipped_not_rejected():
    """A float32 sum of squares overflows at |g| ~ 1e19; the check tells that apart from inf or NaN."""
    ps = make_ps()
    grad = np.full(num_params(ps.model), 1e20, np.float32)
    assert ps.apply_gradients(packet(ps, grad)).accepted
    assert np.isfinite(get_flat_weights(ps.model)).all()
    assert ps.pull_stats().grad_norm_mean == pytest.approx(1e20 * np.sqrt(grad.size), rel=1e-6)
    grad[3] = np.nan
    assert ps.apply_gradients(packet(ps, grad)).reason == "nonfinite"


def test_published_weights_and_saved_state_do_not_alias_the_live_buffer():
    ps = make_ps(**{"model.normalize_obs": True})
    grad = np.ones(num_params(ps.model), np.float32) * 0.01
    first = ps.apply_gradients(packet(ps, grad)).weights
    kept, saved = first.copy(), ps.state_dict()
    kept_model = {k: v.clone() for k, v in saved["model"].items()}
    ps.apply_gradients(packet(ps, grad))
    np.testing.assert_array_equal(first, kept)
    for key, value in saved["model"].items():
        assert torch.equal(value, kept_model[key])
    size = len(pickle.dumps(saved["model"]))  # each tensor its own storage: pickles at the weights' size
    assert size < 2 * 4 * ps.flat.num_weights + 20_000


@pytest.mark.parametrize("shared, optimizer", [(True, "adam"), (False, "adam"), (False, "rmsprop")])
def test_a_checkpoint_with_per_tensor_optimizer_state_resumes_exactly(shared, optimizer):
    """Checkpoints written before the flat buffer hold one optimizer state per parameter tensor: it is joined
    in the group's order, and the resumed PS continues like the per-tensor optimizer would."""
    ps = make_ps(shared=shared, optimizer=optimizer)
    model, optimizers = reference_of(ps)
    base = {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}
    rng = np.random.default_rng(3)
    grads = [(rng.normal(size=num_params(model)) * 0.01).astype(np.float32) for _ in range(10)]
    for grad in grads[:5]:
        reference_step(model, optimizers, grad, 0.5, base=base)
    old = {
        "model": model.state_dict(),
        "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
        "counters": {"version": 5},
    }
    assert len(old["optimizers"][next(iter(optimizers))]["state"]) > 1  # the old layout
    resumed = make_ps(shared=shared, optimizer=optimizer)
    resumed.load_state_dict(old)
    for grad in grads[5:]:
        reference_step(model, optimizers, grad, 0.5, base=base)
        assert resumed.apply_gradients(packet(resumed, grad)).accepted
    np.testing.assert_allclose(get_flat_weights(resumed.model), get_flat_weights(model), atol=ATOL, rtol=0)
    assert all(len(opt.state_dict()["state"]) == 1 for opt in resumed.optimizers.values())  # saved flat from now
    if optimizer == "adam":
        assert all(opt.param_groups[0]["fused"] for opt in resumed.optimizers.values())  # not the saved flags


def test_new_checkpoints_round_trip_and_foreign_optimizer_state_is_refused():
    ps = make_ps()
    rng = np.random.default_rng(4)
    for _ in range(3):
        ps.apply_gradients(packet(ps, rng.normal(size=num_params(ps.model)) * 0.01))
    saved = pickle.loads(pickle.dumps(ps.state_dict()))
    restored = make_ps()
    restored.load_state_dict(saved)
    grad = rng.normal(size=num_params(ps.model)) * 0.01
    ps.apply_gradients(packet(ps, grad))
    restored.apply_gradients(packet(restored, grad))
    np.testing.assert_array_equal(get_flat_weights(restored.model), get_flat_weights(ps.model))
    saved["optimizers"]["actor"]["state"][0]["exp_avg"] = torch.zeros(7)
    with pytest.raises(A3CError, match="another network"):
        make_ps().load_state_dict(saved)
