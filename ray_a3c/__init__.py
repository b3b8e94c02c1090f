"""ray-a3c: distributed A3C / A2C on Ray.

The repository's top-level folders are installed as subpackages of this one: `ray_a3c.common`,
`ray_a3c.actors`, `ray_a3c.learner`, `ray_a3c.cluster`. No generic top-level module is installed.

    import ray_a3c
    summary = ray_a3c.train("cartpole", run__seed=1, run__total_env_steps=200_000)
    policy = ray_a3c.load_policy(summary.run_dir)
    action, state = policy.act(obs)
"""

from ray_a3c.api import load_policy, make_config, train, tune
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config

__version__ = "0.1.0"
__all__ = ["Config", "A3CError", "make_config", "train", "tune", "load_policy", "__version__"]
