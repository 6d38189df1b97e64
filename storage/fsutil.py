"""Crash-safe file writes: tmp, fsync, rename, fsync the folder (Mailman's switchboard recipe)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(final: Path, data: bytes, tmp_dir: Path) -> None:
    """Make `final` hold `data` or not exist at all, whatever moment the process dies."""
    tmp = tmp_dir / f"{final.name}.{os.getpid()}.tmp"
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(final)
    fsync_dir(final.parent)
