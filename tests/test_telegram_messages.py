"""Telegram updates as mail (issue 19, the bot's pure first part): the Bot API's Update JSON
as the public documentation shows it (core.telegram.org/bots/api#update, #message,
#document, #photosize), through the real pipeline as channel `telegram`."""

from __future__ import annotations

from sqlalchemy import select

from maild.sources.telegram import (
    chat_address,
    chat_of_address,
    message_to_mail,
    read_update,
)
from storage.models import Attachment, Ticket
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
