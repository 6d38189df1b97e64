"""What the pipeline's stages share: the record of one message in flight and its result.

Kept apart from `maild.pipeline` so that the stages in other modules (engineer mail in
`maild.engineer`) can use it without importing the pipeline that calls them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from maild import compose
from maild.guard import GuardDecision
from parsers.classify import MessageFacts
from parsers.identity import MessageIdentity
from parsers.rawmail import RawMail
from parsers.reachability import why_unanswerable
from parsers.types import ParsedMessage, StoredBlob
from storage.models import InboundMessage, Message, OutboxMessage, Ticket
from storage.repositories import insert_row, settle_ledger_row
from threading_rules.authenticity import AuthorIdentity
from threading_rules.decide import ThreadDecision


class IngestAction(enum.StrEnum):
    NEW_TICKET = "new_ticket"
    FOLLOW_UP = "follow_up"
    IGNORED = "ignored"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class IngestResult:
    spool_id: str
    message_id: str | None
    action: IngestAction
    ticket: int | None
    reason: str
    explanation: str = ""
    decisions: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """The new ticket's other decisions: criticality and contract, each with reason and
    explanation."""

    def as_json(self, source: str | None = None) -> dict[str, Any]:
        extra = {"source": source} if source else {}
        return {
            **extra,
            "message_id": self.message_id,
            "action": str(self.action),
            "ticket": self.ticket,
            "reason": self.reason,
            "explanation": self.explanation,
            **self.decisions,
        }


@dataclass(frozen=True, slots=True)
class Preparsed:
    """A message parsed ahead by another process (`maild.parseahead`)."""

    raw: StoredBlob
    parsed: ParsedMessage
    written: tuple[Path, ...]
    """Blobs the parser wrote, not yet fsynced: the writer syncs them before its commit."""


@dataclass(frozen=True, slots=True)
class Incoming:
    spool_id: str
    raw: RawMail
    source: str
    peer: str = ""
    """The IP address that handed the message to maild's own SMTP/LMTP listener, else ""."""
    envelope_from: str | None = None
    """The listener's MAIL FROM ("" for the null reverse-path `<>`); None where unknown."""
    preparsed: Preparsed | None = None

    @classmethod
    def of(
        cls, spool_id: str, raw: bytes, source: str, peer: str = "",
        envelope_from: str | None = None,
    ) -> Incoming:  # fmt: skip
        return cls(spool_id, RawMail.of(raw), source, peer, envelope_from)


@dataclass(slots=True)
class Work:
    """What the stages learn about one message, in order; typed fields, no free-form dict."""

    incoming: Incoming
    session: Session
    identity: MessageIdentity
    inbound: InboundMessage | None = None
    parsed: ParsedMessage | None = None
    facts: MessageFacts | None = None
    guard: GuardDecision | None = None
    author: AuthorIdentity | None = None
    thread: ThreadDecision | None = None
    ticket: Ticket | None = None
    message: Message | None = None
    notes: list[str] = field(default_factory=list)
    message_id_seen: bool = False
    """An earlier message had this Message-ID: the thread stage checks for a second route."""
    ticket_participants: frozenset[str] = frozenset()
    """Who was in the ticket before this message (from the thread context)."""
    decisions: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """A new ticket's criticality and contract, for the ingest result."""


T = TypeVar("T")


def known(value: T | None) -> T:
    """Stages run in order, so an earlier stage's result is always there; if not, it is a bug."""
    if value is None:
        raise RuntimeError("a pipeline stage ran before the stage that provides its input")
    return value


def finish(work: Work, action: IngestAction, reason: str, explanation: str) -> IngestResult:
    """Write the ledger outcome and turn it into the stage's result."""
    inbound = known(work.inbound)
    ticket_id = work.ticket.id if work.ticket else None
    settle_ledger_row(
        work.session, inbound.id, state=str(action), reason=reason, explanation=explanation,
        ticket_id=ticket_id,
    )  # fmt: skip
    return IngestResult(
        work.incoming.spool_id, work.identity.message_id, action, ticket_id, reason,
        explanation, dict(work.decisions),
    )  # fmt: skip


def inbound_id(work: Work) -> int:
    return known(work.inbound).id


def queue_mail(
    session: Session,
    ticket: Ticket,
    mail: compose.OutgoingMail,
    *,
    purpose: str,
    recipient: str,
    now: datetime,
    sender: str,
    visibility: str = "public",
) -> OutboxMessage:
    """Record what we send as a ticket message (so replies thread to it) and queue it; the
    rows are written at once (`insert_row`) and the returned one is for reading only."""
    message = insert_row(
        session, Message, ticket_id=ticket.id, direction="out", visibility=visibility,
        kind=purpose, message_id=mail.message_id, sender_email=sender,
        recipients=", ".join(mail.recipients), subject=mail.subject, sent_at=now,
        created_at=now, text=mail.text, full_text=mail.text,
    )  # fmt: skip
    reachable = [address for address in mail.recipients if why_unanswerable(address) is None]
    state, last_error = "pending", None
    if not reachable:
        # Kept on the ticket for the engineers; the outbox says why it never went out.
        reasons = (why_unanswerable(address) for address in mail.recipients)
        state, last_error = "failed", "; ".join(r for r in reasons if r) or "no recipient"
    return insert_row(
        session, OutboxMessage, message_id=message.id, purpose=purpose, recipient=recipient,
        envelope_from=mail.envelope_from, recipients=",".join(reachable), raw=mail.raw,
        created_at=now, next_attempt_at=now, state=state, last_error=last_error,
    )  # fmt: skip
