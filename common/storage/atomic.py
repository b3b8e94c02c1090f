"""Writing a file whole or not at all: a temp file beside the target, renamed over it once complete. No torch
import: the config and dataset writers use it too."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

TMP_PREFIX = ".tmp-"  # checkpoint.remove_stale_temp_files clears what a killed writer left behind


@contextlib.contextmanager
def atomic_write(
    path: str,
    suffix: str | None = None,
    mode: int | None = 0o644,
    prefix: str = TMP_PREFIX,
    fsync: bool = False,
    makedirs: bool = False,
) -> Iterator[str]:
    """Yields a temp file's path in `path`'s directory for the caller to write; once the block ends normally
    the file is renamed over `path` (a reader never sees half a file), else removed.

    `suffix`: the temp file's (default: `path`'s own; some writers check it). `mode`: its permissions
    (mkstemp's 0600 is kept with None). `fsync`: flushed to disk before the rename. `makedirs`: the directory
    is created if missing."""
    directory = os.path.dirname(os.path.abspath(path))
    if makedirs:
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=prefix, suffix=os.path.splitext(path)[1] if suffix is None else suffix, dir=directory
    )
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
