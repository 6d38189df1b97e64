"""Telegram updates as mail (issue 19, the bot's pure first part): the Bot API's Update JSON
as the public documentation shows it (core.telegram.org/bots/api#update, #message,
#document, #photosize), through the real pipeline as channel `telegram`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from maild.errors import PermanentError, TransientError
from maild.sources.telegram import (
    LinkDecision,
    RetryLater,
    api_failure,
    bot_command,
    chat_reply,
    decide_link,
    link_code,
    message_to_mail,
    read_update,
    split_text,
)
from parsers.reachability import chat_address, chat_of_address, why_unanswerable
from storage.models import Attachment, Ticket
from storage.telegram import ChatLink
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest

TEXT = {
    "update_id": 824512001,
    "message": {
        "message_id": 17,
        "from": {"id": 5812345678, "is_bot": False, "first_name": "Пётр",
                 "last_name": "Сидоров", "username": "psidorov", "language_code": "ru"},
        "chat": {"id": 5812345678, "first_name": "Пётр", "last_name": "Сидоров",
                 "username": "psidorov", "type": "private"},
        "date": 1772528100,
        "text": "Не открывается отчёт по складу\nCubisio 3.2.1, ошибка 0x80004005",
    },
}  # fmt: skip
DOCUMENT = {
    "update_id": 824512002,
    "message": {
        "message_id": 18,
        "from": TEXT["message"]["from"],
        "chat": TEXT["message"]["chat"],
        "date": 1772528160,
        "document": {"file_name": "cubisio.log", "mime_type": "text/plain",
                     "file_id": "BQACAgIAAxkBAAIBEWX", "file_unique_id": "AgADd0cAAm",
                     "file_size": 1240},
        "caption": "Журнал за сегодня",
    },
}  # fmt: skip


def test_private_messages_are_read_and_the_rest_is_not():
    message = read_update(TEXT)
    assert message is not None
    assert message.chat_id == 5812345678
    assert message.sender_name == "Пётр Сидоров"
    assert message.files == ()
    group = {**TEXT, "message": {**TEXT["message"], "chat": {"id": -100123, "type": "group"}}}
    bot = {**TEXT, "message": {**TEXT["message"], "from": {"id": 1, "is_bot": True}}}
    edited = {"update_id": 3, "edited_message": TEXT["message"]}
    sticker_only = {**TEXT, "message": {k: v for k, v in TEXT["message"].items() if k != "text"}}
    assert [read_update(u) for u in (group, bot, edited, sticker_only)] == [None] * 4
    photo = {**TEXT, "message": {**TEXT["message"], "photo": [
        {"file_id": "small", "file_unique_id": "a", "width": 90, "height": 51, "file_size": 1200},
        {"file_id": "large", "file_unique_id": "b", "width": 1280, "height": 720,
         "file_size": 98000},
    ]}}  # fmt: skip
    read = read_update(photo)
    assert read is not None
    assert [f.file_id for f in read.files] == ["large"]


def test_chat_addresses_are_reserved_and_round_trip():
    assert chat_address(5812345678) == "tg5812345678@telegram.invalid"
    assert chat_of_address("TG5812345678@telegram.invalid") == 5812345678
    assert chat_of_address("tg-100123@telegram.invalid") == -100123
    assert chat_of_address("tg12@telegram.example") is None
    assert chat_of_address("tgx@telegram.invalid") is None


def test_a_chat_is_one_ticket_of_channel_telegram_with_its_files(make_app):
    app = make_app()
    first = read_update(TEXT)
    second = read_update(DOCUMENT)
    assert first is not None
    assert second is not None
    opened = ingest(
        app, message_to_mail(first, {}, support_address="info@sis.ru", mail_domain="sis.ru"),
        source="telegram",
    )  # fmt: skip
    raw = message_to_mail(
        second, {"BQACAgIAAxkBAAIBEWX": b"2026-03-03 ERROR report\n" * 40},
        support_address="info@sis.ru", mail_domain="sis.ru",
        previous="<tg.5812345678.17@sis.ru>",
    )  # fmt: skip
    joined = ingest(app, raw, source="telegram")
    again = ingest(
        app, message_to_mail(first, {}, support_address="info@sis.ru", mail_domain="sis.ru"),
        source="telegram",
    )  # fmt: skip
    assert opened.action == "new_ticket"
    assert (joined.action, joined.ticket) == ("follow_up", opened.ticket)
    assert again.action == "duplicate"  # the same update fetched twice
    with app.sessions() as session:
        ticket = session.get(Ticket, opened.ticket)
        assert ticket is not None
        assert ticket.channel == "telegram"
        assert ticket.subject == "Не открывается отчёт по складу"
        [attachment] = session.scalars(select(Attachment)).all()
        assert (attachment.filename, attachment.kind) == ("cubisio.log", "log")


def test_a_file_that_could_not_be_fetched_is_named_in_the_text():
    message = read_update(DOCUMENT)
    assert message is not None
    raw = message_to_mail(message, {}, support_address="info@sis.ru", mail_domain="sis.ru")
    assert b"[not received: cubisio.log]" in raw
    assert b"Content-Disposition: attachment" not in raw


def test_the_same_update_gives_the_same_bytes():
    """Fetched again after a crash, an update with a file must be the same mail byte for
    byte (a duplicate is the same Message-ID and content): no random MIME boundary."""
    message = read_update(DOCUMENT)
    assert message is not None
    files = {"BQACAgIAAxkBAAIBEWX": b"log line\n" * 10}
    first = message_to_mail(message, files, support_address="info@sis.ru", mail_domain="sis.ru")
    again = message_to_mail(message, files, support_address="info@sis.ru", mail_domain="sis.ru")
    assert first == again
    assert b'boundary="=_tg_' in first


def test_bot_commands_are_the_bots_own():
    assert bot_command("/start") == "start"
    assert bot_command("/help@cubisio_support_bot") == "help"
    assert bot_command("  /START  ") == "start"
    assert bot_command("/start ref-campaign-5") == "start"
    assert bot_command("/etc/cubisio/config.xml не читается") is None
    assert bot_command("/email sidorov@stroymontazh.ru") == "email"
    assert bot_command("/stop") is None
    assert bot_command("не работает /start") is None


def test_chat_addresses_are_answered_by_the_bot_and_other_invalid_ones_by_nobody():
    assert why_unanswerable("tg5812345678@telegram.invalid") is None
    assert why_unanswerable("tgx@telegram.invalid") is not None
    assert why_unanswerable("root@host.invalid") is not None


def test_long_text_is_cut_at_line_ends_within_the_limit():
    lines = [f"строка {n:03d} " + "х" * 40 for n in range(100)]
    parts = split_text("\n".join(lines), 500)
    assert all(len(part) <= 500 for part in parts)
    assert "\n".join(parts).split("\n") == lines  # nothing lost, nothing cut mid-line
    assert split_text("a" * 1200, 500) == ("a" * 500, "a" * 500, "a" * 200)
    assert split_text("коротко", 500) == ("коротко",)


def test_chat_reply_is_the_subject_over_the_plain_text_with_the_files():
    mail = EmailMessage()
    mail["Subject"] = "=?utf-8?b?W1NJUyAjMTJdINCe0YLRh9GR0YIg0L/QviDRgdC60LvQsNC00YM=?="
    mail.set_content("Пётр, добрый день!\r\n\r\nОбновите Cubisio до 3.2.2.\r\n")
    mail.add_alternative("<p>Пётр, <b>добрый</b> день!</p>", subtype="html")
    mail.add_attachment(b"PK\x03\x04", maintype="application", subtype="zip",
                        filename="fix.zip")  # fmt: skip
    reply = chat_reply(mail.as_bytes())
    assert reply.texts == ("[SIS #12] Отчёт по складу\n\nПётр, добрый день!\n\n"
                           "Обновите Cubisio до 3.2.2.",)  # fmt: skip
    assert [(f.filename, f.mime_type, f.data) for f in reply.files] == [
        ("fix.zip", "application/zip", b"PK\x03\x04")
    ]


@pytest.mark.parametrize(
    ("status", "payload", "kind", "text"),
    [
        (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
         PermanentError, "telegram: 403 Forbidden: bot was blocked by the user"),
        (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
         PermanentError, "telegram: 400 Bad Request: chat not found"),
        (429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
               "parameters": {"retry_after": 7}},
         RetryLater, "telegram: 429 Too Many Requests: retry after 7 (retry after 7 s)"),
        (401, {"ok": False, "error_code": 401, "description": "Unauthorized"},
         TransientError, "telegram: 401 Unauthorized"),
        (409, {"ok": False, "error_code": 409,
               "description": "Conflict: terminated by other getUpdates request; make sure "
                              "that only one bot instance is running"},
         TransientError, "telegram: 409 Conflict: terminated by other getUpdates request; make "
                         "sure that only one bot instance is running"),
        (502, None, TransientError, "telegram: 502 HTTP 502"),
    ],
)  # fmt: skip
def test_api_errors_are_sorted_into_retry_or_give_up(status, payload, kind, text):
    failure = api_failure(status, payload)
    assert type(failure) is kind
    assert str(failure) == text


def test_mail_naming_a_chat_address_is_quarantined_unless_the_bot_wrote_it(make_app):
    """A forged From: tg<chat>@telegram.invalid by mail would join that user's ticket as the
    user and send our answers to their chat."""
    app = make_app()
    opened = ingest(
        app, message_to_mail(read_update(TEXT), {}, support_address="info@sis.ru",
                             mail_domain="sis.ru"),
        source="telegram",
    )  # fmt: skip
    forged = build_mail(
        sender="tg5812345678@telegram.invalid", subject=f"Re: [SIS #{opened.ticket}] отчёт",
        body="Закройте обращение, всё работает.", message_id="<forged@evil.example>",
    )  # fmt: skip
    result = ingest(app, forged, source="smtp")
    assert (result.action, result.reason) == ("quarantined", "chat_address_forged")
    with app.sessions() as session:
        assert len(session.scalars(select(Ticket)).all()) == 1


SECRET = b"k" * 32
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
OURS = frozenset({"info@sis.ru", "ivanov@sis.ru"})


NO_LINK = ChatLink()


def decide(argument, link=NO_LINK, now=NOW, mailed=0, chat=5812345678):
    return decide_link(argument, link, now, secret=SECRET, chat_id=chat, own_addresses=OURS,
                       mails_to_address_today=mailed)  # fmt: skip


def test_email_linking_asks_for_a_code_mailed_to_the_address():
    assert decide("") == LinkDecision("show", "not_linked")
    assert decide("", ChatLink(linked_email="a@b.ru")) == LinkDecision("show", "linked", "a@b.ru")
    assert decide("Sidorov@Stroymontazh.RU") == LinkDecision(
        "send_code", "code_sent", "sidorov@stroymontazh.ru"
    )
    assert decide("not an address").reason == "bad_address"
    assert decide("a@b").reason == "bad_address"
    assert decide("info@sis.ru").reason == "own_address"  # ours, or an engineer's
    assert decide("tg42@telegram.invalid").reason == "own_address"
    just_sent = ChatLink(pending_email="a@b.ru", pending_at=NOW - timedelta(minutes=3))
    assert decide("c@d.ru", just_sent) == LinkDecision("refuse", "wait", "a@b.ru")
    later = ChatLink(pending_email="a@b.ru", pending_at=NOW - timedelta(minutes=11))
    assert decide("c@d.ru", later).action == "send_code"
    assert decide("c@d.ru", mailed=3) == LinkDecision("refuse", "address_limit", "c@d.ru")


def test_a_code_proves_one_address_for_one_chat_within_an_hour():
    issued = NOW - timedelta(minutes=5)
    pending = ChatLink(pending_email="a@b.ru", pending_at=issued)
    code = link_code(SECRET, 5812345678, "a@b.ru", issued)
    assert decide(code, pending) == LinkDecision("link", "linked", "a@b.ru")
    # The same digits prove nothing for another chat, address, moment or key.
    assert code != link_code(SECRET, 5812345679, "a@b.ru", issued)
    assert code != link_code(SECRET, 5812345678, "c@b.ru", issued)
    assert code != link_code(b"x" * 32, 5812345678, "a@b.ru", issued)
    assert decide(code, pending, chat=5812345679).reason == "wrong_code"
    late = NOW + timedelta(hours=1)
    assert decide(code, pending, now=late) == LinkDecision("refuse", "expired", "a@b.ru")
    assert decide(code, ChatLink()) == LinkDecision("refuse", "no_pending")


def test_five_wrong_codes_drop_the_pending_address():
    issued = NOW - timedelta(minutes=5)
    code = link_code(SECRET, 5812345678, "a@b.ru", issued)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for attempts, left in enumerate((4, 3, 2, 1)):
        decision = decide(wrong, ChatLink(pending_email="a@b.ru", pending_at=issued,
                                          attempts=attempts))  # fmt: skip
        assert decision == LinkDecision("count_attempt", "wrong_code", "a@b.ru", left)
    last = decide(wrong, ChatLink(pending_email="a@b.ru", pending_at=issued, attempts=4))
    assert last.reason == "too_many_attempts"
    # Even the right code is refused once the attempts are spent.
    spent = ChatLink(pending_email="a@b.ru", pending_at=issued, attempts=5)
    assert decide(code, spent).reason == "too_many_attempts"
