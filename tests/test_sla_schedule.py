"""Contracts, SLA clocks on the production calendar, escalation and cooperation, end to end
on both databases (issue 15). Time is moved by hand (the tests' FixedClock, MAILD_NOW for
the CLI): every deadline here is computed by hand from the decrees in the docstrings."""

from __future__ import annotations

import email
import email.header
import json
import os
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from maild.deadlines import ticket_sla
from maild.scheduler import run_due
from storage.models import Event, OutboxMessage, Ticket
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest

MSK = ZoneInfo("Europe/Moscow")
TRUST = '[security]\ntrusted_authserv_ids = ["mx.sis.ru"]\n'
PROVEN = {"Authentication-Results": "mx.sis.ru; dkim=pass header.d=sis.ru header.s=mail"}
CONTRACTS = """
[escalation]
managers = ["boss@sis.ru"]

[[contracts]]
name = "stroymontazh"
domains = ["stroymontazh.ru"]
mode = "business"
first_response_hours = { critical = 1, high = 2, normal = 4, low = 8 }
resolution_hours = { critical = 8, high = 16, normal = 40, low = 80 }

[[contracts]]
name = "romashka-24x7"
domains = ["romashka.ru"]
mode = "24x7"
first_response_hours = { critical = 1, high = 2, normal = 4, low = 8 }
resolution_hours = { critical = 8, high = 16, normal = 40, low = 80 }
default_criticality = "high"
"""


NORMAL = {
    "subject": "Округление в отчёте",
    "body": "В отчёте по складу суммы округляются до рубля.",
}


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=MSK)


@pytest.fixture
def app(make_app, clock):
    # Friday 7 March 2025, 17:30 MSK: a pre-holiday day shortened by one hour (Labour Code
    # art. 95; 8 March is a holiday, art. 112), so the working day ended at 17:00.
    clock.current = at(2025, 3, 7, 17, 30)
    return make_app(TRUST + CONTRACTS)


def sla(app, ticket_id: int = 1):
    with app.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        return ticket_sla(app.config, session, ticket, app.clock.now())


def escalations(app) -> list[OutboxMessage]:
    with app.sessions() as session:
        return list(
            session.scalars(select(OutboxMessage).where(OutboxMessage.purpose == "escalation"))
        )


def client_mail(app, purpose: str) -> list[OutboxMessage]:
    with app.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.purpose == purpose)))


def test_contract_by_domain_and_public_offer(app):
    ingest(app, build_mail(sender="sidorov@stroymontazh.ru", message_id="<a@x>", **NORMAL))
    result = ingest(app, build_mail(sender="anna@gmail.com", message_id="<b@x>", **NORMAL))
    assert result.as_json()["contract"]["reason"] == "public_offer"
    with app.sessions() as session:
        first, second = session.get(Ticket, 1), session.get(Ticket, 2)
        assert first.sla_terms["contract"] == "stroymontazh"
        assert first.sla_terms["first_response_minutes"]["normal"] == 240
        assert (second.sla_terms["contract"], second.sla_terms["mode"]) == (None, "business")


def test_friday_evening_before_a_holiday_weekend_is_due_monday(app):
    """4 working hours from Fri 7 March 2025 17:30: nothing is left of the short Friday,
    8-9 March are off, Monday 10 March counts 09:00-13:00 = 240 minutes."""
    ingest(app, build_mail(sender="sidorov@stroymontazh.ru", **NORMAL))
    state = sla(app)
    assert (state.mode, state.contract, state.paused) == ("business", "stroymontazh", False)
    assert state.first_response.target_minutes == 240
    assert state.first_response.due == at(2025, 3, 10, 13, 0)
    assert state.first_response.elapsed_minutes == 0


def test_24x7_contract_counts_every_minute(app):
    ingest(
        app,
        build_mail(sender="ivan@romashka.ru", subject="Отчёт", body="Округление сумм в отчёте."),
    )
    state = sla(app)
    assert (state.mode, state.contract) == ("24x7", "romashka-24x7")
    with app.sessions() as session:
        assert session.get(Ticket, 1).criticality == "high"  # the contract's default
    assert state.first_response.due == at(2025, 3, 7, 19, 30)


def test_escalation_at_75_percent_once_then_at_due_to_managers(app, clock):
    ingest(app, build_mail(sender="sidorov@stroymontazh.ru", **NORMAL))
    clock.current = at(2025, 3, 10, 11, 59)  # 179 of 240 minutes
    assert run_due(app.config, app.sessions, clock).escalations == 0
    clock.current = at(2025, 3, 10, 12, 0)  # 180 = 75%
    assert run_due(app.config, app.sessions, clock).escalations == 1
    assert run_due(app.config, app.sessions, clock).escalations == 0  # the same moment again
    [first] = escalations(app)
    assert first.recipient == "ivanov@sis.ru"
    clock.current = at(2025, 3, 10, 14, 30)  # 13:00 due; lunch 13-14 does not count
    assert run_due(app.config, app.sessions, clock).escalations == 1
    second = escalations(app)[1]
    assert set(second.recipients.split(",")) == {"ivanov@sis.ru", "boss@sis.ru"}
    body = email.message_from_bytes(second.raw).get_payload(decode=True).decode()
    assert "[SIS #1]" in body
    assert "30 мин" in body  # 30 working minutes late
    with app.sessions() as session:
        events = session.scalars(select(Event.reason).where(Event.kind == "escalated")).all()
    assert events == ["first_response", "first_response"]


def test_a_restart_between_ticks_repeats_nothing(app, make_app, clock):
    ingest(app, build_mail(sender="sidorov@stroymontazh.ru", **NORMAL))
    clock.current = at(2025, 3, 10, 12, 30)
    assert run_due(app.config, app.sessions, clock).escalations == 1
    again = make_app(TRUST + CONTRACTS)  # a new process on the same database
    assert run_due(again.config, again.sessions, clock).escalations == 0
    assert len(escalations(again)) == 1


def engineer_writes(app, body: str, subject: str = "Re: [SIS #1] Округление в отчёте"):
    raw = build_mail(
        sender="Иван Иванов <ivanov@sis.ru>", subject=subject, body=body, headers=PROVEN
    )
    return ingest(app, raw)


def test_waiting_ticket_pauses_the_clock_and_is_reminded_then_closed(app, clock):
    """Waiting from Tue 11 March 2025 10:00; reminders after 3 and 7 working days
    (Fri 14 and Thu 20 March, 10:00), closed after 10 (Tue 25 March, 10:00)."""
    ingest(app, build_mail(sender="sidorov@stroymontazh.ru", message_id="<r@x>", **NORMAL))
    clock.current = at(2025, 3, 11, 10, 0)
    result = engineer_writes(app, "#status waiting\n\nПришлите, пожалуйста, журнал.")
    assert str(result.action) == "follow_up", result.explanation
    with app.sessions() as session:
        assert session.get(Ticket, 1).status == "waiting", result.explanation
    assert sla(app).paused
    assert sla(app).first_response.due is None
    elapsed = sla(app).resolution.elapsed_minutes
    clock.current = at(2025, 3, 14, 9, 59)
    assert run_due(app.config, app.sessions, clock).reminders == 0
    assert sla(app).resolution.elapsed_minutes == elapsed  # paused: nothing counted
    clock.current = at(2025, 3, 14, 10, 0)
    assert run_due(app.config, app.sessions, clock).reminders == 1
    assert run_due(app.config, app.sessions, clock).reminders == 0
    clock.current = at(2025, 3, 20, 10, 0)
    assert run_due(app.config, app.sessions, clock).reminders == 1
    clock.current = at(2025, 3, 25, 9, 59)
    assert run_due(app.config, app.sessions, clock).closed == 0
    clock.current = at(2025, 3, 25, 10, 0)
    assert run_due(app.config, app.sessions, clock).closed == 1
    with app.sessions() as session:
        ticket = session.get(Ticket, 1)
        assert (ticket.status, ticket.close_reason) == ("closed", "no_information")
    assert len(client_mail(app, "reminder")) == 2
    [closing] = client_mail(app, "closing")
    text = email.message_from_bytes(closing.raw).get_payload(decode=True).decode()
    assert "запрошенная техническая информация не была предоставлена" in text


def test_a_client_reply_stops_the_reminders(app, clock):
    ingest(app, build_mail(sender="sidorov@stroymontazh.ru", message_id="<r@x>", **NORMAL))
    clock.current = at(2025, 3, 11, 10, 0)
    engineer_writes(app, "#status waiting\n\nПришлите журнал.")
    clock.current = at(2025, 3, 12, 15, 0)
    ingest(
        app,
        build_mail(
            sender="sidorov@stroymontazh.ru",
            subject="Re: [SIS #1] Округление в отчёте",
            body="Журнал во вложении.",
            message_id="<r2@x>",
        ),
    )
    assert not sla(app).paused
    clock.current = at(2025, 3, 28, 10, 0)
    report = run_due(app.config, app.sessions, clock)
    assert (report.reminders, report.closed) == (0, 0)


def test_maild_tick_and_tickets_show_take_maild_now(app, tmp_path):
    ingest(app, build_mail(sender="sidorov@stroymontazh.ru", **NORMAL))
    config = str(app.config.source_file)
    env = {**os.environ, "MAILD_NOW": "2025-03-10T12:00:00+03:00"}
    maild = [sys.executable, "-m", "maild", "--config", config]
    tick = subprocess.run([*maild, "tick", "--json", "--no-deliver"], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(tick.stdout)["escalations"] == 1
    again = subprocess.run([*maild, "tick", "--json", "--no-deliver"], env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(again.stdout)["escalations"] == 0
    shown = subprocess.run([*maild, "tickets", "show", "1", "--json"], env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    state = json.loads(shown.stdout)["sla"]
    assert state["mode"] == "business"
    assert state["contract"] == "stroymontazh"
    assert state["first_response"] == {
        "target_minutes": 240, "elapsed_minutes": 180,
        "due": "2025-03-10T13:00:00+03:00", "breached": False,
    }  # fmt: skip
    contracts = subprocess.run([*maild, "contracts", "--json"], env=env,
                               capture_output=True, text=True, check=True)  # fmt: skip
    listed = {row["name"]: row["open_tickets"] for row in json.loads(contracts.stdout)["contracts"]}
    assert listed == {"romashka-24x7": 0, "stroymontazh": 1}


def test_calendar_commands(app):
    config = str(app.config.source_file)
    maild = [sys.executable, "-m", "maild", "--config", config]
    shown = subprocess.run([*maild, "calendar", "show", "2025", "--json"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    year = json.loads(shown.stdout)
    assert year["totals"] == {"working_days": 247, "working_hours": 1972}
    march = {d["date"]: d for d in year["days"]}
    assert (march["2025-03-07"]["kind"], march["2025-03-07"]["working_minutes"]) == ("short", 420)
    assert march["2025-03-08"]["kind"] == "day_off"
    due = subprocess.run([*maild, "calendar", "due", "2025-03-07T17:30:00+03:00", "240", "--json"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(due.stdout)["due"] == "2025-03-10T13:00:00+03:00"
    flat = subprocess.run(
        [*maild, "calendar", "due", "2025-03-07T17:30:00+03:00", "240", "--mode", "24x7"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert flat.stdout.strip() == "2025-03-07T21:30:00+03:00"


def test_two_processes_ticking_at_once_send_each_escalation_once(app):
    """Two `maild tick` processes on the same database at the same moment: the claim in
    scheduled_sends lets one of them queue each escalation."""
    for number in range(4):
        ingest(app, build_mail(sender="sidorov@stroymontazh.ru", message_id=f"<p{number}@x>",
                               **NORMAL))  # fmt: skip
    env = {**os.environ, "MAILD_NOW": "2025-03-10T12:30:00+03:00"}
    command = [sys.executable, "-m", "maild", "--config", str(app.config.source_file),
               "tick", "--json", "--no-deliver"]  # fmt: skip
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    reports = [json.loads(run.communicate(timeout=120)[0]) for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert sum(report["escalations"] for report in reports) == 4
    assert len(escalations(app)) == 4
