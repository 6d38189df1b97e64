"""An in-memory artifact sink for parser tests that need no database and no disk."""

from __future__ import annotations

import hashlib
import io

from parsers.types import StoredBlob


class MemoryWriter:
    def __init__(self, sink: MemorySink) -> None:
        self._sink = sink
        self._parts: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._parts.append(bytes(data))

    def finish(self) -> StoredBlob:
        return self._sink.put(b"".join(self._parts))

    def abort(self) -> None:
        self.aborted = True
        self._sink.aborted += 1


class MemorySink:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.aborted = 0

    def put(self, data: bytes) -> StoredBlob:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return StoredBlob(digest, len(data))

    def writer(self) -> MemoryWriter:
        return MemoryWriter(self)

    def open(self, sha256: str) -> io.BytesIO:
        return io.BytesIO(self.blobs[sha256])
