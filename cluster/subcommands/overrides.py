"""The command line's config: `--set K=V` texts and `a3c train`'s named flags as {"section.key": value}, and a
config resolved from them. Plain config code (no gymnasium, no torch), so the parser imports it and `a3c --help`
stays fast."""

from __future__ import annotations

from ray_a3c.common.settings.config import Config, from_dict, from_flat, parse_override, validate

DEFAULT_PRESET = "cartpole"

# `a3c train`'s named flags (their argparse dests) and the config key each one sets
FLAG_KEYS = {
    "env": "env.id",
    "mode": "algo.mode",
    "num_workers": "run.num_workers",
    "total_env_steps": "run.total_env_steps",
    "time_limit": "run.time_limit_s",
    "stop_return": "run.stop_return",
    "seed": "run.seed",
    "run_dir": "run.run_dir",
    "address": "cluster.address",
}


def resolve_config(base: dict, overrides: list[str], flags: dict | None = None, source: str = "") -> Config:
    cfg = from_dict(base, source=source or "config")
    cfg = from_flat(flat_overrides(overrides, flags), cfg)
    return validate(cfg)


def flat_overrides(overrides: list[str], flags: dict | None) -> dict:
    """--set K=V and the named flags as one {"section.key": value} mapping (flags win)."""
    values = dict(parse_override(o) for o in overrides)
    values.update({FLAG_KEYS[k]: v for k, v in (flags or {}).items() if v is not None})
    return values
