"""Recorded experience: the .npz dataset, Minari, and the env that replays them."""
