"""Mail loops with a real autoresponder: at most `autoreply_limit` acknowledgements a day.

maild runs as a process (`maild run`); its outbound transport points at a second real SMTP
server, the robot, which answers every message it gets back into maild's SMTP listener.
Three robots, from the worst one (a new subject every time, no headers that say "machine")
to a proper RFC 3834 responder; in each case maild must fall silent and lose nothing.
"""

from __future__ import annotations

import json
import queue
import smtplib
import subprocess
import sys
import threading
import time
from email.utils import getaddresses, make_msgid

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

from tests.conftest import free_port, write_config
from tests.daemon import running_daemon
from tests.mailbuilder import build_mail
from tests.test_smtp_end_to_end import RelayInbox, subject_of, ticket_json, wait_for

LIMIT = 3
ROBOT = "robot@dom-stroy.ru"
SUPPORT = "info@sis.ru"
FIRST_SUBJECT = "Не работает импорт смет"
QUIET_SECONDS = 3.0


class Autoresponder(RelayInbox):
    """A real SMTP peer that answers every message it receives, as `behaviour` dictates.

    The SMTP side only records and queues (so the event loop is never blocked); a worker
    thread composes each answer and delivers it to maild's listener with smtplib.
    """

    def __init__(self, behaviour: str, maild_port: int) -> None:
        super().__init__()
        self.behaviour = behaviour
        self.maild_port = maild_port
        self.sent: list[bytes] = []
        self.elsewhere: list = []
        """maild's mail to others (notices to engineers), which the robot never sees."""
        self.errors: list[BaseException] = []
        self.last_activity = time.monotonic()
        self._lock = threading.Lock()
        self._pending = 0
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._answer_all, name="robot", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=30)

    def handle_message(self, message) -> None:
        # The relay hands the robot all of maild's mail; only what is addressed to the robot
        # reaches its mailbox (the engineers' notices go to sis.ru, not to dom-stroy.ru).
        if ROBOT not in (message["X-RcptTo"] or ""):
            self.elsewhere.append(message)
            return
        super().handle_message(message)
        with self._lock:
            self._pending += 1
            self.last_activity = time.monotonic()
        self._queue.put(message)

    def quiet_for(self, seconds: float) -> bool:
        """Nothing queued or being answered, and nothing received or sent for `seconds`."""
        with self._lock:
            return self._pending == 0 and time.monotonic() - self.last_activity >= seconds

    def send(self, raw: bytes, *, envelope_from: str = ROBOT, to: str = SUPPORT) -> None:
        with smtplib.SMTP("127.0.0.1", self.maild_port, timeout=30) as client:
            client.sendmail(envelope_from, [to], raw)
        with self._lock:
            self.sent.append(raw)
            self.last_activity = time.monotonic()

    def _answer_all(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._answer(message)
            except BaseException as error:  # noqa: BLE001 - reported by the test
                self.errors.append(error)
            finally:
                with self._lock:
                    self._pending -= 1
                    self.last_activity = time.monotonic()

    def _answer(self, message) -> None:
        reply_to = message["Reply-To"] or message["From"]
        to = getaddresses([reply_to])[0][1]
        subject = subject_of(message)
        body = "Ваше письмо получено и будет рассмотрено.\nЭто автоматический ответ."
        if self.behaviour == "naive":
            number = len(self.sent)  # the first message was the test's own
            raw = build_mail(
                sender=ROBOT, to=to, subject=f"Ваше письмо получено ({number})", body=body,
                message_id=make_msgid(domain="dom-stroy.ru"),
            )  # fmt: skip
            self.send(raw, to=to)
        elif self.behaviour == "threading":
            raw = build_mail(
                sender=ROBOT, to=to, subject=f"Re: {subject}", body=body,
                message_id=make_msgid(domain="dom-stroy.ru"),
                in_reply_to=message["Message-ID"], references=message["Message-ID"],
            )  # fmt: skip
            self.send(raw, to=to)
        elif self.behaviour == "rfc3834":
            raw = build_mail(
                sender=ROBOT, to=to, subject=f"Автоматический ответ: {subject}", body=body,
                message_id=make_msgid(domain="dom-stroy.ru"),
                in_reply_to=message["Message-ID"], headers={"Auto-Submitted": "auto-replied"},
            )  # fmt: skip
            # RFC 3834 3.3: an automatic response goes out with the null reverse-path.
            self.send(raw, envelope_from="", to=to)
        else:
            raise AssertionError(f"unknown behaviour {self.behaviour}")


@pytest.fixture
def maild_port() -> int:
    return free_port()


@pytest.fixture
def robot(behaviour, maild_port):
    responder = Autoresponder(behaviour, maild_port)
    controller = Controller(responder, hostname="127.0.0.1", port=free_port())
    controller.start()
    responder.start()
    try:
        yield controller.port, responder
    finally:
        responder.stop()
        controller.stop()


@pytest.fixture
def looping_maild(tmp_path, db_url, maild_port, robot):
    robot_port, _ = robot
    config = write_config(
        tmp_path, db_url, f"[guard]\nautoreply_limit = {LIMIT}\n",
        smtp_port=maild_port, transport=f"smtp://127.0.0.1:{robot_port}",
    )  # fmt: skip
    with running_daemon(config, tmp_path / "maild.log", maild_port):
        yield config


def tickets_list(config) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), "tickets", "list", "--json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return sorted(json.loads(out.stdout), key=lambda ticket: ticket["id"])


def directions(config, ticket: int) -> list[str]:
    return [message["direction"] for message in ticket_json(config, ticket)["messages"]]


def events(db_url: str) -> list[tuple[int | None, str, str]]:
    """The audit trail (kind, reason per decision); `tickets show --json` does not include it."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT ticket_id, kind, reason FROM events ORDER BY id")
            )
            return [(row.ticket_id, row.kind, row.reason) for row in rows]
    finally:
        engine.dispose()


@pytest.mark.parametrize("behaviour", ["naive", "threading", "rfc3834"])
def test_autoresponder_gets_at_most_autoreply_limit_messages(
    behaviour, looping_maild, robot, db_url
):
    config = looping_maild
    _, responder = robot
    started = time.monotonic()
    first = build_mail(
        sender=f"Робот ДомСтрой <{ROBOT}>", subject=FIRST_SUBJECT,
        body="Добрый день!\nCubisio 3.2.1: импорт смет из Excel завершается ошибкой.",
        message_id="<first@dom-stroy.ru>",
    )  # fmt: skip
    responder.send(first)

    expected_acks = LIMIT if behaviour == "naive" else 1

    def no_loop(condition):
        """`condition`, but fail at once when maild has sent the robot more than expected."""

        def check():
            count = len(responder.received)
            assert count <= expected_acks, f"mail loop: maild sent the robot {count} messages"
            return condition()

        return check

    # Wait until maild has made its last decision (visible in the database), then listen for
    # QUIET_SECONDS more with the robot idle: anything maild sends after that is a loop.
    if behaviour == "naive":

        def last_one_unanswered():
            tickets = tickets_list(config)
            return len(tickets) == LIMIT + 1 and directions(config, LIMIT + 1) == ["in"]

        decided = no_loop(last_one_unanswered)
        wait_for(decided, timeout=30, what=f"ticket {LIMIT + 1} stored, not acknowledged")
    else:
        decided = no_loop(lambda: len(directions(config, 1)) >= 3)
        wait_for(decided, timeout=30, what="the robot's answer stored in ticket 1")
    quiet = no_loop(lambda: responder.quiet_for(QUIET_SECONDS))
    wait_for(quiet, timeout=30, what="silence between maild and the robot")
    assert not responder.errors, responder.errors

    acks = responder.received
    assert len(acks) == expected_acks <= LIMIT, [subject_of(m) for m in acks]
    assert len(responder.sent) == expected_acks + 1  # the first message, one per ack
    for ack in acks:
        assert ack["Auto-Submitted"] == "auto-replied", ack.as_string()[:2000]
    assert [e for e in responder.envelopes if e[1] == [ROBOT]] == [("<>", [ROBOT])] * expected_acks
    # The engineer hears of each message that is not a machine's: every ticket of the naive
    # robot, the threading robot's reply, nothing of the RFC 3834 robot's answer.
    told = {"naive": LIMIT + 1, "threading": 2, "rfc3834": 1}[behaviour]
    assert [m["X-RcptTo"] for m in responder.elsewhere] == ["ivanov@sis.ru"] * told

    tickets = tickets_list(config)
    assert all(ticket["requester"] == ROBOT for ticket in tickets)
    log = events(db_url)
    if behaviour == "naive":
        # Every robot message became a ticket (nothing lost); only the first LIMIT were acked.
        assert [t["subject"] for t in tickets] == [FIRST_SUBJECT] + [
            f"Ваше письмо получено ({n})" for n in range(1, LIMIT + 1)
        ]
        assert [subject_of(m) for m in acks] == [f"[SIS #1] {FIRST_SUBJECT}"] + [
            f"[SIS #{n + 1}] Ваше письмо получено ({n})" for n in range(1, LIMIT)
        ]
        for number in range(1, LIMIT + 1):
            detail = ticket_json(config, number)
            assert [(m["direction"], m["kind"]) for m in detail["messages"]] == [
                ("in", "mail"), ("out", "acknowledgement"),
            ]  # fmt: skip
        assert directions(config, LIMIT + 1) == ["in"]
        assert (LIMIT + 1, "ack_suppressed", "ack_rate_limited") in log
        assert [e for e in log if e[1] == "acknowledged"] == [
            (n, "acknowledged", "ack_sent") for n in range(1, LIMIT + 1)
        ]
    else:
        assert [t["id"] for t in tickets] == [1]
        assert subject_of(acks[0]) == f"[SIS #1] {FIRST_SUBJECT}"
        messages = ticket_json(config, 1)["messages"]
        answer = messages[2]
        assert [m["direction"] for m in messages] == ["in", "out", "in"]
        assert messages[1]["kind"] == "acknowledgement"
        kinds = [(kind, reason) for ticket, kind, reason in log if ticket == 1]
        if behaviour == "threading":
            # A follow-up of ticket 1: stored as the client's mail, never acknowledged.
            assert answer["subject"] == f"Re: [SIS #1] {FIRST_SUBJECT}"
            assert (answer["visibility"], answer["kind"]) == ("public", "mail")
            assert "follow_up" in [kind for kind, _ in kinds]
        else:
            # Machine mail: kept in the ticket as an internal note, never answered.
            assert answer["subject"] == f"Автоматический ответ: [SIS #1] {FIRST_SUBJECT}"
            assert (answer["visibility"], answer["kind"]) == ("internal", "auto")
            assert ("ignored", "auto_submitted") in kinds
        assert [k for k in kinds if k[0] in ("acknowledged", "ack_suppressed")] == [
            ("acknowledged", "ack_sent")
        ]
    assert time.monotonic() - started < 45
