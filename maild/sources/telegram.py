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
import json
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any, Literal

from maild.errors import PermanentError, TransientError
from parsers.reachability import TELEGRAM_DOMAIN, chat_address, chat_of_address
from storage.telegram import ChatLink

SUBJECT_CHARACTERS = 120
SEND_FILE_BYTES = 50 * 1024 * 1024
"""The Bot API takes files of up to 50 MB from a bot (sendDocument)."""
_CYRILLIC = re.compile("[а-яА-ЯёЁ]")
MESSAGE_CHARACTERS = 4096
"""The Bot API's limit on one message's text; a longer mail is sent in parts."""
_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@[A-Za-z0-9_]{1,64})?(?:\s.*)?", re.DOTALL)
_FILE_KINDS = (
    ("document", "document-{}", "application/octet-stream"),
    ("video", "video-{}.mp4", "video/mp4"),
    ("animation", "animation-{}.mp4", "video/mp4"),
    ("video_note", "video-note-{}.mp4", "video/mp4"),
    ("audio", "audio-{}.mp3", "audio/mpeg"),
    ("voice", "voice-{}.ogg", "audio/ogg"),
    ("sticker", "sticker-{}.webp", "image/webp"),
)
"""Message fields that carry a file (file_id, file_size, mime_type), with the name and type
a file gets when Telegram gives none: a screen recording or a voice note is a request too."""
_SERVICE_KEYS = frozenset({
    "new_chat_members", "left_chat_member", "pinned_message", "group_chat_created",
    "message_auto_delete_timer_changed", "successful_payment", "users_shared", "chat_shared",
    "write_access_allowed", "forum_topic_created",
})  # fmt: skip
"""Service messages: Telegram's notes about the chat, not a person writing."""
UNREADABLE_SENDER = f"telegram-update@{TELEGRAM_DOMAIN}"
"""The sender of an update that names no chat: unanswerable (`.invalid`, not a chat's)."""
BOT_COMMANDS = frozenset({"start", "help", "email"})
LINK_CODE_SECONDS = 3600
"""A code mailed for `/email` is good for an hour."""
RESEND_AFTER = timedelta(minutes=10)
"""One code per chat in ten minutes."""
LINK_ATTEMPTS = 5
"""Wrong codes before the pending address is dropped (10^6 codes: 5 guesses are nothing)."""
LINK_MAILS_PER_ADDRESS = 3
"""Codes mailed to one address in a day, by all chats together: the bot is no mail bomb."""
LINK_CODES_PER_CHAT = 5
"""Codes one chat may have mailed in a day, to whatever addresses."""
_ADDRESS = re.compile(
    r"[^@\s<>,;:\"()\[\]\x00-\x1f\x7f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]{1,64}"
    r"@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}"
)
"""An address to mail a code to: no control or invisible characters (they would reach the
outbox's To header, or make one person's address look like another's)."""
_CODE = re.compile(r"[0-9]{6}")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


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


def _clean(value: Any, limit: int) -> str:
    """A string from Telegram that will sit in a header: no control characters (a CR or LF
    would make the mail unbuildable, or forge a header), whitespace collapsed, capped."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in str(value or ""))
    return " ".join(text.split())[:limit]


def _content_type(value: Any) -> str:
    text = str(value or "").strip().lower()
    return text if _CONTENT_TYPE.fullmatch(text) else "application/octet-stream"


def read_update(update: dict[str, Any]) -> TelegramMessage | None:
    """A private message from a person, or None (a group, a channel post, an edit, a bot,
    a service message): the bot answers people in private chats only. A message of a kind
    that carries nothing maild keeps (a poll, a dice) comes back with no text and no
    files: the bot says so in the chat rather than drop it unseen."""
    message = update.get("message")
    if not isinstance(message, dict):
        return None
    chat, sender = message.get("chat") or {}, message.get("from") or {}
    if chat.get("type") != "private" or sender.get("is_bot") or not isinstance(chat.get("id"), int):
        return None
    if any(key in message for key in _SERVICE_KEYS):
        return None
    number = message.get("message_id")
    files = [
        _file(message.get(kind), name.format(number), default_type)
        for kind, name, default_type in _FILE_KINDS
    ]
    photos = message.get("photo") or []
    if photos:  # sizes of one photo, smallest first: the largest is the picture
        files.append(_file(photos[-1], f"photo-{number}.jpg", "image/jpeg"))
    text = "\n".join(
        part for part in (str(message.get("text") or message.get("caption") or ""),
                          _described(message)) if part
    )  # fmt: skip
    name = _clean(" ".join(str(sender.get(k) or "") for k in ("first_name", "last_name")), 128)
    return TelegramMessage(
        update_id=int(update.get("update_id", 0)), chat_id=chat["id"],
        message_id=int(message.get("message_id", 0)), sender_name=name,
        username=_clean(sender.get("username"), 64),
        sent_at=datetime.fromtimestamp(int(message.get("date", 0)), UTC), text=text,
        files=tuple(f for f in files if f is not None),
        language=_clean(sender.get("language_code"), 16),
    )  # fmt: skip


def _described(message: dict[str, Any]) -> str:
    """A location or a contact, which have no file, as a line of text."""
    location = message.get("location")
    if isinstance(location, dict):
        return f"[location: {location.get('latitude')}, {location.get('longitude')}]"
    contact = message.get("contact")
    if isinstance(contact, dict):
        who = _clean(f"{contact.get('first_name', '')} {contact.get('last_name', '')}", 128)
        return f"[contact: {who}, {_clean(contact.get('phone_number'), 32)}]"
    return ""


def _file(
    item: Any, fallback_name: str, fallback_type: str = "application/octet-stream"
) -> TelegramFile | None:
    if not isinstance(item, dict) or not item.get("file_id"):
        return None
    return TelegramFile(
        file_id=str(item["file_id"]), file_name=_clean(item.get("file_name"), 255) or fallback_name,
        mime_type=_content_type(item.get("mime_type") or fallback_type),
        size=int(item.get("file_size") or 0),
    )  # fmt: skip


def message_to_mail(
    message: TelegramMessage,
    downloads: dict[str, bytes],
    *,
    support_address: str,
    mail_domain: str,
    bot_id: int,
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
    mail["Subject"] = _clean(first_line, SUBJECT_CHARACTERS) or "Telegram"
    mail["Date"] = format_datetime(message.sent_at)
    mail["Message-ID"] = message_id_of(message, bot_id, mail_domain)
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


def update_chat(update: dict[str, Any]) -> int | None:
    """The chat an update's message came from, however odd the rest of it is."""
    message = update.get("message")
    chat = message.get("chat") if isinstance(message, dict) else None
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    return chat_id if isinstance(chat_id, int) and not isinstance(chat_id, bool) else None


def unreadable_message_id(update: dict[str, Any], bot_id: int, mail_domain: str) -> str:
    return f"<tg.{bot_id}.update.{_clean(update.get('update_id'), 24)}@{mail_domain}>"


def unreadable_update_mail(
    update: dict[str, Any], reason: str, *, bot_id: int, support_address: str, mail_domain: str
) -> bytes:
    """An update maild failed to turn into a request, kept rather than dropped: a mail with
    the update's JSON attached, from the chat's address when there is one (else from an
    unanswerable one: no acknowledgement goes out). The same update gives the same bytes."""
    chat = update_chat(update)
    update_id = update.get("update_id")
    mail = EmailMessage(policy=SMTP)
    mail["From"] = chat_address(chat) if chat is not None else UNREADABLE_SENDER
    mail["To"] = support_address
    mail["Subject"] = f"Telegram: update {update_id} could not be read"
    mail["Message-ID"] = unreadable_message_id(update, bot_id, mail_domain)
    document = json.dumps(update, ensure_ascii=False, indent=1, sort_keys=True, default=str)
    mail.set_content(
        f"maild could not turn Telegram update {update_id} into a request ({_clean(reason, 200)}). "
        "The update as Telegram sent it is attached.\n",
        charset="utf-8",
    )
    mail.add_attachment(document.encode(), maintype="application", subtype="json",
                        filename=f"telegram-update-{_clean(update_id, 24)}.json")  # fmt: skip
    mail.set_boundary(f"=_tg_{hashlib.sha256(document.encode()).hexdigest()[:32]}")
    return mail.as_bytes()


def message_id_of(message: TelegramMessage, bot_id: int, mail_domain: str) -> str:
    """Chat and message ids with the bot's: message ids are the bot's own sequence in a
    private chat (whose id is the user's for every bot), so a replacement bot starts them
    again at 1 and its messages must not pass for the old bot's."""
    return f"<tg.{bot_id}.{message.chat_id}.{message.message_id}@{mail_domain}>"


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
    # The instant, not its rendering: PostgreSQL gives timestamptz back in the session's
    # time zone, and a Moscow rendering of the same moment must give the same code.
    moment = issued_at.astimezone(UTC).isoformat(timespec="microseconds")
    message = f"{chat_id}|{address.lower()}|{moment}".encode()
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


def next_link(link: ChatLink, decision: LinkDecision, now: datetime) -> ChatLink | None:
    """The chat's link state after `decision`, or None when it does not change. The moment
    of the last code stays through a link or a drop: the wait between codes counts from it."""
    if decision.action == "send_code":
        today = _day(now)
        sent = link.codes_today if link.codes_day == today else 0
        return replace(link, pending_email=decision.address, pending_at=now, attempts=0,
                       codes_day=today, codes_today=sent + 1)  # fmt: skip
    if decision.action == "link":
        return replace(link, linked_email=decision.address, pending_email=None, attempts=0)
    if decision.action == "count_attempt":
        return replace(link, attempts=link.attempts + 1)
    if decision.reason == "too_many_attempts" and link.pending_email is not None:
        return replace(link, pending_email=None, attempts=0)
    return None


def _day(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


def _request_code(
    address: str, link: ChatLink, now: datetime, own: frozenset[str], mailed_today: int
) -> LinkDecision:
    if not _ADDRESS.fullmatch(address):
        return LinkDecision("refuse", "bad_address")
    if address in own or chat_of_address(address) is not None:
        return LinkDecision("refuse", "own_address", address)
    if link.pending_at is not None and now - link.pending_at < RESEND_AFTER:
        return LinkDecision("refuse", "wait", link.pending_email)
    if link.codes_day == _day(now) and link.codes_today >= LINK_CODES_PER_CHAT:
        return LinkDecision("refuse", "chat_limit")
    if mailed_today >= LINK_MAILS_PER_ADDRESS:
        return LinkDecision("refuse", "address_limit", address)
    return LinkDecision("send_code", "code_sent", address)


def _confirm(
    code: str, link: ChatLink, now: datetime, *, secret: bytes, chat_id: int
) -> LinkDecision:
    if link.pending_email is None or link.pending_at is None:
        # A code used already (the command fetched again after a crash) shows the link.
        linked = link.linked_email
        return LinkDecision("show", "linked", linked) if linked else LinkDecision(
            "refuse", "no_pending")  # fmt: skip
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


def chat_reply(raw: bytes, max_file_bytes: int = SEND_FILE_BYTES) -> ChatReply:
    """What maild mails to a chat's address, as the bot sends it: the subject (it carries the
    ticket's token) over the plain text, cut into messages the Bot API accepts at line
    ends; attachments as files, those larger than a bot may send named in the text instead
    (a request Telegram refuses would fail the whole answer). Plain text, no parse mode:
    nothing in it is markup."""
    mail = BytesParser(EmailMessage, policy=email.policy.default).parsebytes(raw)
    subject = " ".join(str(mail.get("Subject", "")).split())
    body = mail.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    text = text.replace("\r\n", "\n").strip()
    russian = _CYRILLIC.search(f"{subject} {text}") is not None
    files, too_large = [], []
    for part in mail.iter_attachments():
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes) or not data:
            continue
        name = _clean(part.get_filename(), 255).replace('"', "'") or "file.bin"
        if len(data) > max_file_bytes:
            too_large.append(_too_large_note(name, len(data), max_file_bytes, russian=russian))
        else:
            files.append(ChatFile(name, part.get_content_type(), data))
    whole = f"{subject}\n\n{text}" if subject else text
    if too_large:
        whole += "\n\n" + "\n".join(too_large)
    return ChatReply(split_text(whole, MESSAGE_CHARACTERS), tuple(files))


def _too_large_note(name: str, size: int, limit: int, *, russian: bool) -> str:
    megabytes, limit_mb = -(-size // (1024 * 1024)), limit // (1024 * 1024)
    if russian:
        return (f"[файл {name} ({megabytes} МБ) больше, чем бот может отправить в Telegram "
                f"({limit_mb} МБ): попросите инженера передать его иначе]")  # fmt: skip
    return (f"[file {name} ({megabytes} MB) is larger than a bot may send in Telegram "
            f"({limit_mb} MB): ask the engineer for another way]")  # fmt: skip


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
    if code in (400, 403, 413) or (code == 404 and "chat" in description.lower()):
        return PermanentError(message)
    return TransientError(message)  # 401/404: a wrong token the admin will fix; 409, 5xx
