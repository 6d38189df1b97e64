"""Outbox delivery against a real SMTP peer: sent once, retried on 4xx, given up on 5xx."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from maild.outbound import MaildirTransport, SmtpTransport, deliver_pending
from storage.models import OutboxMessage
from tests.conftest import free_port
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest


class ScriptedRelay:
    """Answers DATA with the scripted codes in turn, then 250; records what it accepted."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.accepted: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        del server, session
        if self.answers:
            return self.answers.pop(0)
        self.accepted.append(envelope.original_content)
        return "250 2.0.0 Ok"


@pytest.fixture
def relay_with(request):
    controllers = []

    def start(answers: list[str]) -> tuple[ScriptedRelay, SmtpTransport]:
        handler = ScriptedRelay(answers)
        controller = Controller(handler, hostname="127.0.0.1", port=free_port())
        controller.start()
        controllers.append(controller)
        return handler, SmtpTransport("127.0.0.1", controller.port)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def app(make_app):
    """No engineers configured: each client mail queues exactly one message, its
    acknowledgement, so the counts below are about delivery alone."""
    return make_app(engineers=False)


def rows(app) -> list[OutboxMessage]:
    with app.sessions() as session:
        return list(session.scalars(select(OutboxMessage)))


def deliver(app, transport):
    return deliver_pending(app.sessions, transport, app.clock, max_attempts=3, retry_seconds=60)


def test_sent_once_then_not_again(app, relay_with):
    relay, transport = relay_with([])
    ingest(app, build_mail())
    assert deliver(app, transport).sent == 1
    assert deliver(app, transport).sent == 0
    assert len(relay.accepted) == 1
    [row] = rows(app)
    assert (row.state, row.attempts) == ("sent", 1)


def test_temporary_failure_is_retried_after_backoff(app, relay_with, clock):
    relay, transport = relay_with(["451 4.3.0 try later"])
    ingest(app, build_mail())
    assert deliver(app, transport).retrying == 1
    assert deliver(app, transport).sent == 0  # not due yet
    clock.current += timedelta(seconds=61)
    assert deliver(app, transport).sent == 1
    assert len(relay.accepted) == 1
    [row] = rows(app)
    assert (row.state, row.attempts) == ("sent", 2)
    assert "451" in row.last_error


def test_permanent_failure_is_not_retried(app, relay_with):
    relay, transport = relay_with(["554 5.7.1 rejected"])
    ingest(app, build_mail())
    assert deliver(app, transport).failed == 1
    [row] = rows(app)
    assert row.state == "failed"
    assert relay.accepted == []


def test_unreachable_relay_gives_up_after_max_attempts(app, clock):
    transport = SmtpTransport("127.0.0.1", free_port())  # nothing listens there
    ingest(app, build_mail())
    outcomes = []
    for _ in range(3):
        outcomes.append(deliver(app, transport))
        clock.current += timedelta(hours=1)
    assert [(o.retrying, o.failed) for o in outcomes] == [(1, 0), (1, 0), (0, 1)]


def test_maildir_delivery_is_idempotent(tmp_path):
    transport = MaildirTransport(tmp_path / "box")
    transport.send("7", "", ["a@b.ru"], b"Subject: x\r\n\r\nbody")
    transport.send("7", "", ["a@b.ru"], b"Subject: x\r\n\r\nbody")
    assert [p.name for p in (tmp_path / "box" / "new").iterdir()] == ["maild-7"]
