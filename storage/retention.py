"""Retention: the client's data serves the incident only, so it leaves with the closed ticket.

An artifact is purged when every ticket that refers to it (as an attachment, or as the raw
message it arrived in, which holds the same bytes) has been closed for longer than the
retention period. The rows stay, marked `purged_at`, so a ticket's history still names the
files it had; the blobs are deleted.

Concurrency with a running daemon: the rows are locked while their files are deleted (one
transaction), and a worker that stored the same bytes a moment before re-checks its files
right before its own commit (`ArtifactStore.sync`), so it retries rather than commit a row
that points at a deleted blob.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select, update
from sqlalchemy.orm import Session

from storage.artifacts import ArtifactStore
from storage.models import Artifact, Attachment, Event, InboundMessage, Message, Ticket

PURGE_BATCH = 500


@dataclass(frozen=True, slots=True)
class PurgeCandidate:
    sha256: str
    size: int
    tickets: tuple[int, ...]


def _expired_tickets(cutoff: datetime) -> Select[Any]:
    return select(Ticket.id).where(
        Ticket.status == "closed", Ticket.closed_at.is_not(None), Ticket.closed_at < cutoff
    )


TicketFilter = Callable[[Any], ColumnElement[bool]]


def _references(which: TicketFilter) -> tuple[Select[Any, Any], Select[Any, Any]]:
    """(sha256, ticket) pairs: attachments of the tickets' messages, and their raw messages."""
    attachments = (
        select(Attachment.artifact_sha256, Message.ticket_id)
        .join(Message, Message.id == Attachment.message_id)
        .where(Attachment.artifact_sha256.is_not(None), which(Message.ticket_id))
    )
    raws = select(InboundMessage.raw_sha256, InboundMessage.ticket_id).where(
        which(InboundMessage.ticket_id)
    )
    return attachments, raws


def find_purge_candidates(session: Session, cutoff: datetime) -> list[PurgeCandidate]:
    """Artifacts referred to only by tickets closed before `cutoff`, not yet purged."""
    expired = _expired_tickets(cutoff)
    doomed: dict[str, set[int]] = {}
    for query in _references(lambda column: column.in_(expired)):
        for sha256, ticket_id in session.execute(query):
            doomed.setdefault(sha256, set()).add(ticket_id)
    if not doomed:
        return []
    kept: set[str] = set()
    for query in _references(lambda column: or_(column.is_(None), column.not_in(expired))):
        kept.update(sha256 for sha256, _ in session.execute(query) if sha256 in doomed)
    rows = session.execute(
        select(Artifact.sha256, Artifact.size).where(
            Artifact.sha256.in_(list(doomed)), Artifact.purged_at.is_(None)
        )
    )
    sizes: dict[str, int] = {}
    for sha256, size in rows:  # a Result has .keys(), so dict(rows) misreads it
        sizes[sha256] = size
    return [
        PurgeCandidate(sha256, sizes[sha256], tuple(sorted(doomed[sha256])))
        for sha256 in sorted(doomed)
        if sha256 in sizes and sha256 not in kept
    ]


def purge_artifacts(
    session: Session,
    store: ArtifactStore,
    candidates: Iterable[PurgeCandidate],
    *,
    now: datetime,
    on_purged: Callable[[PurgeCandidate], None] | None = None,
) -> int:
    """Mark and delete, in the caller's transaction; returns how many blobs were deleted.

    Files are deleted before the commit: a crash in between leaves rows that a second run
    finds again (the missing file is then simply marked), never a marked row with a file.
    """
    deleted = 0
    by_ticket: dict[int, list[str]] = {}
    for candidate in candidates:
        locked = session.execute(
            select(Artifact.sha256)
            .where(Artifact.sha256 == candidate.sha256, Artifact.purged_at.is_(None))
            .with_for_update()
        ).first()
        if locked is None:
            continue
        session.execute(
            update(Artifact).where(Artifact.sha256 == candidate.sha256).values(purged_at=now)
        )
        deleted += store.delete(candidate.sha256)
        for ticket_id in candidate.tickets:
            by_ticket.setdefault(ticket_id, []).append(candidate.sha256)
        if on_purged is not None:
            on_purged(candidate)
    for ticket_id, hashes in sorted(by_ticket.items()):
        session.add(
            Event(
                ticket_id=ticket_id, kind="artifacts_purged", reason="retention_expired",
                detail={"sha256": hashes}, created_at=now,
            )
        )  # fmt: skip
    return deleted
