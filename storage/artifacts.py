"""Content-addressed artifact store: attachments and raw messages, kept once per sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from parsers.types import StoredBlob
from storage.fsutil import write_durably


class ArtifactStore:
    """Blobs live at `root/ab/cd/<sha256>`; a blob is written durably before its row commits."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"

    def ensure(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> StoredBlob:
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest)
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            write_durably(final, data, self._tmp)
        return StoredBlob(sha256=digest, size=len(data))

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
