"""Metric names (docs/design.md) and a tensorboardX writer keyed by total env steps."""

from __future__ import annotations

EPISODE_RETURN = "charts/episode_return"
EPISODE_LENGTH = "charts/episode_length"
EPISODE_RETURN_100 = "charts/episode_return_mean100"  # running mean of the last 100 training episodes
EVAL_RETURN = "eval/return_mean"  # screenings: run.eval_episodes episodes
EVAL_CONFIRMED_RETURN = "eval/confirmed_return_mean"  # candidates extended to run.confirm_episodes episodes
# Reported by the workers: each packet's `losses` holds them under the tag's last part (`packet_losses`), the PS
# averages them over a log tick and the driver logs them under the tag (`packet_scalars`).
VALUE_MEAN = "charts/value_mean"
ADVANTAGE_MEAN = "charts/advantage_mean"
ACTION_ABS_MAX = "charts/action_abs_max"  # continuous actions only
LOSS_POLICY = "losses/policy"
LOSS_VALUE = "losses/value"
LOSS_ENTROPY = "losses/entropy"
CLIP_FRACTION = "losses/clip_fraction"  # algo.policy_epochs > 1 only: steps outside the surrogate's clip range
VALUE_REFIT = "losses/value_refit"  # algo.critic_epochs > 1 only: losses/value of the extra value-only steps
PACKET_TAGS = (
    VALUE_MEAN,
    ADVANTAGE_MEAN,
    ACTION_ABS_MAX,
    LOSS_POLICY,
    LOSS_VALUE,
    LOSS_ENTROPY,
    CLIP_FRACTION,
    VALUE_REFIT,
)
GRAD_NORM = "grads/global_norm"
WEIGHT_NORM = "weights/global_norm"
ENV_STEPS_PER_S = "perf/env_steps_per_s"
UPDATES_PER_S = "perf/updates_per_s"
COMM_FRACTION = "perf/comm_fraction"
PS_VERSION = "ps/version"
POLICY_LAG = "ps/policy_lag_mean"
LR_FRACTION = "ps/lr_fraction"  # the share of the configured learning rates in use (algo.lr_schedule)
REJECTED_STALE = "ps/grads_rejected_stale"
REJECTED_NONFINITE = "ps/grads_rejected_nonfinite"
OFFLINE_EPOCHS = "offline/epochs"  # runs on a dataset only: transitions replayed / transitions in the dataset

ALL_TAGS = [
    EPISODE_RETURN,
    EPISODE_RETURN_100,
    EPISODE_LENGTH,
    VALUE_MEAN,
    ADVANTAGE_MEAN,
    EVAL_RETURN,
    LOSS_POLICY,
    LOSS_VALUE,
    LOSS_ENTROPY,
    GRAD_NORM,
    WEIGHT_NORM,
    ENV_STEPS_PER_S,
    UPDATES_PER_S,
    COMM_FRACTION,
    PS_VERSION,
    POLICY_LAG,
    LR_FRACTION,
    REJECTED_STALE,
    REJECTED_NONFINITE,
]


def ray_metric_name(tag: str) -> str:
    return tag.replace("/", "_")


def packet_key(tag: str) -> str:
    """The key a GradientPacket's `losses` holds one of PACKET_TAGS under: the tag's last part."""
    return tag.rpartition("/")[2]


def packet_losses(scalars: dict[str, float]) -> dict[str, float]:
    """{tag: value} of PACKET_TAGS -> a packet's `losses` ({"policy": ..., "value_mean": ...})."""
    return {packet_key(tag): value for tag, value in scalars.items()}


def packet_scalars(losses: dict[str, float]) -> dict[str, float | None]:
    """The PS's averaged packet `losses` -> {tag: value or None} for every one of PACKET_TAGS."""
    return {tag: losses.get(packet_key(tag)) for tag in PACKET_TAGS}


class ScalarWriter:
    """TensorBoard scalars with total env steps on the x axis."""

    def __init__(self, log_dir: str):
        from tensorboardX import SummaryWriter  # it imports torch: not for the CLI and the workers that read tags

        self._writer = SummaryWriter(log_dir=log_dir, flush_secs=5)

    def write(self, scalars: dict[str, float | None], env_steps: int) -> None:
        for tag, value in scalars.items():
            if value is not None:
                self._writer.add_scalar(tag, float(value), global_step=int(env_steps))

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
