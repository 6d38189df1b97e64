"""Content-addressed artifact store: attachments and raw messages, kept once per sha256.

Writes are made durable in groups: `put` writes and renames, `sync` fsyncs every file and
folder touched since the last sync. The pipeline calls `sync` right before the commit that
references the blobs, so a committed row never points at a blob the disk could lose, and a
batch of messages pays for its fsyncs once per folder instead of once per message.
One store instance belongs to one worker thread.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from parsers.types import StoredBlob
from storage.fsutil import fsync_dir


class ArtifactStore:
    """Blobs live at `root/ab/cd/<sha256>`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._unsynced: set[Path] = set()

    def ensure(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> StoredBlob:
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest)
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp / f"{digest}.{os.getpid()}.tmp"
            tmp.write_bytes(data)
            tmp.replace(final)
        # Also when it existed: another process may have written it and died before its sync.
        self._unsynced.add(final)
        return StoredBlob(sha256=digest, size=len(data))

    def sync(self) -> None:
        """fsync every blob put since the last sync, then their folders."""
        folders = {path.parent for path in self._unsynced}
        for path in sorted(self._unsynced):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for folder in sorted(folders):
            fsync_dir(folder)
        self._unsynced.clear()

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
