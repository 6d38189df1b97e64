"""What is inside an archive attachment, read without unpacking it, with archive bombs flagged.

Engineers want to see which logs and dumps a customer zipped up before saving anything, and the
daemon must not be what a 42 KB zip knocks over. So the listing reads only what it must: a zip's
central directory (declared sizes, nothing decompressed), a tar's headers through a decompressor
whose output is charged to a budget derived from the compressed size, and the first bytes of each
entry to find nested archives. Memory stays bounded by the limits, never by the archive. A limit
that trips becomes a stable flag; hostile or broken input becomes a listing flagged "corrupt".
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import posixpath
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, Protocol, Self

_log = logging.getLogger(__name__)

ArchiveFormat = Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.xz", "gz"]


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Where listing stops: each limit bounds time or memory against a hostile archive."""

    max_entries: int = 10_000  # more entries than this: flagged, listing truncated
    max_depth: int = 3  # nested archives (zip in zip, tar.gz in zip) listed down to this depth
    max_ratio: float = 200.0  # total uncompressed / compressed size above this: flagged as a bomb
    max_total_bytes: int = 20 * 2**30  # declared total uncompressed size above this: flagged
    max_nested_bytes: int = 64 * 2**20  # a nested archive larger than this is listed, not opened
    max_listed: int = 1_000  # entries kept in the listing (the count is still total)


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One member as the archive declares it; `name` is safe to display, not to write."""

    name: str  # sanitised for display: no control characters, "/" separators kept
    size: int  # uncompressed size as declared (zip) or as read (tar)
    compressed_size: int | None
    is_dir: bool
    depth: int  # 0 for the top archive's own entries
    unsafe_path: bool  # absolute, "..", drive letter, or a link escaping: path traversal attempt
    encrypted: bool


@dataclass(frozen=True, slots=True)
class ArchiveListing:
    """The listing plus stable flag codes, so the guard decides without re-reading the archive."""

    format: str  # "zip", "tar", "tar.gz", "tar.bz2", "tar.xz", "gz" (single gzip file)
    entries: tuple[ArchiveEntry, ...]  # at most max_listed
    entry_count: int
    total_size: int  # sum of uncompressed sizes seen
    flags: tuple[str, ...]
    error: str | None = None  # human-readable reason when the archive could not be read

    @property
    def is_bomb(self) -> bool:
        """True when unpacking this archive would cost far more than it weighs."""
        return any(flag in _BOMB_FLAGS for flag in self.flags)


FLAG_ORDER = (
    "bomb_ratio",
    "bomb_total_size",
    "too_many_entries",
    "too_deep",
    "unsafe_paths",
    "encrypted_entries",
    "corrupt",
    "truncated_listing",
)
_BOMB_FLAGS = frozenset(("bomb_ratio", "bomb_total_size", "too_many_entries", "too_deep"))
_DEFAULT_LIMITS = ArchiveLimits()

_HEAD_BYTES = 4096
_TAR_BLOCK = 512
_CHUNK = 16 * 1024
# Below this much output a high ratio is a compressible log, not a threat.
_RATIO_FLOOR_BYTES = 2**20
# Input read to find a zip entry's first bytes; deflate needs ~4 KiB, bzip2 a whole block.
_PEEK_INPUT_BYTES = 256 * 1024
_MAX_NAME_CHARS = 1024
# tarfile reads long-name and pax headers whole into memory; real ones are a few KiB.
_MAX_TAR_METADATA_BYTES = 64 * 1024
_TAR_METADATA_TYPES = frozenset(
    (
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    )
)

_ZIP_UTF8_FLAG = 0x800
_ZIP_ENCRYPTED_FLAG = 0x1
_ZIP_DOS_DIRECTORY = 0x10
_ZIP64_MARKER = 0xFFFFFFFF
_ZIP64_EXTRA = 0x0001
_UNICODE_PATH_EXTRA = 0x7075
_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")

# Everything a broken or hostile archive makes the readers raise; anything else is our bug.
_READ_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    tarfile.TarError,
    OSError,  # includes gzip.BadGzipFile and "Invalid data stream" from bz2/lzma
    EOFError,
    zlib.error,
    lzma.LZMAError,
    ValueError,  # includes UnicodeDecodeError
    struct.error,
    OverflowError,
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
# A word that mixes Latin and Cyrillic letters is cp437 Latin misread as cp866 ("MБller").
_MIXED_SCRIPT = re.compile(r"[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]")

_MAGIC: tuple[tuple[bytes, ArchiveFormat], ...] = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # empty zip: only the end record
    (b"\xfd7zXZ\x00", "tar.xz"),
)
_SUFFIXES: tuple[tuple[str, ArchiveFormat], ...] = (
    (".tar.gz", "tar.gz"),
    (".tgz", "tar.gz"),
    (".tar.bz2", "tar.bz2"),
    (".tbz2", "tar.bz2"),
    (".tbz", "tar.bz2"),
    (".tar.xz", "tar.xz"),
    (".txz", "tar.xz"),
    (".tar", "tar"),
    (".zip", "zip"),
    (".gz", "gz"),
)


class _LimitReachedError(Exception):
    """A limit tripped: stop listing, keep what was seen, record the flag."""

    def __init__(self, flag: str) -> None:
        super().__init__(flag)
        self.flag = flag


@dataclass(slots=True)
class _Tally:
    """What one listing has seen so far, shared by nested archives so limits are global."""

    limits: ArchiveLimits
    ratio_cap: int  # decompressed bytes the compressed size can justify
    entries: list[ArchiveEntry] = field(default_factory=list)
    count: int = 0
    total_size: int = 0
    decompressed: int = 0
    flags: set[str] = field(default_factory=set)
    error: str | None = None

    @classmethod
    def start(cls, limits: ArchiveLimits, stream_size: int) -> Self:
        """A tally whose decompression budget follows from what the sender actually sent."""
        return cls(limits, max(int(stream_size * limits.max_ratio), _RATIO_FLOOR_BYTES))

    def add(self, entry: ArchiveEntry, pending: int = 0) -> None:
        """Count an entry; `pending` are entries known to follow that will not be read."""
        self.count += 1
        if self.count > self.limits.max_entries:
            self.count += pending
            raise _LimitReachedError("too_many_entries")
        self.total_size += entry.size
        if len(self.entries) < self.limits.max_listed:
            self.entries.append(entry)
        if entry.unsafe_path:
            self.flags.add("unsafe_paths")
        if entry.encrypted:
            self.flags.add("encrypted_entries")

    def consume(self, size: int) -> None:
        """Charge decompressed bytes; stop the listing once the budget is spent."""
        self.decompressed += size
        if self.decompressed > self.limits.max_total_bytes:
            raise _LimitReachedError("bomb_total_size")
        if self.decompressed > self.ratio_cap:
            raise _LimitReachedError("bomb_ratio")

    def may_descend(self, depth: int) -> bool:
        """Whether an archive found at `depth` may be listed; flags the nesting when not."""
        if depth + 1 > self.limits.max_depth:
            self.flags.add("too_deep")
            return False
        return True

    def listing(self, archive_format: str) -> ArchiveListing:
        """Freeze the tally; declared sizes are judged here, decompressed ones in `consume`."""
        flags = set(self.flags)
        if self.total_size > self.ratio_cap:
            flags.add("bomb_ratio")
        if self.total_size > self.limits.max_total_bytes:
            flags.add("bomb_total_size")
        if len(self.entries) < self.count:
            flags.add("truncated_listing")
        return ArchiveListing(
            format=archive_format,
            entries=tuple(self.entries),
            entry_count=self.count,
            total_size=self.total_size,
            flags=tuple(flag for flag in FLAG_ORDER if flag in flags),
            error=self.error,
        )


class _MeteredReader:
    """A read-only file whose every byte is charged to the tally, so a bomb stops mid-stream."""

    def __init__(self, raw: io.BufferedIOBase, tally: _Tally) -> None:
        self._raw = raw
        self._tally = tally
        self._position = 0

    def read(self, size: int = -1, /) -> bytes:
        """At most `size` bytes, and never an unbounded read even when asked for one."""
        data = self._raw.read(size if size >= 0 else _CHUNK)
        self._position += len(data)
        self._tally.consume(len(data))
        return data

    def write(self, _data: bytes, /) -> int:
        """Listing never writes."""
        raise io.UnsupportedOperation("read-only")

    def tell(self) -> int:
        """Bytes decompressed so far."""
        return self._position

    def seek(self, _offset: int, /) -> int:
        """Only forward reading is metered honestly, so seeking is refused."""
        raise io.UnsupportedOperation("not seekable")

    def close(self) -> None:
        """The underlying decompressor is closed by its owner."""


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses oversized long-name and pax headers, which tarfile would read whole into memory."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        """The stdlib header parser, plus a size check on metadata-carrying headers."""
        info = super().frombuf(buf, encoding, errors)
        if info.type in _TAR_METADATA_TYPES and info.size > _MAX_TAR_METADATA_BYTES:
            raise tarfile.HeaderError(f"tar metadata header of {info.size} bytes")
        return info


class _ListingTarFile(tarfile.TarFile):
    """A TarFile whose member list the listing empties as it goes, keeping memory flat."""

    members: list[tarfile.TarInfo]  # set by TarFile.__init__; missing from typeshed
    tarinfo = _BoundedTarInfo


class _Decompressor(Protocol):
    """The incremental interface shared by bz2, lzma and the adapters below."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes: ...


class _RawDeflate:
    """zlib's decompressobj shaped like bz2's, so one bounded loop serves every method."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        """The deflate stream ended."""
        return self._inflater.eof

    @property
    def needs_input(self) -> bool:
        """No input left over from the last bounded call."""
        return not self._inflater.unconsumed_tail

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes:
        """At most `max_length` bytes (zlib treats 0 as unlimited, so callers pass >= 1)."""
        pending = self._inflater.unconsumed_tail + data
        return self._inflater.decompress(pending, max(max_length, 0))


class _Stored:
    """The identity "decompressor" for stored zip entries."""

    def __init__(self) -> None:
        self._pending = b""

    @property
    def eof(self) -> bool:
        """Stored data has no end marker; the compressed size ends it."""
        return False

    @property
    def needs_input(self) -> bool:
        """Nothing held back from the last bounded call."""
        return not self._pending

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes:
        """The input itself, at most `max_length` bytes of it."""
        pending = self._pending + data
        cut = len(pending) if max_length < 0 else max_length
        self._pending = pending[cut:]
        return pending[:cut]


# Zip methods whose entries may be opened to look for nested archives; others stay closed.
_ZIP_DECOMPRESSORS: dict[int, Callable[[], _Decompressor]] = {
    0: _Stored,
    8: _RawDeflate,
    12: bz2.BZ2Decompressor,
}
_TAR_OPENERS: dict[str, Callable[[BinaryIO], io.BufferedIOBase]] = {
    "tar.gz": lambda stream: gzip.GzipFile(fileobj=stream, mode="rb"),
    "gz": lambda stream: gzip.GzipFile(fileobj=stream, mode="rb"),
    "tar.bz2": bz2.BZ2File,
    "tar.xz": lzma.LZMAFile,
}


@dataclass(frozen=True, slots=True)
class _ZipDirectory:
    """Where a zip's central directory lies, and how far the zip is shifted in the file."""

    start: int
    end: int
    shift: int  # bytes prepended before the zip (self-extractors); added to local offsets
    count: int  # entries the end record declares


@dataclass(frozen=True, slots=True)
class _ZipRecord:
    """One central directory record, with zip64 sizes resolved."""

    name: str
    flag_bits: int
    method: int
    compressed_size: int
    size: int
    local_offset: int
    is_dir: bool
    is_symlink: bool  # Info-ZIP keeps the Unix mode, and unzip recreates the link


def detect_archive_format(head: bytes, filename: str) -> ArchiveFormat | None:
    """The archive format by magic bytes, else by name; None for anything we do not list."""
    by_magic = _format_by_magic(head, filename)
    return by_magic if by_magic is not None else _format_by_name(filename)


def _format_by_magic(head: bytes, filename: str) -> ArchiveFormat | None:
    """Magic numbers; a gzip is a tar.gz when its first decompressed block is a tar header."""
    if head.startswith(b"\x1f\x8b"):
        return _gzip_kind(head, filename)
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "tar.bz2"
    for magic, archive_format in _MAGIC:
        if head.startswith(magic):
            return archive_format
    return "tar" if _is_tar_header(head[:_TAR_BLOCK]) else None


def _format_by_name(filename: str) -> ArchiveFormat | None:
    """The format a name claims, for data whose magic we did not recognise."""
    lowered = filename.lower().rstrip(" .")
    for suffix, archive_format in _SUFFIXES:
        if lowered.endswith(suffix):
            return archive_format
    return None


def _gzip_kind(head: bytes, filename: str) -> ArchiveFormat:
    """Tell a tar.gz from a single gzipped file by decompressing just the head."""
    try:
        block = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _TAR_BLOCK)
    except zlib.error:
        block = b""
    if len(block) == _TAR_BLOCK:
        return "tar.gz" if _is_tar_header(block) else "gz"
    return "tar.gz" if _format_by_name(filename) == "tar.gz" else "gz"


def _is_tar_header(block: bytes) -> bool:
    """A ustar magic, or a v7 header whose checksum adds up."""
    if len(block) < _TAR_BLOCK:
        return False
    if block[257:262] == b"ustar":
        return True
    field_text = block[148:156].split(b"\0", 1)[0].strip(b" ")
    if not field_text or not all(0x30 <= byte <= 0x37 for byte in field_text):
        return False
    blanked = block[:148] + b" " * 8 + block[156:_TAR_BLOCK]
    signed = sum(struct.unpack(f"{_TAR_BLOCK}b", blanked))
    return int(field_text, 8) in (sum(blanked), signed)


def list_archive(
    stream: BinaryIO, filename: str, limits: ArchiveLimits = _DEFAULT_LIMITS
) -> ArchiveListing | None:
    """List an archive attachment; None when it is not one. Never raises for hostile input."""
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    detected = detect_archive_format(stream.read(_HEAD_BYTES), filename)
    if detected is None:
        return None
    tally = _Tally.start(limits, size)
    listed: ArchiveFormat | None = detected
    try:
        listed = _confirm_format(stream, detected)
        if listed is not None:
            _list_format(stream, size, listed, filename, depth=0, tally=tally)
    except _LimitReachedError as reached:
        tally.flags.add(reached.flag)
    except _READ_ERRORS as error:
        tally.flags.add("corrupt")
        tally.error = _describe(listed or detected, error)
    return None if listed is None else tally.listing(listed)


def _describe(archive_format: str, error: Exception) -> str:
    """A one-line reason for the engineer, without the traceback."""
    return f"unreadable {archive_format}: {str(error) or type(error).__name__}"


def _confirm_format(stream: BinaryIO, detected: ArchiveFormat) -> ArchiveFormat | None:
    """Look at the first decompressed block: gzip may hold a tar or one file; bz2/xz only tar."""
    opener = _TAR_OPENERS.get(detected)
    if opener is None:
        return detected
    stream.seek(0)
    with opener(stream) as payload:
        block = payload.read(_TAR_BLOCK)
    stream.seek(0)
    if _is_tar_header(block):
        return "tar.gz" if detected == "gz" else detected
    return "gz" if detected in ("gz", "tar.gz") else None


def _list_format(
    stream: BinaryIO, size: int, archive_format: str, filename: str, *, depth: int, tally: _Tally
) -> None:
    """Dispatch to the reader for a confirmed format."""
    stream.seek(0)
    if archive_format == "zip":
        _list_zip(stream, size, depth, tally)
    elif archive_format == "tar":
        _list_tar(stream, "r:", depth, tally)
    elif archive_format == "gz":
        _list_gz(stream, filename, size, depth, tally)
    else:
        with _TAR_OPENERS[archive_format](stream) as payload:
            _list_tar(_MeteredReader(payload, tally), "r|", depth, tally)


def _list_nested(data: bytes, name: str, depth: int, tally: _Tally) -> None:
    """List an archive found inside another; a broken one stays an opaque entry."""
    stream = io.BytesIO(data)
    detected = detect_archive_format(data[:_HEAD_BYTES], name)
    if detected is None:
        return
    try:
        confirmed = _confirm_format(stream, detected)
        if confirmed is not None:
            _list_format(stream, len(data), confirmed, name, depth=depth, tally=tally)
    except _READ_ERRORS as error:
        _log.debug("nested archive at depth %d unreadable: %s", depth, error)


# Zip: the central directory alone, read record by record.


def _list_zip(stream: BinaryIO, size: int, depth: int, tally: _Tally) -> None:
    """Entries from the central directory; only nested archives are ever decompressed."""
    directory = _read_zip_directory(stream, size)
    for index, record in enumerate(_iter_zip_records(stream, directory)):
        entry = ArchiveEntry(
            name=_display_name(record.name),
            size=record.size,
            compressed_size=record.compressed_size,
            is_dir=record.is_dir,
            depth=depth,
            unsafe_path=_is_unsafe_path(record.name)
            or _is_escaping_zip_link(stream, directory, record),
            encrypted=bool(record.flag_bits & _ZIP_ENCRYPTED_FLAG),
        )
        tally.add(entry, pending=max(0, directory.count - index - 1))
        _descend_zip(stream, directory, record, depth, tally)


def _read_zip_directory(stream: BinaryIO, size: int) -> _ZipDirectory:
    """Find the end record (and its zip64 twin) in the last 64 KiB, as zipfile does."""
    tail_size = min(size, _EOCD.size + 0xFFFF)
    stream.seek(size - tail_size)
    tail = stream.read(tail_size)
    found = tail.rfind(b"PK\x05\x06")
    if found < 0 or found + _EOCD.size > len(tail):
        raise zipfile.BadZipFile("end of central directory not found")
    _, _, _, _, count, directory_size, directory_offset, _ = _EOCD.unpack_from(tail, found)
    record_at = size - tail_size + found
    zip64 = _read_zip64_end(stream, record_at)
    if zip64 is not None:
        count, directory_size, directory_offset, record_at = zip64
    start = record_at - directory_size
    shift = start - directory_offset
    if start < 0 or shift < 0:
        raise zipfile.BadZipFile("central directory outside the file")
    return _ZipDirectory(start=start, end=record_at, shift=shift, count=count)


def _read_zip64_end(stream: BinaryIO, end_record_at: int) -> tuple[int, int, int, int] | None:
    """Count, size, offset and position of a zip64 end record just before the locator."""
    locator_at = end_record_at - _EOCD64_LOCATOR.size
    record_at = locator_at - _EOCD64.size
    if record_at < 0:
        return None
    stream.seek(record_at)
    data = stream.read(_EOCD64.size + _EOCD64_LOCATOR.size)
    if data[_EOCD64.size : _EOCD64.size + 4] != b"PK\x06\x07" or data[:4] != b"PK\x06\x06":
        return None
    fields = _EOCD64.unpack_from(data)
    return fields[7], fields[8], fields[9], record_at


def _iter_zip_records(stream: BinaryIO, directory: _ZipDirectory) -> Iterator[_ZipRecord]:
    """Central records one at a time (never the whole directory in memory)."""
    position = directory.start
    while position < directory.end:
        stream.seek(position)
        fixed = stream.read(_CENTRAL.size)
        if len(fixed) < _CENTRAL.size or fixed[:4] != b"PK\x01\x02":
            raise zipfile.BadZipFile("bad central directory record")
        fields = _CENTRAL.unpack(fixed)
        name_size, extra_size, comment_size = fields[12], fields[13], fields[14]
        variable = stream.read(name_size + extra_size)
        if len(variable) < name_size + extra_size:
            raise zipfile.BadZipFile("truncated central directory")
        position += _CENTRAL.size + name_size + extra_size + comment_size
        yield _zip_record(fields, variable[:name_size], variable[name_size:])


def _zip_record(fields: tuple[int, ...], raw_name: bytes, extra: bytes) -> _ZipRecord:
    """Resolve name encoding and zip64 sizes for one central record."""
    flag_bits, method, compressed_size, size = fields[5], fields[6], fields[10], fields[11]
    external_attributes, local_offset = fields[17], fields[18]
    size, compressed_size, local_offset = _zip64_values(
        extra, (size, compressed_size, local_offset)
    )
    name = _decode_zip_name(raw_name, flag_bits, extra)
    return _ZipRecord(
        name=name,
        flag_bits=flag_bits,
        method=method,
        compressed_size=compressed_size,
        size=size,
        local_offset=local_offset,
        is_dir=name.endswith(("/", "\\")) or bool(external_attributes & _ZIP_DOS_DIRECTORY),
        is_symlink=stat.S_ISLNK(external_attributes >> 16),
    )


def _extra_fields(extra: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, body) pairs of a zip extra field, ignoring a truncated tail."""
    position = 0
    while position + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, position)
        yield tag, extra[position + 4 : position + 4 + length]
        position += 4 + length


def _zip64_values(extra: bytes, values: tuple[int, int, int]) -> tuple[int, int, int]:
    """Replace 0xFFFFFFFF placeholders, in order, with the zip64 extra field's 8-byte values."""
    for tag, body in _extra_fields(extra):
        if tag != _ZIP64_EXTRA:
            continue
        wide = iter(struct.unpack_from(f"<{len(body) // 8}Q", body))
        resolved = [next(wide, value) if value == _ZIP64_MARKER else value for value in values]
        return resolved[0], resolved[1], resolved[2]
    return values


def _decode_zip_name(raw_name: bytes, flag_bits: int, extra: bytes) -> str:
    """Decode as zipfile does (UTF-8 flag, else cp437), plus Info-ZIP and Russian cp866 names."""
    name = raw_name.split(b"\0", 1)[0]  # like zipfile: viruses hide ".exe" behind a NUL
    if flag_bits & _ZIP_UTF8_FLAG:
        return name.decode("utf-8", "replace")
    unicode_path = _unicode_path(raw_name, extra)
    if unicode_path is not None:
        return unicode_path
    if name.isascii():
        return name.decode("ascii")
    return _decode_oem_name(name)


def _unicode_path(raw_name: bytes, extra: bytes) -> str | None:
    """The UTF-8 name 7-Zip and WinRAR store beside a legacy one, if it still matches it."""
    for tag, body in _extra_fields(extra):
        is_current = tag == _UNICODE_PATH_EXTRA and len(body) > 5 and body[0] == 1
        if is_current and int.from_bytes(body[1:5], "little") == zlib.crc32(raw_name):
            return body[5:].decode("utf-8", "replace")
    return None


def _decode_oem_name(name: bytes) -> str:
    """Windows' built-in zip writes the OEM code page unflagged: cp866 on Russian systems."""
    russian = name.decode("cp866")
    if _CYRILLIC.search(russian) and not _MIXED_SCRIPT.search(russian):
        return russian
    return name.decode("cp437")


def _descend_zip(
    stream: BinaryIO, directory: _ZipDirectory, record: _ZipRecord, depth: int, tally: _Tally
) -> None:
    """Peek at an entry's first bytes; list it when it is an archive small enough to open."""
    opener = _ZIP_DECOMPRESSORS.get(record.method)
    if opener is None or record.is_dir or record.size == 0:
        return
    if record.flag_bits & _ZIP_ENCRYPTED_FLAG:
        return
    try:
        start = _zip_data_start(stream, directory.shift + record.local_offset)
        peek_input = min(record.compressed_size, _PEEK_INPUT_BYTES)
        head = _inflate(stream, start, peek_input, opener(), limit=_HEAD_BYTES)
        if detect_archive_format(head, record.name) is None or not tally.may_descend(depth):
            return
        if record.size > tally.limits.max_nested_bytes:
            return
        data = _inflate(
            stream, start, record.compressed_size, opener(), limit=record.size, tally=tally
        )
    except _READ_ERRORS as error:
        _log.debug("zip entry data unreadable at depth %d: %s", depth, error)
        return
    _list_nested(data, record.name, depth + 1, tally)


def _is_escaping_zip_link(stream: BinaryIO, directory: _ZipDirectory, record: _ZipRecord) -> bool:
    """A symlink entry stores its target as data; an unreadable target proves nothing."""
    opener = _ZIP_DECOMPRESSORS.get(record.method)
    if not record.is_symlink or opener is None or record.flag_bits & _ZIP_ENCRYPTED_FLAG:
        return False
    try:
        start = _zip_data_start(stream, directory.shift + record.local_offset)
        peek_input = min(record.compressed_size, _PEEK_INPUT_BYTES)
        target = _inflate(stream, start, peek_input, opener(), limit=_HEAD_BYTES)
    except _READ_ERRORS as error:
        _log.debug("zip symlink target unreadable: %s", error)
        return False
    return _is_escaping_link(record.name, target.decode("utf-8", "replace"), is_hard_link=False)


def _zip_data_start(stream: BinaryIO, header_at: int) -> int:
    """Where an entry's data begins, past its local header's own name and extra field."""
    stream.seek(header_at)
    header = stream.read(_LOCAL.size)
    if len(header) < _LOCAL.size or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local file header")
    fields = _LOCAL.unpack(header)
    name_size, extra_size = int(fields[9]), int(fields[10])
    return header_at + _LOCAL.size + name_size + extra_size


def _inflate(
    stream: BinaryIO,
    start: int,
    compressed_size: int,
    decompressor: _Decompressor,
    *,
    limit: int,
    tally: _Tally | None = None,
) -> bytes:
    """At most `limit` bytes of one entry, reading at most `compressed_size` bytes of input."""
    stream.seek(start)
    remaining = compressed_size
    step = min(_CHUNK, max(limit, _TAR_BLOCK))  # a peek reads about as much as it wants back
    output = bytearray()
    while len(output) < limit and not decompressor.eof:
        chunk = b""
        if decompressor.needs_input:
            chunk = stream.read(min(step, remaining)) if remaining > 0 else b""
            if not chunk:
                break
            remaining -= len(chunk)
        data = decompressor.decompress(chunk, limit - len(output))
        if tally is not None:
            tally.consume(len(data))
        output += data
    return bytes(output)


# Tar: headers through tarfile, data skipped (seekable) or streamed through the meter.


def _list_tar(
    fileobj: BinaryIO | _MeteredReader, mode: Literal["r:", "r|"], depth: int, tally: _Tally
) -> None:
    """Entries from tar headers; each regular file's first bytes are checked for nesting."""
    with _ListingTarFile.open(
        fileobj=fileobj, mode=mode, encoding="utf-8", errors="replace"
    ) as archive:
        while (member := archive.next()) is not None:
            archive.members.clear()  # tarfile keeps every header otherwise
            tally.add(_tar_entry(member, depth))
            _descend_tar(archive, member, depth, tally)


def _tar_entry(member: tarfile.TarInfo, depth: int) -> ArchiveEntry:
    """A tar header as an entry; links count as unsafe when their target leaves the tree."""
    unsafe = _is_unsafe_path(member.name)
    if member.issym() or member.islnk():
        unsafe = unsafe or _is_escaping_link(
            member.name, member.linkname, is_hard_link=member.islnk()
        )
    return ArchiveEntry(
        name=_display_name(member.name),
        size=member.size,
        compressed_size=None,
        is_dir=member.isdir(),
        depth=depth,
        unsafe_path=unsafe,
        encrypted=False,
    )


def _descend_tar(
    archive: tarfile.TarFile, member: tarfile.TarInfo, depth: int, tally: _Tally
) -> None:
    """List a member that is itself a small enough archive."""
    if not member.isreg() or member.size == 0:
        return
    payload = archive.extractfile(member)
    if payload is None:
        return
    head = payload.read(_HEAD_BYTES)
    if detect_archive_format(head, member.name) is None or not tally.may_descend(depth):
        return
    if member.size > tally.limits.max_nested_bytes:
        return
    data = head + payload.read(member.size - len(head))
    _list_nested(data, member.name, depth + 1, tally)


def _is_escaping_link(name: str, target: str, *, is_hard_link: bool) -> bool:
    """Symlinks resolve from their own directory, hard links from the archive root."""
    if _is_unsafe_start(target):
        return True
    base = "" if is_hard_link else posixpath.dirname(name.replace("\\", "/"))
    resolved = posixpath.normpath(posixpath.join(base, target.replace("\\", "/")))
    return resolved == ".." or resolved.startswith("../")


# Single gzip file: one entry whose size is found by metered streaming.


def _list_gz(stream: BinaryIO, filename: str, size: int, depth: int, tally: _Tally) -> None:
    """One entry named from the gzip header; its size costs a metered decompression."""
    name = _gzip_original_name(stream.read(_HEAD_BYTES)) or _strip_gz_suffix(filename)
    stream.seek(0)
    with gzip.GzipFile(fileobj=stream, mode="rb") as payload:
        measured, kept, reached = _measure(_MeteredReader(payload, tally), name, depth, tally)
    entry = ArchiveEntry(
        name=_display_name(name),
        size=measured,
        compressed_size=size,
        is_dir=False,
        depth=depth,
        unsafe_path=_is_unsafe_path(name),
        encrypted=False,
    )
    tally.add(entry)
    if reached is not None:
        raise reached
    if kept is not None:
        _list_nested(kept, name, depth + 1, tally)


def _measure(
    reader: _MeteredReader, name: str, depth: int, tally: _Tally
) -> tuple[int, bytes | None, _LimitReachedError | None]:
    """Size read, the payload when it is a small nested archive, and any limit that stopped us."""
    size = 0
    kept: bytearray | None = None
    try:
        head = reader.read(_HEAD_BYTES)
        size = len(head)
        if detect_archive_format(head, name) is not None and tally.may_descend(depth):
            kept = bytearray(head)
        while chunk := reader.read(_CHUNK):
            size += len(chunk)
            if kept is not None and len(kept) + len(chunk) <= tally.limits.max_nested_bytes:
                kept += chunk
            else:
                kept = None
    except _LimitReachedError as reached:
        return size, None, reached
    return size, None if kept is None else bytes(kept), None


def _gzip_original_name(head: bytes) -> str | None:
    """The FNAME field of a gzip header (RFC 1952), if present and within the head."""
    flags = head[3] if len(head) > 3 else 0
    if not flags & 0x08 or len(head) < 10:
        return None
    position = 10
    if flags & 0x04:  # FEXTRA comes first
        position = 12 + int.from_bytes(head[10:12], "little")
    end = head.find(b"\0", position)
    if end < 0:
        return None
    raw = head[position:end]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # what RFC 1952 specifies; UTF-8 is what tools write


def _strip_gz_suffix(filename: str) -> str:
    """The attachment name without ".gz", as gunzip would name the output."""
    return filename[:-3] if filename.lower().endswith(".gz") and len(filename) > 3 else filename


# Names.


def _display_name(name: str) -> str:
    """No control or bidi characters, bounded length; separators kept so the tree shows."""
    clean = _CONTROL.sub("", name)
    return clean if len(clean) <= _MAX_NAME_CHARS else clean[: _MAX_NAME_CHARS - 1] + "…"


def _is_unsafe_start(path: str) -> bool:
    """Absolute on POSIX or Windows (root, UNC, drive letter)."""
    return path.startswith(("/", "\\")) or bool(_DRIVE.match(path))


def _is_unsafe_path(name: str) -> bool:
    """A member that extraction would write outside the target directory."""
    for candidate in (name, _CONTROL.sub("", name)):
        if _is_unsafe_start(candidate):
            return True
        for part in _SEPARATORS.split(candidate):
            # Windows drops trailing dots and spaces, so ".. " and "..." climb too.
            stripped = part.strip(" ")
            if len(stripped) >= 2 and set(stripped) == {"."}:
                return True
    return False
