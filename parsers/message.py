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
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.message import Message

from parsers.attachments import classify_attachment, sanitize_filename
from parsers.charsets import canonical_codec, decode_bytes
from parsers.html_text import html_to_text
from parsers.identity import normalize_message_id
from parsers.quotes import split_reply
from parsers.types import (
    Address,
    ArtifactSink,
    AttachmentInfo,
    DeliveryReport,
    ParsedMessage,
)

log = logging.getLogger(__name__)

# Headers that later stages read; everything else stays in the raw message only.
KEPT_HEADERS = frozenset({
    "subject", "from", "sender", "to", "cc", "reply-to", "date", "message-id", "in-reply-to",
    "references", "auto-submitted", "precedence", "list-id", "list-unsubscribe", "list-post",
    "x-autoreply", "x-autorespond", "x-auto-response-suppress", "return-path", "x-loop",
    "x-maild-loop", "authentication-results", "content-type", "x-mailer", "user-agent",
    "x-failed-recipients", "delivered-to",
})  # fmt: skip
MAX_MIME_DEPTH = 30
_SNIFF_BYTES = 4096


_ADDRESS_FALLBACK = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
# An address we could write back to: something@domain.tld, no spaces, no brackets.
_USABLE_ADDRESS = re.compile(
    r"[^@\s<>()\[\],;:\\\"]+@[^@\s<>()\[\],;:\\\"]+\.[^@\s<>()\[\],;:\\\".]+"
)
_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """No NUL (PostgreSQL refuses it) and no lone surrogates (no database can store them)."""
    return _UNSAFE_TEXT.sub("\ufffd", text) if _UNSAFE_TEXT.search(text) else text


def resolve_8bit(value: str) -> str:
    """Raw 8-bit header bytes (RFC 6532 UTF-8, or a legacy charset nobody declared) to text."""
    if any("\udc80" <= char <= "\udcff" for char in value):
        return decode_bytes(value.encode("ascii", "surrogateescape"), None)[0]
    return value


def decode_header_value(value: str) -> str:
    """RFC 2047 words, raw 8-bit bytes and folding, to one line of storable text."""
    return clean_text(_decode_header_value(resolve_8bit(value)))


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
        if codec and codec != "ascii":
            try:
                pieces.append(chunk.decode(codec))
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
    max_attachment_bytes: int
    texts: list[str] = field(default_factory=list)
    attachments: list[AttachmentInfo] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    report: DeliveryReport | None = None


def _part_text(part: Message, collector: _BodyCollector) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except (ValueError, LookupError):
        charset = None
    text, defect = decode_bytes(payload, charset)
    if defect:
        collector.defects.append(defect)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_subtype() == "html":
        return html_to_text(text)
    return text


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, HeaderParseError):
        return None
    if name is None:
        param = part.get_param("name")
        name = param if isinstance(param, str) else None
    return decode_header_value(name) if name else None


def _is_attachment(part: Message, filename: str | None) -> bool:
    if part.get_content_disposition() == "attachment" or filename:
        return True
    return part.get_content_maintype() not in ("text", "multipart")


def _store_attachment(part: Message, filename: str | None, collector: _BodyCollector) -> None:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0)
        if not isinstance(inner, Message):
            collector.defects.append("forwarded_message_undecodable")
            return
        payload: bytes | None = inner.as_bytes()
        filename = filename or f"{decode_header_value(str(inner.get('subject', 'message')))}.eml"
    else:
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else None
    safe_name = sanitize_filename(filename)
    if payload is None:
        collector.defects.append("attachment_undecodable")
        return
    if len(payload) > collector.max_attachment_bytes:
        collector.defects.append(f"attachment_too_large:{safe_name}:{len(payload)}")
        return
    blob = collector.sink.put(payload)
    content_type = part.get_content_type()
    collector.attachments.append(
        AttachmentInfo(
            filename=safe_name,
            content_type=content_type,
            kind=classify_attachment(safe_name, content_type, payload[:_SNIFF_BYTES]),
            size=blob.size,
            sha256=blob.sha256,
            inline=part.get_content_disposition() == "inline" or bool(part.get("content-id")),
        )
    )


def _delivery_report(part: Message) -> DeliveryReport | None:
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        return None
    recipients: list[str] = []
    action = status = ""
    for block in blocks:
        if not isinstance(block, Message):
            continue
        value = block.get("final-recipient") or block.get("original-recipient")
        address = str(value or "").rpartition(";")[2].strip().strip("<>").lower()
        if address and address not in recipients:
            recipients.append(address)
        action = action or str(block.get("action", "")).strip().lower()
        status = status or str(block.get("status", "")).strip()
    return DeliveryReport(tuple(recipients), action, status)


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
        collector.defects.append("multipart_without_boundary")
        if want_text:
            collector.texts.append(_part_text(part, collector))
        return
    if content_type in ("text/plain", "text/html") and not _is_attachment(part, filename):
        if want_text:
            collector.texts.append(_part_text(part, collector))
        return
    _store_attachment(part, filename, collector)


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
        _store_attachment(part, _filename(part), collector)
        return
    if subtype == "alternative" and children:
        chosen = _choose_alternative(children)
        for child in children:
            _walk(child, collector, want_text=want_text and child is chosen, depth=depth + 1)
        return
    if subtype == "report":
        _walk_report(children, collector, want_text=want_text, depth=depth)
        return
    for child in children:
        _walk(child, collector, want_text=want_text, depth=depth + 1)


def _walk_report(
    children: list[Message], collector: _BodyCollector, *, want_text: bool, depth: int
) -> None:
    """A DSN: the human text and the machine fields; the returned original is ours, not data."""
    for child in children:
        if child.get_content_type() == "message/delivery-status":
            collector.report = _delivery_report(child)
        elif (
            want_text
            and child.get_content_maintype() in ("text", "multipart")
            and not collector.texts
        ):
            _walk(child, collector, want_text=True, depth=depth + 1)


def _choose_alternative(children: list[Message]) -> Message:
    """Plain text when the client wrote one, else the last (richest) alternative."""
    for child in children:
        if child.get_content_type() == "text/plain":
            return child
    return children[-1]


def _headers(message: Message) -> tuple[dict[str, list[str]], tuple[tuple[str, str], ...]]:
    raw: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        key = name.lower()
        if key in KEPT_HEADERS:
            raw.setdefault(key, []).append(resolve_8bit(str(value)))
    decoded = tuple(
        (key, decode_header_value(value)) for key, values in raw.items() for value in values
    )
    return raw, decoded


def _defects(message: Message) -> Iterator[str]:
    for part in message.walk():
        for defect in getattr(part, "defects", ()):
            yield type(defect).__name__


def parse_message(raw: bytes, sink: ArtifactSink, *, max_attachment_bytes: int) -> ParsedMessage:
    """Parse one message; malformed input degrades into recorded defects, never an exception."""
    message = email.message_from_bytes(raw)
    raw_headers, headers = _headers(message)
    decoded = dict(headers[::-1])  # first occurrence wins
    collector = _BodyCollector(sink=sink, max_attachment_bytes=max_attachment_bytes)
    _walk(message, collector, want_text=True, depth=0)
    full_text = clean_text("\n\n".join(t.strip("\n") for t in collector.texts if t.strip()))
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
        defects=tuple(collector.defects) + tuple(dict.fromkeys(_defects(message))),
        report=collector.report,
    )
