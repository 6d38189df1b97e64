"""The managers' daily digest and the reports the scheduler mails (issue 16): numbers checked
against the hand-computed history of three tickets, on both databases."""

from __future__ import annotations

import email
import email.header
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from maild.reports.digest import digest_figures, digest_subject, digest_text
from maild.reports.schedule import run_manager_mail
from maild.scheduler import run_due
from storage.models import OutboxMessage
from tests.test_reports import CONFIG, at, seed

MANAGERS = '\n[escalation]\nmanagers = ["boss@sis.ru"]\n[digest]\ntime = "09:00"\n'


@pytest.fixture
def app(make_app, clock):
    """The three tickets of March 2025 (tests/test_reports.py), with a manager to mail."""
    app = make_app(CONFIG + MANAGERS)
    seed(app, clock)
    return app


def queued(app, purpose: str) -> list[OutboxMessage]:
    with app.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.purpose == purpose)))


def subject(row: OutboxMessage) -> str:
    message = email.message_from_bytes(row.raw)
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def test_digest_figures_on_tuesday_11_march(app, clock):
    """#2 (resolution 40 working hours from Mon 3 March 12:00) is 240 minutes past due on
    Tue 11 March 09:00: Mon 300 + Tue-Thu 3x480 + Fri 7 March (short) 420 + Mon 10 480 = 2640."""
    clock.current = at(2025, 3, 11, 9, 0)
    run_due(app.config, app.sessions, clock)
    with app.sessions() as session:
        digest = digest_figures(app.config, session, clock.current)
    assert digest["day_before"] == {"new": 0, "answered": 0, "answers": 0, "resolved": 0,
                                    "closed": 0}  # fmt: skip
    assert digest["now"] == {"open": 1, "waiting": 0}
    [risk] = digest["at_risk"]
    assert (risk["token"], risk["clock"], risk["late_minutes"], risk["breached"]) == (
        "[SIS #2]", "resolution", 240, True,
    )  # fmt: skip
    assert risk["organization"] == "stroymontazh"
    assert [row["token"] for row in digest["oldest_open"]] == ["[SIS #2]"]
    assert digest["load"] == [{"engineer": None, "open": 1, "breached": 1}]
    assert digest_subject(digest, "ru") == "Сводка поддержки за 11.03.2025: нарушений SLA — 1"
    text = digest_text(digest, "ru")
    assert (
        "[SIS #2] Округление 2 — stroymontazh, normal, не назначено: решение просрочено на 240 мин"
        in text
    )


def test_digest_of_wednesday_5_march_counts_tuesday(app, clock):
    clock.current = at(2025, 3, 5, 9, 0)
    with app.sessions() as session:
        digest = digest_figures(app.config, session, clock.current)
    # Tue 4 March: #1 closed at 10:00, #2 first answered at 12:00 ("Смотрим." to the client).
    assert digest["day_before"] == {"new": 0, "answered": 1, "answers": 1, "resolved": 0,
                                    "closed": 1}  # fmt: skip


def test_scheduler_sends_the_digest_on_working_days_once(app, clock):
    # The seed's own tick on Mon 31 March 17:00 (a working day, past 09:00) sent that day's.
    assert len(queued(app, "digest")) == 1
    clock.current = at(2025, 3, 8, 9, 30)  # Saturday (and 8 March): no digest
    assert run_manager_mail(app.config, app.sessions, clock)["digest"] is False
    clock.current = at(2025, 3, 11, 8, 59)
    assert run_manager_mail(app.config, app.sessions, clock)["digest"] is False
    clock.current = at(2025, 3, 11, 9, 0)
    assert run_manager_mail(app.config, app.sessions, clock)["digest"] is True
    assert run_manager_mail(app.config, app.sessions, clock)["digest"] is False
    digest = queued(app, "digest")[-1]
    assert len(queued(app, "digest")) == 2
    assert digest.recipients == "boss@sis.ru"
    mail = email.message_from_bytes(digest.raw)
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["Auto-Submitted"] == "auto-generated"


def test_reports_go_out_on_the_first_working_day_after_their_period(app, clock):
    clock.current = at(2025, 4, 1, 9, 0)  # Tuesday 1 April 2025
    done = run_manager_mail(app.config, app.sessions, clock)
    assert done["reports"] == ["2025-03", "2025-Q1"]
    clock.current = at(2025, 4, 2, 9, 0)
    assert run_manager_mail(app.config, app.sessions, clock)["reports"] == []
    subjects = sorted(subject(row) for row in queued(app, "report"))
    assert subjects == ["Квартальный отчёт технической поддержки за 2025-Q1",
                        "Отчёт технической поддержки за 2025-03"]  # fmt: skip


def test_maild_digest_dry_run_and_to(app):
    command = [sys.executable, "-m", "maild", "--config", str(app.config.source_file), "digest"]
    env = {**os.environ, "MAILD_NOW": "2025-03-11T09:00:00+03:00"}
    dry = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert dry.stdout.startswith("Сводка технической поддержки на 11.03.2025")
    assert len(queued(app, "digest")) == 1  # the seed's tick of 31 March; nothing new
    subprocess.run([*command, "--to", "deputy@sis.ru"], env=env, capture_output=True, check=True)
    sent = queued(app, "digest")[-1]
    assert (sent.recipients, sent.state) == ("deputy@sis.ru", "sent")
