"""The bytes of one message as it arrived: held in memory when small, read from its file when large.

A 1 GB memory dump must not be held in memory (`bench/big_attachment.py`), so a message above
`LARGE_MESSAGE_BYTES` stays a file and every stage streams it; everything smaller takes the
faster in-memory path, which is what nearly all mail is.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

LARGE_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RawMail:
    size: int
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def of(cls, data: bytes) -> RawMail:
        return cls(size=len(data), data=data)

    @classmethod
    def from_file(cls, path: Path) -> RawMail:
        """In memory when small, else a reference to the file (which must outlive the message)."""
        size = path.stat().st_size
        if size <= LARGE_MESSAGE_BYTES:
            return cls.of(path.read_bytes())
        return cls(size=size, path=path)

    @property
    def is_large(self) -> bool:
        return self.data is None

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.path is None:  # pragma: no cover - the constructors always set one of the two
            raise ValueError("RawMail without data or path")
        return self.path.open("rb")

    def read_all(self) -> bytes:
        """Everything at once: only for callers that have checked `is_large` first."""
        if self.data is not None:
            return self.data
        with self.open() as handle:
            return handle.read()

    def head(self, limit: int) -> bytes:
        if self.data is not None:
            return self.data[:limit]
        with self.open() as handle:
            return handle.read(limit)
