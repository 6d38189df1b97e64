"""Requests from addresses that mail cannot reach (`root@localhost`, `admin@buildserver`):
the ticket opens, nothing is sent to the address (issue 14)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from parsers.reachability import why_unanswerable
from storage.models import Event, Message
from tests.test_engineer_commands import app, client_writes, engineer_writes  # noqa: F401
from tests.test_pipeline import client_outbox


@pytest.mark.parametrize(
    ("address", "answerable"),
    [
        ("root@localhost", False),
        ("admin@buildserver", False),
        ("cron@cubisio-app01.localdomain", False),
        ("printer@office.lan", False),
        ("nas@storage.local", False),
        ("user@[192.168.1.10]", False),
        ("noreply@example.invalid", False),
        ("ivan@romashka.ru", True),
        ("support@sis.ru", True),
        ("it@localhost-hosting.com", True),
        ("nas@printer.home.arpa", False),
        ("b@homes.com", True),
    ],
)
def test_reachability(address, answerable):
    assert (why_unanswerable(address) is None) is answerable


def test_request_from_root_at_localhost_opens_a_ticket_without_acknowledgement(app):  # noqa: F811
    ticket = client_writes(
        app, sender="Cron Daemon <root@localhost>", subject="Cron <root@app01> backup",
        body="backup failed: license server not responding", message_id="<cron-1@app01>",
    )  # fmt: skip
    assert ticket == 1
    assert client_outbox(app) == []
    with app.sessions() as session:
        reasons = session.scalars(select(Event.reason).where(Event.kind == "ack_suppressed"))
        assert list(reasons) == ["sender_not_answerable"]


def test_an_answer_to_a_local_requester_stays_on_the_ticket_and_is_not_sent(app):  # noqa: F811
    client_writes(app, sender="root@localhost", subject="disk full", message_id="<cron-2@app01>")
    result = engineer_writes(
        app, "Очистили /var/log, место есть.", subject="Re: [SIS #1] disk full"
    )
    assert (str(result.action), result.ticket) == ("follow_up", 1)
    [row] = client_outbox(app)
    assert (row.purpose, row.recipient, row.state, row.recipients) == (
        "answer", "root@localhost", "failed", "",
    )  # fmt: skip
    assert "root@localhost is an address on one host (localhost)" in (row.last_error or "")
    with app.sessions() as session:
        texts = session.scalars(select(Message.text).where(Message.direction == "out"))
        assert "Очистили /var/log, место есть." in list(texts)
