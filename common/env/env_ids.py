"""What `env.id` names, resolved the way gymnasium resolves it, on every process that builds an env.

Forms (one rule, `parse_env_id`, that every caller uses):
- `vizdoom:<scenario>` / `vizdoom:<path.cfg>`: a ViZDoom scenario (common/env/vizdoom_env.py);
- `module:Name`: import `module` (it may register envs on import), then `Name` is either a gymnasium.Env
  subclass defined there or an env id the import registered (`ale_py:ALE/Pong-v5`, `mypkg:Catch-v0`);
- `ALE/<Game>-v5` and other ids in the `ALE` namespace: `ale_py` is imported first (gymnasium 1.x knows the
  ids only then);
- any other string: an id already in gymnasium's registry (`CartPole-v1`).
"""

from __future__ import annotations

import enum
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym

from ray_a3c.common.reporting.errors import A3CError

VIZDOOM_PREFIX = "vizdoom:"
ATARI_NAMESPACE = "ALE"
ATARI_EXTRA = "ray-a3c[atari]"


class EnvIdKind(enum.Enum):
    VIZDOOM = "vizdoom"
    MODULE = "module"  # module:Name, Name a class or an id the module registers
    REGISTERED = "registered"  # an id in gymnasium's registry (after importing what registers it)


@dataclass(frozen=True)
class EnvId:
    """A parsed `env.id`: its kind, the module to import first (if any) and the name to build."""

    kind: EnvIdKind
    module: str
    name: str

    @property
    def is_atari(self) -> bool:
        return self.name.split("/")[0] == ATARI_NAMESPACE


def parse_env_id(env_id: str) -> EnvId:
    """Split `env.id` into its form; nothing is imported."""
    if env_id.startswith(VIZDOOM_PREFIX):
        return EnvId(EnvIdKind.VIZDOOM, "", env_id.removeprefix(VIZDOOM_PREFIX))
    head, sep, tail = env_id.partition(":")
    # `ns/Name:...` is not a module (gymnasium ids may hold neither ':' before a '/'), and a module has a name
    if sep and head and "/" not in head:
        return EnvId(EnvIdKind.MODULE, head, tail)
    if env_id.split("/")[0] == ATARI_NAMESPACE:
        return EnvId(EnvIdKind.REGISTERED, "ale_py", env_id)
    return EnvId(EnvIdKind.REGISTERED, "", env_id)


# words in a missing dependency's message -> the ray-a3c extra that installs it
EXTRA_HINTS = {
    "box2d": "box2d",
    "mujoco": "mujoco",
    "opencv": "atari",
    "cv2": "atari",
    "ale_py": "atari",
    "ale-py": "atari",
    "vizdoom": "doom",
}


def missing_package_hint(exc: BaseException) -> str:
    """`pip install 'ray-a3c[<extra>]'` for an ImportError or gymnasium's DependencyNotInstalled, when one of
    our extras brings the package; else the exception's own text."""
    text = str(exc)
    for word, extra in EXTRA_HINTS.items():
        if word in text.lower():
            return f"pip install 'ray-a3c[{extra}]' ({text.strip().splitlines()[0]})"
    return text


def import_module(name: str, what: str = "env") -> object:
    """Import a user's module; one found only in the working directory counts too (evaluations and Ray
    workers may start elsewhere than training did)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name == name.split(".")[0] and cwd not in sys.path:
            sys.path.append(cwd)  # appended: a local folder must not shadow an installed package
            return import_module(name, what)
        if name == "ale_py":
            raise A3CError(f"Atari envs need ale-py: pip install '{ATARI_EXTRA}'") from None
        raise A3CError(f"cannot import {what} module '{name}' ({exc})") from None
    except A3CError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise A3CError(f"{what} module '{name}' failed to import: {type(exc).__name__}: {exc}") from None


def env_builder(env_id: str) -> tuple[Callable[..., gym.Env], bool]:
    """(constructor taking the env's kwargs, whether it is a registered id) for a non-ViZDoom `env.id`.
    A registered id is built with gym.make (its registered wrappers and time limit included)."""
    parsed = parse_env_id(env_id)
    if parsed.kind is EnvIdKind.VIZDOOM:
        raise ValueError("ViZDoom ids are built by common.env.envs")
    if parsed.module:
        module = import_module(parsed.module)
        if parsed.kind is EnvIdKind.MODULE:
            cls = getattr(module, parsed.name, None)
            if cls is not None:
                # A run dir's config must not be able to call arbitrary code (`os:system`): only env classes.
                if not (isinstance(cls, type) and issubclass(cls, gym.Env)):
                    raise A3CError(
                        f"'{env_id}' is not a gymnasium.Env subclass; env.id names an env class or "
                        "an env id the module registers"
                    )
                return cls, False
    _check_registered(parsed, env_id)
    return (lambda **kwargs: gym.make(parsed.name, **kwargs)), True


def _check_registered(parsed: EnvId, env_id: str) -> None:
    try:
        gym.spec(parsed.name)
    except gym.error.Error as exc:
        if parsed.kind is EnvIdKind.MODULE:
            raise A3CError(
                f"module '{parsed.module}' has no env class '{parsed.name}' and registers no env id "
                f"'{parsed.name}' ({exc})".rstrip(".")
            ) from None
        raise A3CError(
            f"unknown env id '{env_id}': {exc}".rstrip(".") + " (see gymnasium.pprint_registry(); "
            "an id your package registers on import: env.id=yourpkg:YourEnv-v0)"
        ) from None


def user_module_names(env_id: str, wrapper_names: list[str]) -> list[str]:
    """The modules a run imports by name (env.id's and `module:Class` wrappers'): what a cluster's nodes
    must be able to import."""
    names = [parse_env_id(env_id).module] if parse_env_id(env_id).kind is EnvIdKind.MODULE else []
    names += [w.partition(":")[0] for w in wrapper_names if ":" in w]
    return list(dict.fromkeys(n for n in names if n))
