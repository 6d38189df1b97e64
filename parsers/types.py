"""Value types that the parse stage hands to the rest of the pipeline."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from parsers.archives import ArchiveListing


class ArtifactKind(enum.StrEnum):
    """What an attachment is to an engineer, per the regulation's list of technical information."""

    DUMP = "dump"
    LOG = "log"
    SCREENSHOT = "screenshot"
    ARCHIVE = "archive"
    CONFIG = "config"
    DOCUMENT = "document"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox; `email` is lower-cased for comparison, `name` is decoded for display."""

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What the artifact store answers after taking the bytes of one attachment."""

    sha256: str
    size: int


class BlobWriter(Protocol):
    """One blob streamed into the store: `finish` stores it, `abort` forgets it."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def finish(self) -> StoredBlob: ...

    def abort(self) -> None: ...


class ArtifactSink(Protocol):
    """Where the parser puts attachment bytes; the storage layer implements it."""

    def put(self, data: bytes) -> StoredBlob: ...

    def writer(self) -> BlobWriter: ...

    def open(self, sha256: str) -> BinaryIO:
        """A stored blob, readable and seekable (archives are listed from it)."""
        ...


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    filename: str
    content_type: str
    kind: ArtifactKind
    size: int
    sha256: str
    """Empty when the attachment was refused (nothing stored)."""
    inline: bool
    refused: str | None = None
    """Why it was not stored: attachment_too_large, message_too_large, or too_many_parts (one
    entry then stands for every part past `[artifacts] max_parts`: its name says how many)."""
    archive: ArchiveListing | None = None
    container: str | None = None
    """The winmail.dat or forwarded .eml it was unpacked from."""


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Everything later stages need to know about one message, decoded and immutable."""

    message_id: str | None
    subject: str
    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    """Decoded headers that the guard and threading look at (lower-case names), in order."""
    content_type: str
    full_text: str
    new_text: str
    attachments: tuple[AttachmentInfo, ...]
    defects: tuple[str, ...]
    report: DeliveryReport | None = None
    returned_message_ids: tuple[str, ...] = ()
    """A bounce's returned message(s): which of our messages did not arrive."""

    def header(self, name: str) -> str | None:
        """First value of a header by case-insensitive name."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The machine-readable part of an RFC 3464 delivery status notification."""

    failed_recipients: tuple[str, ...]
    """Recipients whose Action is failed (a "delayed" or "delivered" report names none)."""
    action: str
    status: str
    diagnostic: str = ""
