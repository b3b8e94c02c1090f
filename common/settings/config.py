"""Typed run configuration: dataclasses, YAML presets, `section.key=value` overrides, validation."""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from importlib import resources
from types import UnionType
from typing import Any

import yaml

from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.validation import validate
from ray_a3c.common.storage.atomic import atomic_write


def _f(default: Any, doc: str) -> Any:
    """A dataclass field with a one-line doc (shown by `a3c config` and in the README)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class EnvConfig:
    id: str = _f(
        "CartPole-v1",
        "a registered gymnasium id (`ALE/Pong-v5` imports ale_py), `module:EnvId` (import "
        "the module, then make the id it registers), `module:ClassName` of your own "
        "gymnasium.Env, or `vizdoom:<scenario>` / `vizdoom:<path.cfg>`",
    )
    kwargs: dict = _f({}, "keyword arguments passed to gymnasium.make / your env class")
    wrappers: list = _f(
        [],
        "gymnasium wrappers in front of the env, in order: `Name`, `{Name: {kwargs}}` or "
        "`{wrapper: Name, kwargs: {...}, training_only: bool}`; Name is a class of "
        "gymnasium.wrappers, LifeLossEnd, FireReset, or module:Class; reward- and "
        "episode-changing ones (ClipReward, TransformReward, NormalizeReward, LifeLossEnd) are "
        "training-only: evaluations score the game's own return",
    )
    dataset: str | None = _f(
        None,
        "train from this recorded .npz, or `minari:<dataset_id>` from the local "
        "Minari data path, instead of stepping env.id (the evaluator plays it live)",
    )
    num_envs_per_worker: int = _f(8, "env copies per worker, stepped as one gymnasium vector env")
    vector_mode: str = _f("sync", "sync (SyncVectorEnv, one process) | async (AsyncVectorEnv, a process per env)")
    ale_vector: bool = _f(
        True,
        "an ALE v5 id whose env.wrappers are AtariPreprocessing then any of LifeLossEnd, FireReset, "
        "ClipReward steps through ale_py's AtariVectorEnv (the same preprocessing in C++ threads); false: "
        "always the gymnasium wrappers",
    )
    ale_threads: int = _f(1, "C++ threads of each worker's AtariVectorEnv (env.ale_vector); one core per worker")
    warmup_steps: int = _f(0, "up to this many random steps per env at start, to desynchronise episodes")
    step_timeout_s: float = _f(
        30.0,
        "a vector env step or reset (autoresets and the warmup included) that has not returned after this many "
        "seconds is named (worker, env index, seed, episode step), the vector env rebuilt and the rollout in "
        "flight collected again; below cluster.worker_timeout_s; 0 = off (no watchdog thread)",
    )
    max_hang_restarts: int = _f(
        3, "rebuilds allowed per env index after hangs; the next hang of that env ends the run (exit 2) naming it"
    )
    rescale_actions: bool = _f(False, "the policy acts in [-1, 1], rescaled to the Box bounds")
    max_episode_steps: int | None = _f(None, "override the env's time limit (truncation); null keeps it")
    reward_scale: float = _f(1.0, "rewards are multiplied by this for learning; logged returns stay raw")
    frame_skip: int | None = _f(
        None, "ViZDoom: game tics per action (null = 4); other envs take theirs from env.kwargs or a wrapper"
    )
    frame_stack: int = _f(
        1, "stack this many last observations (after env.wrappers; images as channels); 1 = none; at most 256"
    )
    screen_size: list = _f(
        [84, 84],
        "ViZDoom: observation [width, height]: the 160x120 gray screen less 10 rows "
        "top and bottom, resized (the Doom notebook's 84x84; Sample Factory's 128x72)",
    )
    medkit_bonus: float = _f(
        0.0,
        "ViZDoom: raw reward added on each step the player's health rises (a medkit; "
        "Sample Factory's health_gathering shaping uses 1.0); training envs only: "
        "evaluations score the scenario's own reward; 0 = off",
    )
    variable_rewards: dict = _f(
        {},
        "ViZDoom: raw reward per unit change of a game variable, e.g. {AMMO2: 0.1} costs "
        "0.1 a shot (Sample Factory's delta shaping); training envs only, like "
        "medkit_bonus; {} = off",
    )
    observe_variables: dict = _f(
        {},
        "ViZDoom: game variables the network sees, {name: full scale}, e.g. {AMMO2: 26} (the "
        "frame has no HUD): the observation becomes a Dict, {screen: the frame, variables: "
        "value / full scale each, clipped to [0, 1]}, read by an MLP (model.hidden_sizes) beside the "
        "CNN; env.frame_stack stacks both; {} = none",
    )
    observe_variables_as_channels: bool = _f(
        False,
        "ViZDoom: env.observe_variables as the first design had them, one extra image channel "
        "each (level x 255) that the CNN's fc layer reads; runs saved before the Dict take true, "
        "so their checkpoints still load",
    )


@dataclass
class ModelConfig:
    encoder: str = _f("auto", "mlp | cnn | auto (cnn for uint8 image observations, else mlp)")
    hidden_sizes: list = _f([64, 64], "MLP layer widths of the encoder")
    cnn_layout: str = _f(
        "a3c",
        "CNN encoder: a3c (the A3C paper's 8x8/4 and 4x4/2 convolutions, conv_channels wide, ELU) | nature (DQN "
        "Nature's, as SB3's NatureCNN and Sample Factory's convnet_atari: 32 8x8/4, 64 4x4/2, 64 3x3/1, ReLU; "
        "frames of 36 pixels and up; conv_channels unused)",
    )
    conv_channels: list = _f([16, 32], "CNN encoder (a3c layout): channels of the 8x8/4 and 4x4/2 convolutions")
    cnn_fc_size: int = _f(256, "CNN encoder: width of the fully connected layer after the convolutions")
    lstm_size: int = _f(0, "LSTM core between encoder and heads (256 is the Doom notebook's); 0 = none")
    lstm_input_norm: bool = _f(
        True,
        "LayerNorm on the LSTM's input: the CNN's features start ~0.04 and grow "
        "without bound, leaving the gates blind to the input or saturated",
    )
    lstm_skip: bool = _f(
        False,
        "the heads read the LSTM's output concatenated with the encoder's features: a "
        "feed-forward path beside the memory",
    )
    activation: str = _f("tanh", "tanh | relu | elu")
    shared_trunk: bool = _f(
        False,
        "one trunk for policy and value; false = separate actor and critic nets "
        "(with an LSTM the critic is feed-forward: the core is the actor's)",
    )
    init_log_std: float = _f(0.0, "initial log-std of the Gaussian head (continuous actions)")
    gsde: bool = _f(
        False,
        "continuous actions: state-dependent exploration (gSDE): the noise is the policy's "
        "features times a random matrix, so it varies smoothly with the state",
    )
    gsde_sample_every: int = _f(0, "gSDE: rollout steps between fresh noise matrices; 0 = one per rollout")
    trunk_bf16: bool = _f(
        False,
        "image encoders (CNNs) compute in bfloat16 (torch autocast; weights, gradients, heads and losses "
        "stay float32): ~1.7x faster forward + backward on CPUs with AVX512_BF16 or AMX, slower without",
    )
    normalize_obs: bool = _f(False, "normalise observations by running mean/std merged on the PS (clip +-10)")
    normalize_rewards: bool = _f(
        False,
        "divide learning rewards by the running std of the discounted return "
        "(merged on the PS, saved with the weights; clip +-10); evaluation "
        "and logged returns never see it",
    )


@dataclass
class AlgoConfig:
    mode: str = _f("async", "async (A3C: workers push on their own) | sync (A2C: one averaged step per round)")
    rollout_steps: int = _f(5, "transitions per env per gradient (n of n-step returns)")
    gamma: float = _f(0.99, "discount factor")
    gae_lambda: float = _f(1.0, "GAE lambda; 1.0 gives plain n-step discounted returns")
    normalize_advantages: bool = _f(
        False, "standardize each gradient's advantages (mean 0, std 1 over its valid steps), as PPO implementations do"
    )
    learning_rate: float = _f(7e-4, "learning rate of algo.optimizer (the actor's when critic_learning_rate is set)")
    critic_learning_rate: float | None = _f(None, "separate learning rate for the critic (needs shared_trunk false)")
    adam_eps: float = _f(1e-5, "Adam epsilon")
    optimizer: str = _f(
        "adam",
        "adam | rmsprop (torch's: mean square from 0, eps outside the root) | rmsprop_tf (TensorFlow's, as the A3C "
        "paper and SB3's Atari A2C: mean square from 1, eps inside); RMSprop without momentum, not centred",
    )
    rmsprop_alpha: float = _f(0.99, "rmsprop, rmsprop_tf: decay of the running average of squared gradients")
    rmsprop_eps: float = _f(1e-5, "rmsprop, rmsprop_tf: epsilon (SB3's A2C: 1e-5; the A3C paper's: 0.1)")
    lr_schedule: str = _f(
        "constant",
        "constant | linear: the learning rates fall linearly to 0 at the end of "
        "the run's budget: run.total_env_steps (the PS's count) or "
        "run.time_limit_s, whichever comes first",
    )
    lr_decay_start: float = _f(
        0.0,
        "linear schedule: the share of the budget trained at the full rates before "
        "the fall begins (0: from the start; 0.7: the last 30% anneal)",
    )
    entropy_coef: float = _f(0.01, "weight of the entropy bonus")
    value_coef: float = _f(0.5, "weight of the value loss")
    critic_epochs: int = _f(1, "critic steps per batch (extra ones are value-only; needs shared_trunk false)")
    policy_epochs: int = _f(
        1,
        "full steps per batch: extra ones (a trust-region option) push PPO's clipped "
        "surrogate against the acting policy, each on the weights the previous push returned",
    )
    clip_range: float = _f(0.2, "policy_epochs > 1: the ratio pi/mu is clipped to 1 +- this")
    value_loss: str = _f("mse", "mse | smooth_l1")
    max_grad_norm: float = _f(0.5, "clip gradients to this global norm on the PS; 0 disables")
    overlap_push: bool = _f(True, "push a gradient while collecting the next rollout (acts one update behind)")
    is_clip: float = _f(1.0, "clip of the importance weights (V-trace rho/c bar) when training from a dataset")
    offline_update: str = _f(
        "vtrace",
        "training from a dataset: vtrace (importance-corrected actor-critic; "
        "plain A3C when the file has no log-probs) | awr (advantage-weighted "
        "regression on the logged actions: weights exp(A / awr_temperature) >= 0)",
    )
    awr_temperature: float = _f(1.0, "awr: the advantage scale of the weights (in scaled-reward units)")
    awr_max_weight: float = _f(20.0, "awr: weights are clipped to this")
    max_policy_lag: int = _f(50, "reject gradients computed on weights older than this many versions")
    weight_sync_every: int = _f(
        1,
        "async: a push's reply carries the weights only when the PS moved at least "
        "this many versions past the packet's (fewer bytes out of the PS)",
    )


@dataclass
class LearnerConfig:
    device: str = _f("cpu", "where the parameter server trains: cpu | cuda | auto (cuda when present)")
    num_gpus: float = _f(0.0, "GPUs reserved for the parameter server actor (1 with device cuda on a cluster)")
    max_batch_packets: int = _f(
        1,
        "the PS applies up to this many waiting packets as one Adam step on their "
        "mean gradient (each still checked and counted alone); 1 = serial A3C",
    )
    grad_dtype: str = _f(
        "float32", "gradient transport: float32 | float16 | bfloat16 (half the bytes; the PS computes in float32)"
    )
    num_shards: int = _f(
        1,
        "parameter-server shards: each an actor owning 1/S of the weights and their optimizer state, placed on "
        "different nodes where the cluster has them; workers (or their node's aggregator) push each its slice "
        "(async mode)",
    )


@dataclass
class RunConfig:
    run_dir: str | None = _f(None, "run directory; null = runs/<preset-or-env>-<timestamp>")
    seed: int = _f(0, "base seed, in [0, 2**63); worker r uses seed + r")
    num_workers: int = _f(2, "rollout worker actors; 0 = auto: the cluster's free CPUs less the PS's and evaluator's")
    total_env_steps: int = _f(1_000_000, "stop after this many env steps")
    time_limit_s: float | None = _f(None, "stop after this many seconds of training; null = none")
    stop_return: float | None = _f(
        None, "stop when one version's mean over confirm_episodes evaluation episodes reaches this; null = none"
    )
    eval_interval_s: float = _f(5.0, "seconds between screenings (short evaluations of the PS's latest weights)")
    eval_episodes: int = _f(10, "episodes per screening")
    eval_max_share: float = _f(
        1.0,
        "the most of training's wall time the evaluator may have been busy when a screening is due: a later one "
        "waits until its busy share falls to this (confirmations are never cut); 1 = no bound",
    )
    confirm_episodes: int = _f(
        100,
        "episodes behind best.pt and the stop: a screening that beats the best or "
        "reaches stop_return is extended on the same weights (next seeds) to this "
        "many, and decided on their mean; <= eval_episodes: the screening decides",
    )
    eval_policy: str = _f(
        "greedy",
        "evaluation actions: greedy (the most likely action) | sample (drawn from the "
        "policy, as in training; breaks the loops a greedy pixel policy can fall into)",
    )
    gif_every: int = _f(
        0,
        "write RUN_DIR/gifs/<env steps>_<return>.gif of one episode every N screenings (ViZDoom: "
        "the 320x240 colour screen); 0 = never",
    )
    evaluate: bool = _f(
        True,
        "run the evaluator beside training (screenings, best.pt, stop_return); off for "
        "benchmarks that evaluate snapshots afterwards, so no evaluation takes CPU",
    )
    snapshot_every_env_steps: int = _f(
        0,
        "the PS keeps its weights each time env steps pass a multiple of N; "
        "written to RUN_DIR/snapshots/<env steps>.pt with the training wall "
        "time; 0 = never",
    )
    update_log: bool = _f(
        True,
        "the parameter server appends one line per packet it judges (worker, sender, seq, version, pass, "
        "verdict) to RUN_DIR/updates.log, with weight digests, so `a3c replay` can recompute the run",
    )
    update_log_digest_every: int = _f(100, "update log: updates between two digests of the PS's weights")
    checkpoint_interval_s: float = _f(60.0, "seconds between checkpoints")
    keep_checkpoints: int = _f(3, "keep the last K ckpt-<version>.pt files")
    max_checkpoint_failures: int = _f(
        3, "checkpoint writes that may fail in a row (disk full, read-only folder) before the run ends with an error"
    )
    log_interval_s: float = _f(2.0, "seconds between progress lines and TensorBoard scalars")


@dataclass
class ClusterConfig:
    address: str | None = _f(None, "Ray address to join (`auto`, `ray://...`, `HOST:6379`); null = local Ray")
    namespace: str = _f("a3c", "Ray namespace of the named actors a3c:<run>:ps, a3c:<run>:worker-N, a3c:<run>:eval")
    start_timeout_s: float = _f(
        60.0,
        "actors not placed by then are named with the resources they wait for; "
        "without the PS or any worker the run ends with that error",
    )
    num_cpus: int | None = _f(None, "logical CPUs of a local Ray; null = what the actors ask for")
    worker_num_cpus: float = _f(1.0, "CPUs reserved per rollout worker")
    ps_num_cpus: float = _f(1.0, "CPUs reserved for the parameter server")
    eval_num_cpus: float = _f(0.5, "CPUs reserved for the evaluator")
    placement: str = _f("spread", "worker scheduling: spread (across nodes) | default (Ray packs them)")
    max_restarts: int = _f(3, "Ray restarts of a crashed worker or evaluator before it is replaced")
    worker_timeout_s: float = _f(60.0, "a worker with no gradient for this long is killed and replaced")
    max_worker_failures: int = _f(
        5,
        "a worker whose loop fails this many times in a row (no gradient in between) "
        "is given up; the run ends with the cause once no worker is left",
    )
    aggregate: str = _f(
        "none",
        "none (workers push to the PS) | node (one aggregator actor per node averages its "
        "workers' packets and forwards one; weights come back through it)",
    )
    aggregate_packets: int = _f(8, "aggregate=node: forward once this many packets wait...")
    aggregate_interval_s: float = _f(0.005, "...or once the oldest waited this long")
    aggregate_retry_s: float = _f(
        5.0,
        "a worker whose aggregator failed pushes to the PS directly this long, then "
        "tries the aggregator (restarted by Ray) again",
    )
    metrics_export_port: int | None = _f(None, "Prometheus port of a local Ray's metrics; null = Ray picks")
    include_dashboard: bool = _f(True, "start the Ray dashboard with a local Ray")
    dashboard_host: str = _f("127.0.0.1", "interface the local dashboard binds to")

    def join_address(self) -> str | None:
        """The cluster to join: `address`, else RAY_ADDRESS (set inside a Ray job, `a3c submit`'s or a KubeRay
        RayJob's, so one config runs unchanged locally and as a job); None means start a local Ray."""
        return self.address or os.environ.get("RAY_ADDRESS")


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def section_types() -> dict[str, type]:
    """Each config section's name and its dataclass, in declaration order."""
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a field's type hint, converting int->float where harmless."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, UnionType):  # Optional[X] and X | None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint in (bool, str, list, dict) and isinstance(value, hint):
        return value
    raise A3CError(f"{key} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def from_dict(data: Any, base: Config | None = None, source: str = "config") -> Config:
    """Merge a nested mapping {section: {key: value}} into `base` (defaults if None)."""
    if not isinstance(data, dict):
        raise A3CError(f"{source} must be a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}")
    cfg = dataclasses.replace(base) if base else Config()
    cfg = from_flat({f"{s}.{k}": v for s, sec in data.items() for k, v in _section_items(s, sec, source)}, cfg)
    return cfg


def _section_items(section: str, body: Any, source: str) -> list:
    if section not in SECTIONS:
        raise A3CError(f"unknown section '{section}' in {source}; sections are {', '.join(SECTIONS)}")
    if not isinstance(body, dict):
        raise A3CError(f"section '{section}' in {source} must be a mapping, got {type(body).__name__}")
    return list(body.items())


def from_flat(values: dict[str, Any], base: Config) -> Config:
    """Apply {"section.key": value} to a copy of `base`; unknown keys are errors."""
    sections = {name: dataclasses.replace(getattr(base, name)) for name in SECTIONS}
    types = section_types()
    for dotted, value in values.items():
        section, _, key = dotted.partition(".")
        if section not in sections or key not in _field_names(types[section]):
            raise A3CError(f"unknown config key '{dotted}'; run `a3c config` to list the keys")
        hint = typing.get_type_hints(types[section])[key]
        setattr(sections[section], key, _coerce(value, hint, dotted))
    return Config(**sections)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def parse_override(text: str) -> tuple[str, Any]:
    """'algo.gamma=0.98' -> ('algo.gamma', 0.98); the value is read as YAML (numbers, null, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise A3CError(f"override {text!r} must look like section.key=value")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise A3CError(f"override {text!r}: value is not valid YAML ({yaml_problem(exc)})") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong, in words: a parse error says `problem`, a reader error (a control character) `reason`."""
    return str(getattr(exc, "problem", None) or getattr(exc, "reason", None) or type(exc).__name__)


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ray_a3c.common.presets").iterdir() if p.name.endswith(".yaml"))


def load_yaml(path_or_preset: str) -> dict:
    """Read a preset by name or a YAML file by path; the top level must be a mapping."""
    if path_or_preset in preset_names():
        text = resources.files("ray_a3c.common.presets").joinpath(f"{path_or_preset}.yaml").read_text()
        source = f"preset '{path_or_preset}'"
    elif os.path.isfile(path_or_preset):
        try:
            with open(path_or_preset, encoding="utf-8") as fh:
                text = fh.read()
        except UnicodeDecodeError as exc:
            raise A3CError(f"{path_or_preset} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise A3CError(f"cannot read {path_or_preset}: {exc.strerror}") from None
        source = path_or_preset
    else:
        raise A3CError(f"'{path_or_preset}' is neither a preset ({', '.join(preset_names())}) nor a YAML file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise A3CError(f"{source} is not valid YAML: {exc}".splitlines()[0]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise A3CError(f"{source} must be a YAML mapping of sections, got {type(data).__name__}")
    return data


def save_yaml(cfg: Config, path: str) -> None:
    """Write beside `path`, then rename over it: a reader never sees half a config."""
    with atomic_write(path, suffix=".yaml") as tmp, open(tmp, "w") as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)


def load_run_config(run_dir: str) -> Config:
    """The resolved config a run saved beside its checkpoints."""
    if not os.path.isdir(run_dir):
        raise A3CError(f"run dir '{run_dir}' does not exist")
    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(config_path):
        raise A3CError(f"'{run_dir}' is not a run dir: no config.yaml")
    return validate(from_saved(load_yaml(config_path), source=config_path))


def from_saved(data: Any, source: str) -> Config:
    """A config a run saved (config.yaml, or the copy in a checkpoint). Keys added since then whose default
    would not fit the saved weights take the value that does."""
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and model.get("lstm_size") and "lstm_input_norm" not in model:
        model["lstm_input_norm"] = False  # saved before the option existed: its weights have no LayerNorm
    env = data.get("env") if isinstance(data, dict) else None
    if isinstance(env, dict) and not str(env.get("id", "")).startswith("vizdoom:"):
        env.pop("frame_skip", None)  # saved when every config carried ViZDoom's default of 4
    if isinstance(env, dict) and env.get("observe_variables") and "observe_variables_as_channels" not in env:
        env["observe_variables_as_channels"] = True  # saved before the Dict: its weights read variable channels
    return from_dict(data, source=source)
