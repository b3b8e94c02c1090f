"""The algorithm's parts: the actor-critic networks, returns and advantages, the loss, the best-weights rule."""
