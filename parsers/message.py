"""Raw bytes to a `ParsedMessage`: decode what real (Russian) mail clients send, never raise.

Why the stdlib parser with the compat32 policy and not mail-parser or `policy.default`:
mail-parser wraps the same stdlib parser and decodes every attachment into memory as text
(base64 strings), and `policy.default` builds rich header objects for every header, which
costs about three times the parse time (bench/ingest.py measures both). compat32 keeps headers
as raw strings; we decode only the ones the pipeline reads, with our own charset recovery
(`parsers.charsets`), which also covers lying labels that both alternatives trust.
"""

from __future__ import annotations

import email
import email.header
import email.utils
import logging
import mimetypes
import re
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.message import Message
from email.parser import BytesParser
from email.policy import Policy, compat32
from typing import Any

from tnefparse import TNEF  # type: ignore[import-untyped]

from parsers.archives import detect_archive_format, list_archive
from parsers.attachments import classify_attachment, sanitize_filename
from parsers.bounce_rules import bounce_families
from parsers.charsets import (
    SINGLE_BYTE_CYRILLIC,
    canonical_codec,
    decode_bytes,
    decode_declared,
    guess_codec,
)
from parsers.html_text import html_to_text
from parsers.identity import normalize_message_id
from parsers.quotes import split_reply
from parsers.rawmail import RawMail
from parsers.streaming import (
    DEFAULT_MAX_PARTS,
    MAX_DEPTH,
    MAX_FIELD_BYTES,
    SNIFF_BYTES,
    ExtractedPart,
    PartCount,
    SizeBudget,
    SlimMessage,
    slim_message,
)
from parsers.types import (
    Address,
    ArtifactKind,
    ArtifactSink,
    AttachmentInfo,
    DeliveryReport,
    ParsedMessage,
    StoredBlob,
)

log = logging.getLogger(__name__)

# Headers that later stages read; everything else stays in the raw message only.
KEPT_HEADERS = frozenset({
    "subject", "from", "sender", "to", "cc", "reply-to", "date", "message-id", "in-reply-to",
    "references", "auto-submitted", "precedence", "list-id", "list-unsubscribe", "list-post",
    "x-autoreply", "x-autorespond", "x-auto-response-suppress", "return-path", "x-loop",
    "x-maild-loop", "authentication-results", "content-type", "x-mailer", "user-agent",
    "x-failed-recipients", "delivered-to", "x-original-to", "received", "resent-from",
    "resent-message-id",
}) | frozenset(name for family in bounce_families() for name in family.headers)  # fmt: skip
MAX_MIME_DEPTH = MAX_DEPTH  # one bound for both paths: see parsers.streaming.MAX_DEPTH
_MAX_KEPT_HEADERS = 1000
"""Kept header fields per message (Received lines too); real mail has a few dozen."""


_ADDRESS_FALLBACK = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
# A local part, "@" and a domain: a dotted name, one host's name ("root@localhost", which
# cron and monitoring scripts send as; see parsers.reachability) or an address literal.
_USABLE_ADDRESS = re.compile(
    r"[^@\s<>()\[\],;:\\\"]+@(?:[^@\s<>()\[\],;:\\\".]+(?:\.[^@\s<>()\[\],;:\\\".]+)*"
    r"|\[[0-9A-Fa-f:.]+\])"
)
_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """No NUL (PostgreSQL refuses it) and no lone surrogates (no database can store them)."""
    return _UNSAFE_TEXT.sub("\ufffd", text) if _UNSAFE_TEXT.search(text) else text


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # a raw 8-bit byte the header parser kept


def resolve_8bit(value: str, undeclared: str = "") -> str:
    """Raw 8-bit header bytes (RFC 6532 UTF-8, or a legacy charset nobody declared) to text;
    `undeclared` is the codec the message's undeclared text reads best in (`guess_codec`)."""
    if _ESCAPED_BYTE.search(value):
        data = value.encode("ascii", "surrogateescape")
        return decode_bytes(data, None, undeclared=undeclared)[0]
    return value


# Line breaks, tabs and the other spacing controls become one space; every other C0 and C1
# control and DEL becomes U+FFFD. A decoded display name, subject or filename is then one line
# of visible text: an encoded word that decodes to CR LF cannot become a header line of the mail
# we send back (issue 13), and an escape sequence cannot reach an operator's terminal.
_HEADER_SPACING = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]+")
_HEADER_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
# Bidi embeddings, overrides and isolates reorder what follows them on the line ("[SIS #1]
# txt.exe" shown as "exe.txt"); in a one-line field they serve only that trick, so they go.
_BIDI_OVERRIDES = re.compile("[\u202a-\u202e\u2066-\u2069]")


def header_text(text: str) -> str:
    """One line of visible, storable text, whatever the decoded header carried."""
    if _HEADER_SPACING.search(text):
        text = _HEADER_SPACING.sub(" ", text)
    if _HEADER_CONTROLS.search(text):
        text = _HEADER_CONTROLS.sub("\ufffd", text)
    if _BIDI_OVERRIDES.search(text):
        text = _BIDI_OVERRIDES.sub("", text)
    return clean_text(text)


def decode_header_value(value: str) -> str:
    """RFC 2047 words, raw 8-bit bytes and folding, to one line of storable text."""
    return header_text(_decode_header_value(resolve_8bit(value)))


def _decode_header_value(value: str) -> str:
    unfolded = " ".join(part.strip() for part in value.splitlines()) if "\n" in value else value
    if "=?" not in unfolded:
        return unfolded.strip()
    try:
        chunks = email.header.decode_header(unfolded)
    except (HeaderParseError, ValueError, LookupError):
        return unfolded.strip()
    pieces = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            pieces.append(chunk)
            continue
        codec = canonical_codec(charset)
        if codec in SINGLE_BYTE_CYRILLIC:  # every byte decodes; the table may still be wrong
            pieces.append(decode_bytes(chunk, charset)[0])
            continue
        if codec and codec != "ascii":
            try:
                pieces.append(decode_declared(chunk, codec))
            except UnicodeDecodeError:
                # A word that does not decode in the charset it names is damaged (bad
                # base64, truncated): show it as it came rather than invent letters.
                return unfolded.strip()
            continue
        pieces.append(decode_bytes(chunk, charset)[0])
    return _join_header_pieces(chunks, pieces).strip()


def _join_header_pieces(chunks: list[tuple[bytes | str, str | None]], pieces: list[str]) -> str:
    """decode_header drops the space between an encoded word and plain text; put it back."""
    result = ""
    for index, piece in enumerate(pieces):
        if index and chunks[index][1] != chunks[index - 1][1]:
            needs_space = not result.endswith(" ") and not piece.startswith(" ")
            result += " " if needs_space else ""
        result += piece
    return result


def _split_addresses(raw_values: list[str]) -> list[tuple[str, str]]:
    try:
        return email.utils.getaddresses(raw_values)
    except RecursionError:
        # The stdlib parser recurses once per address; a header listing thousands of
        # addresses exhausts the stack. Keep the bare addresses in that case.
        return [("", found) for value in raw_values for found in _ADDRESS_FALLBACK.findall(value)]


def parse_addresses(raw_values: list[str]) -> tuple[Address, ...]:
    addresses = []
    for name, address in _split_addresses(raw_values):
        address = address.strip().strip("<>")
        if not _USABLE_ADDRESS.fullmatch(address):
            continue
        email_address = clean_text(address.lower())
        addresses.append(Address(name=decode_header_value(name), email=email_address))
    return tuple(addresses)


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _message_ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    found = [normalize_message_id(f"<{item}") for item in value.split("<")[1:]]
    return tuple(item for item in found if item)


@dataclass(slots=True)
class _BodyCollector:
    """Mutable scratch space of one parse; the result is frozen into ParsedMessage."""

    sink: ArtifactSink
    budget: SizeBudget
    parts: PartCount
    """Shared by a forwarded message's collector: the part cap holds for the whole message."""
    slim: SlimMessage | None = None
    cid_references: frozenset[str] = frozenset()
    undeclared: str = ""
    """The codec for text parts that declare no charset, chosen once per message."""
    texts: list[str] = field(default_factory=list)
    attachments: list[AttachmentInfo] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    report: DeliveryReport | None = None
    returned_ids: list[str] = field(default_factory=list)


def _part_text(part: Message, collector: _BodyCollector) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except (ValueError, LookupError):
        charset = None
    text, defect = decode_bytes(payload, charset, undeclared=collector.undeclared)
    if defect:
        collector.defects.append(defect)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_subtype() == "html":
        return html_to_text(text)
    if str(part.get_param("format", "")).lower() == "flowed":
        return unflow(text, delete_space=str(part.get_param("delsp", "")).lower() == "yes")
    return text


def unflow(text: str, *, delete_space: bool) -> str:
    """RFC 3676 format=flowed (Apple Mail, Thunderbird): a line ending in a space continues."""
    output: list[str] = []
    depth, joined = -1, ""

    def flush() -> None:
        nonlocal depth, joined
        if depth >= 0:
            output.append((">" * depth + " " if depth else "") + joined)
        depth, joined = -1, ""

    for line in text.split("\n"):
        quote = len(line) - len(line.lstrip(">"))
        content = line[quote:]
        content = content[1:] if content.startswith(" ") else content  # space-stuffing
        if content == "-- ":  # the signature separator never flows
            flush()
            output.append(line)
            continue
        flowed = content.endswith(" ")
        if flowed and delete_space:
            content = content[:-1]
        if depth != quote:
            flush()
            depth = quote
        joined += content
        if not flowed:
            flush()
    flush()
    return "\n".join(output)


def _filename(part: Message) -> str | None:
    carrier = _with_8bit_params_decoded(part)
    try:
        name = carrier.get_filename()
    except (ValueError, LookupError, HeaderParseError):
        return None
    if name is None:
        param = carrier.get_param("name")
        name = param if isinstance(param, str) else None
    # Not `decode_header_value`: its U+FFFD for a control would stay in the name, while
    # `sanitize_filename` (which every filename passes) drops controls and spaces breaks.
    return clean_text(_decode_header_value(resolve_8bit(name))) if name else None


def _with_8bit_params_decoded(part: Message) -> Message:
    """Raw 8-bit bytes in Content-Disposition/Content-Type (Mail.ru, 1C senders): the stdlib
    turns them into U+FFFD before we could see them, so decode those two headers first."""
    raw = {
        name.lower(): str(value)
        for name, value in part.raw_items()
        if name.lower() in ("content-disposition", "content-type")
    }
    if all(value.isascii() for value in raw.values()):
        return part
    carrier = Message()
    for name, value in raw.items():
        carrier[name] = resolve_8bit(value)
    return carrier


def _is_attachment(part: Message, filename: str | None) -> bool:
    if part.get_content_disposition() == "attachment" or filename:
        return True
    return part.get_content_maintype() not in ("text", "multipart")


_CID_REFERENCE = re.compile(rb"cid:([^\"'\s<>()]+)", re.IGNORECASE)


def _cid_references(message: Message) -> frozenset[str]:
    """Content-IDs that an HTML body shows in place: those images are inline, not attachments."""
    found: set[str] = set()
    for part in message.walk():
        if part.get_content_type() != "text/html":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and b"cid:" in payload.lower():
            found.update(
                urllib.parse.unquote(match.decode("ascii", "replace")).lower()
                for match in _CID_REFERENCE.findall(payload)
            )
    return frozenset(found)


def _is_inline(part: Message, collector: _BodyCollector) -> bool:
    """Only a part the HTML refers to by cid: is decoration; an unreferenced one (an iPhone
    photo with Content-Disposition: inline, say) is something the client sent us."""
    content_id = normalize_message_id(str(part.get("content-id", "")))
    return content_id is not None and content_id.lower() in collector.cid_references


def _store_attachment(
    part: Message, filename: str | None, collector: _BodyCollector, *, depth: int
) -> None:
    content_type = part.get_content_type()
    extracted = collector.slim.extracted(part) if collector.slim else None
    if extracted is not None:
        name = filename or _default_name(content_type)
        if _is_tnef(content_type, name) and extracted.blob is not None:
            with collector.sink.open(extracted.blob.sha256) as stream:
                if _unpack_tnef(stream.read(_TNEF_UNPACK_LIMIT + 1), collector):
                    return
        _record(collector, part, name, extracted)
        return
    if content_type == "message/rfc822":
        _store_forwarded(part, filename, collector, depth=depth)
        return
    decoded = part.get_payload(decode=True)
    if not isinstance(decoded, bytes):
        collector.defects.append("attachment_undecodable")
        return
    name = filename or _default_name(content_type)
    if _is_tnef(content_type, name) and _unpack_tnef(decoded, collector):
        return
    _store_bytes(collector, decoded, name, content_type, inline=_is_inline(part, collector))


def _is_tnef(content_type: str, name: str) -> bool:
    return content_type == "application/ms-tnef" or name.lower() == "winmail.dat"


def _default_name(content_type: str) -> str:
    extension = mimetypes.guess_extension(content_type) or ".bin"
    return f"attachment{extension}"


@dataclass(frozen=True, slots=True)
class _Found:
    """One attachment as found, before it is named safely, classified and listed."""

    filename: str
    content_type: str
    head: bytes
    blob: StoredBlob | None
    size: int
    refused: str | None = None
    inline: bool = False
    container: str | None = None


def _store_bytes(
    collector: _BodyCollector,
    payload: bytes,
    filename: str,
    content_type: str,
    *,
    inline: bool = False,
    container: str | None = None,
) -> None:
    refused = collector.budget.refusal(len(payload))
    blob = None if refused else collector.sink.put(payload)
    if blob is not None:
        collector.budget.take(blob.size)
    head = payload[:SNIFF_BYTES]
    _append(
        collector,
        _Found(filename, content_type, head, blob, len(payload), refused, inline, container),
    )


def _record(
    collector: _BodyCollector, part: Message, filename: str, extracted: ExtractedPart
) -> None:
    _append(
        collector,
        _Found(
            filename, part.get_content_type(), extracted.head, extracted.blob, extracted.size,
            extracted.refused, _is_inline(part, collector),
        ),
    )  # fmt: skip


def _append(collector: _BodyCollector, found: _Found) -> None:
    safe_name = sanitize_filename(found.filename)
    listing = None
    if found.blob is not None and detect_archive_format(found.head, safe_name) is not None:
        with collector.sink.open(found.blob.sha256) as stream:
            listing = list_archive(stream, safe_name)
    if found.refused:
        collector.defects.append(f"{found.refused}:{safe_name}:{found.size}")
    collector.attachments.append(
        AttachmentInfo(
            filename=safe_name,
            content_type=found.content_type,
            kind=classify_attachment(safe_name, found.content_type, found.head),
            size=found.size,
            sha256=found.blob.sha256 if found.blob else "",
            inline=found.inline,
            refused=found.refused,
            archive=listing,
            container=found.container,
        )
    )


def _store_forwarded(
    part: Message, filename: str | None, collector: _BodyCollector, *, depth: int
) -> None:
    """A message sent as an attachment: kept whole as .eml, and its text and files shown too.
    The message inside lies one level deeper than the part (`MAX_MIME_DEPTH` bounds the
    chain of forwards as it bounds multiparts)."""
    inner = part.get_payload(0) if part.is_multipart() else None
    if not isinstance(inner, Message):
        collector.defects.append("forwarded_message_undecodable")
        return
    subject = decode_header_value(str(inner.get("subject", ""))) or "message"
    name = sanitize_filename(filename or f"{subject}.eml")
    _store_bytes(collector, inner.as_bytes(), name, "message/rfc822")
    inner_collector = _BodyCollector(
        sink=collector.sink,
        budget=collector.budget,
        parts=collector.parts,
        slim=collector.slim,
        cid_references=collector.cid_references | _cid_references(inner),
    )
    _walk(inner, inner_collector, want_text=True, depth=depth + 1)
    text = "\n\n".join(t.strip("\n") for t in inner_collector.texts if t.strip())
    if text:
        collector.texts.append(_forward_block(inner, text))
    for info in inner_collector.attachments:
        collector.attachments.append(replace(info, container=info.container or name))
    collector.defects.extend(inner_collector.defects)


def _forward_block(inner: Message, text: str) -> str:
    lines = ["---------- Forwarded message ----------"]
    for header in ("From", "Date", "Subject", "To"):
        value = inner.get(header)
        if value:
            lines.append(f"{header}: {decode_header_value(str(value))}")
    return "\n".join(lines) + "\n\n" + text


_TNEF_UNPACK_LIMIT = 64 * 1024 * 1024


def _unpack_tnef(data: bytes, collector: _BodyCollector) -> bool:
    """Outlook's winmail.dat: the files inside are what the client attached.

    tnefparse (well kept, pure Python) reads the format; above 64 MB the .dat is stored whole,
    since unpacking holds it in memory.
    """
    if len(data) > _TNEF_UNPACK_LIMIT:
        collector.defects.append("tnef_too_large_to_unpack")
        return False
    try:
        tnef = TNEF(data, do_checksum=False)
    except Exception:  # noqa: BLE001 - tnefparse raises bare ValueError/struct.error/etc.
        collector.defects.append("tnef_undecodable")
        return False
    for item in tnef.attachments:
        payload = item.data if isinstance(item.data, bytes) else b""
        if not collector.parts.admit():
            collector.parts.skip(len(payload))
            continue
        try:
            name = item.long_filename() or item.name
        except (UnicodeDecodeError, ValueError):
            name = ""
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        _store_bytes(
            collector, payload, name or "attachment.bin", content_type, container="winmail.dat"
        )
    if not collector.texts:
        body = _tnef_text(tnef)
        if body:
            collector.texts.append(body)
    return True


def _tnef_text(tnef: TNEF) -> str:
    bodies = ((getattr(tnef, "body", None), False), (getattr(tnef, "htmlbody", None), True))
    for value, is_html in bodies:
        if isinstance(value, bytes):
            value = decode_bytes(value, None)[0]
        if isinstance(value, str) and value.strip():
            value = value.replace("\r\n", "\n")
            return html_to_text(value) if is_html else value
    return ""


def _delivery_report(part: Message) -> DeliveryReport | None:
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        return None
    recipients: list[str] = []
    action = status = diagnostic = ""
    for block in blocks:
        if not isinstance(block, Message):
            continue
        value = block.get("final-recipient") or block.get("original-recipient")
        address = str(value or "").rpartition(";")[2].strip().strip("<>").lower()
        block_action = str(block.get("action", "")).strip().lower()
        if address and block_action in ("failed", "") and address not in recipients:
            recipients.append(address)
        action = action or block_action
        status = status or str(block.get("status", "")).strip()
        code = str(block.get("diagnostic-code", "")).rpartition(";")[2]
        diagnostic = diagnostic or " ".join(code.split())[:500]
    return DeliveryReport(tuple(recipients), action, status, diagnostic)


def _walk(part: Message, collector: _BodyCollector, *, want_text: bool, depth: int) -> None:
    if depth > MAX_MIME_DEPTH:
        collector.defects.append("mime_too_deep")
        return
    if part.is_multipart():
        _walk_multipart(part, collector, want_text=want_text, depth=depth)
        return
    content_type = part.get_content_type()
    if content_type == "message/delivery-status":
        collector.report = collector.report or _delivery_report(part)
        return
    filename = _filename(part)
    if part.get_content_maintype() == "multipart":
        # A multipart without a usable boundary: the parser leaves its body as one string.
        recovered = _recover_multipart(part, depth=depth + 1)
        if recovered is not None:
            collector.defects.append("multipart_boundary_recovered")
            _walk(recovered, collector, want_text=want_text, depth=depth + 1)
            return
        collector.defects.append("multipart_without_boundary")
        if want_text:
            collector.texts.append(_part_text(part, collector))
        return
    if content_type in ("text/plain", "text/html") and not _is_attachment(part, filename):
        if want_text:
            collector.texts.append(_part_text(part, collector))
        return
    _store_attachment(part, filename, collector, depth=depth)


_BOUNDARY_LINE = re.compile(rb"^--([^\s\"][^\r\n\"]{0,69}?)(--)?[ \t]*\r?$", re.MULTILINE)


def _recover_multipart(part: Message, *, depth: int) -> Message | None:
    """A multipart whose boundary parameter is missing or wrong: find the delimiter it uses.

    The delimiter is the "--token" line that repeats and is closed by "--token--"; a quoted
    "-----Original Message-----" line occurs once, so it loses.
    """
    payload = part.get_payload()
    if not isinstance(payload, str):
        return None
    body = payload.encode("utf-8", "surrogateescape")
    openers: Counter[bytes] = Counter()
    closed: set[bytes] = set()
    for match in _BOUNDARY_LINE.finditer(body):
        if match.group(2):
            closed.add(match.group(1))
        else:
            openers[match.group(1)] += 1
    ranked = sorted(openers, key=lambda token: (token in closed, openers[token]), reverse=True)
    if not ranked or (ranked[0] not in closed and openers[ranked[0]] < 2):
        return None
    header = b"Content-Type: " + part.get_content_type().encode("ascii", "replace")
    recovered = _parse_bytes(
        header + b'; boundary="' + ranked[0] + b'"\r\n\r\n' + body, depth=depth
    )
    return recovered if recovered.is_multipart() else None


class _Part(Message):
    """A MIME part that knows how deep it lies; past `MAX_MIME_DEPTH` it reads as text/plain.

    The stdlib parser recurses once per nesting level (a multipart in a multipart, the message
    inside message/rfc822), and so do its generator and `walk()`: a 10,000-deep multipart ends
    in RecursionError. The parser attaches each part to its parent before it reads the part's
    headers, so the depth is known when it asks the part's type; a part too deep answers
    text/plain and the parser reads all below it as one text body (which `_walk` skips).
    """

    depth = 0

    def attach(self, payload: Message | str) -> None:
        if isinstance(payload, _Part):
            payload.depth = self.depth + 1
        super().attach(payload)

    def get_content_type(self) -> str:
        if self.depth > MAX_MIME_DEPTH:
            return "text/plain"
        return super().get_content_type()


def _parse_bytes(data: bytes, *, depth: int = 0) -> Message:
    """The stdlib parser (compat32) over `_Part`s: no nesting makes it recurse out."""

    def new_part(policy: Policy[Any] = compat32) -> _Part:
        part = _Part(policy)
        part.depth = depth
        return part

    return BytesParser(new_part).parsebytes(data)


def _looked_at(children: list[Message], collector: _BodyCollector) -> Iterator[Message]:
    """The parts in order while the message's part cap allows; the rest are only counted.

    A generator, so a part is admitted when its turn comes: the parts of a nested multipart
    are counted before its next sibling, in the order they stand in the message (as the
    streaming pre-pass counts them)."""
    for index, child in enumerate(children):
        if not collector.parts.admit():
            for rest in children[index:]:
                collector.parts.skip(_encoded_size(rest))
            return
        yield child


def _encoded_size(part: Message) -> int:
    """The bodies of a part and of the parts inside it, as they arrived (no recursion)."""
    size, stack = 0, [part]
    while stack:
        payload = stack.pop().get_payload()
        if isinstance(payload, list):
            stack.extend(child for child in payload if isinstance(child, Message))
        elif isinstance(payload, str):
            size += len(payload)
    return size


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return (
        [child for child in payload if isinstance(child, Message)]
        if isinstance(payload, list)
        else []
    )


def _walk_multipart(
    part: Message, collector: _BodyCollector, *, want_text: bool, depth: int
) -> None:
    children = _children(part)
    subtype = part.get_content_subtype()
    if part.get_content_type() == "message/rfc822":
        _store_attachment(part, _filename(part), collector, depth=depth)
        return
    if subtype == "alternative" and children:
        chosen = _choose_alternative(children)
        for child in _looked_at(children, collector):
            _walk(child, collector, want_text=want_text and child is chosen, depth=depth + 1)
        return
    if subtype == "report":
        _walk_report(children, collector, want_text=want_text, depth=depth)
        return
    for child in _looked_at(children, collector):
        _walk(child, collector, want_text=want_text, depth=depth + 1)


def _walk_report(
    children: list[Message], collector: _BodyCollector, *, want_text: bool, depth: int
) -> None:
    """A DSN: the human text and the machine fields; the returned original is ours, not data."""
    for child in _looked_at(children, collector):
        content_type = child.get_content_type()
        if content_type == "message/delivery-status":
            collector.report = _delivery_report(child)
        elif content_type in _RETURNED_TYPES:
            collector.returned_ids.extend(_returned_ids_of(child))
        elif (
            want_text
            and child.get_content_maintype() in ("text", "multipart")
            and not collector.texts
        ):
            _walk(child, collector, want_text=True, depth=depth + 1)


_RETURNED_TYPES = frozenset(
    {"message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global",
     "message/global-headers"}
)  # fmt: skip


def _returned_ids_of(part: Message) -> list[str]:
    """Message-ID of a returned message or of its returned headers."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [str(item["message-id"]) for item in payload[:1] if isinstance(item, Message)
                and item["message-id"]]  # fmt: skip
    if isinstance(payload, str):
        found = _RETURNED_MESSAGE_ID.search(payload)
        return [found.group(1)] if found else []
    return []


def _choose_alternative(children: list[Message]) -> Message:
    """Plain text when the client wrote one, else the last (richest) alternative."""
    for child in children:
        if child.get_content_type() == "text/plain":
            return child
    return children[-1]


# Bounces that are not RFC 3464 reports quote the returned message after a fixed line.
_RETURNED_MESSAGE = re.compile(
    r"^(?:--- Below this line is a copy of the message\.|"
    r"-{3,} This is a copy of the message, including all the headers\. -{3,}|"
    r"-{3,} The header of the original message is following\. -{3,})\s*$",
    re.MULTILINE,
)


def _cut_returned_message(text: str) -> str:
    """qmail/Exim bounce text without the returned message (it is ours, not the client's)."""
    found = _RETURNED_MESSAGE.search(text)
    return text[: found.start()].rstrip() if found else text


_RETURNED_MESSAGE_ID = re.compile(r"^message-id:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)


def _returned_message_ids(collector: _BodyCollector, text: str) -> tuple[str, ...]:
    """The Message-IDs of the messages a bounce returns: from its RFC 3464 returned part, or
    from the copy below a qmail/Exim marker line."""
    found = list(collector.returned_ids)
    marker = _RETURNED_MESSAGE.search(text)
    if marker is not None:
        match = _RETURNED_MESSAGE_ID.search(text, marker.end())
        if match is not None:
            found.append(match.group(1))
    ids = (normalize_message_id(item) for item in found)
    return tuple(dict.fromkeys(item for item in ids if item))


def _undeclared_codec(message: Message) -> str:
    """One reading for all the 8-bit text of a message that names no charset (raw header
    bytes, text parts without a charset parameter), so that its subject and body agree: a
    two-word subject alone is too little to tell windows-1251 from koi8-r."""
    sample = bytearray()
    for name, value in message.raw_items():
        if name.lower() in _UNDECLARED_HEADERS:
            sample += str(value).encode("ascii", "surrogateescape")[:MAX_FIELD_BYTES] + b"\n"
    for index, part in enumerate(message.walk()):
        if index >= _UNDECLARED_PARTS or len(sample) >= _UNDECLARED_SAMPLE:
            break
        if part.get_content_maintype() != "text" or part.get_param("charset") is not None:
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            sample += payload[:_UNDECLARED_SAMPLE] + b"\n"
    return guess_codec(bytes(sample)) if not sample.isascii() else ""


_UNDECLARED_HEADERS = frozenset({"subject", "from", "to", "cc", "reply-to", "sender"})
_UNDECLARED_PARTS = 20
_UNDECLARED_SAMPLE = 64 * 1024


def _headers(
    message: Message, undeclared: str = ""
) -> tuple[dict[str, list[str]], tuple[tuple[str, str], ...]]:
    """The kept headers by name, and decoded in their order (Authentication-Results are
    believed by their place among the Received lines, see threading_rules.authenticity)."""
    raw: dict[str, list[str]] = {}
    ordered: list[tuple[str, str]] = []
    for name, value in message.raw_items():
        key = name.lower()
        if key in KEPT_HEADERS and len(ordered) < _MAX_KEPT_HEADERS:
            text = resolve_8bit(str(value)[:MAX_FIELD_BYTES], undeclared)
            raw.setdefault(key, []).append(text)
            ordered.append((key, text if key == "received" else decode_header_value(text)))
    return raw, tuple(ordered)


def _defects(message: Message) -> Iterator[str]:
    for part in message.walk():
        for defect in getattr(part, "defects", ()):
            yield type(defect).__name__


def parse_message(
    raw: bytes | RawMail,
    sink: ArtifactSink,
    *,
    max_attachment_bytes: int,
    max_message_bytes: int | None = None,
    max_parts: int = DEFAULT_MAX_PARTS,
) -> ParsedMessage:
    """Parse one message; malformed input degrades into recorded defects, never an exception.

    A large message is first slimmed (`parsers.streaming`): its big parts go to `sink` as they
    are read, so memory stays bounded whatever the size of the attachments.
    """
    budget = SizeBudget(
        max_attachment_bytes, max_message_bytes or 2 * max_attachment_bytes, max_parts
    )
    slim = None
    if isinstance(raw, RawMail):
        if raw.is_large:
            with raw.open() as stream:
                slim = slim_message(stream, sink, budget)
            raw = slim.data
        else:
            raw = raw.read_all()
    message = _parse_bytes(raw)
    undeclared = _undeclared_codec(message)
    raw_headers, headers = _headers(message, undeclared)
    decoded = dict(headers[::-1])  # first occurrence wins
    collector = _BodyCollector(
        sink=sink, budget=budget, parts=PartCount(budget.max_parts), slim=slim,
        cid_references=_cid_references(message), undeclared=undeclared,
    )  # fmt: skip
    _walk(message, collector, want_text=True, depth=0)
    _refuse_parts_past_cap(collector, slim)
    texts = "\n\n".join(t.strip("\n") for t in collector.texts if t.strip())
    full_text = clean_text(_cut_returned_message(texts))
    returned_ids = _returned_message_ids(collector, texts)
    senders = parse_addresses(raw_headers.get("from", []) or raw_headers.get("sender", []))
    return ParsedMessage(
        message_id=normalize_message_id(raw_headers.get("message-id", [None])[0]),
        subject=decoded.get("subject", ""),
        sender=senders[0] if senders else None,
        to=parse_addresses(raw_headers.get("to", [])),
        cc=parse_addresses(raw_headers.get("cc", [])),
        reply_to=parse_addresses(raw_headers.get("reply-to", [])),
        date=_parse_date(decoded.get("date")),
        in_reply_to=_message_ids(decoded.get("in-reply-to")),
        references=_message_ids(decoded.get("references")),
        headers=headers,
        content_type=message.get_content_type(),
        full_text=full_text,
        new_text=split_reply(full_text).new_text if full_text else "",
        attachments=tuple(collector.attachments),
        defects=tuple(collector.defects)
        + (slim.defects if slim else ())
        + tuple(dict.fromkeys(_defects(message))),
        report=collector.report,
        returned_message_ids=returned_ids,
    )


def _refuse_parts_past_cap(collector: _BodyCollector, slim: SlimMessage | None) -> None:
    """Parts past the cap (counted here or by the streaming pre-pass) as one refused entry,
    so the client and the engineers read one line about them, not 39,000."""
    skipped = collector.parts.skipped + (slim.skipped_parts if slim else 0)
    if not skipped:
        return
    size = collector.parts.skipped_bytes + (slim.skipped_bytes if slim else 0)
    noun = "part" if skipped == 1 else "parts"
    collector.defects.append(f"too_many_parts:{skipped}")
    collector.attachments.append(
        AttachmentInfo(
            filename=f"{skipped} more {noun} not processed (limit {collector.parts.limit})",
            content_type="application/octet-stream",
            kind=ArtifactKind.OTHER,
            size=size,
            sha256="",
            inline=False,
            refused="too_many_parts",
        )
    )
