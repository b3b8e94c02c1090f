"""Ray Tune sweeps: the spec, checked without Ray, and one training run per trial."""
