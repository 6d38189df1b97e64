"""The figures of a period, computed in SQL: counts, medians, compliance, plans.

Every number comes from a GROUP BY or an ORDER BY ... OFFSET over the tickets table (the SLA
outcome of each ticket is settled when it happens, `maild.deadlines.settle_outcomes`), so a
quarter of 100,000 tickets costs a few queries, not a loop over rows; the same statements
run on SQLite and PostgreSQL. Percentiles are nearest-rank (the value at rank ceil(p*n)):
the same definition on both backends, and a time that some ticket really had.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from maild.config import CRITICALITIES
from maild.errors import ConfigError
from storage.models import (
    Contract,
    Engineer,
    Event,
    Message,
    Organization,
    ScheduledSend,
    Ticket,
)

NO_ORGANIZATION = "—"
# Breaches still open: the escalation at the due moment (fraction 1.0) was claimed.
_BREACH_KEYS = ("first_response:1", "resolution:1")


@dataclass(frozen=True, slots=True)
class Period:
    kind: str  # "monthly" or "quarterly"
    label: str  # "2026-10" or "2026-Q4"
    start: datetime
    end: datetime

    def previous(self) -> Period:
        months = 1 if self.kind == "monthly" else 3
        year, month = self.start.year, self.start.month - months
        if month < 1:
            year, month = year - 1, month + 12
        return _period(self.kind, year, month, self.start.tzinfo)  # type: ignore[arg-type]


def parse_period(kind: str, text: str, zone: ZoneInfo) -> Period:
    """`2026-10` (monthly) or `2026-Q4` (quarterly), bounded in the calendar's zone."""
    example = "2026-Q4" if kind == "quarterly" else "2026-10"
    pattern = r"(\d{4})-[Qq]([1-4])" if kind == "quarterly" else r"(\d{4})-(0[1-9]|1[0-2])"
    found = re.fullmatch(pattern, text.strip())
    if found is None:
        raise ConfigError(f"--period {text!r}: expected e.g. {example}")
    year, number = int(found.group(1)), int(found.group(2))
    return _period(kind, year, 3 * number - 2 if kind == "quarterly" else number, zone)


def _period(kind: str, year: int, month: int, zone: ZoneInfo) -> Period:
    months = 1 if kind == "monthly" else 3
    end_year, end_month = year + (month + months - 1) // 12, (month + months - 1) % 12 + 1
    start = datetime.combine(date(year, month, 1), time(), tzinfo=zone)
    end = datetime.combine(date(end_year, end_month, 1), time(), tzinfo=zone)
    label = f"{year}-{month:02d}" if kind == "monthly" else f"{year}-Q{(month + 2) // 3}"
    return Period(kind, label, start, end)


def _within(column: Any, period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)


def organization_name() -> Any:
    """A ticket's organisation in reports: its contract's name, else its mail domain."""
    return func.coalesce(Contract.name, Organization.domain, literal(NO_ORGANIZATION))


def _tickets() -> Any:
    return (
        select()
        .select_from(Ticket)
        .outerjoin(Contract, Contract.id == Ticket.contract_id)
        .outerjoin(Organization, Organization.id == Ticket.organization_id)
    )


def _open_breaches(period: Period) -> Any:
    """Tickets created in the period that are still open and past a due moment."""
    claimed = (
        select(ScheduledSend.ticket_id)
        .where(ScheduledSend.kind == "escalation", ScheduledSend.key.in_(_BREACH_KEYS))
        .distinct()
    )
    return and_(
        _within(Ticket.created_at, period),
        or_(Ticket.resolved_at.is_(None), Ticket.resolved_at >= period.end),
        Ticket.id.in_(claimed),
    )


def _compliance(met: int, counted: int) -> float | None:
    return round(100 * met / counted, 1) if counted else None


def figures(session: Session, period: Period) -> dict[str, Any]:
    """The JSON of a report for one period (without `previous` and `plans`)."""
    created = _within(Ticket.created_at, period)
    closed = _within(Ticket.closed_at, period)
    resolved = _within(Ticket.resolved_at, period)
    answered = _within(Ticket.first_response_at, period)
    open_at_end = and_(
        Ticket.created_at < period.end,
        or_(Ticket.resolved_at.is_(None), Ticket.resolved_at >= period.end),
    )
    totals = session.execute(
        select(count_if(created), count_if(closed), count_if(open_at_end))
        .select_from(Ticket)
        .where(Ticket.created_at < period.end)
        .where(or_(Ticket.resolved_at.is_(None), Ticket.resolved_at >= period.start, closed))
    ).one()
    return {
        "period": period.label,
        "kind": period.kind,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "tickets": {"created": totals[0], "closed": totals[1], "open_at_end": totals[2]},
        "by_organization": _by_organization(session, period),
        "by_engineer": _by_engineer(session, period),
        "by_channel": _counted_by(session, Ticket.channel, created),
        "by_criticality": _counted_by(session, Ticket.criticality, created),
        "closing_reasons": _counted_by(session, Ticket.close_reason, closed),
        "first_response_minutes": _percentiles(session, Ticket.first_response_minutes, answered),
        "resolution_minutes": _percentiles(session, Ticket.resolution_minutes, resolved),
        "sla_compliance": _sla_compliance(session, period, None),
        "sla_compliance_by_criticality": {
            level: _sla_compliance(session, period, None, level) for level in CRITICALITIES
        },
        "reopen_rate": _reopen_rate(session, period),
        "breached_open": session.scalar(select(func.count()).where(_open_breaches(period))) or 0,
        "per_day": _per_day(session, period),
    }


def _per_day(session: Session, period: Period) -> list[tuple[str, int, int]]:
    days: list[date] = []
    day = period.start.date()
    while day < period.end.date():
        days.append(day)
        day += timedelta(days=1)
    return created_and_closed_per_day(session, days, period.start.tzinfo)  # type: ignore[arg-type]


def created_and_closed_per_day(
    session: Session, days: Sequence[date], zone: ZoneInfo
) -> list[tuple[str, int, int]]:
    """Created and closed on each calendar day, in one query of paired sums (the calendar's
    days, whatever zone the database runs in) over the rows those days touch."""
    if not days:
        return []
    bounds = [day_bounds(day, zone) for day in days]
    columns = []
    for start, end in bounds:
        columns.append(count_if(and_(Ticket.created_at >= start, Ticket.created_at < end)))
        columns.append(count_if(and_(Ticket.closed_at >= start, Ticket.closed_at < end)))
    first, last = bounds[0][0], bounds[-1][1]
    touched = or_(
        and_(Ticket.created_at >= first, Ticket.created_at < last),
        and_(Ticket.closed_at >= first, Ticket.closed_at < last),
    )
    row = session.execute(select(*columns).select_from(Ticket).where(touched)).one()
    return [(day.isoformat(), int(row[2 * i]), int(row[2 * i + 1])) for i, day in enumerate(days)]


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)


def count_if(condition: Any) -> Any:
    """SUM(CASE WHEN condition THEN 1 ELSE 0 END), 0 on no rows: counts many things in one scan."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _reopen_rate(session: Session, period: Period) -> float | None:
    """Per cent of the tickets resolved or closed in the period that were reopened in it."""
    reopened = session.scalar(
        select(func.count(func.distinct(Event.ticket_id))).where(
            Event.kind == "reopened", _within(Event.created_at, period)
        )
    )
    done = session.scalar(
        select(func.count())
        .select_from(Ticket)
        .where(or_(_within(Ticket.resolved_at, period), _within(Ticket.closed_at, period)))
    )
    return _compliance(int(reopened or 0), int(done or 0))


def _counted_by(session: Session, column: Any, condition: Any) -> dict[str, int]:
    rows = session.execute(
        select(column, func.count()).where(condition, column.is_not(None)).group_by(column)
    )
    return {str(key): int(count) for key, count in sorted(rows, key=lambda row: str(row[0]))}


def _percentiles(session: Session, column: Any, condition: Any) -> dict[str, int | None]:
    where = and_(condition, column.is_not(None))
    total = session.scalar(select(func.count()).select_from(Ticket).where(where)) or 0
    result: dict[str, int | None] = {"count": total}
    for name, share in (("median", 0.5), ("p90", 0.9)):
        if not total:
            result[name] = None
            continue
        rank = max(math.ceil(share * total), 1)
        result[name] = session.scalar(
            select(column).where(where).order_by(column).offset(rank - 1).limit(1)
        )
    return result


def _sla_compliance(
    session: Session, period: Period, contract: str | None, criticality: str | None = None
) -> dict[str, Any]:
    """Per cent that met the target: first responses given in the period; next responses
    (later answers to the client's mail) given in the period; resolutions in the period plus
    the still-open tickets of the period already past due."""
    scope = and_(
        (Contract.name == contract) if contract is not None else literal(True),
        (Ticket.criticality == criticality) if criticality is not None else literal(True),
    )
    answered, resolved = (
        _within(Ticket.first_response_at, period),
        _within(Ticket.resolved_at, period),
    )
    row = session.execute(
        _tickets()
        .add_columns(
            count_if(and_(answered, Ticket.first_response_breached.is_(False))),
            count_if(and_(answered, Ticket.first_response_breached.is_not(None))),
            count_if(and_(resolved, Ticket.resolution_breached.is_(False))),
            count_if(and_(resolved, Ticket.resolution_breached.is_not(None))),
            count_if(_open_breaches(period)),
        )
        .where(scope)
        .where(or_(answered, resolved, _within(Ticket.created_at, period)))
    ).one()
    first_met, first_all, done_met, done_all, open_late = (int(value) for value in row)
    replies = session.execute(
        select(
            count_if(Message.response_breached.is_(False)),
            count_if(Message.response_breached.is_not(None)),
        )
        .select_from(Message)
        .join(Ticket, Ticket.id == Message.ticket_id)
        .outerjoin(Contract, Contract.id == Ticket.contract_id)
        .where(scope, _within(Message.created_at, period), Message.kind == "answer")
    ).one()
    return {
        "first_response": _compliance(first_met, first_all),
        "next_responses": _compliance(int(replies[0]), int(replies[1])),
        "resolution": _compliance(done_met, done_all + open_late),
    }


def _by_organization(session: Session, period: Period) -> list[dict[str, Any]]:
    name = organization_name()
    rows = session.execute(
        _tickets()
        .add_columns(
            name.label("name"),
            func.sum(case((_within(Ticket.created_at, period), 1), else_=0)),
            func.sum(case((_within(Ticket.closed_at, period), 1), else_=0)),
            func.max(Contract.name),
        )
        .where(or_(_within(Ticket.created_at, period), _within(Ticket.closed_at, period),
                   _within(Ticket.first_response_at, period), _within(Ticket.resolved_at, period)))
        .group_by(name)
        .order_by(name)
    ).all()  # fmt: skip
    result = []
    for org, created, closed, contract in rows:
        compliance = _sla_compliance(session, period, contract) if contract else None
        result.append({
            "name": org, "contract": contract, "created": int(created or 0),
            "closed": int(closed or 0), "sla_compliance": compliance,
        })  # fmt: skip
    return result


def _by_engineer(session: Session, period: Period) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            Engineer.email, Engineer.name,
            func.sum(case((_within(Ticket.created_at, period), 1), else_=0)),
            func.sum(case((_within(Ticket.closed_at, period), 1), else_=0)),
            func.sum(case((and_(Ticket.created_at < period.end,
                                or_(Ticket.resolved_at.is_(None),
                                    Ticket.resolved_at >= period.end)), 1), else_=0)),
        )
        .join(Ticket, Ticket.assignee_id == Engineer.id)
        .where(Ticket.created_at < period.end)
        .where(or_(Ticket.resolved_at.is_(None), Ticket.resolved_at >= period.start,
                   _within(Ticket.closed_at, period)))
        .group_by(Engineer.email, Engineer.name)
        .order_by(Engineer.email)
    ).all()  # fmt: skip
    return [
        {"email": email, "name": name, "created": int(created or 0),
         "closed": int(closed or 0), "open_at_end": int(still or 0)}
        for email, name, created, closed, still in rows
        if created or closed or still
    ]  # fmt: skip


# --- plans -----------------------------------------------------------------------------------

PLAN_METRICS = {
    # metric: (where in the figures, a better value is higher?)
    "sla_first_response": (("sla_compliance", "first_response"), True),
    "sla_resolution": (("sla_compliance", "resolution"), True),
    "median_first_response_minutes": (("first_response_minutes", "median"), False),
    "median_resolution_minutes": (("resolution_minutes", "median"), False),
    "open_at_end": (("tickets", "open_at_end"), False),
}


def plan_results(
    session: Session, period: Period, numbers: dict[str, Any], plans: Sequence[Any]
) -> list[dict[str, Any]]:
    """Plan against fact for the plans of this period (or of every period)."""
    results = []
    for plan in plans:
        if plan.period and plan.period != period.label:
            continue
        (section, key), higher = PLAN_METRICS[plan.metric]
        if plan.contract and section == "sla_compliance":
            actual = _sla_compliance(session, period, plan.contract)[key]
        else:
            actual = numbers[section][key]
        met = None
        if actual is not None:
            met = actual >= plan.target if higher else actual <= plan.target
        results.append({
            "metric": plan.metric, "contract": plan.contract, "target": plan.target,
            "actual": actual, "met": met,
        })  # fmt: skip
    return results


def report(session: Session, period: Period, plans: Sequence[Any] = ()) -> dict[str, Any]:
    numbers = figures(session, period)
    numbers["plans"] = plan_results(session, period, numbers, plans)
    numbers["previous"] = figures(session, period.previous())
    return numbers
