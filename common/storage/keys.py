"""The string keys that cross a file or process boundary, each named once: a checkpoint's entries (written
by the PS, the driver and cluster/run/evaluation.py; read by resume, recovery, evaluate, load_policy and the
benches) and the info keys of a replayed dataset's env (common/data/offline.py writes them, actors/rollout.py
reads them, Minari files carry the log-probabilities). No imports: any module may read these."""

# -- checkpoints (torch.load(..., weights_only=True) dicts) --------------------------------------------------
CKPT_SCHEMA_VERSION = "schema_version"  # the layout's version (common/storage/checkpoint.SCHEMA_VERSION); none: 1
CKPT_MODEL = "model"  # the model's state dict (every checkpoint, best.pt and snapshots too)
CKPT_OPTIMIZERS = "optimizers"  # {group name: optimizer state} (ckpt-<version>.pt only)
CKPT_COUNTERS = "counters"  # common/wire/counters.PSCounters.to_dict() (snapshots and best.pt: version, env_steps)
CKPT_CONFIG_YAML = "config_yaml"  # the run's resolved config as YAML text
CKPT_BEST_EVAL_RETURN = "best_eval_return"  # the best confirmed evaluation mean so far (a resume continues it)
CKPT_EVAL_RETURN_MEAN = "eval_return_mean"  # best.pt: its confirmed evaluation...
CKPT_EVAL_RETURN_STD = "eval_return_std"
CKPT_EVAL_EPISODES = "eval_episodes"
CKPT_EVAL_SEED = "eval_seed"
CKPT_TRAIN_S = "train_s"  # snapshots: training seconds when the PS kept the weights
CKPT_SPACES = "spaces"  # the env's own spaces as plain data (common/env/spaces_io.py): load_policy builds no env

# -- env info of a replayed dataset (a vector env adds "_" + key: which copies carry it) -----------------------
INFO_LOGGED_ACTION = "logged_action"  # the action the dataset recorded, which replaces the policy's
INFO_LOG_PROB = "behaviour_log_prob"  # log mu(a|s) of the recording policy, where recorded
