"""A Tune trial that ends before its first evaluation is judged on its final checkpoint (no Ray started)."""

import os

from ray_a3c.actors.evaluator import Evaluator
from ray_a3c.cluster.run.evaluation import EVAL_SEED_OFFSET
from ray_a3c.cluster.sweeps.tune import evaluate_checkpoint
from ray_a3c.common.settings.config import load_run_config
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.storage.keys import CKPT_MODEL

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "schema1_cartpole")
FIXTURE_CKPT = os.path.join(FIXTURE, "checkpoints", "ckpt-3.pt")


def test_a_trial_never_evaluated_is_scored_on_a_confirmed_count_of_fresh_episodes():
    cfg = load_run_config(FIXTURE)
    cfg.run.eval_episodes, cfg.run.confirm_episodes = 3, 12  # the confirmed count is the larger
    score = evaluate_checkpoint(cfg, FIXTURE_CKPT)
    reference = Evaluator(cfg)
    reference.load_state_dict(checkpoint.load(FIXTURE_CKPT)[CKPT_MODEL])
    confirmed = reference.run_episodes(12, cfg.run.seed + EVAL_SEED_OFFSET)
    screening = reference.run_episodes(3, cfg.run.seed + EVAL_SEED_OFFSET)
    reference.close()
    assert score == confirmed.mean_return and confirmed.episodes == 12
    assert 1 <= score <= 500  # CartPole's returns: a real game was played
    assert list(screening.returns) == list(confirmed.returns[:3])  # the evaluator's seeds, not some other
