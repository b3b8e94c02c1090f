"""Which weights are the best, and when a run is solved: decided on many episodes of one version, not on a
short noisy evaluation.

A short *screening* evaluation runs every `run.eval_interval_s`. Only a screening that could change a decision
(its mean beats the best so far, or reaches `run.stop_return`) is *extended* on the same weights until
`run.confirm_episodes` episodes are in; best.pt and the stop are decided on that pooled mean. Every episode of
the pool comes from one version, so the figure is an evaluation of that checkpoint, not of a moving average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959964  # two-sided 95% quantile of the normal distribution


@dataclass(frozen=True)
class EpisodeStats:
    mean: float
    std: float  # sample standard deviation (ddof 1; 0 for one episode)
    episodes: int
    ci95: float  # half-width of the 95% confidence interval of the mean (normal approximation)


def episode_stats(returns: Sequence[float]) -> EpisodeStats:
    n = len(returns)
    if n == 0:
        raise ValueError("no episodes")
    mean = sum(returns) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (n - 1)) if n > 1 else 0.0
    return EpisodeStats(mean, std, n, Z_95 * std / math.sqrt(n))


@dataclass(frozen=True)
class Verdict:
    more_episodes: int  # episodes still to run on these weights before deciding (0: decided)
    best: bool = False  # these weights are the new best
    solved: bool = False  # their pooled mean reaches the stop return


class EvalJudge:
    """Feeds on the returns of one version's episodes (screening, then screening + extension) and says
    whether to extend, and once decided whether they are the new best and whether the run is solved."""

    def __init__(self, confirm_episodes: int, stop_return: float | None, best: float | None = None):
        self.confirm_episodes = confirm_episodes
        self.stop_return = stop_return
        self.best = best

    def _candidate(self, mean: float) -> bool:
        return (self.best is None or mean > self.best) or (self.stop_return is not None and mean >= self.stop_return)

    def judge(self, returns: Sequence[float]) -> Verdict:
        mean = episode_stats(returns).mean
        if not self._candidate(mean):
            return Verdict(0)
        missing = self.confirm_episodes - len(returns)
        if missing > 0:
            return Verdict(missing)
        best = self.best is None or mean > self.best
        if best:
            self.best = mean
        return Verdict(0, best=best, solved=self.stop_return is not None and mean >= self.stop_return)
