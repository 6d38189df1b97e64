"""The managers' daily digest: what happened the day before and what needs them today.

Counts come from SQL; only the few tickets the digest lists by name (breached or at risk,
the oldest open) get their SLA clocks computed. A manager should see in ten seconds what
needs them today, so the subject carries the one number that matters most: open tickets
past a due moment.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from maild.compose import CHANNEL_LABELS
from maild.config import Config
from maild.deadlines import ticket_sla
from maild.reports.figures import (
    count_if,
    created_and_closed_per_day,
    day_bounds,
    organization_name,
)
from storage.models import (
    Contract,
    Engineer,
    Event,
    Message,
    Organization,
    OutboxMessage,
    ScheduledSend,
    Ticket,
)
from threading_rules.token import format_token

OPEN = ("new", "open")
LISTED = 20
_AT_RISK_KEYS = ("first_response:0.75", "resolution:0.75", "first_response:1", "resolution:1")


def digest_figures(config: Config, session: Session, now: datetime) -> dict[str, Any]:
    zone = ZoneInfo(config.calendar.timezone)
    today = now.astimezone(zone).date()
    start, end = day_bounds(today - timedelta(days=1), zone)

    def yesterday(column: Any) -> Any:
        return and_(column >= start, column < end)

    counts = session.execute(
        select(
            count_if(yesterday(Ticket.created_at)),
            count_if(yesterday(Ticket.first_response_at)),
            count_if(and_(yesterday(Ticket.resolved_at), Ticket.status == "resolved")),
            count_if(yesterday(Ticket.closed_at)),
            count_if(Ticket.status.in_(OPEN)),
            count_if(Ticket.status == "waiting"),
        ).select_from(Ticket)
    ).one()
    answers = session.scalar(
        select(func.count()).select_from(Message).where(
            Message.direction == "out", Message.visibility == "public",
            Message.kind == "answer", yesterday(Message.created_at),
        )
    )  # fmt: skip
    return {
        "date": today.isoformat(),
        "yesterday": (today - timedelta(days=1)).isoformat(),
        "day_before": {
            "new": counts[0],
            "answered": counts[1],
            "answers": answers or 0,
            "resolved": counts[2],
            "closed": counts[3],
        },
        "now": {"open": counts[4], "waiting": counts[5]},
        "at_risk": _at_risk(config, session, now),
        "oldest_open": _oldest(config, session),
        "load": _load(session),
        "security": _events(session, yesterday(Event.created_at), Event.kind == "security"),
        "conduct": _events(
            session,
            yesterday(Event.created_at),
            and_(Event.kind == "closed", Event.reason == "conduct"),
        ),
        "delivery_failures": _failures(session, yesterday),
        "per_day": _per_day(session, today, zone),
    }


def _ticket_row(config: Config, ticket: Ticket, organization: str) -> dict[str, Any]:
    return {
        "token": format_token(config.token_prefix, ticket.id), "subject": ticket.subject,
        "organization": organization, "criticality": ticket.criticality,
        "assignee": (ticket.assignee.name or ticket.assignee.email) if ticket.assignee else None,
        "status": ticket.status, "channel": ticket.channel,
    }  # fmt: skip


def _with_organization() -> Any:
    return (
        select(Ticket, organization_name())
        .outerjoin(Contract, Contract.id == Ticket.contract_id)
        .outerjoin(Organization, Organization.id == Ticket.organization_id)
    )


def _at_risk(config: Config, session: Session, now: datetime) -> list[dict[str, Any]]:
    """Open tickets past 75% of a target (the scheduler claimed an escalation), worst first."""
    flagged = select(ScheduledSend.ticket_id).where(
        ScheduledSend.kind == "escalation", ScheduledSend.key.in_(_AT_RISK_KEYS)
    )
    rows = session.execute(
        _with_organization()
        .where(Ticket.id.in_(flagged), Ticket.status.not_in(("resolved", "closed")))
        .order_by(Ticket.id)
        .limit(LISTED * 5)
    ).all()
    listed = []
    for ticket, organization in rows:
        status = ticket_sla(config, session, ticket, now)
        clocks = [c for c in (status.first_response, status.resolution) if not c.done]
        if not clocks:
            continue
        worst = max(clocks, key=lambda clock: clock.elapsed_minutes - clock.target_minutes)
        row = _ticket_row(config, ticket, organization)
        row["late_minutes"] = worst.elapsed_minutes - worst.target_minutes
        row["clock"] = "first_response" if worst is status.first_response else "resolution"
        row["breached"] = worst.breached
        listed.append(row)
    listed.sort(key=lambda row: -row["late_minutes"])
    return listed[:LISTED]


def _oldest(config: Config, session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        _with_organization()
        .where(Ticket.status.not_in(("resolved", "closed")))
        .order_by(Ticket.created_at, Ticket.id)
        .limit(5)
    ).all()
    result = []
    for ticket, organization in rows:
        row = _ticket_row(config, ticket, organization)
        row["created_at"] = ticket.created_at.isoformat()
        result.append(row)
    return result


def _load(session: Session) -> list[dict[str, Any]]:
    breached = select(ScheduledSend.ticket_id).where(
        ScheduledSend.kind == "escalation",
        ScheduledSend.key.in_(("first_response:1", "resolution:1")),
    )
    rows = session.execute(
        select(
            func.coalesce(Engineer.name, Engineer.email), Engineer.email,
            func.count(Ticket.id), count_if(Ticket.id.in_(breached)),
        )
        .select_from(Ticket)
        .outerjoin(Engineer, Engineer.id == Ticket.assignee_id)
        .where(Ticket.status.not_in(("resolved", "closed")))
        .group_by(Engineer.name, Engineer.email)
        .order_by(func.count(Ticket.id).desc())
    ).all()  # fmt: skip
    return [
        {"engineer": (name or email) if email else None, "open": int(count),
         "breached": int(late)}
        for name, email, count, late in rows
    ]  # fmt: skip


def _events(session: Session, when: Any, which: Any) -> dict[str, Any]:
    rows = session.execute(
        select(Event.reason, func.count()).where(when, which).group_by(Event.reason)
    ).all()
    return {"total": sum(int(count) for _, count in rows),
            "by_reason": {reason: int(count) for reason, count in sorted(rows)}}  # fmt: skip


def _failures(session: Session, yesterday: Any) -> dict[str, int]:
    failed = session.scalar(
        select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.state == "failed", yesterday(OutboxMessage.created_at)
        )
    )  # fmt: skip
    bounces = session.scalar(
        select(func.count()).select_from(Event).where(
            Event.kind == "bounce", yesterday(Event.created_at)
        )
    )  # fmt: skip
    return {"outbox_failed": failed or 0, "bounces": bounces or 0}


def _per_day(session: Session, today: date, zone: ZoneInfo) -> list[tuple[str, int, int]]:
    """Created and closed on each of the last 14 days."""
    days = [today - timedelta(days=offset) for offset in range(14, 0, -1)]
    return created_and_closed_per_day(session, days, zone)


# --- the mail ----------------------------------------------------------------------------------

DIGEST_LABELS = {
    "ru": {
        "subject": "Сводка поддержки за {date}: нарушений SLA — {breaches}",
        "title": "Сводка технической поддержки на {date}",
        "day_before": "Вчера ({day})", "new": "новых обращений",
        "answered": "получили первый ответ",
        "answers": "ответов клиентам", "resolved": "решено", "closed": "закрыто",
        "now": "Сейчас", "open": "открытых", "waiting": "ждут ответа клиента",
        "at_risk": "Нарушен срок или близко к нему", "late": "просрочено на {minutes} мин",
        "left": "осталось {minutes} мин", "first_response": "первый ответ",
        "resolution": "решение", "oldest": "Самые старые открытые обращения",
        "load": "Нагрузка инженеров (открытые / из них просрочено)", "nobody": "не назначено",
        "security": "События безопасности вчера", "conduct": "Закрыто за нарушение этикета",
        "failures": "Сбои доставки вчера: не отправлено {outbox}, возвратов {bounces}",
        "none": "нет", "volume": "Обращения за 14 дней", "load_chart": "Нагрузка инженеров",
        "breaches": "нарушений SLA",
    },
    "en": {
        "subject": "Support digest for {date}: {breaches} SLA breaches",
        "title": "Technical support digest for {date}",
        "day_before": "Yesterday ({day})", "new": "new tickets", "answered": "first answers",
        "answers": "answers to clients", "resolved": "resolved", "closed": "closed",
        "now": "Now", "open": "open", "waiting": "waiting for the client",
        "at_risk": "Past due or close to it", "late": "{minutes} min late",
        "left": "{minutes} min left", "first_response": "first response",
        "resolution": "resolution", "oldest": "Oldest open tickets",
        "load": "Engineers' load (open / past due)", "nobody": "unassigned",
        "security": "Security events yesterday", "conduct": "Closed for conduct",
        "failures": "Delivery failures yesterday: {outbox} not sent, {bounces} bounces",
        "none": "none", "volume": "Tickets over 14 days", "load_chart": "Engineers' load",
        "breaches": "SLA breaches",
    },
}  # fmt: skip


def breaches(digest: dict[str, Any]) -> int:
    return sum(1 for row in digest["at_risk"] if row["breached"])


def _date(iso: str) -> str:
    return date.fromisoformat(iso).strftime("%d.%m.%Y")


def digest_subject(digest: dict[str, Any], language: str) -> str:
    labels = DIGEST_LABELS[language]
    return labels["subject"].format(date=_date(digest["date"]), breaches=breaches(digest))


def _risk_line(row: dict[str, Any], language: str) -> str:
    labels = DIGEST_LABELS[language]
    late = row["late_minutes"]
    when = labels["late" if late > 0 else "left"].format(minutes=abs(late))
    who = row["assignee"] or labels["nobody"]
    return (f"{row['token']} {row['subject']} — {row['organization']}, {row['criticality']}"
            f"{_via(row, language)}, {who}: {labels[row['clock']]} {when}")  # fmt: skip


def _via(row: dict[str, Any], language: str) -> str:
    """Mail is the rule; any other channel is named, as in the engineers' notices."""
    channel = row.get("channel", "email")
    return "" if channel == "email" else f", {CHANNEL_LABELS[language][channel]}"


def digest_text(digest: dict[str, Any], language: str = "ru") -> str:
    labels = DIGEST_LABELS[language]
    before, now = digest["day_before"], digest["now"]
    lines = [
        labels["title"].format(date=_date(digest["date"])), "",
        f"{labels['at_risk']}: {len(digest['at_risk'])}",
        *(f"  {_risk_line(row, language)}" for row in digest["at_risk"]),
        "",
        f"{labels['now']}: {labels['open']} {now['open']}, {labels['waiting']} {now['waiting']}",
        f"{labels['day_before'].format(day=_date(digest['yesterday']))}: "
        + ", ".join(f"{labels[k]} {before[k]}" for k in ("new", "answered", "answers", "resolved",
                                                          "closed")),
        "", f"{labels['oldest']}:",
        *(f"  {row['token']} {row['subject']} — {row['organization']}{_via(row, language)}, "
          f"{row['assignee'] or labels['nobody']}, {_date(row['created_at'][:10])}"
          for row in digest["oldest_open"]),
        "", f"{labels['load']}:",
        *(f"  {row['engineer'] or labels['nobody']}: {row['open']} / {row['breached']}"
          for row in digest["load"]),
        "",
        f"{labels['security']}: {digest['security']['total'] or labels['none']}"
        + "".join(f"; {why} {n}" for why, n in digest["security"]["by_reason"].items()),
        f"{labels['conduct']}: {digest['conduct']['total'] or labels['none']}",
        labels["failures"].format(outbox=digest["delivery_failures"]["outbox_failed"],
                                  bounces=digest["delivery_failures"]["bounces"]),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def digest_html(digest: dict[str, Any], language: str = "ru") -> tuple[str, dict[str, bytes]]:
    from maild.compose import template_environment  # the mail layer, only when mailing
    from maild.reports import charts  # 0.3 s of import, paid only where charts are drawn

    labels = DIGEST_LABELS[language]
    images = {
        "volume": charts.volume_per_day(
            [(date.fromisoformat(day), new, done) for day, new, done in digest["per_day"]],
            language=language, title=labels["volume"],
        ),
        "load": charts.load_per_engineer(
            [(row["engineer"] or labels["nobody"], row["open"], row["breached"])
             for row in digest["load"]],
            language=language, title=labels["load_chart"],
        ),
    }  # fmt: skip
    html = template_environment().get_template("digest.html.j2").render(
        digest=digest, labels=labels, title=labels["title"].format(date=_date(digest["date"])),
        risk_line=lambda row: _risk_line(row, language), day=_date,
        via=lambda row: _via(row, language),
    )  # fmt: skip
    return html, images
