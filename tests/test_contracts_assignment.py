"""Which contract a request is served under, criticality on arrival with config rules, and
assignment on arrival (issue 15)."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from maild.assignment import choose_engineer
from maild.config import build_config
from maild.contracts import choose_contract
from maild.errors import ConfigError
from storage.models import Event, Ticket
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest

MSK = ZoneInfo("Europe/Moscow")
HOURS = "first_response_hours = { critical = 1, high = 2, normal = 4, low = 8 }\n" \
        "resolution_hours = { critical = 8, high = 16, normal = 40, low = 80 }\n"  # fmt: skip
TERMS = {
    "first_response_hours": {"critical": 1, "high": 2, "normal": 4, "low": 8},
    "resolution_hours": {"critical": 8, "high": 16, "normal": 40, "low": 80},
}
DOCUMENT = {
    "contracts": [
        {"name": "stroy", "domains": ["stroymontazh.ru"], **TERMS},
        {"name": "vip", "addresses": ["ceo@stroymontazh.ru"], "mode": "24x7", **TERMS},
        {"name": "dealer", **TERMS},
    ],
    "channels": [{"address": "dealer@support.sis.ru", "contract": "dealer"}],
    "inbound": {"imap": {"main": {"host": "h", "user": "u", "password_env": "P"},
                         "dealer": {"host": "h", "user": "d", "password_env": "P",
                                    "contract": "dealer"}}},
}  # fmt: skip


@pytest.fixture(scope="module")
def config():
    return build_config(DOCUMENT, Path(), None)


@pytest.mark.parametrize(
    ("sender", "recipients", "source", "expected"),
    [
        ("ivan@stroymontazh.ru", ["info@sis.ru"], "smtp", ("stroy", "contract_domain")),
        ("ivan@msk.stroymontazh.ru", ["info@sis.ru"], "smtp", ("stroy", "contract_domain")),
        ("ivan@notstroymontazh.ru", ["info@sis.ru"], "smtp", (None, "public_offer")),
        ("ceo@stroymontazh.ru", ["info@sis.ru"], "smtp", ("vip", "contract_address")),
        ("anna@gmail.com", ["dealer@support.sis.ru"], "smtp", ("dealer", "channel_address")),
        (
            "anna@gmail.com",
            ["info@sis.ru"],
            "imap:dealer/INBOX/7/12",
            ("dealer", "channel_mailbox"),
        ),
        ("anna@gmail.com", ["info@sis.ru"], "imap:main/INBOX/7/12", (None, "public_offer")),
        # the channel wins over the sender's own contract: the client chose the channel
        ("ivan@stroymontazh.ru", ["dealer@support.sis.ru"], "smtp", ("dealer", "channel_address")),
    ],
)
def test_choose_contract(config, sender, recipients, source, expected):
    choice = choose_contract(config, sender=sender, recipients=recipients, source=source)
    assert (choice.contract.name if choice.contract else None, choice.reason) == expected
    assert choice.explanation


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"channels": [{"address": "x@sis.ru", "contract": "nope"}]}, "channels[0].contract"),
        ({"contracts": [{"name": "a", **TERMS}, {"name": "a", **TERMS}]}, "contracts[1].name"),
        ({"contracts": [{"name": "a", "mode": "9to5", **TERMS}]}, "contracts[0].mode"),
        ({"contracts": [{"name": "a", "first_response_hours": TERMS["first_response_hours"]}]},
         "contracts[0].resolution_hours"),
        ({"calendar": {"working_hours": "18:00-09:00"}}, "calendar.working_hours"),
        ({"escalation": {"at": [0]}}, "escalation.at"),
        ({"criticality": {"rules": [{"level": "urgent", "phrases": ["x"]}]}},
         "criticality.rules[0].level"),
        ({"assignment": {"mode": "random"}}, "assignment.mode"),
    ],
)  # fmt: skip
def test_bad_contract_config_names_the_key(document, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        build_config(document, Path(), None)


def test_choose_engineer_in_turn_and_by_load():
    people = ["a@sis.ru", "b@sis.ru", "c@sis.ru"]
    assert choose_engineer("round_robin", people, {}, None) == "a@sis.ru"
    assert choose_engineer("round_robin", people, {}, "a@sis.ru") == "b@sis.ru"
    assert choose_engineer("round_robin", people, {}, "c@sis.ru") == "a@sis.ru"
    assert choose_engineer("round_robin", people, {}, "gone@sis.ru") == "a@sis.ru"
    assert (
        choose_engineer("least_loaded", people, {"a@sis.ru": 2, "b@sis.ru": 1}, None) == "c@sis.ru"
    )
    assert (
        choose_engineer("least_loaded", people, {"a@sis.ru": 1, "b@sis.ru": 1, "c@sis.ru": 1}, None)
        == "a@sis.ru"
    )
    assert choose_engineer("none", people, {}, None) is None
    assert choose_engineer("round_robin", [], {}, None) is None


PETROVA = '[[engineers]]\nemail = "petrova@sis.ru"\nname = "Мария Петрова"\n'


def test_round_robin_on_duty_and_nobody_at_night(make_app, clock):
    clock.current = datetime(2026, 3, 4, 10, 0, tzinfo=MSK)  # Wednesday, working time
    app = make_app(PETROVA + '[assignment]\nmode = "round_robin"\n')
    for number in range(3):
        ingest(app, build_mail(subject=f"Вопрос {number}", message_id=f"<q{number}@x.ru>"))
    clock.current = datetime(2026, 3, 4, 22, 0, tzinfo=MSK)  # the same day, at night
    ingest(app, build_mail(subject="Ночью", message_id="<night@x.ru>"))
    with app.sessions() as session:
        assignees = [
            t.assignee.email if t.assignee else None
            for t in session.scalars(select(Ticket).order_by(Ticket.id))
        ]
        reasons = session.scalars(select(Event.reason).where(Event.kind == "assignment")).all()
    assert assignees == ["ivanov@sis.ru", "petrova@sis.ru", "ivanov@sis.ru", None]
    assert reasons == ["round_robin", "round_robin", "round_robin", "off_duty"]


def test_criticality_and_contract_in_ingest_result_with_a_config_rule(make_app):
    rule = '[[criticality.rules]]\nlevel = "critical"\nphrases = ["касса не работает"]\n'
    app = make_app(rule)
    result = ingest(app, build_mail(subject="Срочно", body="У нас касса не работает с утра."))
    decided = result.as_json()
    assert decided["criticality"]["value"] == "critical"
    assert decided["criticality"]["reason"] == "config_rule"
    assert decided["contract"] == {
        "value": None, "reason": "public_offer",
        "explanation": "sidorov@stroymontazh.ru is under no contract: the public offer",
    }  # fmt: skip
    plain = ingest(app, build_mail(subject="Срочно!!!", body="Подскажите, как выгрузить отчёт?",
                                   message_id="<q@x.ru>"))  # fmt: skip
    assert plain.as_json()["criticality"]["value"] != "critical"  # "срочно" alone raises nothing


CHANNELS = """
[[contracts]]
name = "dealer"
domains = []
first_response_hours = { critical = 1, high = 2, normal = 4, low = 8 }
resolution_hours = { critical = 8, high = 16, normal = 40, low = 80 }

[[channels]]
address = "dealer@support.sis.ru"
contract = "dealer"
"""


def test_a_dedicated_channel_is_the_tickets_channel_everywhere(make_app, clock):
    """Issue 19: mail to a client's own address opens a ticket of channel `dedicated` (and
    its contract); tickets show, the engineers' notice and the digest name the channel."""
    from maild.reports.digest import digest_figures, digest_text
    from storage.views import ticket_detail
    from tests.test_pipeline import outbox

    app = make_app(CHANNELS)
    dedicated = ingest(app, build_mail(sender="anna@gmail.com", to="dealer@support.sis.ru",
                                       subject="Отчёт", message_id="<d1@gmail.com>"))  # fmt: skip
    plain = ingest(app, build_mail(sender="oleg@mail.ru", subject="Вход",
                                   message_id="<p1@mail.ru>"))  # fmt: skip
    with app.sessions() as session:
        shown = ticket_detail(session, dedicated.ticket, "SIS")
        other = ticket_detail(session, plain.ticket, "SIS")
        assert shown is not None
        assert other is not None
        assert shown["channel"] == "dedicated"
        assert other["channel"] == "email"
        late = clock.now() + timedelta(days=3)
        text = digest_text(digest_figures(app.config, session, late), "ru")
    notices = [
        email.message_from_bytes(m.raw, policy=email.policy.default).get_content()
        for m in outbox(app)
        if m.purpose == "ticket_notice"
    ]
    assert "Канал: выделенный канал" in notices[0]
    assert "Канал:" not in notices[1]  # mail is the rule, not named
    [line] = [line for line in text.splitlines() if "[SIS #1]" in line]
    assert "выделенный канал" in line
    [line] = [line for line in text.splitlines() if "[SIS #2]" in line]
    assert "канал" not in line
