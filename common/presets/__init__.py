"""The YAML presets (`a3c train <name>`) and the defaults by env family: package data, read with importlib.resources."""
