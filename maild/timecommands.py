"""`maild tick`, `maild contracts` and `maild calendar show|due`: time-driven work and the
data admins check it against. Every command takes its time from MAILD_NOW when set."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from maild.app import open_app
from maild.clock import at_moment, clock_from_environment, parse_now
from maild.config import Config
from maild.errors import ConfigError
from maild.reports.digest import digest_figures, digest_text
from maild.reports.figures import parse_period, report
from maild.reports.render import as_csv, as_html, as_text
from maild.reports.schedule import (
    digest_recipients,
    queue_digest,
    queue_report,
    report_recipients,
)
from maild.scheduler import run_due
from maild.sla import calendar_for
from maild.terminal import json_text, print_json, say
from storage import repositories as repo
from worktime import CalendarDay, DayKind
from worktime.arithmetic import add_minutes_24x7, add_working_minutes

EXIT_OK = 0


def cmd_tick(config: Config, args: argparse.Namespace) -> int:
    app = open_app(config)
    try:
        report = run_due(config, app.sessions, app.clock)
        if not getattr(args, "no_deliver", False):
            app.deliver_outbox()
    finally:
        app.close()
    if args.json:
        print_json({"now": app.clock.now().isoformat(), **report.as_json()})
    else:
        say(
            f"tick at {app.clock.now().isoformat()}: {report.tickets} open tickets, "
            f"{report.escalations} escalations, {report.reminders} reminders, "
            f"{report.closed} closed, {report.digests} digests, {report.reports} reports"
            + (f", {len(report.errors)} errors" if report.errors else "")
        )
    return EXIT_OK if not report.errors else 1


def cmd_contracts(config: Config, args: argparse.Namespace) -> int:
    app = open_app(config)
    try:
        with app.sessions() as session:
            rows: list[dict[str, Any]] = [
                {
                    "name": contract.name, "mode": contract.mode, "active": contract.active,
                    "domains": [d for d in contract.domains.split(",") if d],
                    "addresses": [a for a in contract.addresses.split(",") if a],
                    "first_response_minutes": contract.terms.get("first_response_minutes"),
                    "resolution_minutes": contract.terms.get("resolution_minutes"),
                    "open_tickets": count,
                }
                for contract, count in repo.contracts_with_open_counts(session)
            ]  # fmt: skip
            public = repo.public_offer_open_count(session)
    finally:
        app.close()
    offer = {"name": None, "mode": config.sla.mode, "public_offer": True, "open_tickets": public}
    if args.json:
        print_json({"contracts": rows, "public_offer": offer})
        return EXIT_OK
    for row in rows:
        scope = ", ".join(row["domains"] + row["addresses"]) or "(channels only)"
        inactive = "" if row["active"] else "  [no longer in the config]"
        say(f"{row['name']:24} {row['mode']:9} {row['open_tickets']:5} open   {scope}{inactive}")
    say(f"{'(public offer)':24} {config.sla.mode:9} {public:5} open   everyone else")
    return EXIT_OK


def _period(text: str) -> tuple[date, date, bool]:
    """YYYY-MM or YYYY -> first day, last day, whole year?"""
    try:
        if len(text) == 4:
            year = int(text)
            return date(year, 1, 1), date(year, 12, 31), True
        year, month = (int(part) for part in text.split("-"))
        start = date(year, month, 1)
        end = date(year + month // 12, month % 12 + 1, 1).toordinal() - 1
        return start, date.fromordinal(end), False
    except ValueError:
        raise ConfigError(f"{text!r}: expected YYYY-MM or YYYY") from None


def _day_json(day: CalendarDay) -> dict[str, Any]:
    return {
        "date": day.day.isoformat(),
        "kind": str(day.kind),
        "working_minutes": day.working_minutes,
        "reason": day.reason,
    }


def cmd_calendar_show(config: Config, args: argparse.Namespace) -> int:
    calendar = calendar_for(config.calendar)
    start, end, whole_year = _period(args.period)
    days = calendar.days(start, end)
    result: dict[str, Any] = {
        "period": args.period,
        "timezone": config.calendar.timezone,
        "decreed": calendar.has_data(start.year),
        "provisional": calendar.is_provisional(start.year),
        "days": [_day_json(d) for d in days],
    }
    working = [d for d in days if d.kind is not DayKind.DAY_OFF]
    totals = {"working_days": len(working),
              "working_hours": sum(d.working_minutes for d in days) / 60}  # fmt: skip
    if whole_year:
        result["totals"] = totals
    if args.json:
        print_json(result)
        return EXIT_OK
    if not result["decreed"]:
        say(f"warning: no decreed data for {start.year}: weekends and art. 112 holidays only")
    for d in days:
        mark = {"working": " ", "short": "~", "day_off": "x"}[str(d.kind)]
        say(f"{d.day.isoformat()} {d.day.strftime('%a')} {mark} {d.working_minutes:4} {d.reason}")
    say(f"{totals['working_days']} working days, {totals['working_hours']:g} working hours")
    return EXIT_OK


def cmd_calendar_due(config: Config, args: argparse.Namespace) -> int:
    start = parse_now(args.start) if args.start != "now" else clock_from_environment().now()
    mode = args.mode or config.sla.mode
    if mode == "24x7":
        due = add_minutes_24x7(start, args.minutes)
    else:
        due = add_working_minutes(calendar_for(config.calendar), start, args.minutes)
    zone = calendar_for(config.calendar).timezone
    local = due.astimezone(zone)
    if args.json:
        print_json({"start": start.astimezone(zone).isoformat(), "minutes": args.minutes,
               "mode": mode, "due": local.isoformat()})  # fmt: skip
    else:
        say(local.isoformat())
    return EXIT_OK


def render_report(config: Config, kind: str, label: str, fmt: str, language: str) -> bytes:
    period = parse_period(kind, label, ZoneInfo(config.calendar.timezone))
    app = open_app(config)
    try:
        with app.sessions() as session:
            numbers = report(session, period, config.plans)
    finally:
        app.close()
    if fmt == "json":
        return (json_text(numbers) + "\n").encode()
    if fmt == "csv":
        return as_csv(numbers, language)
    if fmt == "html":
        return as_html(numbers, language, images="data")[0].encode()
    return as_text(numbers, language).encode()


def send_report(config: Config, app: Any, kind: str, label: str, now: datetime) -> int:
    """Queue the report to its recipients; returns how many got it."""
    to = report_recipients(config)
    if not to:
        return 0
    period = parse_period(kind, label, ZoneInfo(config.calendar.timezone))
    with at_moment(now), app.sessions.begin() as session:
        queue_report(config, session, period, now)
    return len(to)


def cmd_digest(config: Config, args: argparse.Namespace) -> int:
    app = open_app(config)
    try:
        now = app.clock.now()
        if args.dry_run:
            with app.sessions() as session:
                figures = digest_figures(config, session, now)
            say(digest_text(figures, config.tickets.language).rstrip("\n"))
            return EXIT_OK
        to = (args.to.lower(),) if args.to else digest_recipients(config)
        if not to:
            say("maild: no recipients: set [digest] recipients or [escalation] managers, "
                 "or give --to", sys.stderr)  # fmt: skip
            return 1
        with at_moment(now), app.sessions.begin() as session:
            subject = queue_digest(config, session, now, to)
        app.deliver_outbox()
    finally:
        app.close()
    say(f"{subject} → {', '.join(to)}")
    return EXIT_OK


def cmd_report(config: Config, args: argparse.Namespace) -> int:
    language = args.language or config.tickets.language
    data = render_report(config, args.kind, args.period, args.format, language)
    if args.send:
        app = open_app(config)
        try:
            sent = send_report(config, app, args.kind, args.period, app.clock.now())
            app.deliver_outbox()
        finally:
            app.close()
        if not sent:
            say("maild: no recipients: set [reports] recipients or [escalation] managers",
                 sys.stderr)  # fmt: skip
            return 1
    if args.out and args.out != "-":
        Path(args.out).write_bytes(data)
    elif not args.send or args.out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return EXIT_OK


def add_time_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    report_parser = commands.add_parser(
        "report", parents=[common], help="a monthly or quarterly report (figures, plans, charts)"
    )
    report_parser.add_argument("kind", choices=["monthly", "quarterly"])
    report_parser.add_argument("--period", required=True, metavar="YYYY-MM|YYYY-Qn")
    report_parser.add_argument("--format", choices=["txt", "html", "csv", "json"], default="txt")
    report_parser.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    report_parser.add_argument("--send", action="store_true", help="mail it to the managers")
    report_parser.add_argument("--language", choices=["ru", "en"])
    report_parser.set_defaults(handler=cmd_report)
    digest = commands.add_parser("digest", parents=[common], help="the managers' daily digest, now")
    digest.add_argument("--dry-run", action="store_true", help="print the text, send nothing")
    digest.add_argument("--to", metavar="ADDRESS", help="send to ADDRESS instead")
    digest.set_defaults(handler=cmd_digest)
    tick = commands.add_parser(
        "tick", parents=[common],
        help="run the time-driven work that is due (escalations, reminders, closes) once",
    )  # fmt: skip
    tick.add_argument("--json", action="store_true")
    tick.add_argument("--no-deliver", action="store_true", help="leave mail in the outbox")
    tick.set_defaults(handler=cmd_tick)
    contracts = commands.add_parser(
        "contracts", parents=[common], help="contracts with their domains and open tickets"
    )
    contracts.add_argument("--json", action="store_true")
    contracts.set_defaults(handler=cmd_contracts)
    calendar = commands.add_parser(
        "calendar", parents=[common], help="the production calendar the SLA clocks use"
    )
    actions = calendar.add_subparsers(dest="calendar_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", parents=[common], help="days of YYYY-MM or YYYY")
    show.add_argument("period", metavar="YYYY-MM|YYYY")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_calendar_show)
    due = actions.add_parser(
        "due", parents=[common], help="when MINUTES of the SLA clock from START fall due"
    )
    due.add_argument("start", metavar="START", help="ISO-8601 with offset, or now")
    due.add_argument("minutes", type=int, metavar="MINUTES")
    due.add_argument("--mode", choices=["business", "24x7"])
    due.add_argument("--json", action="store_true")
    due.set_defaults(handler=cmd_calendar_due)
