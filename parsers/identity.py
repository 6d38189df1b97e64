"""Who a message is, before it is parsed: the keys that make ingestion idempotent."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from parsers.rawmail import RawMail

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_IDENTITY_HEADERS = re.compile(rb"^(?:from|date|subject):.*$", re.IGNORECASE | re.MULTILINE)
_ANGLE_ID = re.compile(rb"<([^<>\s]+)>")
_NOT_IN_ID = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_STREAM_HEAD = 1024 * 1024
_STREAM_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MessageIdentity:
    message_id: str | None
    raw_sha256: str
    dedup_key: str
    """Message-ID plus a hash of the body: the same message relayed twice (different
    Received lines) is one message; a different body under a reused Message-ID is not."""


def normalize_message_id(value: str | bytes | None) -> str | None:
    """`<Abc@x>` -> `Abc@x`; None for an empty or absent id."""
    if value is None:
        return None
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    match = _ANGLE_ID.search(data)
    text = (match.group(1) if match else data.strip()).decode("utf-8", "replace")
    # An id has no spaces or controls (RFC 5322 msg-id); one that had them could carry a line
    # break into the In-Reply-To and References of our answer.
    return _NOT_IN_ID.sub("", text)[:900] or None


def identify_message(raw: bytes | RawMail) -> MessageIdentity:
    if isinstance(raw, RawMail):
        if raw.is_large:
            return _identify_streaming(raw)
        raw = raw.read_all()
    split = _HEADER_END.search(raw)
    header_block = raw[: split.start()] if split else raw
    body = raw[split.end() :] if split else b""
    message_id, digest = _identity_digest(header_block)
    digest.update(body.replace(b"\r\n", b"\n"))
    return MessageIdentity(
        message_id=message_id,
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        dedup_key=digest.hexdigest(),
    )


def _identity_digest(header_block: bytes) -> tuple[str | None, hashlib._Hash]:
    found = _MESSAGE_ID.search(header_block)
    message_id = normalize_message_id(found.group(1)) if found else None
    digest = hashlib.sha256()
    if message_id:
        digest.update(message_id.encode())
    else:
        for line in _IDENTITY_HEADERS.findall(header_block):
            digest.update(line.rstrip(b"\r"))
    digest.update(b"\0")
    return message_id, digest


def _identify_streaming(raw: RawMail) -> MessageIdentity:
    """The same keys as the in-memory path, read in chunks (headers within the first MiB)."""
    whole = hashlib.sha256()
    with raw.open() as handle:
        head = handle.read(_STREAM_HEAD)
        whole.update(head)
        split = _HEADER_END.search(head)
        message_id, digest = _identity_digest(head[: split.start()] if split else head)
        carry = head[split.end() :] if split else b""
        while chunk := handle.read(_STREAM_CHUNK):
            whole.update(chunk)
            carry += chunk
            # A CR at the end may be the first half of a CRLF split between two reads.
            keep = 1 if carry.endswith(b"\r") else 0
            digest.update(carry[: len(carry) - keep].replace(b"\r\n", b"\n"))
            carry = carry[len(carry) - keep :]
        digest.update(carry.replace(b"\r\n", b"\n"))
    return MessageIdentity(message_id, whole.hexdigest(), digest.hexdigest())
