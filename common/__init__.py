"""Building blocks with no Ray import: config, envs, models, maths, checkpoints, metrics."""
