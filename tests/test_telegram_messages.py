"""Telegram updates as mail (issue 19, the bot's pure first part): the Bot API's Update JSON
as the public documentation shows it (core.telegram.org/bots/api#update, #message,
#document, #photosize), through the real pipeline as channel `telegram`."""

from __future__ import annotations

import email
import email.policy
import json
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
    next_link,
    read_update,
    split_text,
    unreadable_update_mail,
)
from parsers.reachability import chat_address, chat_of_address, why_unanswerable
from storage.models import Attachment, Ticket
from storage.telegram import ChatLink
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest

BOT = 7012345678
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
    joined = {**TEXT, "message": {**TEXT["message"], "new_chat_members": [{"id": 1}]}}
    assert [read_update(u) for u in (group, bot, edited, joined)] == [None] * 4
    # A message with nothing maild keeps (a poll, say) is still a person's: no text, no file.
    poll = {**TEXT, "message": {k: v for k, v in TEXT["message"].items() if k != "text"}
            | {"poll": {"id": "1", "question": "?", "options": []}}}  # fmt: skip
    empty = read_update(poll)
    assert empty is not None
    assert (empty.text, empty.files) == ("", ())
    photo = {**TEXT, "message": {**TEXT["message"], "photo": [
        {"file_id": "small", "file_unique_id": "a", "width": 90, "height": 51, "file_size": 1200},
        {"file_id": "large", "file_unique_id": "b", "width": 1280, "height": 720,
         "file_size": 98000},
    ]}}  # fmt: skip
    read = read_update(photo)
    assert read is not None
    assert [f.file_id for f in read.files] == ["large"]


def test_voice_video_stickers_locations_and_contacts_are_kept():
    base = {k: v for k, v in TEXT["message"].items() if k != "text"}
    kinds = {
        "voice": ({"file_id": "v1", "file_unique_id": "a", "duration": 7,
                   "mime_type": "audio/ogg", "file_size": 20511}, "voice-17.ogg", "audio/ogg"),
        "video": ({"file_id": "v2", "file_unique_id": "b", "width": 1280, "height": 720,
                   "duration": 31, "file_name": "screen.mp4", "mime_type": "video/mp4",
                   "file_size": 4001234}, "screen.mp4", "video/mp4"),
        "video_note": ({"file_id": "v3", "file_unique_id": "c", "length": 240, "duration": 9,
                        "file_size": 301234}, "video-note-17.mp4", "video/mp4"),
        "sticker": ({"file_id": "v4", "file_unique_id": "d", "type": "regular", "width": 512,
                     "height": 512, "is_animated": False, "is_video": False,
                     "file_size": 23000}, "sticker-17.webp", "image/webp"),
    }  # fmt: skip
    for kind, (item, name, mime) in kinds.items():
        read = read_update({**TEXT, "message": base | {kind: item}})
        assert read is not None, kind
        assert [(f.file_name, f.mime_type) for f in read.files] == [(name, mime)], kind
    place = read_update({**TEXT, "message": base | {
        "location": {"latitude": 55.751244, "longitude": 37.618423}}})  # fmt: skip
    assert place is not None
    assert place.text == "[location: 55.751244, 37.618423]"
    person = read_update({**TEXT, "message": base | {"contact": {
        "phone_number": "+74951314073", "first_name": "Анна", "last_name": "Петрова"}}})  # fmt: skip
    assert person is not None
    assert person.text == "[contact: Анна Петрова, +74951314073]"


def test_hostile_names_cannot_break_the_mail():
    """A CR or LF in a name or file name from Telegram would make the mail unbuildable (or
    forge a header): cleaned, and the mail builds."""
    hostile = {**DOCUMENT, "message": {
        **DOCUMENT["message"],
        "from": {**DOCUMENT["message"]["from"], "first_name": "Пётр\r\nBcc: x@evil.example"},
        "document": {**DOCUMENT["message"]["document"],
                     "file_name": "cubisio.log\r\nContent-Type: text/html",
                     "mime_type": "text/plain\r\nX-Injected: 1"},
    }}  # fmt: skip
    message = read_update(hostile)
    assert message is not None
    assert "\r" not in message.sender_name
    assert "\n" not in message.files[0].file_name
    assert message.files[0].mime_type == "application/octet-stream"
    raw = message_to_mail(message, {"BQACAgIAAxkBAAIBEWX": b"log"},
                          support_address="info@sis.ru", mail_domain="sis.ru", bot_id=BOT)  # fmt: skip
    assert b"\r\nBcc:" not in raw
    assert b"\r\nX-Injected" not in raw


def test_an_unreadable_update_is_kept_as_mail_with_its_json():
    update = {"update_id": 824512999, "message": {"message_id": 5, "chat": {"id": 42,
              "type": "private"}, "date": "not a number", "text": "привет"}}  # fmt: skip
    raw = unreadable_update_mail(update, "ValueError", support_address="info@sis.ru",
                                 mail_domain="sis.ru", bot_id=BOT)  # fmt: skip
    assert raw == unreadable_update_mail(update, "ValueError", support_address="info@sis.ru",
                                         mail_domain="sis.ru", bot_id=BOT)  # fmt: skip
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["From"] == "tg42@telegram.invalid"
    assert mail["Message-ID"] == "<tg.7012345678.update.824512999@sis.ru>"
    [attachment] = list(mail.iter_attachments())
    assert json.loads(attachment.get_content()) == update


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
        app, message_to_mail(first, {}, support_address="info@sis.ru", mail_domain="sis.ru", bot_id=BOT),
        source="telegram",
    )  # fmt: skip
    raw = message_to_mail(
        second, {"BQACAgIAAxkBAAIBEWX": b"2026-03-03 ERROR report\n" * 40},
        support_address="info@sis.ru", mail_domain="sis.ru", bot_id=BOT,
        previous="<tg.7012345678.5812345678.17@sis.ru>",
    )  # fmt: skip
    joined = ingest(app, raw, source="telegram")
    again = ingest(
        app, message_to_mail(first, {}, support_address="info@sis.ru", mail_domain="sis.ru", bot_id=BOT),
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
    raw = message_to_mail(
        message, {}, support_address="info@sis.ru", mail_domain="sis.ru", bot_id=BOT
    )
    assert b"[not received: cubisio.log]" in raw
    assert b"Content-Disposition: attachment" not in raw


def test_the_same_update_gives_the_same_bytes():
    """Fetched again after a crash, an update with a file must be the same mail byte for
    byte (a duplicate is the same Message-ID and content): no random MIME boundary."""
    message = read_update(DOCUMENT)
    assert message is not None
    files = {"BQACAgIAAxkBAAIBEWX": b"log line\n" * 10}
    first = message_to_mail(
        message, files, support_address="info@sis.ru", mail_domain="sis.ru", bot_id=BOT
    )
    again = message_to_mail(
        message, files, support_address="info@sis.ru", mail_domain="sis.ru", bot_id=BOT
    )
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


def test_files_a_bot_may_not_send_are_named_in_the_text():
    mail = EmailMessage()
    mail["Subject"] = "[SIS #12] Отчёт по складу"
    mail.set_content("Журнал сервера во вложении.")
    mail.add_attachment(b"x" * (1536 * 1024), maintype="application", subtype="octet-stream",
                        filename="server.log")  # fmt: skip
    mail.add_attachment(b"ok", maintype="text", subtype="plain", filename="notes.txt")
    reply = chat_reply(mail.as_bytes(), max_file_bytes=1024 * 1024)
    assert [f.filename for f in reply.files] == ["notes.txt"]
    assert reply.texts[-1].endswith(
        "[файл server.log (2 МБ) больше, чем бот может отправить в Telegram (1 МБ): "
        "попросите инженера передать его иначе]"
    )


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
        (413, {"ok": False, "error_code": 413, "description": "Request Entity Too Large"},
         PermanentError, "telegram: 413 Request Entity Too Large"),
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
                             mail_domain="sis.ru", bot_id=BOT),
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


def test_link_state_moves_with_each_decision():
    sent = next_link(NO_LINK, LinkDecision("send_code", "code_sent", "a@b.ru"), NOW)
    assert sent == ChatLink(pending_email="a@b.ru", pending_at=NOW, codes_day="2026-03-03",
                            codes_today=1)  # fmt: skip
    code = link_code(SECRET, 5812345678, "a@b.ru", NOW)
    linked = next_link(sent, decide(code, sent), NOW)
    assert linked == ChatLink(linked_email="a@b.ru", pending_at=NOW, codes_day="2026-03-03",
                              codes_today=1)  # fmt: skip
    # The same code fetched again after a crash shows the link, not "no code pending".
    assert decide(code, linked) == LinkDecision("show", "linked", "a@b.ru")
    # The wait counts from the last code, through a link or a drop.
    assert decide("c@d.ru", linked, now=NOW + timedelta(minutes=5)).reason == "wait"
    assert next_link(linked, decide("", linked), NOW) is None


def test_a_chat_may_ask_for_five_codes_a_day():
    five = ChatLink(codes_day="2026-03-03", codes_today=5)
    assert decide("c@d.ru", five) == LinkDecision("refuse", "chat_limit")
    assert decide("c@d.ru", five, now=NOW + timedelta(days=1)).action == "send_code"
    again = next_link(five, LinkDecision("send_code", "code_sent", "c@d.ru"),
                      NOW + timedelta(days=1))  # fmt: skip
    assert again is not None
    assert (again.codes_day, again.codes_today) == ("2026-03-04", 1)


def test_addresses_with_hidden_characters_are_refused():
    for spoofed in ("a\x00b@x.ru", "ivanov\u200b@sis.ru", "a\u202eb@x.ru", "a\x7f@x.ru"):
        assert decide(spoofed).reason == "bad_address", repr(spoofed)
