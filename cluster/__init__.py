"""Everything Ray: runtime, remote actors, the training driver and the `a3c` CLI."""
