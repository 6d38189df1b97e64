"""The Telegram bot against a local Bot API stand-in (tests/botapi.py; no machine here
reaches Telegram): intake by long polling into the spool and the real pipeline, on SQLite
and PostgreSQL; answers back to the chat through the outbox; and the failures a real bot
meets (an update fetched twice, a file too large or not given, a user who blocked the bot,
Telegram's flood limit)."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import smtplib
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, select

from maild.app import App
from maild.errors import PermanentError, TransientError
from maild.outbound import RoutedTransport, SmtpTransport
from maild.sources.telegram import RetryLater, decide_link, link_code
from maild.sources.telegram_bot import BotApi, TelegramSource, TelegramTransport, link_secret
from maild.worker import drain_database_spool, drain_spool
from storage import telegram as telegram_state
from storage.db import make_engine
from storage.models import (
    Attachment,
    Event,
    InboundMessage,
    Message,
    OutboxMessage,
    Participant,
    Ticket,
)
from storage.schema import upgrade_schema
from tests.botapi import TOKEN, BotApiStandIn, document, user_message
from tests.conftest import free_port, write_config
from tests.daemon import running_daemon, wait_for
from tests.engineer_mail import thunderbird_reply
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest
from tests.test_smtp_end_to_end import subject_of, ticket_json

CHAT = 5812345678
LOG = b"2026-03-03 10:15:00 ERROR ReportService: 0x80004005\n" * 40


@pytest.fixture
def standin():
    server = BotApiStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def bot_app(make_app, tmp_path, standin):
    (tmp_path / "tg.token").write_text(TOKEN + "\n")
    return make_app(
        '[inbound.telegram]\nenabled = true\ntoken_file = "tg.token"\n'
        f'api_url = "{standin.url}"\npoll_seconds = 1\n'
    )


def make_source(app: App, **overrides) -> TelegramSource:
    settings = app.config.telegram
    assert settings is not None
    options = {
        "clock": app.clock, "on_spooled": lambda: None, "stopping": threading.Event(),
        "link_secret": link_secret(app.artifacts.key.secret),
    } | overrides  # fmt: skip
    return TelegramSource(
        app.config, BotApi(settings.api_url, settings.token()), app.inbox, app.engine, **options
    )


def work(app: App) -> None:
    """The spool worker's turn, then the outbox sender's."""
    if app.shared_spool is not None:
        drain_database_spool(app.shared_spool, app.pipeline)
    else:
        drain_spool(app.spool, app.pipeline)
    app.deliver_outbox()


def poll(source: TelegramSource, app: App) -> int:
    try:
        return source.poll_once()
    finally:
        work(app)


def test_a_chat_becomes_one_ticket_and_its_acknowledgement_comes_back(bot_app, standin):
    source = make_source(bot_app)
    try:
        first = standin.push(
            user_message(CHAT, 17, "Не открывается отчёт по складу\nCubisio 3.2.1")
        )
        assert poll(source, bot_app) == 1
        [ack] = standin.sent_to(CHAT)
        assert ack.text.startswith("[SIS #1] Не открывается отчёт по складу")
        assert "Пишите следующие сообщения по этому обращению прямо в этот чат" in ack.text
        assert "отвечайте на это письмо" not in ack.text

        standin.put_file("BQACAgIAAxkBAAIBEWX", LOG, "documents/file_7.log")
        standin.push(user_message(CHAT, 18, caption="Журнал за сегодня",
                                  document=document("BQACAgIAAxkBAAIBEWX", "cubisio.log",
                                                    len(LOG))))  # fmt: skip
        assert poll(source, bot_app) == 1
        # The second update was confirmed by asking from past the first.
        assert standin.offsets == [0, first + 1]
    finally:
        source.api.close()
    with bot_app.sessions() as session:
        [ticket] = session.scalars(select(Ticket)).all()
        assert ticket.channel == "telegram"
        senders = set(
            session.scalars(select(Message.sender_email).where(Message.direction == "in"))
        )
        assert senders == {f"tg{CHAT}@telegram.invalid"}
        [attachment] = session.scalars(select(Attachment)).all()
        assert (attachment.filename, attachment.kind, attachment.size) == (
            "cubisio.log",
            "log",
            len(LOG),
        )
        texts = session.scalars(select(Message.text).order_by(Message.id)).all()
    assert "Журнал за сегодня" in texts[-1] or "Журнал за сегодня" in texts
    assert telegram_state.load_next_update(bot_app.engine, 7012345678) == standin.offsets[-1] + 1


def test_an_update_fetched_again_after_a_crash_is_a_duplicate(bot_app, standin, monkeypatch):
    """Killed after the spool write and before the position: Telegram gives the update
    again, and the same bytes with the same Message-ID are recognised."""
    standin.put_file("f1", LOG, "documents/file_1.log")
    update = standin.push(user_message(CHAT, 17, caption="Журнал",
                                       document=document("f1", "cubisio.log", len(LOG))))  # fmt: skip
    crashing = make_source(bot_app)

    def crash(*args, **kwargs):
        raise OSError("killed")

    monkeypatch.setattr("maild.sources.telegram_bot.record_update", crash)
    with pytest.raises(OSError, match="killed"):
        crashing.poll_once()
    crashing.api.close()
    monkeypatch.undo()
    restarted = make_source(bot_app)
    try:
        assert poll(restarted, bot_app) == 1
    finally:
        restarted.api.close()
    assert standin.offsets == [0, 0]  # not confirmed by the crashed source
    with bot_app.sessions() as session:
        assert len(session.scalars(select(Ticket)).all()) == 1
        states = session.scalars(select(InboundMessage.state).order_by(InboundMessage.id)).all()
        assert len(session.scalars(select(Attachment)).all()) == 1
    assert states == ["new_ticket", "duplicate"]
    # Stored, so confirmed: the next poll asks from past it.
    assert telegram_state.load_next_update(bot_app.engine, 7012345678) == update + 1


def test_commands_groups_and_edits_open_nothing(bot_app, standin):
    source = make_source(bot_app)
    try:
        standin.push(user_message(CHAT, 1, "/start"))
        group = user_message(-100123, 5, "всем привет")
        group["chat"] = {"id": -100123, "title": "Cubisio users", "type": "supergroup"}
        standin.push(group)
        standin.push(user_message(CHAT, 2, "исправленный текст"), kind="edited_message")
        assert poll(source, bot_app) == 3
    finally:
        source.api.close()
    [welcome] = standin.sent_to(CHAT)
    assert "техническая поддержка Cubisio" in welcome.text
    assert standin.sent_to(-100123) == []
    with bot_app.sessions() as session:
        assert session.scalars(select(Ticket)).all() == []
        assert session.scalars(select(InboundMessage)).all() == []
    # All three confirmed: the next poll asks from past the last.
    assert telegram_state.load_next_update(bot_app.engine, 7012345678) == max(standin.pending()) + 1


def test_files_too_large_or_not_given_are_named_not_received(bot_app, standin):
    big = 30 * 1024 * 1024
    standin.put_file("huge", b"x", "documents/file_2.dmp")
    standin.push(user_message(CHAT, 17, caption="Дамп и журнал", document=document(
        "huge", "cubisio.dmp", big, "application/octet-stream")))  # fmt: skip
    standin.push(user_message(CHAT, 18, caption="ещё журнал",
                              document=document("gone", "old.log", 100)))  # fmt: skip
    source = make_source(bot_app)
    try:
        assert poll(source, bot_app) == 2
    finally:
        source.api.close()
    assert "getFile" in standin.requests  # asked for the small one only
    with bot_app.sessions() as session:
        texts = session.scalars(select(Message.full_text).where(Message.direction == "in")).all()
        assert session.scalars(select(Attachment)).all() == []
    joined = "\n".join(texts)
    assert "[not received: cubisio.dmp: larger than 20 MB]" in joined
    assert "[not received: old.log: telegram: 400 Bad Request: invalid file_id]" in joined


def test_a_download_that_keeps_failing_is_tried_again_then_named(bot_app, standin):
    standin.put_file("f1", LOG, "documents/file_1.log")
    standin.push(user_message(CHAT, 17, caption="Журнал",
                              document=document("f1", "cubisio.log", len(LOG))))  # fmt: skip
    standin.fail("getFile", 502, "Bad Gateway", times=2)
    source = make_source(bot_app)
    try:
        for _ in range(2):
            with pytest.raises(Exception, match="502 Bad Gateway"):
                source.poll_once()
        assert standin.pending() != []  # not confirmed while the file is missing
        assert poll(source, bot_app) == 1  # the third time the file comes
    finally:
        source.api.close()
    with bot_app.sessions() as session:
        [attachment] = session.scalars(select(Attachment)).all()
    assert attachment.filename == "cubisio.log"


def test_answers_to_a_blocked_chat_fail_and_flood_limits_are_retried(bot_app, standin):
    source = make_source(bot_app)
    try:
        standin.fail("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
        standin.push(user_message(CHAT, 17, "Ошибка при входе"))
        poll(source, bot_app)
        with bot_app.sessions() as session:
            [row] = session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.recipients == f"tg{CHAT}@telegram.invalid"
                )
            ).all()
            assert (row.state, row.attempts) == ("pending", 1)
            assert (
                row.last_error == "telegram: 429 Too Many Requests: retry after 3 (retry after 3 s)"
            )
        standin.blocked_chats.add(CHAT + 1)
        standin.push(user_message(CHAT + 1, 3, "Не работает печать"))
        poll(source, bot_app)
    finally:
        source.api.close()
    with bot_app.sessions() as session:
        rows = {r.recipients: r for r in session.scalars(select(OutboxMessage)).all()}
    blocked = rows[f"tg{CHAT + 1}@telegram.invalid"]
    assert (blocked.state, blocked.last_error) == (
        "failed",
        "telegram: 403 Forbidden: bot was blocked by the user",
    )


def test_a_long_answer_goes_in_parts_and_files_follow(bot_app, standin):
    """An engineer's answer of 10,000 characters with a file: three messages cut at line
    ends, then the document."""
    raw_words = "\n".join(
        f"Шаг {n}: перезапустите службу Cubisio и проверьте журнал." for n in range(200)
    )
    mail = EmailMessage()
    mail["Subject"] = "[SIS #4] Ошибка при входе"
    mail.set_content(raw_words)
    mail.add_attachment(b"patch", maintype="application", subtype="octet-stream",
                        filename="исправление-3.2.2.zip")  # fmt: skip
    transport = bot_app.transport
    assert isinstance(transport, RoutedTransport)
    transport.send("1", "info@sis.ru", [f"tg{CHAT}@telegram.invalid"], mail.as_bytes())
    texts = [s.text for s in standin.sent_to(CHAT)]
    assert len(texts) == 3
    assert all(len(t) <= 4096 for t in texts)
    assert texts[0].startswith("[SIS #4] Ошибка при входе\n\nШаг 0:")
    assert "".join(t.replace("\n", "") for t in texts).count("Шаг") == 200
    [sent_file] = standin.sent_to(CHAT, "sendDocument")
    # In UTF-8, as Telegram shows it, not percent-encoded.
    assert (sent_file.filename, sent_file.data) == ("исправление-3.2.2.zip", b"patch")


def code_in_outbox(app: App, address: str) -> str:
    with app.sessions() as session:
        rows = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.recipient == address, OutboxMessage.purpose == "telegram_link"
            ).order_by(OutboxMessage.id)
        ).all()  # fmt: skip
    message = email.message_from_bytes(rows[-1].raw, policy=email.policy.default)
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"/email ([0-9]{6})", body)
    assert match, body
    return match.group(1)


def test_a_proved_address_lets_the_users_mail_join_the_chats_ticket(bot_app, standin):
    """`/email ADDRESS` mails a code there; `/email CODE` in the chat proves the address;
    from then on that address's mail with the ticket's token joins the Telegram ticket
    (before, it is a stranger's token and does not)."""
    client = "sidorov@stroymontazh.ru"
    source = make_source(bot_app)
    try:
        standin.push(user_message(CHAT, 17, "Не открывается отчёт по складу"))
        standin.push(user_message(CHAT, 18, f"/email {client}"))
        poll(source, bot_app)
        code = code_in_outbox(bot_app, client)
        texts = [s.text for s in standin.sent_to(CHAT)]
        assert any(t.startswith("Мы отправили код на sidorov@stroymontazh.ru") for t in texts)
        early = ingest(bot_app, build_mail(
            sender=f"Пётр Сидоров <{client}>", subject="Re: [SIS #1] Не открывается отчёт",
            body="Журнал во вложении."), source="smtp")  # fmt: skip
        assert (early.action, early.reason) == ("new_ticket", "token_sender_not_participant")

        wrong = "000000" if code != "000000" else "111111"
        standin.push(user_message(CHAT, 19, f"/email {wrong}"))
        standin.push(user_message(CHAT, 20, f"/email {code}"))
        poll(source, bot_app)
        replies = [s.text for s in standin.sent_to(CHAT)[-2:]]
        assert replies[0] == "Код не подошёл. Осталось попыток: 4."
        assert replies[1].startswith("Готово: адрес sidorov@stroymontazh.ru связан с этим чатом")
    finally:
        source.api.close()
    joined = ingest(bot_app, build_mail(
        sender=f"Пётр Сидоров <{client}>", subject="Re: [SIS #1] Не открывается отчёт",
        body="Журнал во вложении, второй раз."), source="smtp")  # fmt: skip
    assert (joined.action, joined.ticket) == ("follow_up", 1)
    assert telegram_state.load_link(bot_app.engine, CHAT).linked_email == client


def test_a_flood_limit_between_parts_is_waited_out_not_sent_twice(bot_app, standin):
    """Telegram limits a bot to about a message a second per chat: a 429 on the second part
    of an answer is waited out, so the first part is not sent again by a retry."""
    naps: list[float] = []
    transport = TelegramTransport(bot_app.bot, sleep=naps.append)
    mail = EmailMessage()
    mail["Subject"] = "[SIS #4] Ошибка при входе"
    mail.set_content("Обновите Cubisio до 3.2.2.")
    mail.add_attachment(b"patch", maintype="application", subtype="zip", filename="fix.zip")
    standin.fail("sendDocument", 429, "Too Many Requests: retry after 2", retry_after=2)
    transport.send("1", "info@sis.ru", [f"tg{CHAT}@telegram.invalid"], mail.as_bytes())
    assert naps == [2]
    assert len(standin.sent_to(CHAT)) == 1
    assert len(standin.sent_to(CHAT, "sendDocument")) == 1
    # On the first part nothing was delivered yet: the row's own retry is the better wait.
    standin.fail("sendMessage", 429, "Too Many Requests: retry after 2", retry_after=2)
    with pytest.raises(RetryLater):
        transport.send("2", "info@sis.ru", [f"tg{CHAT}@telegram.invalid"], mail.as_bytes())
    assert naps == [2]


def test_commands_that_never_talk_to_telegram_need_no_token(tmp_path, sqlite_url, standin):
    """A missing token file stops `maild run` with the key named; `maild tickets list`
    and the rest work without it."""
    config = write_config(
        tmp_path, sqlite_url,
        f'[inbound.telegram]\nenabled = true\ntoken_file = "missing.token"\n'
        f'api_url = "{standin.url}"\n',
    )  # fmt: skip
    assert maild_cli(config, "init").returncode == 0
    listed = maild_cli(config, "tickets", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    refused = maild_cli(config, "run")
    assert refused.returncode == 2
    assert "inbound.telegram.token_file: cannot read" in refused.stderr


def maild_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_mail_to_a_chat_without_a_bot_fails_with_the_reason(make_app):
    app = make_app()
    from maild.outbound import RoutedTransport

    assert isinstance(app.transport, RoutedTransport)
    with pytest.raises(PermanentError, match=r"no bot is configured \(\[inbound.telegram\]\)"):
        app.transport.send("1", "info@sis.ru", ["tg5@telegram.invalid"], b"Subject: x\r\n\r\nx")


def test_the_token_is_never_logged(bot_app, standin, caplog):
    """The token is in every Bot API URL: what the bot logs of an error answer or of a
    connection refused names no URL, at any level."""
    caplog.set_level(logging.DEBUG)
    standin.fail("getUpdates", 502, "Bad Gateway")
    settings = bot_app.config.telegram
    closed_port = BotApi(f"http://127.0.0.1:{free_port()}", TOKEN)
    for api, expected in ((None, "502 Bad Gateway"), (closed_port, "ClientConnectorError")):
        stopping = threading.Event()
        source = make_source(bot_app, stopping=stopping)
        if api is not None:
            source.api.close()
            source.api = api
        thread = threading.Thread(target=source.run)
        thread.start()
        try:
            wait_for(lambda expected=expected: expected in caplog.text, what=expected)
        finally:
            stopping.set()
            source.api.close()
            thread.join()
    assert "asking again in 5 s" in caplog.text
    assert settings is not None
    assert TOKEN.split(":")[1] not in caplog.text
    assert "/bot7012345678" not in caplog.text


# --- a whole conversation through `maild run` ---------------------------------------------------

ENGINEER_FROM = "Иван Иванов <ivanov@sis.ru>"
MX_PASS = {"Authentication-Results": "mx.sis.ru; dkim=pass header.d=sis.ru header.s=mail"}
SECURITY = '[security]\ntrusted_authserv_ids = ["mx.sis.ru"]\nmx_peers = ["127.0.0.1"]\n'


def engineer_notice(outbox: Path, token: str) -> bytes:
    for path in sorted((outbox / "new").iterdir()):
        message = email.message_from_bytes(path.read_bytes())
        if "ivanov@sis.ru" in message["To"] and token in subject_of(message):
            return path.read_bytes()
    raise AssertionError(f"no notice of {token} to the engineer")


def telegram_connected(config: Path) -> bool:
    status = json.loads(maild_cli(config, "status", "--json").stdout)
    return any(
        p["state"].get("sources", {}).get("telegram", {}).get("connected")
        for p in status["processes"]
    )


def with_incoming(config: Path, ticket: int, count: int) -> dict | None:
    """The ticket's JSON once it holds `count` incoming messages."""
    detail = ticket_json(config, ticket)
    incoming = [m for m in detail["messages"] if m["direction"] == "in"]
    return detail if len(incoming) >= count else None


def test_a_conversation_in_telegram_with_an_engineer_answering_by_mail(
    tmp_path, sqlite_url, standin
):
    """The user writes to the bot, sends a log, an engineer answers from Thunderbird with a
    file, the answer arrives in the chat, and the user's reply there joins the ticket."""
    smtp = free_port()
    (tmp_path / "tg.token").write_text(TOKEN + "\n")
    extra = (
        SECURITY + '[inbound.telegram]\nenabled = true\ntoken_file = "tg.token"\n'
        f'api_url = "{standin.url}"\npoll_seconds = 50\n'
    )
    config = write_config(tmp_path, sqlite_url, extra, smtp_port=smtp)
    log_path = tmp_path / "maild.log"
    with running_daemon(config, log_path, smtp):
        standin.push(user_message(CHAT, 1, "/start"))
        [welcome] = standin.wait_sent(CHAT, 1)
        assert "Опишите проблему" in welcome.text

        standin.push(user_message(CHAT, 2, "Не открывается отчёт по складу\nCubisio 3.2.1, "
                                           "ошибка 0x80004005"))  # fmt: skip
        ack = standin.wait_sent(CHAT, 2)[1]
        assert ack.text.startswith("[SIS #1] Не открывается отчёт по складу")
        assert "прямо в этот чат" in ack.text

        standin.put_file("BQACAgIAAxkBAAIBEWX", LOG, "documents/file_7.log")
        standin.push(user_message(CHAT, 3, caption="Журнал за сегодня",
                                  document=document("BQACAgIAAxkBAAIBEWX", "cubisio.log",
                                                    len(LOG))))  # fmt: skip
        wait_for(lambda: any(a["filename"] == "cubisio.log" for m in ticket_json(config, 1)[
            "messages"] for a in m["attachments"]), what="the log in ticket 1")  # fmt: skip

        notice = engineer_notice(tmp_path / "outbox", "[SIS #1]")
        reply = thunderbird_reply(
            notice, sender=ENGINEER_FROM,
            body="Пётр, добрый день!\n\nОбновите, пожалуйста, Cubisio до 3.2.2.",
            attachments=[("patch-notes.txt", b"Cubisio 3.2.2\n", "text/plain")],
            extra_headers=MX_PASS,
        )  # fmt: skip
        with smtplib.SMTP("127.0.0.1", smtp) as client:
            client.sendmail("ivanov@sis.ru", ["info@sis.ru"], reply)
        answer = standin.wait_sent(CHAT, 3)[2]
        assert answer.text.startswith("[SIS #1] Не открывается отчёт по складу")
        assert "Обновите, пожалуйста, Cubisio до 3.2.2." in answer.text
        assert "просто напишите в этот чат" in answer.text
        assert "пишет:" not in answer.text  # the quote stays out
        [patch] = standin.wait_sent(CHAT, 1, method="sendDocument")
        assert (patch.filename, patch.data) == ("patch-notes.txt", b"Cubisio 3.2.2\n")

        standin.push(user_message(CHAT, 4, "Спасибо, обновил — отчёт открывается."))
        detail = wait_for(lambda: with_incoming(config, 1, 3), what="the reply in ticket 1")
        # `maild status` shows the bot connected (heartbeats every 5 s).
        wait_for(lambda: telegram_connected(config), timeout=20, what="the bot in maild status")
    assert detail["channel"] == "telegram"
    incoming = [m for m in detail["messages"] if m["direction"] == "in"]
    assert [m["sender"] for m in incoming] == [f"tg{CHAT}@telegram.invalid"] * 3
    assert "Спасибо, обновил" in incoming[-1]["text"]
    answers = [m for m in detail["messages"] if m["direction"] == "out" and m["kind"] == "answer"]
    assert len(answers) == 1
    log = log_path.read_text()
    assert TOKEN.split(":")[1] not in log
    assert "telegram: serving as @cubisio_support_bot" in log
    assert "Traceback" not in log
    # SIGTERM ended the 50 s long poll in flight at once (running_daemon allows 30 s).
    assert "maild stopped" in log


def test_an_update_that_cannot_be_read_is_kept_not_dropped(bot_app, standin):
    """An update maild's conversion fails on (here a date that is no number) is tried
    again, then spooled as it came with its JSON attached: the chat's queue moves on, the
    user gets a ticket number, an engineer sees what was sent."""
    hostile = user_message(CHAT, 17, "Отчёт не открывается")
    hostile["date"] = "вчера"
    update = standin.push(hostile)
    standin.push(user_message(CHAT, 18, "И ещё: печать тоже не работает"))
    source = make_source(bot_app)
    try:
        for _ in range(2):
            with pytest.raises(TransientError, match=f"update {update} could not be read"):
                source.poll_once()
        assert poll(source, bot_app) == 2
    finally:
        source.api.close()
    with bot_app.sessions() as session:
        [ticket] = session.scalars(select(Ticket)).all()
        [attachment] = session.scalars(select(Attachment)).all()
        subjects = session.scalars(select(Message.subject).where(Message.direction == "in")).all()
    assert ticket.subject == f"Telegram: update {update} could not be read"
    assert attachment.filename == f"telegram-update-{update}.json"
    assert len(subjects) == 2  # the next message followed it into the same ticket
    assert standin.sent_to(CHAT)[0].text.startswith("[SIS #1] Telegram: update")
    assert telegram_state.load_next_update(bot_app.engine, 7012345678) == update + 2


def test_a_message_with_nothing_to_keep_is_answered_not_dropped(bot_app, standin):
    poll_message = user_message(CHAT, 17)
    poll_message["poll"] = {"id": "5", "question": "Работает?", "options": [],
                            "total_voter_count": 0, "is_closed": False}  # fmt: skip
    standin.push(poll_message)
    source = make_source(bot_app)
    try:
        poll(source, bot_app)
    finally:
        source.api.close()
    [answer] = standin.sent_to(CHAT)
    assert answer.text.startswith("Такие сообщения бот не сохраняет")
    with bot_app.sessions() as session:
        assert session.scalars(select(Ticket)).all() == []


def test_mail_cannot_make_a_chat_a_copy_recipient(bot_app):
    """A stranger's mail with Cc: tg<user>@telegram.invalid would have the bot deliver the
    ticket's answers into that user's chat; the Cc is refused, with an event."""
    raw = build_mail(
        sender="Злоумышленник <x@evil.example>", cc=f"tg{CHAT}@telegram.invalid",
        subject="Срочно: обновите пароль", body="Перейдите по ссылке.",
    )  # fmt: skip
    result = ingest(bot_app, raw, source="smtp")
    with bot_app.sessions() as session:
        participants = session.scalars(
            select(Participant.email).where(Participant.ticket_id == result.ticket)
        ).all()
        refused = session.scalars(
            select(Event.reason).where(Event.kind == "participant_refused")
        ).all()
    assert f"tg{CHAT}@telegram.invalid" not in participants
    assert refused == ["chat_address_in_copy"]


def test_codes_check_in_any_session_time_zone(db_url, tmp_path):
    """PostgreSQL gives timestamptz back in the session's TimeZone (Europe/Moscow on a
    server installed in Russia); the code mailed at a moment must still match it."""
    engine = make_engine(db_url)
    upgrade_schema(engine)
    engine.dispose()
    moscow = (
        create_engine(db_url, connect_args={"options": "-c timezone=Europe/Moscow"})
        if db_url.startswith("postgresql") else make_engine(db_url)
    )  # fmt: skip
    issued = datetime(2026, 3, 3, 9, 0, 0, 123456, tzinfo=UTC)
    try:
        pending = telegram_state.ChatLink(pending_email="a@b.ru", pending_at=issued)
        telegram_state.record_update(
            moscow, 7012345678, 1, issued, change=telegram_state.LinkChange(CHAT, pending)
        )
        link = telegram_state.load_link(moscow, CHAT)
    finally:
        moscow.dispose()
    assert link.pending_at == issued
    assert link.pending_at is not None
    assert link.pending_at.utcoffset() == timedelta(0)
    code = link_code(b"k" * 32, CHAT, "a@b.ru", issued)
    decision = decide_link(code, link, issued + timedelta(minutes=1), secret=b"k" * 32,
                           chat_id=CHAT, own_addresses=frozenset(),
                           mails_to_address_today=0)  # fmt: skip
    assert decision.action == "link"


def test_codes_to_one_person_are_counted_however_the_address_is_spelt(bot_app, standin):
    """Three codes a day reach one mailbox from all chats together: `+tag` forms and case
    are the same person."""
    spellings = ("victim+1@firm.ru", "victim+2@firm.ru", "Victim@firm.ru", "victim+3@firm.ru")
    for n, address in enumerate(spellings):
        standin.push(user_message(CHAT + n, 17, f"/email {address}"))
    source = make_source(bot_app)
    try:
        poll(source, bot_app)
    finally:
        source.api.close()
    answers = [standin.sent_to(CHAT + n)[0].text for n in range(4)]
    assert [a.startswith("Мы отправили код") for a in answers] == [True, True, True, False]
    assert (
        answers[3] == "На этот адрес сегодня уже отправлено слишком много кодов. Попробуйте завтра."
    )


def test_a_retried_answer_does_not_repeat_what_the_user_has_read(bot_app, standin):
    """The second part of a three-part answer fails (Telegram's 502): the row's retry sends
    the second and third parts and the file, not the first again."""
    mail = EmailMessage()
    mail["Subject"] = "[SIS #4] Ошибка при входе"
    mail.set_content("\n".join(f"Шаг {n}: проверьте журнал службы Cubisio." for n in range(250)))
    mail.add_attachment(b"patch", maintype="application", subtype="zip", filename="fix.zip")
    transport = TelegramTransport(bot_app.bot)
    standin.fail("sendMessage", 502, "Bad Gateway", skip=1)  # the second call fails
    with pytest.raises(TransientError, match="502 Bad Gateway"):
        transport.send("9", "info@sis.ru", [f"tg{CHAT}@telegram.invalid"], mail.as_bytes())
    transport.send("9", "info@sis.ru", [f"tg{CHAT}@telegram.invalid"], mail.as_bytes())
    texts = [s.text for s in standin.sent_to(CHAT)]
    assert len(texts) == len(set(texts)) == 3
    assert texts[0].startswith("[SIS #4]")
    assert len(standin.sent_to(CHAT, "sendDocument")) == 1


def test_a_row_for_a_chat_and_a_mailbox_is_not_mailed_twice(bot_app, standin):
    """A colleague in Cc of a Telegram ticket: the chat side fails once, the row is retried,
    and the relay has received the mail once (it was durable after the first batch)."""

    class Relay:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, _server, _session, envelope):
            self.messages.append(envelope.content)
            return "250 2.0.0 OK"

    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        transport = RoutedTransport(
            SmtpTransport("127.0.0.1", controller.port), TelegramTransport(bot_app.bot)
        )
        raw = build_mail(sender="SIS Support <info@sis.ru>", subject="[SIS #4] Ответ")
        recipients = ["glavbuh@stroymontazh.ru", f"tg{CHAT}@telegram.invalid"]
        standin.fail("sendMessage", 502, "Bad Gateway")
        with pytest.raises(TransientError):
            transport.send("11", "info@sis.ru", recipients, raw)
        transport.flush()
        transport.send("11", "info@sis.ru", recipients, raw)
        transport.flush()
    finally:
        controller.stop()
    assert len(relay.messages) == 1
    assert len(standin.sent_to(CHAT)) == 1
