"""ray-a3c: distributed A3C / A2C on Ray.

The repository's top-level folders are installed as subpackages of this one: `ray_a3c.common`,
`ray_a3c.actors`, `ray_a3c.learner`, `ray_a3c.cluster`. No generic top-level module is installed.
"""

__version__ = "0.1.0"
