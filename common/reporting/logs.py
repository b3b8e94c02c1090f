"""The `ray_a3c` logger: progress and run messages at INFO, so a program embedding `ray_a3c.train` can route,
filter or silence them with Python's logging; the CLI prints them to stdout (`--log-level`, `-q`, `-v`)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

LOGGER_NAME = "ray_a3c"
log = logging.getLogger(LOGGER_NAME)
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@contextlib.contextmanager
def console(level: int = logging.INFO, stream: TextIO | None = None) -> Iterator[None]:
    """Within the block, the logger's records at `level` and above go to `stream` (stdout), message only."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    try:
        yield
    finally:
        handler.flush()
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


def has_destination() -> bool:
    """True when the application configured somewhere for our records (its own handlers, or the root's)."""
    return bool(log.handlers) or bool(logging.getLogger().handlers)


class ProgressBar:
    """`label [#####.....]  37/100` redrawn in place on a terminal (`a3c evaluate`, `a3c record`); a line at the
    end. Call it with (done, total)."""

    def __init__(self, label: str, stream: TextIO, width: int = 30):
        self.label, self.stream, self.width = label, stream, width

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // max(total, 1)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done:>{len(str(total))}}"
            f"/{total}" + ("\n" if done >= total else "")
        )
        self.stream.flush()


def terminal_progress(label: str, stream: TextIO | None = None) -> ProgressBar | None:
    """A ProgressBar on stderr when it is a terminal (a log file or a pipe gets none), else None."""
    stream = stream or sys.stderr
    return ProgressBar(label, stream) if stream.isatty() else None
