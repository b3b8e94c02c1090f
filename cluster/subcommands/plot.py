"""`a3c plot`: six smoothed training panels from a run's TensorBoard files, as one PNG."""

from __future__ import annotations

import glob
import os

import numpy as np
import yaml

from ray_a3c.common.reporting import metrics
from ray_a3c.common.reporting.errors import A3CError


def read_scalars(run_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag -> (env steps, values), merged over every event file (a resumed run has several)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # the plot extra

    files = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")), key=os.path.getmtime)
    if not files:
        raise A3CError(f"no TensorBoard event files in '{run_dir}'")
    merged: dict[str, list] = {}
    for path in files:
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            merged.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: (np.array([s for s, _ in pts]), np.array([v for _, v in pts])) for tag, pts in merged.items()}


def smooth(values: np.ndarray, weight: float = 0.8) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased at the start."""
    out, running, norm = np.empty(len(values)), 0.0, 0.0
    for i, v in enumerate(values):
        running = weight * running + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = running / norm
    return out


def panels(data: dict) -> list[tuple[str, str]]:
    """The six (tag, title) panels; the fourth is max |action| for continuous runs, entropy otherwise."""
    fourth = (
        (metrics.ACTION_ABS_MAX, "max |action|")
        if metrics.ACTION_ABS_MAX in data
        else (metrics.LOSS_ENTROPY, "action entropy")
    )
    return [
        (metrics.EPISODE_RETURN, "episode return"),
        (metrics.LOSS_POLICY, "policy loss"),
        (metrics.LOSS_VALUE, "value loss"),
        fourth,
        (metrics.ADVANTAGE_MEAN, "mean advantage"),
        (metrics.VALUE_MEAN, "mean value"),
    ]


def plot_run(run_dir: str, out: str) -> list[str]:
    """Write the PNG; returns the titles of the panels that hold data (six for a healthy run)."""
    import matplotlib  # the plot extra

    matplotlib.use("Agg")  # before pyplot loads: no display needed
    import matplotlib.pyplot as plt

    data = read_scalars(run_dir)
    with open(os.path.join(run_dir, "config.yaml")) as fh:
        cfg = yaml.safe_load(fh)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    drawn = []
    for ax, (tag, title) in zip(axes.flat, panels(data), strict=False):
        ax.set_title(title)
        ax.set_xlabel("env steps")
        if tag in data and len(data[tag][0]):
            steps, values = data[tag]
            ax.plot(steps, values, alpha=0.25, color="tab:blue")
            ax.plot(steps, smooth(values), color="tab:blue")
            drawn.append(title)
            if tag == metrics.EPISODE_RETURN and metrics.EVAL_RETURN in data:
                ax.plot(*data[metrics.EVAL_RETURN], "o-", color="tab:orange", markersize=3, label="eval mean")
                ax.legend()
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{cfg['env']['id']} ({cfg['algo']['mode']} mode)")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return drawn
