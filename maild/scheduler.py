"""The one scheduler: every time-driven job of maild, run when due, its state in the database.

`run_due(app)` is a tick: it looks at every ticket that is not resolved or closed and does
what the clock asks — an escalation at each fraction of an SLA target, a reminder to a
client who keeps a ticket waiting, the automatic close after long silence. `maild tick` runs
one tick and exits (cron, tests); `maild run` ticks every `[scheduler] interval_seconds`.

Each send is claimed first in `scheduled_sends` (unique per ticket, kind and key) in the same
transaction as the mail it queues, so a second tick, a restart or a second process sends
nothing twice; a crash before the commit sends nothing and the next tick does it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from maild import compose
from maild.clock import Clock, at_moment
from maild.config import Config
from maild.deadlines import settle_outcomes, status_changes, ticket_sla
from maild.notices import ticket_engineers
from maild.reports.schedule import run_manager_mail
from maild.sla import WAITING, ClockState, calendar_for
from maild.work import queue_mail
from storage import repositories as repo
from storage.models import ScheduledSend, Ticket
from threading_rules.token import format_token
from worktime import DayKind, ProductionCalendar

log = logging.getLogger(__name__)

CLOCK_LABELS = {
    "first_response": {"ru": "Первый ответ", "en": "First response"},
    "resolution": {"ru": "Решение", "en": "Resolution"},
}


@dataclass(slots=True)
class TickReport:
    tickets: int = 0
    escalations: int = 0
    reminders: int = 0
    closed: int = 0
    digests: int = 0
    reports: int = 0
    errors: list[str] = field(default_factory=list)
    breaches: dict[str, int] = field(default_factory=dict)
    """SLA clocks (first_response, resolution) this tick found past their target."""

    @property
    def queued(self) -> int:
        """Mail this tick put in the outbox."""
        return self.escalations + self.reminders + self.closed + self.digests + self.reports

    def as_json(self) -> dict[str, object]:
        return {
            "tickets": self.tickets, "escalations": self.escalations,
            "reminders": self.reminders, "closed": self.closed, "digests": self.digests,
            "reports": self.reports, "errors": self.errors,
        }  # fmt: skip


def run_due(config: Config, sessions: sessionmaker[Session], clock: Clock) -> TickReport:
    """One tick at the clock's moment; each ticket in its own transaction."""
    now = clock.now()
    report = TickReport()
    with sessions() as session:
        ids = list(
            session.scalars(
                select(Ticket.id)
                .where(Ticket.status.not_in(("resolved", "closed")))
                .order_by(Ticket.id)
            )
        )
    try:
        sent = run_manager_mail(config, sessions, clock)
        report.digests += int(sent["digest"])
        report.reports += len(sent["reports"])
    except Exception as error:  # the managers' mail must not stop the tickets' clocks
        log.exception("scheduler: managers' mail failed")
        report.errors.append(f"managers' mail: {type(error).__name__}")
    for ticket_id in ids:
        report.tickets += 1
        try:
            with at_moment(now), sessions.begin() as session:
                ticket = session.get(Ticket, ticket_id)
                if ticket is not None and ticket.status not in ("resolved", "closed"):
                    _tick_ticket(config, session, ticket, now, report)
        except Exception as error:  # one ticket's fault must not stop the tick
            log.exception("scheduler: ticket %s failed", ticket_id)
            report.errors.append(f"ticket {ticket_id}: {type(error).__name__}")
    return report


@dataclass(frozen=True, slots=True)
class _Due:
    """One ticket at one tick."""

    config: Config
    session: Session
    ticket: Ticket
    now: datetime


def _tick_ticket(
    config: Config, session: Session, ticket: Ticket, now: datetime, report: TickReport
) -> None:
    due = _Due(config, session, ticket, now)
    status = ticket_sla(config, session, ticket, now)
    if not status.paused:
        clocks = (("first_response", status.first_response), ("resolution", status.resolution))
        for name, state in clocks:
            sent, breached = _escalate(due, name, state, status.mode)
            report.escalations += sent
            if breached:
                report.breaches[name] = report.breaches.get(name, 0) + 1
    if ticket.status == WAITING:
        _cooperation(config, session, ticket, now, report)


def _claim(session: Session, ticket_id: int, kind: str, key: str, now: datetime) -> bool:
    """True if this process is the first to do (ticket, kind, key)."""
    try:
        with session.begin_nested():
            session.add(ScheduledSend(ticket_id=ticket_id, kind=kind, key=key, created_at=now))
    except IntegrityError:
        return False
    return True


def _escalate(due: _Due, name: str, state: ClockState, mode: str) -> tuple[int, bool]:
    """(escalations queued, whether this tick is the first to see the target missed)."""
    if state.done or not state.target_minutes:
        return 0, False
    fractions = due.config.escalation.at
    reached = [f for f in fractions if state.elapsed_minutes >= f * state.target_minutes]
    if not reached:
        return 0, False
    # Only the highest fraction reached is sent: a ticket first seen late gets one notice,
    # not one per fraction it passed while nobody ticked. The lower ones are claimed too.
    highest, sent, breached = max(reached), 0, False
    for fraction in sorted(reached):
        claimed = _claim(due.session, due.ticket.id, "escalation", f"{name}:{fraction:g}", due.now)
        breached = breached or (claimed and fraction >= 1)
        if claimed and fraction == highest:
            _queue_escalation(due, name, state, mode, last=fraction == fractions[-1])
            sent = 1
    return sent, breached


def _queue_escalation(due: _Due, name: str, state: ClockState, mode: str, *, last: bool) -> None:
    config, ticket, now = due.config, due.ticket, due.now
    language = config.tickets.language
    to = ticket_engineers(config, ticket)
    if last:
        known = {address for _, address in to}
        to += [("", manager) for manager in config.escalation.managers if manager not in known]
    if not to:
        return
    token = format_token(config.token_prefix, ticket.id)
    late = state.elapsed_minutes - state.target_minutes
    headline = compose.NOTICE_SUBJECTS["escalation_breach" if late > 0 else "escalation"]
    mail = compose.engineer_notice(
        config, "escalation", ticket_id=ticket.id, token=token, subject=ticket.subject,
        to=to, answering=None, now=now, headline=headline[language],
        clock_label=CLOCK_LABELS[name][language], late_minutes=late,
        late=_duration(late, language), left=_duration(-late, language),
        percent=round(100 * state.elapsed_minutes / state.target_minutes),
        due=state.due or now,
        organization=ticket.organization.domain if ticket.organization else None,
        client_name=ticket.requester.name, client_email=ticket.requester.email,
        criticality=ticket.criticality, contract=(ticket.sla_terms or {}).get("contract"),
        mode=mode, status=ticket.status,
        assignee=(ticket.assignee.name or ticket.assignee.email) if ticket.assignee else None,
    )  # fmt: skip
    queue_mail(
        due.session, ticket, mail, purpose="escalation", recipient=to[0][1], now=now,
        sender=config.mailbox.address, visibility="internal",
    )  # fmt: skip
    told = [address for _, address in to]
    repo.add_event(
        due.session, "escalated", name, ticket_id=ticket.id,
        detail={
            "to": told, "elapsed_minutes": state.elapsed_minutes,
            "target_minutes": state.target_minutes,
            "explanation": f"{name} at {state.elapsed_minutes} of {state.target_minutes} "
            f"minutes ({mode}); told {', '.join(told)}",
        },
    )  # fmt: skip


def _duration(minutes: int, language: str) -> str:
    minutes = max(minutes, 0)
    hours, rest = divmod(minutes, 60)
    if language == "ru":
        return f"{hours} ч {rest} мин" if hours else f"{rest} мин"
    return f"{hours} h {rest} min" if hours else f"{rest} min"


# --- cooperation: reminders and the close after silence --------------------------------------


def waiting_since(session: Session, ticket_id: int) -> datetime | None:
    changes = status_changes(session, ticket_id)
    return next((c.at for c in reversed(changes) if c.new == WAITING), None)


def after_working_days(calendar: ProductionCalendar, start: datetime, days: int) -> datetime:
    """The same time of day `days` working days after `start` (in the calendar's zone)."""
    zone: ZoneInfo = calendar.timezone
    local = start.astimezone(zone)
    day: date = local.date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if calendar.day(day).kind is not DayKind.DAY_OFF:
            counted += 1
    return datetime.combine(day, time(local.hour, local.minute), tzinfo=zone)


def _cooperation(
    config: Config, session: Session, ticket: Ticket, now: datetime, report: TickReport
) -> None:
    since = waiting_since(session, ticket.id)
    if since is None:
        return
    calendar = calendar_for(config.calendar)
    settings = config.cooperation
    close_at = after_working_days(calendar, since, settings.close_after_days)
    period = since.isoformat()
    if now >= close_at:
        if _claim(session, ticket.id, "auto_close", period, now):
            _close_for_silence(config, session, ticket, now, settings.close_after_days)
            settle_outcomes(config, session, ticket, now)
            report.closed += 1
        return
    due = [d for d in settings.remind_after_days if now >= after_working_days(calendar, since, d)]
    if due and _claim(session, ticket.id, "reminder", f"{period}:{max(due)}", now):
        for earlier in due[:-1]:  # reminders a late tick skipped are not sent afterwards
            _claim(session, ticket.id, "reminder", f"{period}:{earlier}", now)
        _queue_client(config, session, ticket, now, "reminder", since=since, close_at=close_at)
        repo.add_event(
            session, "reminded", "waiting_for_client", ticket_id=ticket.id,
            detail={"explanation": f"waiting since {period}, {max(due)} working days"},
        )  # fmt: skip
        report.reminders += 1


def _close_for_silence(
    config: Config, session: Session, ticket: Ticket, now: datetime, days: int
) -> None:
    old, ticket.status = ticket.status, "closed"
    ticket.closed_at, ticket.close_reason, ticket.updated_at = now, "no_information", now
    repo.add_event(
        session, "status_changed", "no_information", ticket_id=ticket.id,
        detail={"old": old, "new": "closed"},
    )  # fmt: skip
    repo.add_event(
        session, "closed", "no_information", ticket_id=ticket.id,
        detail={"explanation": f"closed by maild: no answer for {days} working days"},
    )  # fmt: skip
    _queue_client(config, session, ticket, now, "closing", reason="no_information")


def _queue_client(
    config: Config, session: Session, ticket: Ticket, now: datetime, purpose: str, **context: object
) -> None:
    requester = ticket.requester
    latest = repo.latest_client_message(session, ticket.id)
    reply = compose.ReplyTo(
        ticket_id=ticket.id, token=format_token(config.token_prefix, ticket.id),
        subject=ticket.subject, language=ticket.language,
        client=(requester.name, requester.email),
        answering=latest.message_id if latest else None,
        references=(latest.references or "").split() if latest else (),
    )  # fmt: skip
    if purpose == "reminder":
        mail = compose.reminder(config, reply, now=now, **context)  # type: ignore[arg-type]
    else:
        mail = compose.closing_notice(config, reply, now=now, reason=str(context["reason"]))
    queue_mail(
        session, ticket, mail, purpose=purpose, recipient=requester.email, now=now,
        sender=config.mailbox.address,
    )  # fmt: skip
