"""Artifacts encrypted at rest: chunked AES-256-GCM, so a 1 GB dump streams in and out in
constant memory and every chunk is authenticated before a byte of it is released.

File layout (integers big-endian)::

    magic   b"MAILDAE1"   8 bytes
    key_id                8 bytes  tells "wrong key file" apart from "damaged file"
    salt                 16 bytes  random; HKDF-SHA256(master key, salt) is this file's AES key
    chunks               CHUNK plaintext bytes + 16-byte tag each; the last one may be shorter

Chunk i is sealed with nonce = i (11 bytes) || last-flag (1 byte) and the 32-byte header as
associated data: the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015), also used
by age and Tink. A reordered, dropped or truncated chunk fails authentication. Every file has
its own key (fresh salt), so counter nonces never repeat under one key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"MAILDAE1"
CHUNK = 64 * 1024
TAG = 16
SALT = 16
HEADER = len(MAGIC) + 8 + SALT
_HKDF_INFO = b"maild artifact file key v1"


class ArtifactCryptoError(Exception):
    """An artifact cannot be decrypted: wrong key, damage, or tampering."""


@dataclass(frozen=True, slots=True)
class ArtifactKey:
    """The master key; `repr` never shows the secret (keys must not reach logs)."""

    secret: bytes

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(b"maild artifact key id\0" + self.secret).digest()[:8]

    def __repr__(self) -> str:
        return f"ArtifactKey(id={self.key_id.hex()})"

    def file_key(self, salt: bytes) -> AESGCM:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO)
        return AESGCM(derived.derive(self.secret))


def create_key_file(path: Path) -> bool:
    """Write a new random key, readable by its owner only; False if one already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(32)) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def load_key(path: Path) -> ArtifactKey:
    """Read the key file; errors name the file, never its content."""
    try:
        text = path.read_bytes().strip()
    except FileNotFoundError:
        raise ArtifactCryptoError(
            f"artifact key file {path} does not exist: run `maild init` to create it"
        ) from None
    try:
        secret = base64.b64decode(text, validate=True)
    except binascii.Error:
        secret = b""
    if len(secret) != 32:
        raise ArtifactCryptoError(f"artifact key file {path} does not hold a 32-byte base64 key")
    return ArtifactKey(secret)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class EncryptingWriter:
    """Plaintext in, sealed chunks out to `sink`; `close_stream` seals the last chunk."""

    def __init__(self, key: ArtifactKey, sink: BinaryIO) -> None:
        salt = secrets.token_bytes(SALT)
        self._header = MAGIC + key.key_id + salt
        self._aead = key.file_key(salt)
        self._sink = sink
        self._pending = bytearray()
        self._index = 0
        sink.write(self._header)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending += data
        while len(self._pending) > CHUNK:
            self._seal(bytes(self._pending[:CHUNK]), last=False)
            del self._pending[:CHUNK]

    def close_stream(self) -> None:
        self._seal(bytes(self._pending), last=True)
        self._pending.clear()

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        self._sink.write(self._aead.encrypt(_nonce(self._index, last), chunk, self._header))
        self._index += 1


def _check_header(file: BinaryIO, key: ArtifactKey, name: str) -> tuple[bytes, int, int]:
    """The header, the number of chunks and the plaintext size, or why the file is unreadable."""
    header = file.read(HEADER)
    if len(header) != HEADER or not header.startswith(MAGIC):
        raise ArtifactCryptoError(f"{name}: not a maild encrypted artifact")
    if header[8:16] != key.key_id:
        raise ArtifactCryptoError(
            f"{name}: encrypted with key id {header[8:16].hex()}, "
            f"the configured key is {key.key_id.hex()}"
        )
    sealed = os.fstat(file.fileno()).st_size - HEADER
    chunks = max(1, -(-sealed // (CHUNK + TAG)))
    size = sealed - chunks * TAG
    if size < 0:
        raise ArtifactCryptoError(f"{name}: truncated")
    return header, chunks, size


class DecryptingReader(io.RawIOBase):
    """A seekable, read-only view of the plaintext; zipfile and tarfile can read it directly."""

    def __init__(self, key: ArtifactKey, path: Path) -> None:
        super().__init__()
        self._file = path.open("rb")
        try:
            header, self._chunks, self.size = _check_header(self._file, key, path.name)
        except BaseException:
            self._file.close()
            raise
        self._name = path.name
        self._header = header
        self._aead = key.file_key(header[16:HEADER])
        self._position = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._position >= self.size:
            return 0
        index, offset = divmod(self._position, CHUNK)
        chunk = self._chunk(index)
        count = min(len(buffer), len(chunk) - offset)
        memoryview(buffer)[:count] = chunk[offset : offset + count]
        self._position += count
        return count

    def _chunk(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        self._file.seek(HEADER + index * (CHUNK + TAG))
        sealed = self._file.read(CHUNK + TAG)
        last = index == self._chunks - 1
        try:
            plain = self._aead.decrypt(_nonce(index, last), sealed, self._header)
        except InvalidTag:
            raise ArtifactCryptoError(
                f"{self._name}: chunk {index} failed authentication (damaged or altered)"
            ) from None
        self._cached = (index, plain)
        return plain

    def close(self) -> None:
        self._file.close()
        super().close()
