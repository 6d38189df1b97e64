"""End to end over real SMTP on loopback: `maild run` as a process, smtplib in, relay out."""

from __future__ import annotations

import email
import email.header
import json
import shutil
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message as MessageHandler

from tests.conftest import free_port, write_config
from tests.daemon import running_daemon, wait_for, wait_for_port
from tests.mailbuilder import build_mail


class RelayInbox(MessageHandler):
    """A second real SMTP server, standing in for the outbound relay; keeps what it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[email.message.Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return await super().handle_DATA(server, session, envelope)

    def handle_message(self, message):
        self.received.append(message)


@pytest.fixture
def relay():
    inbox = RelayInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def running_maild(tmp_path, db_url, relay):
    controller, _ = relay
    port = free_port()
    relay_url = f"smtp://127.0.0.1:{controller.port}"
    config = write_config(tmp_path, db_url, smtp_port=port, transport=relay_url)
    with running_daemon(config, tmp_path / "maild.log", port):
        yield port, config


def subject_of(message) -> str:
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def ticket_json(config: Path, ticket: int) -> dict:
    command = ["tickets", "show", str(ticket), "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), *command],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_client_mail_gets_acknowledged_and_replies_join_the_ticket(running_maild, relay):
    port, config = running_maild
    _, inbox = relay
    first = build_mail(message_id="<first@stroymontazh.ru>")
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("sidorov@stroymontazh.ru", ["info@sis.ru"], first)
    wait_for(lambda: inbox.received, what="the acknowledgement at the relay")
    ack = inbox.received[0]
    assert subject_of(ack).startswith("[SIS #1] ")
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<first@stroymontazh.ru>"
    assert inbox.envelopes[0] == ("<>", ["sidorov@stroymontazh.ru"])

    with_token = build_mail(
        subject="RE: [SIS #1] Не открывается отчёт",
        body="Версия 3.2.1, лог приложен.",
        message_id="<second@stroymontazh.ru>",
    )
    only_reference = build_mail(
        subject="Ещё одно",
        body="И вот снимок экрана.",
        message_id="<third@stroymontazh.ru>",
        in_reply_to=ack["Message-ID"],
    )
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("sidorov@stroymontazh.ru", ["info@sis.ru"], with_token)
        client.sendmail("sidorov@stroymontazh.ru", ["info@sis.ru"], only_reference)

    def three_messages():
        detail = ticket_json(config, 1)
        return (
            detail if len([m for m in detail["messages"] if m["direction"] == "in"]) == 3 else None
        )

    detail = wait_for(three_messages, what="three client messages in ticket 1")
    assert [m["direction"] for m in detail["messages"]] == ["in", "out", "in", "in"]
    wait_for(lambda: len(inbox.received) == 4, what="the engineer's three notices")
    to_client = [m for m in inbox.received if "sidorov@stroymontazh.ru" in m["To"]]
    assert to_client == [ack]  # follow-ups are not acknowledged; the engineer hears of each
    assert [m["X-RcptTo"] for m in inbox.received[1:]] == ["ivanov@sis.ru"] * 3


def test_listener_refuses_foreign_recipients(running_maild):
    port, _ = running_maild
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        client.mail("a@b.example")
        code, _ = client.rcpt("someone@elsewhere.example")
        assert code == 550
        code, _ = client.rcpt("info+comment@sis.ru")
        assert code == 250


@pytest.mark.skipif(
    shutil.which("swaks") is None, reason="swaks is not installed (apt-get install swaks)"
)
def test_swaks_as_a_new_user_would(tmp_path, sqlite_url):
    """The README walk-through: defaults, swaks to the listener, ack lands in the Maildir outbox."""
    port = free_port()
    config = write_config(tmp_path, sqlite_url, smtp_port=port)
    subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), "init"],
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "maild", "--config", str(config), "run"], stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        swaks = ["swaks", "--server", f"127.0.0.1:{port}", "--to", "info@sis.ru"]
        swaks += ["--from", "client@example.ru", "--header", "Subject: Test from swaks"]
        subprocess.run([*swaks, "--body", "Cubisio 3.2 fails"], check=True, capture_output=True)
        outbox = tmp_path / "outbox" / "new"
        files = wait_for(
            lambda: sorted(outbox.glob("*")) if outbox.exists() else None, what="ack in the outbox"
        )
        ack = email.message_from_bytes(files[0].read_bytes())  # maild-1: queued first
        assert subject_of(ack) == "[SIS #1] Test from swaks"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
