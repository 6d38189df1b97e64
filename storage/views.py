"""Read models for the CLI: a ticket as the JSON of the SPEC interface contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from storage.models import Attachment, Contact, Event, Message, Participant, Ticket


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def ticket_summary(ticket: Ticket, token: str, message_count: int) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "token": token,
        "subject": ticket.subject,
        "status": ticket.status,
        "criticality": ticket.criticality,
        "organization": ticket.organization.domain if ticket.organization else None,
        "requester": ticket.requester.email,
        "messages": message_count,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
    }


def list_tickets(
    session: Session, prefix: str, *, status: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    per_ticket = select(Message.ticket_id, func.count(Message.id)).group_by(Message.ticket_id)
    counts: dict[int, int] = dict(session.execute(per_ticket).all())
    query = select(Ticket).options(
        selectinload(Ticket.organization), selectinload(Ticket.requester)
    )
    if status:
        query = query.where(Ticket.status == status)
    tickets = session.scalars(query.order_by(Ticket.id.desc()).limit(limit))
    return [ticket_summary(t, f"[{prefix} #{t.id}]", counts.get(t.id, 0)) for t in tickets]


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    """What engineers and scripts see of an attachment; `sha256` is None when it was refused."""
    artifact = attachment.artifact
    archive = artifact.listing if artifact is not None else None
    return {
        "id": attachment.id,
        "filename": attachment.filename,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.artifact_sha256,
        "inline": attachment.inline,
        "refused": attachment.refused_reason,
        "container": attachment.container,
        "flags": [flag for flag in (artifact.flags if artifact else "").split(",") if flag],
        "archive": archive,
        "purged": artifact is not None and artifact.purged_at is not None,
    }


def _message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "message_id": message.message_id,
        "direction": message.direction,
        "visibility": message.visibility,
        "kind": message.kind,
        "sender": message.sender_email,
        "sender_name": message.sender_name,
        "subject": message.subject,
        "date": _iso(message.sent_at or message.created_at),
        "text": message.text,
        "attachments": [attachment_json(a) for a in message.attachments],
    }


def ticket_detail(session: Session, ticket_id: int, prefix: str) -> dict[str, Any] | None:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return None
    # maild's own notices to engineers (out + internal) are machinery, not the conversation.
    notices = (Message.direction == "out") & (Message.visibility == "internal")
    messages = session.scalars(
        select(Message)
        .where(Message.ticket_id == ticket_id, ~notices)
        .options(selectinload(Message.attachments).selectinload(Attachment.artifact))
        .order_by(Message.id)
    ).all()
    participants = session.scalars(
        select(Participant).where(Participant.ticket_id == ticket_id).order_by(Participant.id)
    ).all()
    requester: Contact = ticket.requester
    detail = ticket_summary(ticket, f"[{prefix} #{ticket.id}]", len(messages))
    detail.update(
        requester={"email": requester.email, "name": requester.name},
        channel=ticket.channel,
        language=ticket.language,
        assignee=ticket.assignee.email if ticket.assignee else None,
        linked_ticket=ticket.linked_ticket_id,
        close_reason=ticket.close_reason,
        merged_into=ticket.merged_into_id,
        participants=[{"email": p.email, "role": p.role} for p in participants],
        messages=[_message_json(m) for m in messages],
        sla={
            "created_at": _iso(ticket.created_at),
            "first_response_at": _iso(ticket.first_response_at),
            "closed_at": _iso(ticket.closed_at),
        },
        events=[_event_json(event) for event in ticket_events(session, ticket_id)],
    )
    return detail


def ticket_events(session: Session, ticket_id: int) -> list[Event]:
    """The ticket's audit trail, oldest first."""
    return list(
        session.scalars(select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id))
    )


def _event_json(event: Event) -> dict[str, Any]:
    detail = dict(event.detail or {})
    return {
        "kind": event.kind,
        "reason": event.reason,
        "actor": event.actor,
        "at": _iso(event.created_at),
        "explanation": detail.pop("explanation", ""),
        "detail": detail,
    }


def ticket_attachments(session: Session, ticket_id: int) -> list[dict[str, Any]] | None:
    if session.get(Ticket, ticket_id) is None:
        return None
    rows = session.scalars(
        select(Attachment)
        .join(Message, Message.id == Attachment.message_id)
        .where(Message.ticket_id == ticket_id)
        .options(selectinload(Attachment.artifact))
        .order_by(Attachment.id)
    ).all()
    return [{"message": row.message_id, **attachment_json(row)} for row in rows]
