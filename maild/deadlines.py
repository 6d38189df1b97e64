"""Reading a ticket's SLA state from the database: the edge around the pure `maild.sla`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from maild.config import Config
from maild.sla import SlaStatus, StatusChange, calendar_for, sla_status, ticket_terms
from storage.models import Event, Message, Ticket
from storage.repositories import flush_events, read
from worktime.arithmetic import working_minutes_excluding

_STATUS_KINDS = ("status_changed", "reopened")


_STATUS_EVENTS = (
    select(Event.created_at, Event.kind, Event.detail)
    .where(Event.ticket_id == bindparam("ticket_id"), Event.kind.in_(_STATUS_KINDS))
    .order_by(Event.id)
)


def status_changes(session: Session, ticket_id: int) -> list[StatusChange]:
    """The ticket's status history from its audit trail (a reopen is a change to open)."""
    flush_events(session, kinds=_STATUS_KINDS)
    events = read(session, _STATUS_EVENTS, ticket_id=ticket_id)
    changes = []
    for row in events:
        at, kind, detail = tuple(row)
        detail = detail or {}
        if kind == "reopened":
            changes.append(StatusChange(at, str(detail.get("old", "closed")), "open"))
        elif "new" in detail:
            changes.append(StatusChange(at, str(detail.get("old", "")), str(detail["new"])))
    return changes


def ticket_sla(config: Config, session: Session, ticket: Ticket, now: datetime) -> SlaStatus:
    return sla_status(
        ticket_terms(config, ticket.sla_terms),
        criticality=ticket.criticality,
        created_at=ticket.created_at,
        first_response_at=ticket.first_response_at,
        status=ticket.status,
        changes=status_changes(session, ticket.id),
        now=now,
        calendar=calendar_for(config.calendar),
    )


def settle_outcomes(config: Config, session: Session, ticket: Ticket, now: datetime) -> None:
    """Write the ticket's SLA outcome when it happens (first answer given, ticket resolved or
    closed, or reopened again), so that reports count in SQL what the clocks said then."""
    done = ticket.status in ("resolved", "closed")
    needs_first = ticket.first_response_at is not None and ticket.first_response_minutes is None
    needs_resolution = done and ticket.resolution_minutes is None
    if not done and ticket.resolved_at is not None:  # reopened: the resolution is open again
        ticket.resolved_at = ticket.resolution_minutes = ticket.resolution_breached = None
    if not (needs_first or needs_resolution):
        return
    status = ticket_sla(config, session, ticket, now)
    if needs_first:
        ticket.first_response_minutes = status.first_response.elapsed_minutes
        ticket.first_response_breached = status.first_response.breached
    if needs_resolution:
        ticket.resolved_at = ticket.closed_at or now
        ticket.resolution_minutes = status.resolution.elapsed_minutes
        ticket.resolution_breached = status.resolution.breached


def settle_next_response(
    config: Config, session: Session, ticket: Ticket, answer: Message, now: datetime
) -> None:
    """A later answer's time against the ticket's first-response target: the SLA-clock
    minutes from the client's oldest mail since our previous answer to this one."""
    previous = session.scalar(
        select(func.max(Message.created_at)).where(
            Message.ticket_id == ticket.id, Message.direction == "out",
            Message.kind == "answer", Message.id != answer.id,
        )
    )  # fmt: skip
    if previous is None:
        return  # the first answer: the first-response clock covers it
    waiting_since = session.scalar(
        select(func.min(Message.created_at)).where(
            Message.ticket_id == ticket.id, Message.direction == "in",
            Message.visibility == "public", Message.kind == "mail", Message.created_at > previous,
        )
    )  # fmt: skip
    if waiting_since is None:
        return  # nothing of the client's was waiting: a second note, not a response
    terms = ticket_terms(config, ticket.sla_terms)
    minutes = working_minutes_excluding(
        calendar_for(config.calendar), waiting_since, now, (), mode=terms["mode"]
    )
    answer.response_minutes = minutes
    answer.response_breached = minutes > int(terms["first_response_minutes"][ticket.criticality])
