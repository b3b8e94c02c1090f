"""One training run on Ray: checks before start, ray.init, placement, the fleet, the driver, evaluations."""
