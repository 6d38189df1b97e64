"""The quarantine: messages the pipeline could not take, kept raw until a person decides.

A quarantined ledger row blocks nothing (see `repositories.ledger_matches`): after a fix, the
same message goes through again with `maild ingest --requeue ID`, and its old row is marked
`requeued` so that the list shows only what still waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import InboundMessage

QUARANTINED = "quarantined"
REQUEUED = "requeued"


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    id: int
    spool_id: str
    source: str
    message_id: str | None
    raw_sha256: str
    raw_size: int
    reason: str
    explanation: str
    received_at: datetime

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id, "spool_id": self.spool_id, "source": self.source,
            "message_id": self.message_id, "raw_sha256": self.raw_sha256,
            "size": self.raw_size, "reason": self.reason, "explanation": self.explanation,
            "received_at": self.received_at.isoformat(),
        }  # fmt: skip


def _view(row: InboundMessage) -> QuarantinedMessage:
    return QuarantinedMessage(
        row.id, row.spool_id, row.source, row.message_id, row.raw_sha256, row.raw_size,
        row.reason, row.explanation, row.received_at,
    )  # fmt: skip


def list_quarantined(session: Session, ids: list[int] | None = None) -> list[QuarantinedMessage]:
    query = select(InboundMessage).where(InboundMessage.state == QUARANTINED)
    if ids is not None:
        query = query.where(InboundMessage.id.in_(ids))
    return [_view(row) for row in session.scalars(query.order_by(InboundMessage.id))]


def mark_requeued(session: Session, ledger_id: int, outcome: str) -> None:
    row = session.get(InboundMessage, ledger_id)
    if row is not None and row.state == QUARANTINED:
        row.state = REQUEUED
        row.explanation = f"{row.explanation} | requeued: {outcome}"[:2000]
