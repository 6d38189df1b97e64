"""The Telegram bot's intake state: the next update to ask for, each chat's last message.

Written by the polling source after the spool write and before the next getUpdates, in one
transaction: asking from past an update is what confirms it to Telegram, so an update is
confirmed only once it is durable here, and a crash in between fetches it again (its
Message-ID makes the copy a `duplicate`). In the database, not a file beside the spool,
so that a standby on another machine continues where the holder of the bot stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Engine, func, insert, or_, select, update
from sqlalchemy.orm import Session

from storage.models import OutboxMessage, TelegramChat, TelegramPosition


@dataclass(frozen=True, slots=True)
class ChatLink:
    """A chat's mail address: proved (`linked_email`), or waiting for its code; and how
    many codes the chat had mailed on `codes_day` (a bound on mail to strangers)."""

    linked_email: str | None = None
    pending_email: str | None = None
    pending_at: datetime | None = None
    """When the last code was mailed; kept after it is used or dropped (the wait counts
    from it)."""
    attempts: int = 0
    codes_day: str | None = None
    codes_today: int = 0


LINK_PURPOSE = "telegram_link"
"""The outbox purpose of the mail that carries a chat's code to the address it names."""


def load_next_update(engine: Engine, bot_id: int) -> int:
    """The update to ask getUpdates for; 0 (whatever Telegram still holds) at first."""
    with engine.connect() as connection:
        value = connection.scalar(
            select(TelegramPosition.next_update_id).where(TelegramPosition.bot_id == bot_id)
        )
    return int(value) if value is not None else 0


def load_last_message(engine: Engine, chat_id: int) -> str | None:
    """The Message-ID of the chat's last message spooled, or None for a new chat."""
    with engine.connect() as connection:
        value = connection.scalar(
            select(TelegramChat.last_message_id).where(TelegramChat.chat_id == chat_id)
        )
    return str(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class LinkChange:
    """What `/email` changes, written with the update's position in one transaction: a
    command fetched again after a crash finds its effect already there or not at all."""

    chat_id: int
    link: ChatLink
    code_mail: bytes | None = None
    """The code's mail to `link.pending_email`, for the outbox."""


def record_update(
    engine: Engine,
    bot_id: int,
    next_update_id: int,
    now: datetime,
    *,
    chat: tuple[int, str] | None = None,
    change: LinkChange | None = None,
) -> None:
    """The update is in the spool (or was answered, or skipped): ask from `next_update_id`
    from now on; `chat`: (chat id, Message-ID) of the message it became; `change`: what a
    `/email` command changed."""
    with engine.begin() as connection:
        _upsert(
            connection, TelegramPosition, TelegramPosition.bot_id == bot_id,
            {"bot_id": bot_id}, {"next_update_id": next_update_id, "updated_at": now},
        )  # fmt: skip
        if chat is not None:
            chat_id, message_id = chat
            _upsert(
                connection, TelegramChat, TelegramChat.chat_id == chat_id,
                {"chat_id": chat_id}, {"last_message_id": message_id, "updated_at": now},
            )  # fmt: skip
        if change is not None:
            _save_link(connection, change.chat_id, change.link, now)
            if change.code_mail is not None:
                _queue_code(connection, change.link, change.code_mail, now)


def _upsert(
    connection: Connection,
    table: type[TelegramPosition] | type[TelegramChat],
    where: ColumnElement[bool],
    key: dict[str, int],
    values: dict[str, object],
) -> None:
    """Update the row, or insert it: one source writes a bot's rows (the holder of its
    lock), so the two statements never race."""
    if not connection.execute(update(table).where(where).values(values)).rowcount:
        connection.execute(insert(table), {**key, **values})


def load_link(engine: Engine, chat_id: int) -> ChatLink:
    with engine.connect() as connection:
        row = connection.execute(
            select(
                TelegramChat.linked_email, TelegramChat.pending_email, TelegramChat.pending_at,
                TelegramChat.attempts, TelegramChat.codes_day, TelegramChat.codes_today,
            ).where(TelegramChat.chat_id == chat_id)
        ).first()  # fmt: skip
    if row is None:
        return ChatLink()
    return ChatLink(row[0], row[1], row[2], int(row[3] or 0), row[4], int(row[5] or 0))


def _queue_code(connection: Connection, link: ChatLink, raw: bytes, now: datetime) -> None:
    address = link.pending_email
    if not address:
        raise ValueError("a code goes to the pending address; there is none")
    connection.execute(
        insert(OutboxMessage),
        {"message_id": None, "purpose": LINK_PURPOSE, "recipient": address,
         "envelope_from": "", "recipients": address, "raw": raw, "state": "pending",
         "attempts": 0, "created_at": now, "next_attempt_at": now},
    )  # fmt: skip


def count_link_mails(engine: Engine, address: str, since: datetime) -> int:
    """Codes mailed since then to `address` or to any of its `+tag` forms, by any chat: a
    bound on mail to one person however the address is spelt."""
    local, _, domain = address.lower().partition("@")
    base = local.partition("+")[0]
    tagged = base.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with engine.connect() as connection:
        value = connection.scalar(
            select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.purpose == LINK_PURPOSE, OutboxMessage.created_at >= since,
                or_(OutboxMessage.recipient == f"{base}@{domain}",
                    OutboxMessage.recipient.like(f"{tagged}+%@{domain}", escape="\\")),
            )
        )  # fmt: skip
    return int(value or 0)


def linked_addresses(session: Session, chat_ids: Iterable[int]) -> dict[int, str]:
    """The proved mail address of each of these chats that has one."""
    wanted = list(chat_ids)
    if not wanted:
        return {}
    rows = session.execute(
        select(TelegramChat.chat_id, TelegramChat.linked_email).where(
            TelegramChat.chat_id.in_(wanted), TelegramChat.linked_email.is_not(None)
        )
    )
    return {int(chat_id): str(email) for chat_id, email in rows}


def _save_link(connection: Connection, chat_id: int, link: ChatLink, now: datetime) -> None:
    _upsert(
        connection, TelegramChat, TelegramChat.chat_id == chat_id, {"chat_id": chat_id},
        {"linked_email": link.linked_email, "pending_email": link.pending_email,
         "pending_at": link.pending_at, "attempts": link.attempts, "codes_day": link.codes_day,
         "codes_today": link.codes_today, "updated_at": now},
    )  # fmt: skip
