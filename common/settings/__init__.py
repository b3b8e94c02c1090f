"""The run's configuration: typed dataclasses and presets, the checks before start, defaults by env family."""
