"""Engineers by mail, end to end: `maild run` as a process, the client and the engineer both
writing over real SMTP to its listener, everything maild sends caught by a real SMTP relay.

The engineer's replies are built the way Thunderbird and Outlook build them
(tests/engineer_mail.py), from the notice exactly as it arrived at the relay, and proven by
our MX's `Authentication-Results` header on top; one more reply is sent by real mutt.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import smtplib
import subprocess
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port, write_config
from tests.daemon import running_daemon
from tests.engineer_mail import outlook_reply, thunderbird_reply
from tests.mailbuilder import build_mail
from tests.test_smtp_end_to_end import RelayInbox, subject_of, ticket_json, wait_for

CLIENT = "sidorov@stroymontazh.ru"
COLLEAGUE = "glavbuh@stroymontazh.ru"
ENGINEER = "ivanov@sis.ru"
ENGINEER_FROM = "Иван Иванов <ivanov@sis.ru>"
COLLEAGUE_ENGINEER = "petrova@sis.ru"
SUPPORT = "info@sis.ru"
MX_PASS = {"Authentication-Results": "mx.sis.ru; dkim=pass header.d=sis.ru header.s=mail"}
# The tests play our MX: it hands mail to the listener from 127.0.0.1, so that peer is an MX.
SECURITY = '[security]\ntrusted_authserv_ids = ["mx.sis.ru"]\nmx_peers = ["127.0.0.1"]\n'
QUIET_SECONDS = 3.0
"""How long to keep watching the relay after maild logged a message as processed, to be sure
that nothing else is on its way."""


# --- the installation: maild with our MX trusted, and a relay that keeps the wire bytes ---------


@dataclass(frozen=True, slots=True)
class Delivered:
    """One mail as it reached the relay: the bytes on the wire and the SMTP envelope."""

    raw: bytes
    mail_from: str
    rcpt_tos: tuple[str, ...]

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return subject_of(email.message_from_bytes(self.raw))

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None, "no text/plain part"
        return body.get_content().replace("\r\n", "\n")

    def attachments(self) -> dict[str, bytes]:
        return {
            part.get_filename() or "": part.get_payload(decode=True)
            for part in self.message.iter_attachments()
        }


class WireRelay(RelayInbox):
    """The test_smtp_end_to_end relay, also keeping each message's bytes as they came."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[Delivered] = []

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        self.delivered.append(Delivered(bytes(raw), envelope.mail_from, tuple(envelope.rcpt_tos)))
        return await super().handle_DATA(server, session, envelope)


@dataclass(slots=True)
class Desk:
    """A running maild and what it has sent so far."""

    port: int
    config: Path
    log: Path
    relay: WireRelay

    def send(self, raw: bytes, sender: str, to: str = SUPPORT) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.sendmail(sender, [to], raw)

    def mails_to(self, address: str) -> list[Delivered]:
        return [d for d in list(self.relay.delivered) if address in d.rcpt_tos]

    def wait_mail(self, address: str, what: str, *, subject: str = "") -> Delivered:
        """The first mail to `address` whose subject contains `subject`."""

        def found():
            matching = [d for d in self.mails_to(address) if subject in d.subject]
            return matching[0] if matching else None

        return wait_for(found, timeout=30, what=what)

    def wait_processed(self, raw: bytes) -> str:
        """Waits for maild's log line about this message; returns it (action, reason, ...)."""
        message_id = email.message_from_bytes(raw)["Message-ID"].strip().strip("<>")
        pattern = re.compile(rf"message_id={re.escape(message_id)} action=.*")

        def logged():
            match = pattern.search(self.log.read_text(encoding="utf-8", errors="replace"))
            return match.group(0) if match else None

        return wait_for(logged, timeout=30, what=f"maild to process {message_id}")

    def ticket(self, number: int) -> dict:
        return ticket_json(self.config, number)


def start_desk(tmp_path: Path, db_url: str, extra: str = ""):
    relay = WireRelay()
    controller = Controller(relay, hostname="127.0.0.1", port=free_port())
    controller.start()
    port = free_port()
    config = write_config(
        tmp_path, db_url, SECURITY + extra, smtp_port=port,
        transport=f"smtp://127.0.0.1:{controller.port}",
    )  # fmt: skip
    log_path = tmp_path / "maild.log"
    try:
        with running_daemon(config, log_path, port):
            yield Desk(port, config, log_path, relay)
    finally:
        controller.stop()


@pytest.fixture
def desk(tmp_path, db_url):
    yield from start_desk(tmp_path, db_url)


@pytest.fixture
def desk_of_two(tmp_path, db_url):
    yield from start_desk(
        tmp_path, db_url, f'[[engineers]]\nemail = "{COLLEAGUE_ENGINEER}"\nname = "Мария Петрова"\n'
    )


def open_ticket(desk: Desk, *, cc: str | None = None) -> tuple[Delivered, Delivered]:
    """The client writes; returns the acknowledgement and the engineer's notice."""
    first = build_mail(message_id="<first@stroymontazh.ru>", cc=cc)
    desk.send(first, CLIENT)
    ack = desk.wait_mail(CLIENT, "the acknowledgement to the client")
    notice = desk.wait_mail(ENGINEER, "the new-ticket notice", subject="Новое обращение")
    assert notice.subject.startswith("[SIS #1] ")
    assert notice.message["Reply-To"] == SUPPORT
    return ack, notice


def client_mails_after(desk: Desk, ack: Delivered, address: str = CLIENT) -> list[Delivered]:
    return [d for d in desk.mails_to(address) if d is not ack]


def notice_lines(notice: Delivered) -> list[str]:
    """Lines of the notice worth looking for in the answer: not blank, not the bare "--"."""
    return [line.strip() for line in notice.text.splitlines() if len(line.strip()) > 3]


def answers_in(detail: dict) -> list[dict]:
    return [m for m in detail["messages"] if m["direction"] == "out" and m["kind"] == "answer"]


# --- the tests ---------------------------------------------------------------------------------


def test_thunderbird_round_trip(desk):
    ack, notice = open_ticket(desk)
    words = "Пётр, добрый день!\n\nОбновите, пожалуйста, Cubisio до 3.2.2."
    patch_notes = "Cubisio 3.2.2\n- отчёт «Реестр договоров» открывается\n".encode()
    reply = thunderbird_reply(
        notice.raw, sender=ENGINEER_FROM, body=words,
        attachments=[("patch-notes.txt", patch_notes, "text/plain")], extra_headers=MX_PASS,
    )  # fmt: skip
    assert b"\r\n> " in reply
    assert "пишет:".encode() in reply
    desk.send(reply, ENGINEER)

    answer = wait_for(
        lambda: client_mails_after(desk, ack), timeout=30, what="the answer to the client"
    )[0]
    message = answer.message
    sender = message["From"].addresses[0]
    assert "Иван Иванов" in sender.display_name
    assert sender.addr_spec == SUPPORT
    assert "[SIS #1]" in answer.subject
    assert message["In-Reply-To"] == "<first@stroymontazh.ru>"
    assert answer.rcpt_tos == (CLIENT,)
    assert answer.mail_from == SUPPORT
    text = answer.text
    assert "Пётр, добрый день!" in text
    assert "Обновите, пожалуйста, Cubisio до 3.2.2." in text
    assert "пишет:" not in text
    assert "\n--\nОбращение [SIS #1]: " in text
    answer_lines = {line.strip() for line in text.splitlines()}
    leaked = [line for line in notice_lines(notice) if line in answer_lines]
    assert leaked == [], f"lines of the notice reached the client: {leaked}"
    assert "Новое обращение" not in text
    assert answer.attachments() == {"patch-notes.txt": patch_notes}

    detail = desk.ticket(1)
    assert detail["sla"]["first_response_at"] is not None
    answers = answers_in(detail)
    assert [m["text"].strip() for m in answers] == [words]

    thanks = build_mail(
        subject="Re: " + answer.subject,
        body="Спасибо, обновили — работает.",
        message_id="<thanks@stroymontazh.ru>",
        in_reply_to=message["Message-ID"],
        references=f"<first@stroymontazh.ru> {message['Message-ID']}",
    )
    desk.send(thanks, CLIENT)
    follow_up = desk.wait_mail(ENGINEER, "the client's reply notice", subject="Ответ клиента")
    assert follow_up.subject.startswith("[SIS #1] ")
    assert "Спасибо, обновили" in follow_up.text
    assert client_mails_after(desk, ack) == [answer]  # the client's thanks are not acknowledged


def test_outlook_round_trip(desk):
    ack, notice = open_ticket(desk, cc=COLLEAGUE)
    words = "Пётр, добрый день!\n\nОбновите, пожалуйста, Cubisio до 3.2.2."
    reply = outlook_reply(notice.raw, sender=ENGINEER_FROM, body=words, extra_headers=MX_PASS)
    plain = email.message_from_bytes(reply, policy=email.policy.default).get_body(("plain",))
    assert "Отправлено:" in plain.get_content()  # Outlook's header block above the quote
    desk.send(reply, ENGINEER)

    answer = wait_for(
        lambda: client_mails_after(desk, ack), timeout=30, what="the answer to the client"
    )[0]
    assert set(answer.rcpt_tos) == {CLIENT, COLLEAGUE}
    message = answer.message
    assert [a.addr_spec for a in message["To"].addresses] == [CLIENT]
    assert COLLEAGUE in [a.addr_spec for a in message["Cc"].addresses]
    assert "Иван Иванов" in message["From"].addresses[0].display_name
    assert message["In-Reply-To"] == "<first@stroymontazh.ru>"
    text = answer.text
    assert "Обновите, пожалуйста, Cubisio до 3.2.2." in text
    for label in ("От:", "Отправлено:", "Кому:", "Тема:"):
        assert label not in text, f"Outlook's header block reached the client: {text!r}"
    answer_lines = {line.strip() for line in text.splitlines()}
    assert [line for line in notice_lines(notice) if line in answer_lines] == []
    assert desk.mails_to(COLLEAGUE) == [answer]  # the colleague gets the answer only, once

    detail = desk.ticket(1)
    assert detail["sla"]["first_response_at"] is not None
    assert [m["text"].strip() for m in answers_in(detail)] == [words]


def test_commands_and_comment_by_mail(desk):
    ack, notice = open_ticket(desk)
    commands = thunderbird_reply(
        notice.raw, sender=ENGINEER_FROM, body="#take\n#priority high\n\nПроверяем на стенде.",
        extra_headers=MX_PASS,
    )  # fmt: skip
    desk.send(commands, ENGINEER)
    confirmation = desk.wait_mail(ENGINEER, "the command confirmation", subject="Команды")
    assert "✔ #take" in confirmation.text
    assert "✔ #priority high" in confirmation.text
    answer = wait_for(
        lambda: client_mails_after(desk, ack), timeout=30, what="the answer to the client"
    )[0]
    assert "Проверяем на стенде." in answer.text
    assert "#take" not in answer.text
    assert "#priority" not in answer.text
    detail = desk.ticket(1)
    assert detail["criticality"] == "high"
    assert detail["assignee"] == ENGINEER
    assert [m["text"].strip() for m in answers_in(detail)] == ["Проверяем на стенде."]

    comment = thunderbird_reply(
        notice.raw, sender=ENGINEER_FROM, body="#comment\nКлиент ругается, но по делу.",
        extra_headers=MX_PASS,
    )  # fmt: skip
    desk.send(comment, ENGINEER)
    assert "action=" in desk.wait_processed(comment)
    time.sleep(QUIET_SECONDS)
    assert client_mails_after(desk, ack) == [answer]
    notes = [m for m in desk.ticket(1)["messages"] if m["visibility"] == "internal"]
    assert [(m["kind"], m["text"].strip()) for m in notes] == [
        ("comment", "Клиент ругается, но по делу.")
    ]

    def confirmations():
        return [d for d in desk.mails_to(ENGINEER) if "Команды" in d.subject]

    earlier = len(confirmations())  # `#comment` alone may or may not be confirmed
    typo = thunderbird_reply(
        notice.raw, sender=ENGINEER_FROM, body="#prioritty high\n\nТекст",
        extra_headers=MX_PASS,
    )  # fmt: skip
    desk.send(typo, ENGINEER)
    refused = wait_for(
        lambda: confirmations()[earlier:], timeout=30,
        what="the confirmation of the mistyped command",
    )[0]  # fmt: skip
    assert "✘ #prioritty" in refused.text
    desk.wait_processed(typo)
    time.sleep(QUIET_SECONDS)
    assert client_mails_after(desk, ack) == [answer]
    assert desk.ticket(1)["criticality"] == "high"


def test_outlook_reply_to_a_comment_notice_stays_internal(desk_of_two):
    # Petrova answers Ivanov's internal comment the way anyone answers mail: Reply in Outlook.
    # The reply goes to the support address with the comment quoted below; it must reach
    # Ivanov as a comment and never the client.
    desk = desk_of_two
    ack, notice = open_ticket(desk)
    comment = thunderbird_reply(
        notice.raw, sender=ENGINEER_FROM, body="#comment\nПохоже на старый баг драйвера печати.",
        extra_headers=MX_PASS,
    )  # fmt: skip
    desk.send(comment, ENGINEER)
    comment_notice = desk.wait_mail(
        COLLEAGUE_ENGINEER,
        "the comment notice to the other engineer",
        subject="Внутренний комментарий",
    )
    assert comment_notice.message["Reply-To"] == SUPPORT
    reply = outlook_reply(
        comment_notice.raw, sender=f"Мария Петрова <{COLLEAGUE_ENGINEER}>",
        body="Да, это он. Попросим у клиента версию драйвера.", extra_headers=MX_PASS,
    )  # fmt: skip
    desk.send(reply, COLLEAGUE_ENGINEER)
    relayed = desk.wait_mail(
        ENGINEER, "Petrova's reply as a comment notice", subject="Внутренний комментарий"
    )
    assert "Да, это он. Попросим у клиента версию драйвера." in relayed.text
    desk.wait_processed(reply)
    time.sleep(QUIET_SECONDS)
    assert client_mails_after(desk, ack) == []
    notes = [m for m in desk.ticket(1)["messages"] if m["visibility"] == "internal"]
    assert [(m["kind"], m["text"].strip()) for m in notes if m["direction"] == "in"] == [
        ("comment", "Похоже на старый баг драйвера печати."),
        ("comment", "Да, это он. Попросим у клиента версию драйвера."),
    ]
    assert desk.ticket(1)["sla"]["first_response_at"] is None


@pytest.mark.parametrize(
    "proof",
    [None, {"Authentication-Results": "mx.evil.example; dkim=pass header.d=sis.ru"}],
    ids=["no-authentication-results", "foreign-authserv-id"],
)
def test_spoofed_engineer_is_not_obeyed(desk, proof):
    ack, _ = open_ticket(desk)
    headers = {"Authentication-Results": proof["Authentication-Results"]} if proof else None
    spoof = build_mail(
        sender=ENGINEER_FROM,
        subject="Re: [SIS #1] Новое обращение: Не открывается отчёт",
        body="#close solved\n\nЗакрываем.",
        message_id="<spoof@evil.example>",
        headers=headers,
    )
    desk.send(spoof, ENGINEER)
    line = desk.wait_processed(spoof)
    time.sleep(QUIET_SECONDS)

    detail = desk.ticket(1)
    assert detail["status"] != "closed", line
    assert detail["sla"]["closed_at"] is None
    assert detail["sla"]["first_response_at"] is None
    assert not [e for e in detail["events"] if e["kind"] in ("closed", "commands")]
    security = {e["reason"] for e in detail["events"] if e["kind"] == "security"}
    assert {"unverified_engineer", "commands_refused"} <= security  # seen, and recorded
    assert client_mails_after(desk, ack) == [], "the client heard from a forged engineer"
    assert [d.subject for d in desk.relay.delivered if "Команды" in d.subject] == []
    assert not [m for m in detail["messages"] if "Закрываем" in (m["text"] or "")]


MUTT_REASON = "mutt is not installed (apt-get install mutt)"
MUTT_AR = "mx.sis.ru; dkim=pass header.d=sis.ru"


def run_mutt(folder: Path, muttrc_text: str, subject: str, body: Path) -> None:
    """mutt in batch mode (no TTY: stdin is the body), sending with its own SMTP client.

    In a muttrc `;` separates commands, also inside `my_hdr`: it is escaped as `\\;`."""
    muttrc = folder / "muttrc"
    muttrc.write_text(muttrc_text, encoding="utf-8")
    env = {**os.environ, "HOME": str(folder), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    env.pop("MAIL", None)
    with body.open("rb") as stdin:
        done = subprocess.run(
            ["mutt", "-n", "-F", str(muttrc), "-s", subject, SUPPORT],
            stdin=stdin, env=env, capture_output=True, timeout=60, cwd=folder,
        )  # fmt: skip
    errors = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, errors
    assert "Error in" not in errors, errors  # mutt exits 0 after a bad muttrc line


@pytest.mark.skipif(shutil.which("mutt") is None, reason=MUTT_REASON)
def test_mutt_reply_through_the_listener(desk, tmp_path):
    ack, notice = open_ticket(desk)
    notice_id = notice.message["Message-ID"].strip()

    def muttrc(port: int) -> str:
        return "\n".join(
            [
                f'set smtp_url="smtp://127.0.0.1:{port}/"',
                f'set from="{ENGINEER}"',
                'set realname="Иван Иванов"',
                "set use_from=yes",
                'set charset="utf-8"',
                'set send_charset="utf-8"',
                "set ssl_starttls=no",
                "set ssl_force_tls=no",
                'set record=""',
                "set copy=no",
                "set edit_headers=no",
                f"my_hdr In-Reply-To: {notice_id}",
                "my_hdr Authentication-Results: " + MUTT_AR.replace(";", "\\;"),
                "",
            ]
        )

    body = tmp_path / "body.txt"
    body.write_text("Пётр, добрый день!\n\nПрисылайте журнал, посмотрим.\n", encoding="utf-8")
    subject = f"Re: {notice.subject}"

    # First to a capturing server, to see that mutt really writes what my_hdr asks for.
    capture = WireRelay()
    controller = Controller(capture, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        run_mutt(tmp_path, muttrc(controller.port), subject, body)
        wait_for(lambda: capture.delivered, timeout=10, what="mutt's mail at the capture server")
    finally:
        controller.stop()
    sent = capture.delivered[0]
    assert sent.rcpt_tos == (SUPPORT,)
    assert sent.message["In-Reply-To"] == notice_id
    assert sent.message["Authentication-Results"] == MUTT_AR
    assert sent.message["From"].addresses[0].addr_spec == ENGINEER

    run_mutt(tmp_path, muttrc(desk.port), subject, body)
    answer = wait_for(
        lambda: client_mails_after(desk, ack), timeout=30, what="the answer sent with mutt"
    )[0]
    assert "Присылайте журнал, посмотрим." in answer.text
    assert "Иван Иванов" in answer.message["From"].addresses[0].display_name
    assert answer.rcpt_tos == (CLIENT,)
    detail = desk.ticket(1)
    assert detail["sla"]["first_response_at"] is not None
    assert [m["text"].strip() for m in answers_in(detail)] == [
        "Пётр, добрый день!\n\nПрисылайте журнал, посмотрим."
    ]
