"""The one error type for bad user input (the CLI turns it into `error: ...` and exit 2), and the failures that end
a run the same way."""


class A3CError(Exception):
    """Bad input: unknown env, invalid config value, missing or corrupt checkpoint, malformed file."""


class EnvHangError(A3CError):
    """An env's step or reset hung once more than env.max_hang_restarts allows (actors/watchdog.py): the run ends
    with this message, which names the worker, the env index, its seed and the episode step, rather than
    restarting the worker forever."""
