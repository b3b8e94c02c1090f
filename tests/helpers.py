"""Shared test helpers: small configs and in-process (Ray-free) training."""
from ray_a3c.common.config import Config, from_flat, validate


def small_config(**overrides) -> Config:
    base = {"env.num_envs_per_worker": 4, "model.hidden_sizes": [16, 16], "run.num_workers": 2}
    base.update(overrides)
    return validate(from_flat(base, Config()))
