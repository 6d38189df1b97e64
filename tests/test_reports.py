"""Monthly reports from the database, checked against numbers computed by hand (issue 16),
on SQLite and PostgreSQL; CSV that a spreadsheet opens; the report mail's shape."""

from __future__ import annotations

import csv
import email
import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from maild.reports.figures import parse_period, report
from maild.reports.mail import manager_mail
from maild.reports.render import as_csv, as_html, as_text
from maild.scheduler import run_due
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest

MSK = ZoneInfo("Europe/Moscow")
CONFIG = """
[security]
trusted_authserv_ids = ["mx.sis.ru"]

[[contracts]]
name = "stroymontazh"
domains = ["stroymontazh.ru"]
first_response_hours = { critical = 1, high = 2, normal = 4, low = 8 }
resolution_hours = { critical = 8, high = 16, normal = 40, low = 80 }

[[plans]]
metric = "sla_first_response"
target = 95

[[plans]]
metric = "open_at_end"
target = 5
"""
PROVEN = {"Authentication-Results": "mx.sis.ru; dkim=pass header.d=sis.ru header.s=mail"}
NORMAL = "В отчёте по складу суммы округляются до рубля."


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=MSK)


def seed(app, clock) -> None:
    """March 2025, three tickets (business hours 09-18, lunch 13-14):
    #1 stroymontazh, Mon 3 10:00; answered 11:00 (60 min, met); closed Tue 4 10:00
       (Mon 10-18 less lunch = 420, Tue 09-10 = 60: 480 of 2400, met).
    #2 stroymontazh, Mon 3 12:00; answered Tue 4 12:00 (60+240+180 = 480 of 240: breached);
       still open on 31 March, its resolution due long past (the tick claims the breach).
       The client writes again on Tue 4 at 14:00; the next answer, Wed 5 10:00, took
       Tue 14-18 (240) + Wed 09-10 (60) = 300 of 240 working minutes: a late next response.
    #3 anna@gmail.com (public offer, 8 h target), Wed 5 10:00; answered and closed 10:30."""

    def client(number: int, sender: str, moment: datetime) -> None:
        clock.current = moment
        ingest(app, build_mail(sender=sender, subject=f"Округление {number}", body=NORMAL,
                               message_id=f"<c{number}@x>"))  # fmt: skip

    def engineer(number: int, body: str, moment: datetime) -> None:
        clock.current = moment
        ingest(app, build_mail(sender="Иван Иванов <ivanov@sis.ru>", body=body, headers=PROVEN,
                               subject=f"Re: [SIS #{number}] Округление {number}",
                               message_id=f"<e{number}-{moment:%d%H%M}@sis.ru>"))  # fmt: skip

    client(1, "sidorov@stroymontazh.ru", at(2025, 3, 3, 10, 0))
    client(2, "petrov@stroymontazh.ru", at(2025, 3, 3, 12, 0))
    engineer(1, "Исправлено в 4.2.1, обновите.", at(2025, 3, 3, 11, 0))
    engineer(1, "#close solved", at(2025, 3, 4, 10, 0))
    engineer(2, "Смотрим.", at(2025, 3, 4, 12, 0))
    clock.current = at(2025, 3, 4, 14, 0)
    ingest(app, build_mail(sender="petrov@stroymontazh.ru", subject="Re: [SIS #2] Округление 2",
                           body="Ошибка осталась.", message_id="<c2b@x>"))  # fmt: skip
    engineer(2, "Обновите до 4.2.2.", at(2025, 3, 5, 10, 0))
    client(3, "anna@gmail.com", at(2025, 3, 5, 10, 0))
    engineer(3, "#close solved\n\nГотово.", at(2025, 3, 5, 10, 30))
    clock.current = at(2025, 3, 31, 17, 0)
    run_due(app.config, app.sessions, clock)


@pytest.fixture
def app(make_app, clock):
    app = make_app(CONFIG)
    seed(app, clock)
    return app


def march(app):
    with app.sessions() as session:
        return report(session, parse_period("monthly", "2025-03", MSK), app.config.plans)


def test_figures_are_what_was_computed_by_hand(app):
    numbers = march(app)
    assert numbers["tickets"] == {"created": 3, "closed": 2, "open_at_end": 1}
    assert numbers["first_response_minutes"] == {"count": 3, "median": 60, "p90": 480}
    assert numbers["resolution_minutes"] == {"count": 2, "median": 30, "p90": 480}
    assert numbers["sla_compliance"] == {
        "first_response": 66.7, "next_responses": 0.0, "resolution": 66.7,
    }  # fmt: skip
    assert numbers["sla_compliance_by_criticality"]["normal"] == numbers["sla_compliance"]
    assert numbers["sla_compliance_by_criticality"]["critical"] == {
        "first_response": None, "next_responses": None, "resolution": None,
    }  # fmt: skip
    assert numbers["reopen_rate"] == 0.0
    assert numbers["breached_open"] == 1
    assert numbers["closing_reasons"] == {"solved": 2}
    assert numbers["by_channel"] == {"email": 3}
    assert numbers["by_organization"] == [
        {"name": "stroymontazh", "contract": "stroymontazh", "created": 2, "closed": 1,
         "sla_compliance": {"first_response": 50.0, "next_responses": 0.0, "resolution": 50.0}},
        {"name": "—", "contract": None, "created": 1, "closed": 1, "sla_compliance": None},
    ]  # fmt: skip
    assert numbers["plans"] == [
        {"metric": "sla_first_response", "contract": None, "target": 95.0, "actual": 66.7,
         "met": False},
        {"metric": "open_at_end", "contract": None, "target": 5.0, "actual": 1, "met": True},
    ]  # fmt: skip
    assert numbers["previous"]["tickets"] == {"created": 0, "closed": 0, "open_at_end": 0}
    days = {day: (new, done) for day, new, done in numbers["per_day"]}
    assert (days["2025-03-03"], days["2025-03-05"], len(days)) == ((2, 0), (1, 1), 31)


def test_quarter_holds_the_month_and_text_names_the_figures(app):
    with app.sessions() as session:
        quarter = report(session, parse_period("quarterly", "2025-Q1", MSK), app.config.plans)
    assert quarter["period"] == "2025-Q1"
    assert quarter["tickets"] == march(app)["tickets"]
    text = as_text(march(app), "ru")
    assert text.startswith("Отчёт технической поддержки за 2025-03")
    assert "Первый ответ, медиана (раб. мин): 60" in text
    assert "sla_first_response: 95 → 66.7 — не выполнен" in text


def test_csv_opens_in_a_spreadsheet_with_cyrillic_intact(app):
    data = as_csv(march(app), "ru")
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM: Excel reads Cyrillic right
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == ["раздел", "показатель", "значение", "пред. период", "изменение"]
    assert ["tickets", "Новых обращений", "3", "0", "+3"] in rows
    assert all(len(row) == 5 for row in rows)


def test_report_mail_is_alternative_with_inline_charts(app):
    numbers = march(app)
    html, images = as_html(numbers, "ru")
    message_id, raw = manager_mail(
        app.config, to=["boss@sis.ru"], subject="Отчёт", text=as_text(numbers), html=html,
        images=images, now=at(2025, 4, 1, 9, 0),
    )  # fmt: skip
    mail = email.message_from_bytes(raw)
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["Auto-Submitted"] == "auto-generated"
    plain, related = mail.get_payload()
    assert plain.get_content_type() == "text/plain"
    parts = related.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/html"] + ["image/png"] * 3
    body = parts[0].get_payload(decode=True).decode()
    assert 'src="cid:volume"' in body
    assert "http" not in body  # no remote images, nothing fetched when the mail is opened
    assert {p["Content-ID"] for p in parts[1:]} == {"<volume>", "<sla>", "<load>"}
    assert message_id.endswith("@sis.ru")
