"""The learning side: ParameterServer (plain class, no Ray import)."""
