"""A trained policy outside training: loaded from a run, acting on raw observations, exported."""
