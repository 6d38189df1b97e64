"""Large messages in constant memory: big leaf parts go straight into the artifact store.

The stdlib parser holds every part in memory (twice, once encoded and once decoded), so a
message with a 1 GB memory dump cannot go through it. `slim_message` reads the message once,
follows its MIME structure line by line, decodes every large leaf part (base64,
quoted-printable or raw) into an artifact writer as it passes, and copies the rest into a slim
copy in which each extracted part keeps its headers plus a placeholder header. The slim copy
is small and goes through the ordinary parser (`parsers.message`), which takes the stored
blobs from the placeholders, so a large message is decoded exactly like a small one.

The placeholder carries a random per-parse marker: a sender cannot forge one.
"""

from __future__ import annotations

import binascii
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from typing import BinaryIO

from parsers.types import ArtifactSink, BlobWriter, StoredBlob

PLACEHOLDER_HEADER = "X-Maild-Extracted"
PART_IN_MEMORY = 1024 * 1024
"""Encoded bytes a leaf part may have and still be copied into the slim message."""
TEXT_IN_MEMORY = 4 * 1024 * 1024
"""The same for a text body, which the ticket shows as text rather than as an attachment."""
SNIFF_BYTES = 4096
MAX_DEPTH = 30
_READ_SIZE = 1024 * 1024
_LINE_LIMIT = 64 * 1024
_MAX_HEADER_BYTES = 256 * 1024
_MAX_FILLER_BYTES = 64 * 1024
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_DELETE = bytes(sorted(set(range(256)) - set(_B64_ALPHABET)))


@dataclass(frozen=True, slots=True)
class ExtractedPart:
    """A leaf part decoded into the store during the pre-pass (or refused, then only counted)."""

    blob: StoredBlob | None
    size: int
    head: bytes
    refused: str | None


@dataclass(slots=True)
class SlimMessage:
    data: bytes
    marker: str
    parts: dict[str, ExtractedPart] = field(default_factory=dict)

    def extracted(self, part: Message) -> ExtractedPart | None:
        for value in part.get_all(PLACEHOLDER_HEADER, ()):
            found = self.parts.get(str(value).strip())
            if found is not None:
                return found
        return None


@dataclass(slots=True)
class SizeBudget:
    """What one message may still store: per attachment and all attachments together."""

    max_attachment_bytes: int
    remaining_message_bytes: int

    def refusal(self, size: int) -> str | None:
        if size > self.max_attachment_bytes:
            return "attachment_too_large"
        if size > self.remaining_message_bytes:
            return "message_too_large"
        return None

    def take(self, size: int) -> None:
        self.remaining_message_bytes -= size


class _Reader:
    """Lines of a binary stream (each at most _LINE_LIMIT bytes) and, faster, runs of body lines."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buffer = b""
        self._position = 0
        self._eof = False
        self.at_line_start = True

    def _fill(self) -> None:
        chunk = self._stream.read(_READ_SIZE)
        self._eof = not chunk
        self._buffer = self._buffer[self._position :] + chunk
        self._position = 0

    def _take(self, end: int) -> bytes:
        piece = self._buffer[self._position : end]
        self._position = end
        self.at_line_start = piece.endswith(b"\n")
        return piece

    def line(self) -> tuple[bytes, bool] | None:
        """The next line and whether it starts at a line start; None at the end."""
        while True:
            limit = self._position + _LINE_LIMIT
            newline = self._buffer.find(b"\n", self._position, limit)
            starts = self.at_line_start
            if newline >= 0:
                return self._take(newline + 1), starts
            if len(self._buffer) >= limit:
                return self._take(limit), starts
            if self._eof:
                return (
                    (self._take(len(self._buffer)), starts)
                    if self._position < len(self._buffer)
                    else None
                )
            self._fill()

    def body_run(self) -> bytes:
        """Whole lines up to the next line starting with "--" (a boundary candidate), or b""."""
        while self.at_line_start:
            if len(self._buffer) - self._position < 3 and not self._eof:
                self._fill()
                continue
            if self._buffer.startswith(b"--", self._position):
                return b""
            candidate = self._buffer.find(b"\n--", self._position)
            if candidate >= 0:
                return self._take(candidate + 1)
            last_newline = self._buffer.rfind(b"\n", self._position)
            if last_newline >= 0:
                return self._take(last_newline + 1)
            if self._eof or len(self._buffer) - self._position > _LINE_LIMIT:
                return b""
            self._fill()
        return b""


class _Base64:
    def __init__(self) -> None:
        self._pending = bytearray()
        self._ended = False
        self.damaged = False

    def feed(self, data: bytes) -> bytes:
        if self._ended:
            return b""
        self._pending += data.translate(None, _B64_DELETE)
        whole = len(self._pending) // 4 * 4
        if whole < 64 * 1024:
            return b""
        return self._decode(whole)

    def _decode(self, count: int) -> bytes:
        block = bytes(self._pending[:count])
        del self._pending[:count]
        if b"=" in block:
            self._ended = True  # like binascii: nothing after the padding counts
        try:
            return binascii.a2b_base64(block)
        except binascii.Error:
            self.damaged = True
            return b""

    def finish(self) -> bytes:
        if self._ended or not self._pending:
            return b""
        tail = len(self._pending) % 4
        if tail == 1:
            del self._pending[-1:]
            self.damaged = True
        elif tail:
            self._pending += b"=" * (4 - tail)
        return self._decode(len(self._pending))


class _QuotedPrintable:
    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        return binascii.a2b_qp(data[:cut]) if cut else b""

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        return binascii.a2b_qp(rest)


class _Identity:
    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


_Decoder = _Base64 | _QuotedPrintable | _Identity


def _decoder_for(encoding: str) -> _Decoder:
    if encoding == "base64":
        return _Base64()
    if encoding == "quoted-printable":
        return _QuotedPrintable()
    return _Identity()


class _Extraction:
    """One large part on its way into the store, refused (and only counted) past a limit."""

    def __init__(self, sink: ArtifactSink, budget: SizeBudget, decoder: _Decoder) -> None:
        self._writer: BlobWriter | None = sink.writer()
        self._budget = budget
        self._decoder = decoder
        self._held_eol = b""
        self.size = 0
        self.head = b""
        self.refused: str | None = None

    def body(self, data: bytes) -> None:
        """Body bytes; the line end before a boundary belongs to the boundary, so it waits."""
        if not data:
            return
        eol = 2 if data.endswith(b"\r\n") else 1 if data.endswith(b"\n") else 0
        self._decoded(self._decoder.feed(self._held_eol + data[: len(data) - eol]))
        self._held_eol = data[len(data) - eol :]

    def _decoded(self, data: bytes) -> None:
        if not data:
            return
        if len(self.head) < SNIFF_BYTES:
            self.head += data[: SNIFF_BYTES - len(self.head)]
        self.size += len(data)
        if self._writer is None:
            return
        self.refused = self._budget.refusal(self.size)
        if self.refused is not None:
            self._writer.abort()
            self._writer = None
            return
        self._writer.write(data)

    def finish(self) -> ExtractedPart:
        self._decoded(self._decoder.finish())
        if self._writer is None:
            return ExtractedPart(None, self.size, self.head, self.refused)
        blob = self._writer.finish()
        self._budget.take(blob.size)
        return ExtractedPart(blob, blob.size, self.head, None)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


@dataclass(slots=True)
class _Slimmer:
    reader: _Reader
    sink: ArtifactSink
    budget: SizeBudget
    marker: str
    out: bytearray = field(default_factory=bytearray)
    boundaries: list[bytes] = field(default_factory=list)
    parts: dict[str, ExtractedPart] = field(default_factory=dict)

    def boundary_level(self, item: tuple[bytes, bool]) -> tuple[int, bool] | None:
        """Which open multipart a line closes a part of (and whether it is the closing one)."""
        line, starts = item
        if not starts or not line.startswith(b"--"):
            return None
        stripped = line.rstrip(b" \t\r\n")
        for level in range(len(self.boundaries) - 1, -1, -1):
            delimiter = self.boundaries[level]
            if stripped == delimiter:
                return level, False
            if stripped == delimiter + b"--":
                return level, True
        return None

    def entity(self, depth: int) -> tuple[bytes, bool] | None:
        """Copy one entity; returns the boundary line that ended it, None at the end of input."""
        header_lines: list[bytes] = []
        header_bytes = 0
        while True:
            item = self.reader.line()
            if item is None or self.boundary_level(item) is not None:
                self.out += b"".join(header_lines)
                return item
            line, starts = item
            if starts and line in (b"\r\n", b"\n"):
                break
            header_lines.append(line)
            header_bytes += len(line)
            if header_bytes > _MAX_HEADER_BYTES:  # not headers at all: treat it as a body
                return self.leaf(header_lines, b"", Message(), "")
        headers = BytesHeaderParser().parsebytes(b"".join(header_lines))
        encoding = str(headers.get("content-transfer-encoding", "")).strip().lower()
        if depth < MAX_DEPTH and headers.get_content_maintype() == "multipart":
            boundary = _boundary(headers)
            if boundary:
                self.out += b"".join(header_lines) + line
                return self.multipart(b"--" + boundary, depth)
        is_message = headers.get_content_type() == "message/rfc822"
        if depth < MAX_DEPTH and is_message and encoding not in ("base64", "quoted-printable"):
            self.out += b"".join(header_lines) + line
            return self.entity(depth + 1)
        return self.leaf(header_lines, line, headers, encoding)

    def copy_until_boundary(self) -> tuple[bytes, bool] | None:
        """A preamble: no parser reads it, so only its start is kept (it may be huge)."""
        kept = 0
        while True:
            item = self.reader.line()
            if item is None or self.boundary_level(item) is not None:
                return item
            if kept < _MAX_FILLER_BYTES:
                self.out += item[0]
                kept += len(item[0])

    def multipart(self, delimiter: bytes, depth: int) -> tuple[bytes, bool] | None:
        self.boundaries.append(delimiter)
        own = len(self.boundaries) - 1
        try:
            item = self.copy_until_boundary()  # the preamble
            while item is not None:
                level, closing = _known(self.boundary_level(item))
                if level < own:
                    return item  # an outer boundary: this multipart was never closed
                self.out += item[0]
                if closing:
                    break
                item = self.entity(depth + 1)
            else:
                return None
            # The epilogue runs to the enclosing boundary; a stray own boundary is text there.
            kept = 0
            while True:
                item = self.reader.line()
                if item is None:
                    return None
                found = self.boundary_level(item)
                if found is not None and found[0] < own:
                    return item
                if kept < _MAX_FILLER_BYTES:
                    self.out += item[0]
                    kept += len(item[0])
        finally:
            self.boundaries.pop()

    def leaf(
        self, header_lines: list[bytes], blank: bytes, headers: Message, encoding: str
    ) -> tuple[bytes, bool] | None:
        # A multipart without a boundary is text to recover, like a body; message/* parts
        # (delivery-status, disposition-notification) are read by the parser.
        textual = headers.get_content_maintype() in ("text", "multipart", "message")
        is_text = textual and not headers.get_filename()
        limit = TEXT_IN_MEMORY if is_text else PART_IN_MEMORY
        body: list[bytes] = []
        size = 0
        while True:
            run = self.reader.body_run()
            if run:
                body.append(run)
                size += len(run)
            else:
                item = self.reader.line()
                if item is None or self.boundary_level(item) is not None:
                    self.out += b"".join(header_lines) + blank + b"".join(body)
                    return item
                body.append(item[0])
                size += len(item[0])
            if size > limit:
                return self.extract(header_lines, blank, encoding, body)

    def extract(
        self, header_lines: list[bytes], blank: bytes, encoding: str, body: list[bytes]
    ) -> tuple[bytes, bool] | None:
        extraction = _Extraction(self.sink, self.budget, _decoder_for(encoding))
        try:
            for data in body:
                extraction.body(data)
            body.clear()
            while True:
                run = self.reader.body_run()
                if run:
                    extraction.body(run)
                    continue
                item = self.reader.line()
                if item is None or self.boundary_level(item) is not None:
                    break
                extraction.body(item[0])
            part = extraction.finish()
        except BaseException:
            extraction.abort()
            raise
        key = f"{self.marker}-{len(self.parts)}"
        self.parts[key] = part
        eol = b"\r\n" if blank.startswith(b"\r") else b"\n"
        self.out += b"".join(header_lines)
        self.out += f"{PLACEHOLDER_HEADER}: {key}".encode() + eol + blank
        return item


def _known(value: tuple[int, bool] | None) -> tuple[int, bool]:
    if value is None:  # pragma: no cover - callers pass only lines that matched
        raise AssertionError("not a boundary line")
    return value


def _boundary(headers: Message) -> bytes | None:
    try:
        boundary = headers.get_boundary()
    except (ValueError, LookupError):
        return None
    if not boundary:
        return None
    return boundary.encode("ascii", "surrogateescape")


def slim_message(
    stream: BinaryIO,
    sink: ArtifactSink,
    budget: SizeBudget,
    *,
    marker_factory: Callable[[], str] = lambda: secrets.token_hex(12),
) -> SlimMessage:
    """Read `stream` once; large leaf parts go to `sink`, the rest into the slim copy."""
    slimmer = _Slimmer(_Reader(stream), sink, budget, marker_factory())
    slimmer.entity(0)  # the top level has no enclosing boundary: it runs to the end
    return SlimMessage(bytes(slimmer.out), slimmer.marker, slimmer.parts)
