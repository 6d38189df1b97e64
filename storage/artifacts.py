"""Content-addressed, encrypted artifact store: attachments and raw messages, kept once per sha256.

Blobs stream in through `BlobWriter` (sha256 of the plaintext and the encryption computed as
the bytes pass, so a 1 GB dump never sits in memory) and are encrypted with
`storage.crypto`. Writes are made durable in groups: `finish` renames into place, `sync`
fsyncs every file and folder touched since the last sync. The pipeline calls `sync` right
before the commit that references the blobs, so a committed row never points at a blob the
disk could lose, and a batch pays for its fsyncs once per folder instead of once per message.
One store instance belongs to one worker thread.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from maild.errors import TransientError
from parsers.types import StoredBlob
from storage.crypto import ArtifactCryptoError, ArtifactKey, DecryptingReader, EncryptingWriter
from storage.fsutil import fsync_dir

__all__ = ["ArtifactCryptoError", "ArtifactMissing", "ArtifactStore", "BlobWriter"]
_READ_BUFFER = 256 * 1024


class ArtifactMissing(Exception):
    """The database names a blob the store does not have (purged, or never synced)."""


class BlobWriter:
    """One blob being written; `finish` names it by its content, `abort` forgets it."""

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store
        self._tmp = store.tmp_dir / f"{os.getpid()}-{secrets.token_hex(8)}.tmp"
        # 0600 whatever the umask of a caller that is not the CLI (which sets 077).
        descriptor = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(descriptor, "wb")
        self._cipher = EncryptingWriter(store.key, self._file)
        self._digest = hashlib.sha256()
        self.size = 0
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._digest.update(data)
        self._cipher.write(data)
        self.size += len(data)

    def finish(self) -> StoredBlob:
        self._cipher.close_stream()
        self._file.close()
        self._done = True
        digest = self._digest.hexdigest()
        final = self._store.path_for(digest)
        if final.exists():
            self._tmp.unlink()
        else:
            final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._tmp.replace(final)
        # Also when it existed: another process may have written it and died before its sync.
        self._store.mark_unsynced(final)
        return StoredBlob(sha256=digest, size=self.size)

    def abort(self) -> None:
        if not self._done:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._done = True

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.abort()


class ArtifactStore:
    """Blobs live at `root/ab/cd/<sha256>`, each encrypted with its own derived key."""

    def __init__(self, root: Path, key: ArtifactKey) -> None:
        self.root = root
        self.key = key
        self.tmp_dir = root / "tmp"
        self._unsynced: set[Path] = set()

    def ensure(self) -> None:
        self.tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put(self, data: bytes) -> StoredBlob:
        with self.writer() as writer:
            writer.write(data)
            return writer.finish()

    def put_stream(self, stream: BinaryIO) -> StoredBlob:
        with self.writer() as writer:
            while chunk := stream.read(_READ_BUFFER):
                writer.write(chunk)
            return writer.finish()

    def mark_unsynced(self, path: Path) -> None:
        self._unsynced.add(path)

    def take_unsynced(self) -> list[Path]:
        """The blobs written since the last sync, handed over to the process that will sync
        them before its commit (a parser process's blobs, `maild.parseahead`)."""
        paths, self._unsynced = sorted(self._unsynced), set()
        return paths

    def sync(self) -> None:
        """fsync every blob put since the last sync, then their folders.

        A blob that is gone was purged by `maild artifacts purge` between our write and now
        (the same bytes, from an expired ticket): the caller must retry, not commit.
        """
        folders = {path.parent for path in self._unsynced}
        for path in sorted(self._unsynced):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                self._unsynced.clear()
                raise TransientError(f"artifact {path.name} vanished before the commit") from None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for folder in sorted(folders):
            fsync_dir(folder)
        self._unsynced.clear()

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def open(self, sha256: str) -> BinaryIO:
        """The plaintext as a seekable buffered file; each chunk is authenticated as it is read."""
        path = self.path_for(sha256)
        if not path.exists():
            raise ArtifactMissing(f"artifact {sha256} is not in the store")
        return io.BufferedReader(DecryptingReader(self.key, path), _READ_BUFFER)

    def read(self, sha256: str) -> bytes:
        with self.open(sha256) as handle:
            return handle.read()

    def delete(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True
