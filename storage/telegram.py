"""The Telegram bot's intake state: the next update to ask for, each chat's last message.

Written by the polling source after the spool write and before the next getUpdates, in one
transaction: asking from past an update is what confirms it to Telegram, so an update is
confirmed only once it is durable here, and a crash in between fetches it again (its
Message-ID makes the copy a `duplicate`). In the database, not a file beside the spool,
so that a standby on another machine continues where the holder of the bot stopped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Engine, insert, select, update

from storage.models import TelegramChat, TelegramPosition


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


def record_update(
    engine: Engine,
    bot_id: int,
    next_update_id: int,
    now: datetime,
    chat: tuple[int, str] | None = None,
) -> None:
    """The update is in the spool (or was skipped): ask from `next_update_id` from now on;
    `chat`: (chat id, Message-ID) of the message it became."""
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
