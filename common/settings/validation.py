"""Config validation: every value that cannot work is refused with one clear message before any process or file
is created."""

from __future__ import annotations

import math
from enum import Enum
from typing import TYPE_CHECKING

from ray_a3c.common.env.wrappers import parse_wrappers
from ray_a3c.common.reporting.errors import A3CError

if TYPE_CHECKING:
    from ray_a3c.common.settings.config import Config

GRAD_DTYPES = ("float32", "float16", "bfloat16")  # learner.grad_dtype: how gradients travel (common/wire/flat.py)
# env.frame_stack: far past any recipe's 4; gymnasium builds the stacked space in memory (a billion frames
# of CartPole would take 32 GB) before any size check could run
MAX_FRAME_STACK = 256
SEED_LIMIT = 2**63  # run.seed: torch.manual_seed takes 64 bits and each worker adds its rank; gymnasium needs >= 0


class Optimizer(str, Enum):
    """algo.optimizer: the rule the parameter server steps with (learner/flat_params.py builds it)."""

    ADAM = "adam"
    RMSPROP = "rmsprop"  # torch's: mean square from 0, eps outside the root
    RMSPROP_TF = "rmsprop_tf"  # TensorFlow's (A3C paper, Baselines, SB3's RMSpropTFLike): from 1, eps inside


class CnnLayout(str, Enum):
    """model.cnn_layout: the convolutions of the image encoder (common/algo/models.py builds them)."""

    A3C = "a3c"  # the A3C paper's two, model.conv_channels wide, ELU
    NATURE = "nature"  # DQN Nature's three (SB3's NatureCNN, Sample Factory's convnet_atari), ReLU


def _game_variables_check(key: str, values: dict, positive: bool = False) -> tuple[bool, str]:
    """(ok, message) for a map of ViZDoom game variable names to finite (optionally positive) numbers."""
    try:
        from vizdoom import GameVariable  # the doom extra

        known = set(GameVariable.__members__)
    except ImportError:  # the env itself reports the missing package
        known = None
    kind = "a positive number" if positive else "a finite number"
    for name, value in values.items():
        if known is not None and name not in known:
            return False, f"{key}: unknown ViZDoom game variable '{name}' (e.g. AMMO2, HEALTH)"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or (positive and value <= 0)
        ):
            return False, f"{key}: {name} must map to {kind}, got {value!r}"
    return True, ""


def _wrappers_check(entries: list) -> tuple[bool, str]:
    """(ok, message) for env.wrappers: each entry well formed (the classes are looked up when the env is built)."""
    try:
        parse_wrappers(entries)
    except A3CError as exc:
        return False, str(exc)
    return True, ""


def validate(cfg: Config) -> Config:
    """Reject values that cannot work, before any process or file is created."""
    e, m, a, r, c = cfg.env, cfg.model, cfg.algo, cfg.run, cfg.cluster
    numbers = {
        f"{s}.{k}": v
        for s, sec in cfg.to_dict().items()
        for k, v in sec.items()
        if isinstance(v, float) and k != "stop_return"
    }
    checks = [
        *((math.isfinite(v), f"{k} must be a finite number, got {v}") for k, v in numbers.items()),
        (r.stop_return is None or math.isfinite(r.stop_return), f"run.stop_return must be finite, got {r.stop_return}"),
        (bool(e.id), "env.id must not be empty"),
        (e.num_envs_per_worker >= 1, "env.num_envs_per_worker must be >= 1"),
        (a.lr_schedule in ("constant", "linear"), "algo.lr_schedule must be constant or linear"),
        (0.0 <= a.lr_decay_start < 1.0, "algo.lr_decay_start must be in [0, 1)"),
        (a.weight_sync_every >= 1, "algo.weight_sync_every must be >= 1"),
        (not e.medkit_bonus or e.id.startswith("vizdoom:"), "env.medkit_bonus applies to vizdoom: envs only"),
        (not e.variable_rewards or e.id.startswith("vizdoom:"), "env.variable_rewards applies to vizdoom: envs only"),
        _game_variables_check("env.variable_rewards", e.variable_rewards),
        (not e.observe_variables or e.id.startswith("vizdoom:"), "env.observe_variables applies to vizdoom: envs only"),
        _game_variables_check("env.observe_variables", e.observe_variables, positive=True),
        (
            not e.observe_variables_as_channels or bool(e.observe_variables),
            "env.observe_variables_as_channels needs env.observe_variables",
        ),
        (
            len(e.screen_size) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in e.screen_size)
            and 36 <= e.screen_size[0] <= 160
            and 36 <= e.screen_size[1] <= 100,
            "env.screen_size must be [width, height] within [36..160, 36..100] (the cropped 160x100 screen)",
        ),
        (e.screen_size == [84, 84] or e.id.startswith("vizdoom:"), "env.screen_size applies to vizdoom: envs only"),
        (e.vector_mode in ("sync", "async"), "env.vector_mode must be sync or async"),
        (
            isinstance(e.ale_threads, int) and not isinstance(e.ale_threads, bool) and e.ale_threads >= 1,
            "env.ale_threads must be an integer >= 1",
        ),
        (e.warmup_steps >= 0, "env.warmup_steps must be >= 0"),
        (e.step_timeout_s >= 0 and e.max_hang_restarts >= 0, "env.step_timeout_s and max_hang_restarts must be >= 0"),
        (
            e.step_timeout_s < cfg.cluster.worker_timeout_s,
            f"env.step_timeout_s ({e.step_timeout_s:g}) must be below cluster.worker_timeout_s "
            f"({cfg.cluster.worker_timeout_s:g}), so that a hung env is named and rebuilt before its worker is "
            "killed; 0 turns the env watchdog off",
        ),
        (
            (e.frame_skip is None or e.frame_skip >= 1) and e.frame_stack >= 1,
            "env.frame_skip and env.frame_stack must be >= 1",
        ),
        (e.frame_stack <= MAX_FRAME_STACK, f"env.frame_stack must be <= {MAX_FRAME_STACK}, got {e.frame_stack}"),
        (
            all(isinstance(k, str) for k in e.kwargs),
            f"env.kwargs keys must be keyword names (strings), got {[k for k in e.kwargs if not isinstance(k, str)]}",
        ),
        (
            e.frame_skip is None or e.id.startswith("vizdoom:"),
            "env.frame_skip applies to vizdoom: envs only; other envs take theirs from env.kwargs (ALE: frameskip) "
            "or a wrapper (AtariPreprocessing: frame_skip)",
        ),
        _wrappers_check(e.wrappers),
        (a.mode in ("async", "sync"), "algo.mode must be async or sync"),
        (a.critic_epochs >= 1, "algo.critic_epochs must be >= 1"),
        (a.critic_epochs == 1 or not m.shared_trunk, "algo.critic_epochs > 1 needs model.shared_trunk=false"),
        (a.policy_epochs >= 1, "algo.policy_epochs must be >= 1"),
        (0 < a.clip_range < 1, "algo.clip_range must be in (0, 1)"),
        (e.max_episode_steps is None or e.max_episode_steps >= 1, "env.max_episode_steps must be >= 1 or null"),
        (math.isfinite(e.reward_scale) and e.reward_scale > 0, "env.reward_scale must be > 0"),
        (
            len(m.hidden_sizes) >= 1 and all(isinstance(h, int) and h > 0 for h in m.hidden_sizes),
            "model.hidden_sizes must be a non-empty list of positive ints",
        ),
        (m.activation in ("tanh", "relu", "elu"), "model.activation must be tanh, relu or elu"),
        (m.gsde_sample_every >= 0, "model.gsde_sample_every must be >= 0"),
        (m.encoder in ("auto", "mlp", "cnn"), "model.encoder must be auto, mlp or cnn"),
        (
            m.cnn_layout in {c.value for c in CnnLayout},
            f"model.cnn_layout must be one of {', '.join(c.value for c in CnnLayout)}",
        ),
        (
            len(m.conv_channels) == 2 and all(isinstance(c, int) and c > 0 for c in m.conv_channels),
            "model.conv_channels must be two positive ints",
        ),
        (m.cnn_fc_size >= 1 and m.lstm_size >= 0, "model.cnn_fc_size must be >= 1 and model.lstm_size >= 0"),
        (a.rollout_steps >= 1, "algo.rollout_steps must be >= 1"),
        (0.0 < a.gamma <= 1.0, "algo.gamma must be in (0, 1]"),
        (0.0 <= a.gae_lambda <= 1.0, "algo.gae_lambda must be in [0, 1]"),
        (a.learning_rate > 0, f"algo.learning_rate must be > 0, got {a.learning_rate}"),
        (a.critic_learning_rate is None or a.critic_learning_rate > 0, "algo.critic_learning_rate must be > 0"),
        (
            a.critic_learning_rate is None or not m.shared_trunk,
            "algo.critic_learning_rate needs model.shared_trunk=false (a shared trunk has one learning rate)",
        ),
        (a.adam_eps > 0, "algo.adam_eps must be > 0"),
        (
            a.optimizer in {o.value for o in Optimizer},
            f"algo.optimizer must be one of {', '.join(o.value for o in Optimizer)}",
        ),
        (0 < a.rmsprop_alpha < 1, "algo.rmsprop_alpha must be in (0, 1)"),
        (a.rmsprop_eps > 0, "algo.rmsprop_eps must be > 0"),
        (a.entropy_coef >= 0, "algo.entropy_coef must be >= 0"),
        (a.value_coef > 0, "algo.value_coef must be > 0"),
        (a.value_loss in ("mse", "smooth_l1"), "algo.value_loss must be mse or smooth_l1"),
        (a.max_grad_norm >= 0, "algo.max_grad_norm must be >= 0 (0 disables clipping)"),
        (a.max_policy_lag >= 0, "algo.max_policy_lag must be >= 0"),
        (
            a.max_policy_lag >= 1 or not a.overlap_push or a.mode == "sync",
            "algo.max_policy_lag=0 with algo.overlap_push=true rejects every other gradient (an overlapped push is "
            "one version behind): set max_policy_lag >= 1 or overlap_push=false",
        ),
        (a.is_clip > 0, "algo.is_clip must be > 0"),
        (a.offline_update in ("vtrace", "awr"), "algo.offline_update must be vtrace or awr"),
        (a.awr_temperature > 0 and a.awr_max_weight > 0, "algo.awr_temperature and awr_max_weight must be > 0"),
        (
            not (a.normalize_advantages and cfg.env.dataset and a.offline_update == "awr"),
            "algo.normalize_advantages does not apply to algo.offline_update=awr (its weights are exp(A / "
            "temperature), never negative): scale them with algo.awr_temperature",
        ),
        (r.num_workers >= 0, "run.num_workers must be >= 1, or 0 for auto"),
        (0 <= r.seed < SEED_LIMIT, f"run.seed must be in [0, 2**63), got {r.seed}"),
        (cfg.learner.device in ("cpu", "cuda", "auto"), "learner.device must be cpu, cuda or auto"),
        (cfg.learner.num_gpus >= 0, "learner.num_gpus must be >= 0"),
        (cfg.learner.max_batch_packets >= 1, "learner.max_batch_packets must be >= 1"),
        (cfg.learner.grad_dtype in GRAD_DTYPES, f"learner.grad_dtype must be one of {', '.join(GRAD_DTYPES)}"),
        (cfg.learner.num_shards >= 1, "learner.num_shards must be >= 1"),
        *_shard_checks(cfg),
        (c.placement in ("spread", "default"), "cluster.placement must be spread or default"),
        (c.max_restarts >= 0, "cluster.max_restarts must be >= 0"),
        (c.aggregate in ("none", "node"), "cluster.aggregate must be none or node"),
        (c.aggregate_packets >= 1, "cluster.aggregate_packets must be >= 1"),
        (
            c.aggregate_interval_s >= 0 and c.aggregate_retry_s >= 0,
            "cluster.aggregate_interval_s and aggregate_retry_s must be >= 0",
        ),
        (c.worker_timeout_s > 0, "cluster.worker_timeout_s must be > 0"),
        (c.max_worker_failures >= 1, "cluster.max_worker_failures must be >= 1"),
        (c.start_timeout_s > 0, "cluster.start_timeout_s must be > 0"),
        (r.total_env_steps >= 1, "run.total_env_steps must be >= 1"),
        (r.time_limit_s is None or r.time_limit_s > 0, "run.time_limit_s must be > 0 or null"),
        (r.eval_interval_s > 0, "run.eval_interval_s must be > 0"),
        (r.eval_episodes >= 1, "run.eval_episodes must be >= 1"),
        (r.confirm_episodes >= 1, "run.confirm_episodes must be >= 1"),
        (r.eval_policy in ("greedy", "sample"), "run.eval_policy must be greedy or sample"),
        (r.gif_every >= 0, "run.gif_every must be >= 0"),
        (0 < r.eval_max_share <= 1, "run.eval_max_share must be in (0, 1]"),
        (r.evaluate or r.stop_return is None, "run.stop_return needs run.evaluate: true (set one of them)"),
        (r.snapshot_every_env_steps >= 0, "run.snapshot_every_env_steps must be >= 0"),
        (r.update_log_digest_every >= 1, "run.update_log_digest_every must be >= 1"),
        (r.checkpoint_interval_s > 0, "run.checkpoint_interval_s must be > 0"),
        (r.keep_checkpoints >= 1, "run.keep_checkpoints must be >= 1"),
        (r.max_checkpoint_failures >= 1, "run.max_checkpoint_failures must be >= 1"),
        (r.log_interval_s > 0, "run.log_interval_s must be > 0"),
        (c.num_cpus is None or c.num_cpus >= 1, "cluster.num_cpus must be >= 1 or null"),
        (min(c.worker_num_cpus, c.ps_num_cpus, c.eval_num_cpus) >= 0, "cluster.*_num_cpus must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise A3CError(message)
    return cfg


def _shard_checks(cfg: Config) -> list[tuple[bool, str]]:
    """What a sharded PS does not combine with, and why (docs/design.md, "Sharded parameter server")."""
    if cfg.learner.num_shards == 1:
        return []
    return [
        (
            cfg.algo.mode == "async",
            "learner.num_shards > 1 needs algo.mode=async (a synchronous round makes one step for all its workers: "
            "the PS is not its bottleneck)",
        ),
        (
            cfg.learner.max_batch_packets == 1,
            "learner.num_shards > 1 needs learner.max_batch_packets=1 (a batch's clipping norm is that of the "
            "mean gradient, which no shard sees whole; cluster.aggregate=node averages on each node instead)",
        ),
        (
            not cfg.run.snapshot_every_env_steps,
            "learner.num_shards > 1 needs run.snapshot_every_env_steps=0 (a snapshot would be one shard's part)",
        ),
    ]
