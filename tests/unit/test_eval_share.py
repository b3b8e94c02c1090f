"""The evaluator's share of training's wall time (`run.eval_max_share`): a screening that is due waits while
the evaluator has been busy more than its share, and the summary reports the share it took."""

from types import SimpleNamespace

import pytest
import yaml

from ray_a3c.cluster.run.evaluation import EvalCycle, within_share
from ray_a3c.cluster.run.summary import RunSummary
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config, from_flat
from ray_a3c.common.settings.families import Family, family_source
from ray_a3c.common.settings.validation import validate


@pytest.mark.parametrize(
    ("busy_s", "elapsed_s", "share", "expected"),
    [(0.0, 0.0, 0.1, True), (10.0, 100.0, 0.1, True), (10.1, 100.0, 0.1, False), (99.0, 100.0, 1.0, True)],
)
def test_within_share_bounds_the_busy_part_of_the_elapsed_time(busy_s, elapsed_s, share, expected):
    assert within_share(busy_s, elapsed_s, share) is expected


class _Fleet:
    """What EvalCycle.poll reads of the fleet, with an evaluator that records the screenings asked of it."""

    def __init__(self):
        self.asked: list[tuple] = []
        self.placement = SimpleNamespace(pending=set())
        self.ps_target = "ps"
        self.evaluator = SimpleNamespace(evaluate_remote=SimpleNamespace(remote=self._ask))

    def _ask(self, *args):
        self.asked.append(args)
        return None  # no ref kept: the next poll decides again


def test_a_due_screening_waits_until_the_evaluators_share_falls_to_the_bound():
    config = from_flat({"run.eval_interval_s": 5.0, "run.eval_max_share": 0.1}, Config())
    summary = RunSummary(eval_s=30.0)  # busy 30 s so far
    cycle, fleet, t0 = EvalCycle(config, None, "", summary, None, print), _Fleet(), 1000.0
    cycle.poll(fleet, t0, now=t0 + 100.0)  # due by the interval, but 30 s > 10% of 100 s
    assert fleet.asked == []
    cycle.poll(fleet, t0, now=t0 + 299.0)
    assert fleet.asked == []
    cycle.poll(fleet, t0, now=t0 + 300.0)  # 30 s <= 10% of 300 s
    assert len(fleet.asked) == 1


def test_without_a_bound_the_interval_alone_decides():
    config = from_flat({"run.eval_interval_s": 5.0}, Config())
    cycle, fleet = EvalCycle(config, None, "", RunSummary(eval_s=90.0), None, print), _Fleet()
    cycle.poll(fleet, 0.0, now=100.0)
    assert len(fleet.asked) == 1


def test_the_summary_reports_the_evaluators_busy_share():
    assert RunSummary(eval_s=30.0, train_s=120.0).result()["eval_busy_share"] == 0.25
    assert RunSummary().result()["eval_busy_share"] is None


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(A3CError, match="run.eval_max_share"):
        validate(from_flat({"run.eval_max_share": share}, Config()))


@pytest.mark.parametrize("family", [Family.ATARI, Family.PIXELS])
def test_pixel_defaults_bound_the_evaluator(family):
    assert yaml.safe_load(family_source(family))["run"]["eval_max_share"] == 0.1
