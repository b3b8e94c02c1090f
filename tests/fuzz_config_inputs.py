"""Hypothesis strategies for the fuzz suite (tests/unit/test_fuzz_inputs.py): `--set` overrides, config YAML files
and env ids, each as plain functions returning strategies, with the constants they draw from."""

import json

import yaml
from hypothesis import strategies as st

from ray_a3c.common.settings.config import Config, load_yaml, preset_names

DEFAULTS = {f"{s}.{k}": v for s, sec in Config().to_dict().items() for k, v in sec.items()}
KEYS = sorted(DEFAULTS)
# the words string settings choose among (algo.mode's async, model.activation's relu...)
CHOICES = "async sync auto mlp cnn tanh relu elu adam rmsprop rmsprop_tf constant linear mse smooth_l1 vtrace awr"
CHOICES += " cpu cuda greedy sample spread default none node float32 float16 bfloat16 CartPole-v1 Pendulum-v1"
CHEAP_PRESETS = ("cartpole", "pendulum", "acrobot", "cartpole_lstm")  # their envs build in milliseconds

# YAML spellings that parse to surprising things, or not at all
# fmt: off
AWKWARD_YAML = [
    ".nan", ".NaN", "NaN", ".inf", "-.inf", "1e400", "1.0e400", "-1.0e400", "1e-320", "-0.0", "-1", "0",
    "99999999999999999999999", "-99999999999999999999999", "0x1F", "0o17", "1_000", "2001-12-14", "12:30:00",
    "true", "yes", "off", "null", "~", "", " ", "[]", "{}", "[", "]", "{a: ", "'", '"', "a: b: c", "- x",
    "!!python/object/apply:os.system [echo]", "!!python/name:os.system", "!!binary aGVsbG8=", "*alias",
    "&a [1, *a]", "? [1]\n: 2", "\t", "\x00", "\x07bell", "é😀", "[1, [2, [3, [4]]]]", "{1: 2}", "{null: 1}",
    "[84, .nan]", "[true, 84]", "[0]", "[-1, 64]", "{AMMO2: .inf}", "{HEALTH: -1}", "[{TimeLimit: 5}]",
    "[{wrapper: os:system}]", "[{FrameStackObservation: {stack_size: 0}}]", "[NoSuchWrapper]", "[os:getcwd]",
]
# fmt: on


def yaml_values():
    """Python values a YAML document can hold: numbers of every size, NaN and inf, text, nesting."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
    )
    keys = st.one_of(st.text(max_size=8), st.integers(-3, 3), st.none(), st.booleans())
    return st.recursive(
        scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4), max_leaves=8
    )


def flow_yaml(value) -> str:
    """One value as a single line of YAML (how a user types it after `key=`)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()


def value_texts():
    return st.one_of(st.sampled_from(AWKWARD_YAML), yaml_values().map(flow_yaml), st.text(max_size=20))


def near_misses(key: str) -> list[str]:
    section, _, name = key.partition(".")
    return [
        key.upper(),
        key + "_",
        key[:-1],
        key.replace(".", "_"),
        key.replace(".", ".."),
        f"{key}.extra",
        f"{section}.{name}.{name}",
        name,
        f"{section}.",
        f".{name}",
        f" {key} ",
        f"{'model' if section != 'model' else 'algo'}.{name}",
    ]


def typed_values(key: str):
    """Values of the setting's own type, in and out of range: what gets past the type check."""
    default = DEFAULTS.get(key)
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.one_of(st.just(default), st.integers(-3, 2 * abs(default) + 3), st.integers())
    if isinstance(default, float):
        return st.one_of(st.just(default), st.floats(-2.0, 2.0), st.floats(allow_nan=True, allow_infinity=True))
    if isinstance(default, str):
        return st.one_of(st.just(default), st.sampled_from(CHOICES.split()), st.text(max_size=8))
    if key == "env.wrappers":
        return st.lists(wrapper_entries(), max_size=2)
    if isinstance(default, list):
        return st.lists(st.integers(-2, 100), max_size=3)
    if isinstance(default, dict):  # env.kwargs, env.variable_rewards, env.observe_variables
        names = st.one_of(
            st.sampled_from(["render_mode", "AMMO2", "HEALTH", "frameskip", "build"]), st.text(max_size=6)
        )
        return st.dictionaries(st.one_of(names, st.integers(-2, 2)), yaml_values(), max_size=2)
    return st.one_of(st.none(), st.integers(-2, 100), st.floats(-1.0, 100.0), st.text(max_size=8))


WRAPPERS = ["TimeLimit", "ClipReward", "FrameStackObservation", "NormalizeObservation", "FlattenObservation"]
WRAPPERS += ["ResizeObservation", "GrayscaleObservation", "AtariPreprocessing", "LifeLossEnd", "FireReset"]
WRAPPERS += ["RescaleAction", "os:system", "gymnasium:Env", "no_such_module:Wrapper", "NoSuchWrapper", ""]


def wrapper_entries():
    """env.wrappers entries in each of their forms, with kwargs of any kind."""
    names = st.one_of(st.sampled_from(WRAPPERS), st.text(max_size=8))
    kwargs = st.dictionaries(st.sampled_from(["max_episode_steps", "stack_size", "shape", "min_r", "x"]), yaml_values())
    return st.one_of(
        names,
        st.builds(lambda n, k: {n: k}, names, st.one_of(kwargs, yaml_values())),
        st.builds(lambda n, k, t: {"wrapper": n, "kwargs": k, "training_only": t}, names, kwargs, yaml_values()),
    )


def override_keys():
    real = st.sampled_from(KEYS)
    return st.one_of(real, real, real.flatmap(lambda k: st.sampled_from(near_misses(k))), st.text(max_size=20))


def overrides():
    """`--set` arguments: mostly key=value, some without `=` or with two."""
    typed = st.sampled_from(KEYS).flatmap(lambda k: typed_values(k).map(lambda v: f"{k}={flow_yaml(v)}"))
    pair = st.one_of(typed, typed, st.builds(lambda k, v: f"{k}={v}", override_keys(), value_texts()))
    odd = st.one_of(override_keys(), st.builds(lambda k, v: f"{k}=={v}", override_keys(), value_texts()))
    return st.lists(st.one_of(pair, pair, pair, odd), min_size=1, max_size=3)


def preset_documents():
    """A real preset as a mapping, then changed the ways hand-edited files go wrong."""
    presets = st.sampled_from([p for p in preset_names() if p in CHEAP_PRESETS])
    changes = st.lists(mutations(), max_size=3)
    return presets.map(load_yaml).flatmap(lambda doc: changes.map(lambda ms: mutated(doc, ms)))


def mutations():
    """(operation, section index, key index, value) applied by `mutated`."""
    ops = st.sampled_from(
        ["drop_key", "drop_section", "set", "unknown_key", "unknown_section", "not_mapping"] + ["rename"]
    )
    return st.tuples(ops, st.integers(0, 10), st.integers(0, 10), yaml_values())


def mutated(doc: dict, ops: list) -> object:
    doc = json.loads(json.dumps(doc))  # a deep copy
    for op, i, j, value in ops:
        if not isinstance(doc, dict) or not doc:
            return doc
        section = sorted(doc, key=str)[i % len(doc)]
        body = doc[section]
        key = sorted(body, key=str)[j % len(body)] if isinstance(body, dict) and body else None
        if op == "drop_section":
            del doc[section]
        elif op == "unknown_section":
            doc[f"{section}s"] = value
        elif op == "not_mapping":
            doc = value if i % 2 else {**doc, section: value}
        elif key is None:
            continue
        elif op == "drop_key":
            del body[key]
        elif op == "set":
            body[key] = value
        elif op == "unknown_key":
            body[f"{key}_typo"] = value
        elif op == "rename":
            body[near_misses(f"{section}.{key}")[j % 12].rpartition(".")[2] or "x"] = body.pop(key)
    return doc


def yaml_texts():
    """The bytes of a config file: a mutated preset, a random document, text, binary garbage, damaged YAML."""
    documents = st.one_of(preset_documents(), preset_documents(), yaml_values())
    rendered = documents.map(lambda d: yaml.safe_dump(d, sort_keys=False, allow_unicode=True).encode())
    return st.one_of(
        rendered,
        rendered,
        st.tuples(rendered, st.integers(0, 400), st.sampled_from(AWKWARD_YAML + ["\n\t", ":", "\n- ", "  "])).map(
            lambda t: t[0][: t[1]] + t[2].encode() + t[0][t[1] :]
        ),
        st.tuples(rendered, st.integers(0, 400)).map(lambda t: t[0][: t[1]]),  # a file cut short
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.sampled_from([b"\xef\xbb\xbfenv: {id: CartPole-v1}", "env:\n  id: caf\xe9".encode("latin-1"), b"\x00" * 8]),
    )


USER_MODULE = "fuzz_user_envs"  # written into the workspace: found there, as a user's own env module is
USER_ENVS = """
import gymnasium as gym
import numpy as np


class Fine(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)


class Broken(gym.Env):
    def __init__(self, **kwargs):
        raise RuntimeError("the simulator is not installed")


class NoSpaces(gym.Env):
    pass


class TextSpaces(gym.Env):
    observation_space, action_space = "a box", 3


class TupleActions(Fine):
    action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))


NOT_A_CLASS = 3
gym.register("FuzzFine-v0", entry_point=Fine)
gym.register("FuzzBroken-v0", entry_point=Broken)
gym.register("FuzzMissingEntry-v0", entry_point="no_such_module_for_fuzz:Env")
"""
USER_ATTRIBUTES = ["Fine", "Broken", "NoSpaces", "TextSpaces", "TupleActions", "NOT_A_CLASS", "FuzzFine-v0"]
USER_ATTRIBUTES += ["FuzzBroken-v0", "FuzzMissingEntry-v0", "Missing", ""]
# modules that import quickly and do nothing on import; with names that are not env classes or ids
SAFE_MODULES = ["os", "math", "json", "numpy", "gymnasium", "gymnasium.envs.classic_control", "gymnasium.wrappers"]
SAFE_MODULES += [USER_MODULE, "fuzz_import_fails", "fuzz_syntax_error", "ale_py", "no_such_module", "a..b", ".rel"]
OTHER_ATTRIBUTES = ["Env", "Wrapper", "CartPoleEnv", "system", "path", "ALE/Pong-v5", "CartPole-v1", "Space"]
# quick to build, and every kind of answer: Tuple observations, missing mujoco-py, missing flax...
REGISTERED = ["CartPole-v1", "Pendulum-v1", "Blackjack-v1", "FrozenLake-v1", "Taxi-v3", "CarRacing-v3"]
REGISTERED += ["LunarLanderContinuous-v3", "Hopper-v5", "Walker2d-v3", "GymV26Environment-v0", "Pusher-v4"]
SCENARIO_NEAR_MISSES = ["basic", "Basic", "basic.cfg", "", " ", "defend_the_centre", "../basic", "nope.cfg"]
SCENARIO_NEAR_MISSES += ["garbage.cfg", "empty.cfg", "missing_wad.cfg", "a_dir.cfg"]  # written in the workspace
# the files `user_modules` writes into the workspace: a user's env module, two that cannot import, bad .cfg files
USER_FILES = {
    f"{USER_MODULE}.py": USER_ENVS,
    "fuzz_import_fails.py": "raise RuntimeError('a missing licence file')\n",
    "fuzz_syntax_error.py": "def (:\n",
    "garbage.cfg": "garbage \x01\x02 = = {\n",
    "empty.cfg": "",
    "missing_wad.cfg": "doom_scenario_path = nope.wad\navailable_buttons = { ATTACK }\n",
}
USER_IDS = ("FuzzFine-v0", "FuzzBroken-v0", "FuzzMissingEntry-v0")  # registered when the module imports


def env_ids():
    """Any string; `module:Name` forms; ALE ids of games that exist and that do not; `vizdoom:` forms."""
    name = st.text(alphabet="abcPongXyz019-_/.", max_size=8)
    module_form = st.builds(
        lambda m, n: f"{m}:{n}",
        st.one_of(st.sampled_from(SAFE_MODULES), name),
        st.one_of(st.sampled_from(USER_ATTRIBUTES + OTHER_ATTRIBUTES), name),
    )
    game = st.one_of(st.sampled_from(["Pong", "pong", "Pongg", "Breakout", "NoSuchGame", ""]), name)
    prefix = st.sampled_from(["", "ale_py:"])
    ale = st.builds(lambda p, g, v: f"{p}ALE/{g}-v{v}", prefix, game, st.integers(0, 6))
    doom = st.one_of(st.sampled_from(SCENARIO_NEAR_MISSES), st.text(max_size=10)).map(lambda s: f"vizdoom:{s}")
    registered = st.one_of(
        st.sampled_from(REGISTERED),
        st.sampled_from(REGISTERED),
        st.sampled_from(REGISTERED).map(str.lower),
        st.builds(lambda i, v: i.rpartition("-v")[0] + f"-v{v}", st.sampled_from(REGISTERED), st.integers(0, 9)),
    )
    return st.one_of(st.text(max_size=24), module_form, module_form, ale, doom, registered, registered)
