"""Output as a program embedding ray_a3c expects: the `ray_a3c` logger, levels from the CLI, progress bars and
the ETA on the progress line."""

import io
import logging

import pytest

from ray_a3c.cluster.cli import main
from ray_a3c.cluster.run.summary import eta_s, format_duration, progress_line
from ray_a3c.common.reporting.logs import ProgressBar, console, log
from ray_a3c.common.wire.counters import WindowStats


def test_records_reach_the_console_only_within_its_block_and_at_its_level():
    stream = io.StringIO()
    with console(logging.WARNING, stream):
        log.info("progress")
        log.warning("careful")
    log.warning("after")
    assert stream.getvalue() == "careful\n"


def test_the_cli_levels(monkeypatch, tmp_path):
    from ray_a3c.cluster import cli

    levels = []
    monkeypatch.setattr(cli, "_dispatch", lambda args: levels.append(log.getEffectiveLevel()) or 0)
    for flags in ([], ["-q"], ["--log-level", "warning"], ["-v"], ["--log-level", "debug"]):
        assert main(["evaluate", str(tmp_path), *flags]) == 0
    assert levels == [logging.INFO, logging.WARNING, logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_a_progress_bar_redraws_in_place_and_ends_with_a_line():
    stream = io.StringIO()
    bar = ProgressBar("evaluating", stream, width=10)
    bar(3, 10)
    bar(10, 10)
    assert stream.getvalue() == "\revaluating [###.......]  3/10\revaluating [##########] 10/10\n"


@pytest.mark.parametrize(
    "elapsed, steps, fps, total, limit, expected",
    [
        (10.0, 1000, 100.0, 5000, None, 40.0),  # the step budget at the current rate
        (10.0, 1000, 100.0, 50000, 30.0, 20.0),  # the time limit comes first
        (10.0, 0, 0.0, 5000, None, None),  # no rate yet, no time limit: unknown
        (40.0, 6000, 100.0, 5000, None, 0.0),
    ],
)
def test_eta_is_the_first_budget_to_run_out(elapsed, steps, fps, total, limit, expected):
    assert eta_s(elapsed, steps, fps, total, limit) == expected


def test_the_progress_line_shows_the_eta():
    stats = WindowStats(env_steps=1200, version=7, policy_lag_mean=1.0)
    assert progress_line(3.0, stats, 400.0, None, None, 83.0).endswith("| eta 1m23s")
    assert "eta" not in progress_line(3.0, stats, 400.0, None, None)
    assert [format_duration(s) for s in (9, 83, 3725)] == ["9s", "1m23s", "1h02m"]


def test_the_progress_line_shows_the_running_100_episode_mean_not_the_windows():
    stats = WindowStats(env_steps=1200, version=7, policy_lag_mean=1.0)
    assert "| return100    -20.5 |" in progress_line(3.0, stats, 400.0, -20.5, None)
    assert "| return100        - |" in progress_line(3.0, stats, 400.0, None, None)  # no episode has ended yet
