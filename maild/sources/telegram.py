"""Telegram private messages as mail, pure (issue 19, the first part of the bot).

A Bot API `Update` with a private `message` becomes the mail its sender would have written:
From a reserved address of the chat (`tg<chat id>@telegram.invalid`: `.invalid` can never
be delivered by SMTP, RFC 2606), To the support address, the text (or a file's caption) as
the body, downloaded files as attachments. The Message-ID is derived from the chat and the
message id, so an update fetched twice (a crash before `getUpdates` was acknowledged) is a
`duplicate`, not a second request; and the chat's address makes every message of one user
join that user's open ticket as mail from one sender does. The spool source `telegram`
gives the ticket its channel. Replies back to the chat go by the Bot API (still to come).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

TELEGRAM_DOMAIN = "telegram.invalid"
SUBJECT_CHARACTERS = 120
_CHAT_LOCAL = re.compile(r"tg(-?[0-9]{1,20})")


@dataclass(frozen=True, slots=True)
class TelegramFile:
    """A file the message carries: what `getFile` is asked for, and its name and type."""

    file_id: str
    file_name: str
    mime_type: str
    size: int


@dataclass(frozen=True, slots=True)
class TelegramMessage:
    update_id: int
    chat_id: int
    message_id: int
    sender_name: str
    username: str
    sent_at: datetime
    text: str
    files: tuple[TelegramFile, ...]


def chat_address(chat_id: int) -> str:
    return f"tg{chat_id}@{TELEGRAM_DOMAIN}"


def chat_of_address(address: str) -> int | None:
    """The chat a reserved address stands for; None for any other address."""
    local, _, domain = address.lower().partition("@")
    match = _CHAT_LOCAL.fullmatch(local)
    return int(match.group(1)) if domain == TELEGRAM_DOMAIN and match else None


def read_update(update: dict[str, Any]) -> TelegramMessage | None:
    """A private message from a person, or None (a group, a channel post, an edit, a bot,
    a service message): the bot answers people in private chats only."""
    message = update.get("message")
    if not isinstance(message, dict):
        return None
    chat, sender = message.get("chat") or {}, message.get("from") or {}
    if chat.get("type") != "private" or sender.get("is_bot") or not isinstance(chat.get("id"), int):
        return None
    files = [_file(message.get("document"), "document")]
    photos = message.get("photo") or []
    if photos:  # sizes of one photo, smallest first: the largest is the picture
        files.append(_file(photos[-1], f"photo-{message.get('message_id')}.jpg", "image/jpeg"))
    text = str(message.get("text") or message.get("caption") or "")
    present = tuple(f for f in files if f is not None)
    if not text.strip() and not present:
        return None
    name = " ".join(str(sender.get(k) or "") for k in ("first_name", "last_name")).strip()
    return TelegramMessage(
        update_id=int(update.get("update_id", 0)), chat_id=chat["id"],
        message_id=int(message.get("message_id", 0)), sender_name=name,
        username=str(sender.get("username") or ""),
        sent_at=datetime.fromtimestamp(int(message.get("date", 0)), UTC), text=text,
        files=present,
    )  # fmt: skip


def _file(
    item: Any, fallback_name: str, fallback_type: str = "application/octet-stream"
) -> TelegramFile | None:
    if not isinstance(item, dict) or not item.get("file_id"):
        return None
    return TelegramFile(
        file_id=str(item["file_id"]), file_name=str(item.get("file_name") or fallback_name),
        mime_type=str(item.get("mime_type") or fallback_type), size=int(item.get("file_size") or 0),
    )  # fmt: skip


def message_to_mail(
    message: TelegramMessage,
    downloads: dict[str, bytes],
    *,
    support_address: str,
    mail_domain: str,
    previous: str | None = None,
) -> bytes:
    """The message as mail from the chat's address; `downloads` holds the bytes of the
    files fetched (by file_id); a file that could not be fetched is named in the text.
    `previous`: the Message-ID of the chat's last message to us, as In-Reply-To, so that a
    chat is one conversation (threaded as a reply is; a closed ticket reopens or links)."""
    mail = EmailMessage(policy=SMTP)
    display = message.sender_name or (f"@{message.username}" if message.username else "")
    mail["From"] = Address(display_name=display, addr_spec=chat_address(message.chat_id))
    mail["To"] = support_address
    first_line = (message.text.strip().splitlines() or ["Telegram"])[0]
    mail["Subject"] = first_line[:SUBJECT_CHARACTERS]
    mail["Date"] = format_datetime(message.sent_at)
    mail["Message-ID"] = f"<tg.{message.chat_id}.{message.message_id}@{mail_domain}>"
    if previous:
        mail["In-Reply-To"] = previous
        mail["References"] = previous
    missing = [f.file_name for f in message.files if f.file_id not in downloads]
    body = message.text.strip()
    if missing:
        body += "\n\n" + "\n".join(f"[not received: {name}]" for name in missing)
    mail.set_content(body + "\n", charset="utf-8")
    for item in message.files:
        data = downloads.get(item.file_id)
        if data is None:
            continue
        maintype, _, subtype = item.mime_type.partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=item.file_name)
    return mail.as_bytes()
