"""Building envs: what env.id names, the wrapper pipeline, the vector batch, ALE and ViZDoom, spaces."""
