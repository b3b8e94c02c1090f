"""The acting side: rollout collection, RolloutWorker, Evaluator (plain classes, no Ray import)."""
