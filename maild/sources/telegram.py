"""Telegram private messages as mail, pure (issue 19, the first part of the bot).

A Bot API `Update` with a private `message` becomes the mail its sender would have written:
From a reserved address of the chat (`tg<chat id>@telegram.invalid`: `.invalid` can never
be delivered by SMTP, RFC 2606), To the support address, the text (or a file's caption) as
the body, downloaded files as attachments. The Message-ID is derived from the chat and the
message id, so an update fetched twice (a crash before `getUpdates` was acknowledged) is a
`duplicate`, not a second request; and the chat's address makes every message of one user
join that user's open ticket as mail from one sender does. The spool source `telegram`
gives the ticket its channel.

The way back is pure too: `chat_reply` reads what maild would mail to the chat's address
(an acknowledgement, an engineer's answer) into the texts and files the bot sends, and
`api_failure` says whether a Bot API error is worth another attempt. The I/O is in
`maild.sources.telegram_bot`.
"""

from __future__ import annotations

import email.policy
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any, Literal

from maild.errors import PermanentError, TransientError
from parsers.reachability import chat_address, chat_of_address
from storage.telegram import ChatLink

SUBJECT_CHARACTERS = 120
MESSAGE_CHARACTERS = 4096
"""The Bot API's limit on one message's text; a longer mail is sent in parts."""
_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@[A-Za-z0-9_]{1,64})?(?:\s.*)?", re.DOTALL)
BOT_COMMANDS = frozenset({"start", "help", "email"})
LINK_CODE_SECONDS = 3600
"""A code mailed for `/email` is good for an hour."""
RESEND_AFTER = timedelta(minutes=10)
"""One code per chat in ten minutes."""
LINK_ATTEMPTS = 5
"""Wrong codes before the pending address is dropped (10^6 codes: 5 guesses are nothing)."""
LINK_MAILS_PER_ADDRESS = 3
"""Codes mailed to one address in a day, by all chats together: the bot is no mail bomb."""
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
_CODE = re.compile(r"[0-9]{6}")


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
    language: str = ""
    """The user's interface language as Telegram reports it (`ru`, `en`, ...), or ""."""


@dataclass(frozen=True, slots=True)
class ChatFile:
    filename: str
    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ChatReply:
    """What the bot sends to a chat for one outgoing mail: texts in order, then files."""

    texts: tuple[str, ...]
    files: tuple[ChatFile, ...]


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
        files=present, language=str(sender.get("language_code") or ""),
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
    refused: dict[str, str] | None = None,
) -> bytes:
    """The message as mail from the chat's address; `downloads` holds the bytes of the
    files fetched (by file_id); a file that could not be fetched is named in the text, with
    the reason from `refused` (by file_id) when there is one.
    `previous`: the Message-ID of the chat's last message to us, as In-Reply-To, so that a
    chat is one conversation (threaded as a reply is; a closed ticket reopens or links)."""
    mail = EmailMessage(policy=SMTP)
    display = message.sender_name or (f"@{message.username}" if message.username else "")
    mail["From"] = Address(display_name=display, addr_spec=chat_address(message.chat_id))
    mail["To"] = support_address
    files_named = ", ".join(f.file_name for f in message.files)
    first_line = (message.text.strip().splitlines() or [f"Telegram: {files_named}"])[0]
    mail["Subject"] = first_line[:SUBJECT_CHARACTERS]
    mail["Date"] = format_datetime(message.sent_at)
    mail["Message-ID"] = f"<tg.{message.chat_id}.{message.message_id}@{mail_domain}>"
    if previous:
        mail["In-Reply-To"] = previous
        mail["References"] = previous
    reasons = refused or {}
    missing = [
        f"[not received: {f.file_name}"
        + (f": {reasons[f.file_id]}]" if f.file_id in reasons else "]")
        for f in message.files
        if f.file_id not in downloads
    ]
    body = message.text.strip()
    if missing:
        body = (body + "\n\n" + "\n".join(missing)).strip()
    mail.set_content(body + "\n", charset="utf-8")
    for item in message.files:
        data = downloads.get(item.file_id)
        if data is None:
            continue
        maintype, _, subtype = item.mime_type.partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=item.file_name)
    if mail.is_multipart():
        # The same update fetched again must give the same bytes (a `duplicate` is the same
        # Message-ID and the same content): a boundary from the content, not a random one.
        digest = hashlib.sha256(body.encode())
        for item in message.files:
            digest.update(item.file_id.encode() + b"\0" + downloads.get(item.file_id, b""))
        mail.set_boundary(f"=_tg_{digest.hexdigest()[:32]}")
    return mail.as_bytes()


def bot_command(text: str) -> str | None:
    """`start`, `help` or `email` for the bot's own commands (`/start`,
    `/help@SisSupportBot`, `/email ADDRESS`): the bot answers them itself, they open no
    ticket. Any other text is a request."""
    match = _COMMAND.fullmatch(text.strip())
    command = match.group(1).lower() if match else None
    return command if command in BOT_COMMANDS else None


def command_argument(text: str) -> str:
    """What follows the command word: `/email a@b.ru` gives `a@b.ru`."""
    _, _, rest = text.strip().partition(" ")
    return rest.strip()


LinkAction = Literal["show", "send_code", "link", "refuse", "count_attempt"]


@dataclass(frozen=True, slots=True)
class LinkDecision:
    """What `/email` does: show the link, mail a code, link the address, count a wrong code,
    or refuse; `reason` is the stable code the chat's answer is worded from."""

    action: LinkAction
    reason: str
    address: str | None = None
    attempts_left: int = 0


def link_code(secret: bytes, chat_id: int, address: str, issued_at: datetime) -> str:
    """Six digits only maild can compute (the key never leaves it), bound to the chat, the
    address and the moment it was issued: nothing secret is stored with the pending link."""
    message = f"{chat_id}|{address.lower()}|{issued_at.isoformat()}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**6:06d}"


def decide_link(
    argument: str,
    link: ChatLink,
    now: datetime,
    *,
    secret: bytes,
    chat_id: int,
    own_addresses: frozenset[str],
    mails_to_address_today: int,
) -> LinkDecision:
    """`/email` (show), `/email ADDRESS` (mail a code there) or `/email CODE` (prove it)."""
    if not argument:
        return LinkDecision("show", "linked" if link.linked_email else "not_linked",
                            link.linked_email)  # fmt: skip
    if _CODE.fullmatch(argument):
        return _confirm(argument, link, now, secret=secret, chat_id=chat_id)
    return _request_code(argument.lower(), link, now, own_addresses, mails_to_address_today)


def _request_code(
    address: str, link: ChatLink, now: datetime, own: frozenset[str], mailed_today: int
) -> LinkDecision:
    if not _ADDRESS.fullmatch(address):
        return LinkDecision("refuse", "bad_address")
    if address in own or chat_of_address(address) is not None:
        return LinkDecision("refuse", "own_address", address)
    recent = link.pending_at is not None and now - link.pending_at < RESEND_AFTER
    if recent:
        return LinkDecision("refuse", "wait", link.pending_email)
    if mailed_today >= LINK_MAILS_PER_ADDRESS:
        return LinkDecision("refuse", "address_limit", address)
    return LinkDecision("send_code", "code_sent", address)


def _confirm(
    code: str, link: ChatLink, now: datetime, *, secret: bytes, chat_id: int
) -> LinkDecision:
    if link.pending_email is None or link.pending_at is None:
        return LinkDecision("refuse", "no_pending")
    if (now - link.pending_at).total_seconds() > LINK_CODE_SECONDS:
        return LinkDecision("refuse", "expired", link.pending_email)
    if link.attempts >= LINK_ATTEMPTS:
        return LinkDecision("refuse", "too_many_attempts", link.pending_email)
    expected = link_code(secret, chat_id, link.pending_email, link.pending_at)
    if hmac.compare_digest(code, expected):
        return LinkDecision("link", "linked", link.pending_email)
    left = LINK_ATTEMPTS - link.attempts - 1
    if left <= 0:
        return LinkDecision("refuse", "too_many_attempts", link.pending_email)
    return LinkDecision("count_attempt", "wrong_code", link.pending_email, left)


def chat_reply(raw: bytes) -> ChatReply:
    """What maild mails to a chat's address, as the bot sends it: the subject (it carries the
    ticket's token) over the plain text, cut into messages the Bot API accepts at line
    ends; attachments as files. Plain text, no parse mode: nothing in it is markup."""
    mail = BytesParser(EmailMessage, policy=email.policy.default).parsebytes(raw)
    subject = " ".join(str(mail.get("Subject", "")).split())
    body = mail.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    text = text.replace("\r\n", "\n").strip()
    files = []
    for part in mail.iter_attachments():
        data = part.get_payload(decode=True)
        if isinstance(data, bytes) and data:
            name = part.get_filename() or "file.bin"
            files.append(ChatFile(name, part.get_content_type(), data))
    whole = f"{subject}\n\n{text}" if subject else text
    return ChatReply(split_text(whole, MESSAGE_CHARACTERS), tuple(files))


def split_text(text: str, limit: int) -> tuple[str, ...]:
    """`text` in parts of at most `limit` characters, cut at the last line end (else the
    last space) before the limit, so that no part ends inside a word if it can help it."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = rest.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest.strip() or not parts:
        parts.append(rest)
    return tuple(parts)


class RetryLater(TransientError):
    """Telegram's flood limit (429): try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def api_failure(status: int, payload: Any) -> TransientError | PermanentError:
    """A Bot API error as maild's error tree: worth another attempt (the server busy or
    limiting us, the token being fixed, the network) or not (the user blocked the bot, the
    chat is gone, Telegram refuses this message). Never holds the token: the description is
    Telegram's, the URL is not quoted."""
    document = payload if isinstance(payload, dict) else {}
    code = int(document.get("error_code") or status)
    description = str(document.get("description") or f"HTTP {status}")[:200]
    message = f"telegram: {code} {description}"
    parameters = document.get("parameters") or {}
    if isinstance(parameters, dict) and parameters.get("retry_after"):
        retry_after = int(parameters["retry_after"])
        return RetryLater(f"{message} (retry after {retry_after} s)", retry_after)
    if code in (400, 403) or (code == 404 and "chat" in description.lower()):
        return PermanentError(message)
    return TransientError(message)  # 401/404: a wrong token the admin will fix; 409, 429, 5xx
