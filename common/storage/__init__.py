"""What a run writes to disk: checkpoints, atomic writes, the keys files and datasets hold."""
