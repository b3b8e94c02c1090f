"""Tests on a real Ray (the session's shared instance, or a cluster of its own): actors, faults, runs."""
