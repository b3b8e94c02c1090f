"""Hypothesis strategies for the fuzz suite (tests/unit/test_fuzz_inputs.py): offline datasets, as npz files built
in memory and damaged on disk, and `minari:` references (ids, paths, copies of a real dataset damaged)."""

import io
import json
import os
import pickle
import shutil
import zipfile

import numpy as np
from hypothesis import strategies as st

from tests.fuzz_config_inputs import yaml_values

PICKLE_MARKER = "unpickled.txt"  # created in the working directory if a pickle in a file were ever loaded


class PicklePayload:
    """Unpickling this creates PICKLE_MARKER: the proof that a dataset's pickle was never loaded."""

    def __reduce__(self):
        return open, (PICKLE_MARKER, "w")


DTYPES = ["float32", "float64", "int64", "int8", "uint8", "bool", "complex64", "<U3", "S2", "datetime64[s]"]
COLUMNS = ("observations", "next_observations", "actions", "rewards", "terminated", "truncated", "episode_ids")


@st.composite
def valid_datasets(draw) -> dict:
    """The arrays and metadata of a small well-formed dataset (Box or Discrete spaces)."""
    lengths = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    n = sum(lengths)
    if draw(st.booleans()):
        dim = draw(st.sampled_from([4, 1, 3]))  # 4 with Discrete(2) actions: CartPole's spaces
        obs_space = {"type": "Box", "shape": [dim], "low": [-1.0] * dim, "high": [1.0] * dim, "dtype": "float32"}
        obs = np.zeros((n, dim), np.float32)
    else:
        obs_space, obs = {"type": "Discrete", "n": 3}, np.zeros(n, np.int64)
    if draw(st.booleans()):
        act_space, actions = {"type": "Discrete", "n": 2}, np.zeros(n, np.int64)
    else:
        act_space = {"type": "Box", "shape": [1], "low": [-1.0], "high": [1.0], "dtype": "float32"}
        actions = np.zeros((n, 1), np.float32)
    ends = np.cumsum(lengths) - 1
    terminated = np.zeros(n, bool)
    terminated[ends] = True
    arrays = dict(
        observations=obs,
        next_observations=obs.copy(),
        actions=actions,
        rewards=np.ones(n, np.float32),
        terminated=terminated,
        truncated=np.zeros(n, bool),
        episode_ids=np.repeat(np.arange(len(lengths)), lengths),
        behaviour_log_probs=np.full(n, -0.5, np.float32),
    )
    meta = {"schema_version": 1, "observation_space": obs_space, "action_space": act_space, "source": "fuzz"}
    return {**arrays, "metadata": meta}


def random_arrays():
    """An array of any dtype and a small random shape (0-d included), NaN and inf among the floats."""

    def build(dtype, shape, fill):
        arr = np.zeros(shape, dtype)
        if arr.size and fill is not None and np.issubdtype(arr.dtype, np.floating):
            arr.flat[0] = fill
        return arr

    shapes = st.lists(st.integers(0, 5), max_size=3).map(tuple)
    return st.builds(build, st.sampled_from(DTYPES), shapes, st.sampled_from([None, np.nan, np.inf, -np.inf, 1e38]))


def array_mutations():
    """(column, how, payload) applied by `damaged`."""
    columns = st.sampled_from((*COLUMNS, "behaviour_log_probs", "metadata"))
    how = st.sampled_from(["drop", "replace", "short", "nan", "pickled", "scalar", "no_end", "ids", "actions"])
    return st.tuples(columns, how, random_arrays())


def damaged(data: dict, ops: list) -> dict:
    data = dict(data)
    n = len(data["rewards"])
    for column, how, payload in ops:
        if column == "metadata" and how not in ("drop", "pickled") and "metadata" in data:
            data["metadata"] = metadata_mutation(data["metadata"], how, payload)
        elif how == "drop":
            data.pop(column, None)
        elif how == "replace":
            data[column] = payload
        elif how == "short" and column in data and np.ndim(data[column]):
            data[column] = data[column][: max(0, n - 1)]
        elif how == "nan" and column in data:
            data[column] = np.zeros(np.shape(data[column]), np.float32)
            if data[column].size:
                data[column].flat[-1] = np.nan
        elif how == "pickled":  # an object array: np.savez pickles it; a loader that unpickled it would run code
            data[column] = np.array([PicklePayload()] * n, dtype=object)
        elif how == "scalar" and column in data:
            data[column] = np.asarray(data[column]).reshape(-1)[:1].reshape(()) if np.size(data[column]) else 0.0
        elif how == "no_end":
            data["terminated"] = np.zeros(n, bool)
        elif how == "ids":
            data["episode_ids"] = np.arange(n) % 2
        elif how == "actions" and "actions" in data:
            data["actions"] = np.full_like(data["actions"], 7)
    return data


def metadata_mutation(meta, how: str, payload: np.ndarray):
    """Text that is not JSON, JSON that is not a mapping, a wrong version, malformed or huge spaces."""
    if not isinstance(meta, dict):
        return meta
    key = "observation_space" if payload.ndim % 2 else "action_space"
    return {
        "replace": np.array("{not json"),
        "short": dict(meta, schema_version=2),
        "nan": dict(meta, **{key: {"type": "Discrete", "n": float("inf")}}),
        "scalar": [1, 2],
        "no_end": dict(meta, **{key: {"type": "Box", "shape": [-1], "low": 0, "high": 1, "dtype": "float32"}}),
        "ids": dict(meta, **{key: {"type": "Discrete", "n": -3}}),
        "actions": dict(meta, **{key: {"type": "Tuple", "spaces": []}}),
    }[how]


def npz_bytes(data: dict, compressed: bool) -> bytes:
    arrays = {k: v for k, v in data.items() if k != "metadata"}
    if "metadata" in data:
        meta = data["metadata"]
        arrays["metadata"] = meta if isinstance(meta, np.ndarray) else np.array(json.dumps(meta))
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def file_damage():
    """What happens to the bytes on disk: nothing, cut short, bytes overwritten, or not an npz at all."""
    return st.one_of(
        st.just(("none", 0, b"")),
        st.tuples(st.just("cut"), st.integers(0, 3000), st.just(b"")),
        st.tuples(st.just("overwrite"), st.integers(0, 3000), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("prepend"), st.just(0), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("replace"), st.just(0), st.sampled_from(foreign_files())),
    )


def foreign_files() -> list[bytes]:
    """Whole files that are not datasets: a pickle (with a payload), an object .npy, text, nothing."""
    npy = io.BytesIO()
    np.save(npy, np.array([PicklePayload()], dtype=object), allow_pickle=True)
    plain = io.BytesIO()
    np.save(plain, np.zeros(3))
    empty_zip = io.BytesIO()
    zipfile.ZipFile(empty_zip, "w").close()
    return [pickle.dumps(PicklePayload()), npy.getvalue(), plain.getvalue(), empty_zip.getvalue(), b"a,b\n1,2\n", b""]


def damaged_file(raw: bytes, damage: tuple) -> bytes:
    how, at, payload = damage
    at = at % (len(raw) + 1)
    if how == "cut":
        return raw[:at]
    if how == "overwrite":
        return raw[:at] + payload + raw[at + len(payload) :]
    if how == "prepend":
        return payload + raw
    return payload if how == "replace" else raw


def npz_cases():
    data = st.tuples(valid_datasets(), st.lists(array_mutations(), max_size=3)).map(lambda t: damaged(*t))
    return st.tuples(data, st.booleans(), file_damage())


MINARI_BASE = "fuzz/base-v0"


def minari_cases():
    """`minari:` references: ids well and badly formed, paths, and copies of a real dataset damaged on disk."""
    part = st.text(alphabet="abz09-_/. ", max_size=8)
    ids = st.builds(lambda ns, name, v: f"{ns}{name}-v{v}", st.sampled_from(["", "fuzz/", "a/b/", "../"]), part, part)
    refs = st.one_of(ids, st.text(max_size=20), st.sampled_from(["", "/", "/nonexistent", MINARI_BASE, "fuzz/base"]))
    damage = st.tuples(
        st.sampled_from(["none", "cut", "overwrite", "drop_data", "drop_metadata", "metadata", "metadata_field"]),
        st.integers(0, 60000),
        st.binary(min_size=1, max_size=16),
        yaml_values(),
    )
    return st.one_of(refs.map(lambda r: ("ref", r)), damage.map(lambda d: ("copy", d)))


def damaged_minari_copy(base: str, target: str, damage: tuple) -> None:
    how, at, payload, value = damage
    shutil.copytree(base, target)
    h5, meta = os.path.join(target, "data", "main_data.hdf5"), os.path.join(target, "data", "metadata.json")
    if how == "none":
        return
    if how in ("cut", "overwrite"):
        with open(h5, "rb") as fh:
            raw = fh.read()
        at %= len(raw)
        with open(h5, "wb") as fh:
            fh.write(raw[:at] if how == "cut" else raw[:at] + payload + raw[at + len(payload) :])
    elif how in ("drop_data", "drop_metadata"):
        os.remove(h5 if how == "drop_data" else meta)
    else:
        with open(meta) as fh:
            fields = json.load(fh)
        if how == "metadata":
            fields = value
        else:
            fields[sorted(fields)[at % len(fields)]] = value
        with open(meta, "w") as fh:
            json.dump(fields, fh, default=str)
