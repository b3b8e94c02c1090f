"""The one error type for bad user input (the CLI turns it into `error: ...` and exit 2)."""


class A3CError(Exception):
    """Bad input: unknown env, invalid config value, missing or corrupt checkpoint, malformed file."""
