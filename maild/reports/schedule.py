"""Managers' mail on the calendar: the digest each working day at `[digest] time`, and each
report on the first working day after its period (at the same hour). Claimed once in
`scheduler_state` (a row per digest day and per report period), in the transaction that
queues the mail: a second tick, a restart or a second process sends nothing twice."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock, at_moment
from maild.config import Config
from maild.reports.digest import digest_figures, digest_html, digest_subject, digest_text
from maild.reports.figures import Period, parse_period, report
from maild.reports.mail import manager_mail
from maild.reports.render import as_html, as_text
from maild.sla import calendar_for
from storage import repositories as repo
from storage.models import SchedulerState
from worktime import DayKind, ProductionCalendar


def _claim(session: Session, name: str, now: datetime) -> bool:
    try:
        with session.begin_nested():
            session.add(SchedulerState(name=name, value=now.isoformat(), updated_at=now))
    except IntegrityError:
        return False
    return True


def _first_working_day(calendar: ProductionCalendar, day: date) -> bool:
    """No working day earlier in this month."""
    return all(
        calendar.day(date(day.year, day.month, earlier)).kind is DayKind.DAY_OFF
        for earlier in range(1, day.day)
    )


def finished_periods(today: date, zone: ZoneInfo) -> list[Period]:
    """The month (and at a quarter's start, the quarter) that ended before `today`."""
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    periods = [parse_period("monthly", f"{year}-{month:02d}", zone)]
    if today.month in (1, 4, 7, 10):
        periods.append(parse_period("quarterly", f"{year}-Q{(month + 2) // 3}", zone))
    return periods


def digest_recipients(config: Config) -> tuple[str, ...]:
    return config.digest.recipients or config.escalation.managers


def report_recipients(config: Config) -> tuple[str, ...]:
    return config.reports.recipients or config.escalation.managers


def queue_digest(config: Config, session: Session, now: datetime, to: tuple[str, ...]) -> str:
    language = config.tickets.language
    figures = digest_figures(config, session, now)
    html, images = digest_html(figures, language)
    subject = digest_subject(figures, language)
    _, raw = manager_mail(config, to=to, subject=subject, text=digest_text(figures, language),
                          html=html, images=images, now=now)  # fmt: skip
    repo.queue_outside_ticket(session, raw, purpose="digest", recipient=to[0],
                              recipients=list(to), now=now)  # fmt: skip
    return subject


def queue_report(config: Config, session: Session, period: Period, now: datetime) -> None:
    to = report_recipients(config)
    language = config.tickets.language
    numbers = report(session, period, config.plans)
    html, images = as_html(numbers, language)
    text = as_text(numbers, language)
    _, raw = manager_mail(config, to=to, subject=text.splitlines()[0], text=text, html=html,
                          images=images, now=now)  # fmt: skip
    repo.queue_outside_ticket(session, raw, purpose="report", recipient=to[0],
                              recipients=list(to), now=now)  # fmt: skip


def run_manager_mail(
    config: Config, sessions: sessionmaker[Session], clock: Clock
) -> dict[str, Any]:
    """What fell due now: {"digest": bool, "reports": [labels]}."""
    now = clock.now()
    calendar = calendar_for(config.calendar)
    local = now.astimezone(calendar.timezone)
    hour, minute = (int(part) for part in config.digest.time.split(":"))
    done: dict[str, Any] = {"digest": False, "reports": []}
    if calendar.day(local.date()).kind is DayKind.DAY_OFF or local.time() < time(hour, minute):
        return done
    with at_moment(now), sessions.begin() as session:
        to = digest_recipients(config)
        if to and _claim(session, f"digest.{local.date().isoformat()}", now):
            queue_digest(config, session, now, to)
            done["digest"] = True
        if report_recipients(config) and _first_working_day(calendar, local.date()):
            for period in finished_periods(local.date(), calendar.timezone):
                wanted = (
                    config.reports.monthly if period.kind == "monthly" else config.reports.quarterly
                )
                if wanted and _claim(session, f"report.{period.kind}.{period.label}", now):
                    queue_report(config, session, period, now)
                    done["reports"].append(period.label)
    return done
