"""The stop / best.pt statistic: decided on confirm_episodes episodes of one version, never on a noisy screening."""

import numpy as np
import pytest

from ray_a3c.common.algo.selection import EvalJudge, episode_stats


def test_episode_stats_match_numpy():
    returns = [3.0, -1.0, 7.5, 2.0, 0.0]
    stats = episode_stats(returns)
    assert stats.mean == pytest.approx(np.mean(returns))
    assert stats.std == pytest.approx(np.std(returns, ddof=1))
    assert stats.ci95 == pytest.approx(1.959964 * np.std(returns, ddof=1) / np.sqrt(5))
    assert episode_stats([4.0]).std == 0.0


def test_a_noisy_single_high_does_not_stop_the_run():
    # The true mean is 20 with std 120 (basic's spread before it is solved). A 10-episode screening that
    # happens to read >= 60 asks for more episodes instead of stopping; the 100-episode pool decides.
    rng = np.random.default_rng(0)
    judge = EvalJudge(confirm_episodes=100, stop_return=60.0)
    lucky = [71.0] * 10
    verdict = judge.judge(lucky)
    assert verdict.more_episodes == 90 and not verdict.solved and not verdict.best
    pooled = lucky + list(rng.normal(20.0, 120.0, 90))
    verdict = judge.judge(pooled)
    assert verdict.more_episodes == 0 and not verdict.solved
    assert verdict.best and judge.best == pytest.approx(np.mean(pooled))  # still the best seen so far


def test_a_confirmed_mean_at_the_target_solves():
    judge = EvalJudge(confirm_episodes=100, stop_return=60.0, best=50.0)
    assert judge.judge([80.0] * 20).more_episodes == 80
    verdict = judge.judge([80.0] * 20 + [75.0] * 80)
    assert verdict.solved and verdict.best and judge.best == pytest.approx(76.0)


def test_screenings_below_the_best_are_not_extended():
    judge = EvalJudge(confirm_episodes=100, stop_return=None, best=50.0)
    verdict = judge.judge([40.0] * 10)
    assert verdict.more_episodes == 0 and not verdict.best
    assert judge.judge([60.0] * 10).more_episodes == 90
    # a confirmed pool below the best leaves best.pt alone
    verdict = judge.judge([60.0] * 10 + [30.0] * 90)
    assert not verdict.best and judge.best == 50.0


def test_confirm_episodes_up_to_the_screening_lets_the_screening_decide():
    judge = EvalJudge(confirm_episodes=10, stop_return=100.0)
    verdict = judge.judge([100.0] * 10)
    assert verdict.more_episodes == 0 and verdict.solved and verdict.best


def test_a_stop_return_confirmed_after_the_budget_ran_out_is_solved():
    from ray_a3c.cluster.run.summary import RunSummary

    for reason, solved_at, expected in [
        ("env_steps", 12.0, "solved"),
        ("time_limit", 3.0, "solved"),
        ("env_steps", None, "env_steps"),
        ("interrupted", 5.0, "interrupted"),
    ]:
        summary = RunSummary(reason=reason, solved_at_s=solved_at)
        summary.settle()
        assert summary.reason == expected
