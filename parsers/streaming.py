"""Large messages in constant memory: big leaf parts go straight into the artifact store.

The stdlib parser holds every part in memory (twice, once encoded and once decoded), so a
message with a 1 GB memory dump cannot go through it. `slim_message` reads the message once,
follows its MIME structure line by line, decodes every large leaf part (base64,
quoted-printable or raw) into an artifact writer as it passes, and copies the rest into a slim
copy in which each extracted part keeps its headers plus a placeholder header. The slim copy
is small and goes through the ordinary parser (`parsers.message`), which takes the stored
blobs from the placeholders, so a large message is decoded exactly like a small one.

The placeholder carries a random per-parse marker: a sender cannot forge one.

Hostile shapes are bounded here too, so that the slim copy is small whatever arrives: parts
past `SizeBudget.max_parts` are only counted, entities nested deeper than `MAX_DEPTH` are
skipped, and a header block is kept up to `_MAX_HEADER_BYTES` (then only the fields that
decide how the body reads and who sent it), so 10 MB of headers cannot push the body out.
"""

from __future__ import annotations

import binascii
import re
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
MAX_DEPTH = 50
"""Nesting levels of MIME entities (multipart children, the message inside message/rfc822) that
are read; what lies deeper is skipped with the defect `mime_too_deep`. Real mail, even a chain
of forwards as attachments, stays within a few dozen levels; the stdlib parser and generator
recurse once per level (a 10,000-deep multipart ends in RecursionError), so this bound is what
keeps a hostile message a ticket instead of a quarantine."""
DEFAULT_MAX_PARTS = 1000
"""MIME parts of one message that are looked at (`[artifacts] max_parts`); the rest are only
counted: each part costs a stored blob, a row and a line in every notice."""
_READ_SIZE = 1024 * 1024
_LINE_LIMIT = 64 * 1024
_MAX_HEADER_BYTES = 256 * 1024
"""Header bytes of one entity copied whole; past them, only the first of each `_LATE_FIELDS`."""
MAX_FIELD_BYTES = 64 * 1024
"""What the parser keeps of one header value (a 10 MB Subject, say): `parsers.message` cuts
there, on either path."""
_FIELD_COPY_BYTES = 2 * MAX_FIELD_BYTES
"""One header field is copied into the slim message up to here: more than the parser keeps,
so a long field reads the same on the streaming path as in memory."""
_LATE_FIELDS = frozenset({
    b"content-type", b"content-transfer-encoding", b"content-disposition", b"content-id",
    b"mime-version", b"from", b"sender", b"reply-to", b"to", b"cc", b"subject", b"date",
    b"message-id", b"in-reply-to", b"references", b"auto-submitted", b"precedence", b"list-id",
    b"return-path", b"x-autoreply", b"x-autorespond", b"x-auto-response-suppress", b"x-loop",
    b"x-maild-loop", b"x-failed-recipients",
})  # fmt: skip
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
"""The stdlib feedparser's `headerRE`: the first line that does not match starts the body."""
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
    skipped_parts: int = 0
    """Parts past `SizeBudget.max_parts`: left out of `data`, only counted."""
    skipped_bytes: int = 0
    defects: tuple[str, ...] = ()

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
    max_parts: int = DEFAULT_MAX_PARTS
    """MIME parts looked at; the rest are counted (see `PartCount`) and refused as a whole."""

    def refusal(self, size: int) -> str | None:
        if size > self.max_attachment_bytes:
            return "attachment_too_large"
        if size > self.remaining_message_bytes:
            return "message_too_large"
        return None

    def take(self, size: int) -> None:
        self.remaining_message_bytes -= size


@dataclass(slots=True)
class PartCount:
    """The parts of one message: the first `limit` are looked at, the rest only counted."""

    limit: int
    seen: int = 0
    skipped: int = 0
    skipped_bytes: int = 0

    def admit(self) -> bool:
        """Whether one more part may be looked at (and, if so, it is counted as seen)."""
        if self.seen >= self.limit:
            return False
        self.seen += 1
        return True

    def skip(self, size: int) -> None:
        self.skipped += 1
        self.skipped_bytes += size


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

    def unread(self, item: tuple[bytes, bool]) -> None:
        """Give back the line `line()` just returned (nothing was read in between)."""
        line, starts = item
        self._position -= len(line)
        self.at_line_start = starts

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
class _HeaderBlock:
    """The header lines of one entity as copied into the slim message, bounded whatever the
    sender wrote: 10 MB of headers must neither fill memory nor push the body out."""

    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    names: set[bytes] = field(default_factory=set)
    keeping: bool = False
    field_size: int = 0
    cut: bool = False

    def add(self, line: bytes, starts: bool) -> None:
        """One line (or a piece of a long one) of the block; the rest of a field follows it."""
        if starts and line[:1] not in (b" ", b"\t"):
            self._end_line()
            name = line.partition(b":")[0].strip().lower()
            late = name in _LATE_FIELDS and name not in self.names
            self.keeping = self.size < _MAX_HEADER_BYTES or late
            if name in _LATE_FIELDS:  # only these are looked up: 10 MB of names are not kept
                self.names.add(name)
            self.field_size = 0
            self.cut = self.cut or not self.keeping
        if not self.keeping:
            return
        if self.field_size + len(line) > _FIELD_COPY_BYTES:
            self._end_line()
            self.keeping, self.cut = False, True
            return
        self.lines.append(line)
        self.size += len(line)
        self.field_size += len(line)

    def _end_line(self) -> None:
        """A field cut inside a line still ends with a line break."""
        if self.lines and not self.lines[-1].endswith(b"\n"):
            self.lines.append(b"\r\n")
            self.size += 2

    def data(self) -> bytes:
        self._end_line()
        return b"".join(self.lines)


_Item = tuple[bytes, bool] | None
"""A line and whether it starts at a line start; None at the end of input."""


@dataclass(slots=True)
class _Slimmer:
    reader: _Reader
    sink: ArtifactSink
    budget: SizeBudget
    marker: str
    count: PartCount
    out: bytearray = field(default_factory=bytearray)
    boundaries: list[bytes] = field(default_factory=list)
    parts: dict[str, ExtractedPart] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)

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

    def entity(self, depth: int, *, in_digest: bool = False) -> _Item:
        """Copy one entity; returns the boundary line that ended it, None at the end of input."""
        if depth > MAX_DEPTH:
            self.defects.append("mime_too_deep")
            self.out += b"\r\n"  # an empty entity in its place: no headers, no body
            return self.skip()[0]
        block, blank, item = self.header_block()
        if blank is None:  # a boundary or the end of input came before any body
            self.out += block
            return item
        headers = BytesHeaderParser().parsebytes(block)
        if in_digest:  # RFC 2046 5.1.5, as the stdlib parser reads it
            headers.set_default_type("message/rfc822")
        encoding = str(headers.get("content-transfer-encoding", "")).strip().lower()
        if headers.get_content_maintype() == "multipart":
            boundary = _boundary(headers)
            if boundary:
                self.out += block + blank
                digest = headers.get_content_subtype() == "digest"
                return self.multipart(b"--" + boundary, depth, digest=digest)
        is_message = headers.get_content_type() == "message/rfc822"
        if is_message and encoding not in ("base64", "quoted-printable"):
            self.out += block + blank
            return self.entity(depth + 1)
        return self.leaf([block], blank, headers, encoding)

    def header_block(self) -> tuple[bytes, bytes | None, _Item]:
        """The entity's header lines as kept and the blank line after them: b"" when the body
        starts without one (a line that is no header line, as the stdlib parser decides), None
        when a boundary or the end of input came first (that line is returned too)."""
        block = _HeaderBlock()
        blank: bytes | None = None
        while True:
            item = self.reader.line()
            if item is None or self.boundary_level(item) is not None:
                break
            line, starts = item
            if starts and line in (b"\r\n", b"\n"):
                blank, item = line, None
                break
            if starts and not _HEADER_LINE.match(line):
                self.reader.unread(item)
                blank, item = b"", None
                break
            block.add(line, starts)
        if block.cut:
            self.defects.append("header_block_truncated")
        return block.data(), blank, item

    def skip(self) -> tuple[_Item, int]:
        """Read past one entity without copying it: the line that ended it, and its size."""
        size = 0
        while True:
            run = self.reader.body_run()
            if run:
                size += len(run)
                continue
            item = self.reader.line()
            if item is None or self.boundary_level(item) is not None:
                return item, size
            size += len(item[0])

    def copy_until_boundary(self) -> _Item:
        """A preamble: no parser reads it, so only its start is kept (it may be huge)."""
        kept = 0
        while True:
            item = self.reader.line()
            if item is None or self.boundary_level(item) is not None:
                return item
            if kept < _MAX_FILLER_BYTES:
                self.out += item[0]
                kept += len(item[0])

    def multipart(self, delimiter: bytes, depth: int, *, digest: bool) -> _Item:
        self.boundaries.append(delimiter)
        own = len(self.boundaries) - 1
        try:
            item = self.body_parts(own, depth, digest=digest)
            if item is None or _known(self.boundary_level(item))[0] < own:
                return item  # the end, or an outer boundary: this multipart was never closed
            self.out += item[0]  # the closing delimiter
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

    def body_parts(self, own: int, depth: int, *, digest: bool) -> _Item:
        """The preamble and the parts of the multipart at level `own`, up to its closing
        delimiter (returned, not copied), an outer boundary or the end of input. Parts past
        the message's part cap are read past and only counted; their delimiters are left out
        too, so the slim copy holds no trace of them."""
        start = len(self.out)
        item = self.copy_until_boundary()
        admitted = skipped = False
        while item is not None:
            level, closing = _known(self.boundary_level(item))
            if level < own or closing:
                break
            if self.count.admit():
                admitted = True
                self.out += item[0]
                item = self.entity(depth + 1, in_digest=digest)
            else:
                skipped = True
                delimiter = item[0]
                item, size = self.skip()
                self.count.skip(len(delimiter) + size)
        if skipped and not admitted:
            # No part is left: the parser would read the preamble as the text of a multipart
            # without parts, which it is not (in memory, it is skipped with the parts).
            del self.out[start:]
        return item

    def leaf(
        self, header_lines: list[bytes], blank: bytes, headers: Message, encoding: str
    ) -> _Item:
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
    ) -> _Item:
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
    count = PartCount(budget.max_parts)
    slimmer = _Slimmer(_Reader(stream), sink, budget, marker_factory(), count)
    slimmer.entity(0)  # the top level has no enclosing boundary: it runs to the end
    return SlimMessage(
        bytes(slimmer.out), slimmer.marker, slimmer.parts, count.skipped, count.skipped_bytes,
        tuple(slimmer.defects),
    )  # fmt: skip
