"""Defaults by family: what `a3c train --env X` uses when no preset names the settings. The env's spaces
decide (image observations: pixels; Box actions: continuous; otherwise classic control), and an ALE id takes
the whole `atari` preset (its wrappers included)."""

from __future__ import annotations

import enum
from importlib import resources

import gymnasium as gym

from ray_a3c.common.env.env_ids import parse_env_id
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.settings.config import EnvConfig


class Family(enum.Enum):
    CLASSIC = "classic"
    CONTINUOUS = "continuous"
    PIXELS = "pixels"
    ATARI = "atari"


WHY = {
    Family.CLASSIC: "vector observations, discrete actions",
    Family.CONTINUOUS: "Box actions",
    Family.PIXELS: "image observations",
    Family.ATARI: "an ALE game",
}


def family_source(family: Family) -> str:
    """The YAML text of a family's defaults (the `atari` preset for ALE games)."""
    if family is Family.ATARI:
        return resources.files("ray_a3c.common.presets").joinpath("atari.yaml").read_text()
    return resources.files("ray_a3c.common.presets").joinpath(f"families/{family.value}.yaml").read_text()


def choose_family(env: EnvConfig) -> Family:
    """The family of `env` (built once to read its spaces, behind its wrappers)."""
    if parse_env_id(env.id).is_atari:
        return Family.ATARI
    spaces = probe_spaces(env)
    if spaces.has_images:
        return Family.PIXELS
    if isinstance(spaces.action_space, gym.spaces.Box):
        return Family.CONTINUOUS
    return Family.CLASSIC


def describe(family: Family) -> str:
    return f"defaults: the {family.value} family ({WHY[family]}); a preset or --set overrides them"
