"""How a run reports: the error for bad input, the `ray_a3c` logger, metric names and TensorBoard."""
