"""Minari (Farama's offline-RL format) <-> our Dataset. Read from the user's local Minari data path only:
nothing is ever downloaded. `env.dataset: minari:<dataset_id>` names one; `a3c record --format minari` writes one.

Minari stores an episode of n steps as n + 1 observations (the reset one first), n actions/rewards/flags and
an `infos` dict. Our behaviour log-probabilities ride in `infos["behaviour_log_prob"]`, n + 1 entries aligned
with the observations (entry i is log mu(a_i | o_i); the last, after the final observation, is NaN and unused).
"""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import numpy as np

from ray_a3c.common.data.dataset import REQUIRED, Dataset, validate_dataset
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.storage.keys import INFO_LOG_PROB

PREFIX = "minari:"


def is_minari(ref: str | None) -> bool:
    return bool(ref) and ref.startswith(PREFIX)


def _minari():
    try:
        import minari  # the minari extra: every use of it goes through here first
    except ImportError:
        raise A3CError("Minari datasets need the `minari` package: pip install 'ray-a3c[minari]'") from None
    return minari


def dataset_dir(dataset_id: str) -> str:
    """The local directory of a dataset id under the user's Minari data path (MINARI_DATASETS_PATH, else
    ~/.minari/datasets), as Minari itself resolves it."""
    _minari()
    from minari.dataset.minari_dataset import parse_dataset_id  # the minari extra (checked above)
    from minari.storage.datasets_root_dir import get_dataset_path

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # TypeError: an id whose version is not a number ('name-v', '0')
        raise A3CError(
            f"'{dataset_id}' is not a Minari dataset id ((namespace/)name-v<version>, e.g. cartpole/expert-v0)"
        ) from None
    return str(get_dataset_path(dataset_id))


def resolve(ref: str) -> str:
    """`minari:<dataset_id>` -> `minari:<absolute directory>`, resolved where the command runs so that actors
    whose environment differs read the same files. An absolute directory is kept."""
    target = ref.removeprefix(PREFIX)
    if os.path.isabs(target):
        return ref
    directory = dataset_dir(target)
    _check_present(directory, target)
    return PREFIX + directory


def _check_present(directory: str, name: str) -> None:
    if not os.path.isdir(os.path.join(directory, "data")):
        where = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise A3CError(
            f"Minari dataset '{name}' is not in the local data path ({where}); create it or set "
            "MINARI_DATASETS_PATH (nothing is downloaded)"
        )


def load_minari(ref: str) -> Dataset:
    """Read a local Minari dataset (`minari:<id>` or `minari:<directory>`) into a validated Dataset."""
    minari = _minari()
    target = ref.removeprefix(PREFIX)
    directory = target if os.path.isabs(target) else dataset_dir(target)
    _check_present(directory, target)
    try:
        data = minari.MinariDataset(os.path.join(directory, "data"))
        columns = _episode_columns(data, ref)
    except A3CError:
        raise
    except Exception as exc:  # Minari and h5py raise plain ValueError/KeyError/OSError/RuntimeError on damage
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise A3CError(f"Minari dataset '{target}' cannot be read ({type(exc).__name__}: {message})") from None
    return _to_dataset(data, columns, ref)


def _episode_columns(data, ref: str) -> tuple[dict[str, np.ndarray], bool]:
    """Every episode's steps, read from the files into our columns (and `log_probs`, zeros where none were
    recorded) -> (columns, whether log-probs were recorded). All the data is read here, so damage shows here."""
    for space in (data.observation_space, data.action_space):
        if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise A3CError(f"Minari dataset '{ref}' has a {type(space).__name__} space; Box or Discrete only")
    cols: dict[str, list] = {k: [] for k in REQUIRED + ("log_probs",)}
    has_log_probs = True
    for episode in data.iterate_episodes():
        n = len(episode.rewards)
        if n == 0:
            continue
        obs = np.asarray(episode.observations)
        truncated = np.asarray(episode.truncations, bool).copy()
        terminated = np.asarray(episode.terminations, bool)
        if not (terminated[-1] or truncated[-1]):
            truncated[-1] = True  # an episode cut off by the recording ends where the data ends
        log_probs = (episode.infos or {}).get(INFO_LOG_PROB)
        has_log_probs = has_log_probs and log_probs is not None and len(log_probs) == n + 1
        for key, value in (
            ("observations", obs[:-1]),
            ("next_observations", obs[1:]),
            ("actions", np.asarray(episode.actions)),
            ("rewards", np.asarray(episode.rewards)),
            ("terminated", terminated),
            ("truncated", truncated),
            ("episode_ids", np.full(n, int(episode.id))),
            ("log_probs", np.asarray(log_probs)[:n] if has_log_probs else np.zeros(n)),
        ):
            cols[key].append(value)
    if not cols["rewards"]:
        raise A3CError(f"Minari dataset '{ref}' holds no steps")
    return {k: np.concatenate(v) for k, v in cols.items()}, has_log_probs


def _to_dataset(data, columns: tuple[dict[str, np.ndarray], bool], ref: str) -> Dataset:
    arrays, has_log_probs = columns
    obs_space, act_space = data.observation_space, data.action_space
    float_obs = isinstance(obs_space, gym.spaces.Box) and obs_space.dtype != np.uint8
    for key in ("observations", "next_observations"):
        arrays[key] = arrays[key].astype(np.float32 if float_obs else arrays[key].dtype)
    if isinstance(act_space, gym.spaces.Discrete):
        arrays["actions"] = arrays["actions"].astype(np.int64) - int(act_space.start)
        act_space = gym.spaces.Discrete(int(act_space.n))
    else:
        arrays["actions"] = arrays["actions"].astype(np.float32)
    log_probs = arrays.pop("log_probs")
    ds = Dataset(
        **{k: arrays[k] for k in ("observations", "next_observations", "actions")},
        rewards=arrays["rewards"].astype(np.float32),
        terminated=arrays["terminated"],
        truncated=arrays["truncated"],
        episode_ids=arrays["episode_ids"].astype(np.int64),
        observation_space=obs_space,
        action_space=act_space,
        source=f"minari {ref.removeprefix(PREFIX)}",
        behaviour_log_probs=log_probs.astype(np.float32) if has_log_probs else None,
    )
    validate_dataset(ds, ref)
    return ds


def save_minari(dataset_id: str, arrays: dict, env_id: str, description: str) -> str:
    """Write recorded arrays (as `record_episodes` returns them) as a new local Minari dataset; an id that
    exists is refused, never overwritten. -> the dataset's directory."""
    minari = _minari()
    from minari.data_collector.episode_buffer import EpisodeBuffer  # the minari extra (checked above)

    directory = dataset_dir(dataset_id)
    if os.path.exists(directory):
        raise A3CError(f"Minari dataset '{dataset_id}' exists at {directory}; choose another id (never overwritten)")
    log_probs = arrays.get("behaviour_log_probs")
    actions = arrays["actions"]
    if isinstance(arrays["action_space"], gym.spaces.Discrete):  # Minari stores what the env was given
        actions = actions + int(arrays["action_space"].start)
    buffers = []
    ends = np.flatnonzero(arrays["terminated"] | arrays["truncated"]) + 1
    for start, end in zip(np.concatenate([[0], ends[:-1]]), ends, strict=False):
        obs = np.concatenate([arrays["observations"][start:end], arrays["next_observations"][end - 1 : end]])
        infos = {}
        if log_probs is not None:
            infos[INFO_LOG_PROB] = np.append(log_probs[start:end], np.nan).astype(np.float32)
        buffers.append(
            EpisodeBuffer(
                id=int(arrays["episode_ids"][start]),
                observations=obs,
                actions=actions[start:end],
                rewards=arrays["rewards"][start:end],
                terminations=arrays["terminated"][start:end],
                truncations=arrays["truncated"][start:end],
                infos=infos,
            )
        )
    env = env_id if env_id in gym.registry else None
    with warnings.catch_warnings():  # Minari warns about every unset provenance field
        warnings.simplefilter("ignore", UserWarning)
        minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=env,
            algorithm_name="ray-a3c record",
            description=description,
            observation_space=arrays["observation_space"],
            action_space=arrays["action_space"],
        )
    return directory
