"""Facts about a message that decide whether a machine sent it: stated, not judged.

`maild.guard` turns these facts into a decision; keeping them apart lets the guard be tested
on hand-made facts and the facts on real messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from parsers.types import ParsedMessage

_DAEMON_LOCALPARTS = frozenset({"mailer-daemon", "mailerdaemon", "postmaster", "mail-daemon"})
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(?:автоответ|автоматический ответ|automatic reply|auto(?:matic)?[- ]?reply|"
    r"out of (?:the )?office|абонент временно недоступен|autosvar|abwesenheitsnotiz)"
    r"(?:\s+autoreply)?\s*:",
    re.IGNORECASE,
)

# Bounces that are not RFC 3464 reports (Exchange, antivirus gateways, old qmail) still say so
# at the start of the subject; a client forwarding one has "Fwd:" in front and is not matched.
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliverable|undelivered mail|delivery status notification|delivery failure|"
    r"delivery notification|mail delivery failed|mail could not be delivered|returned mail|"
    r"failure notice|message not delivered|delivery has failed|nondeliverable|non remis|"
    r"недоставленное сообщение|сообщение не доставлено|не удалось доставить|"
    r"уведомление о доставке|уведомление о состоянии доставки)"
    r"|:\s*non remis\b|\(delivery failed\)|\(undeliverable\)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class MessageFacts:
    sender_email: str | None
    auto_submitted: str | None
    is_dsn: bool
    is_from_daemon: bool
    has_autoreply_header: bool
    precedence: str | None
    is_list: bool
    suppresses_autoreply: bool
    has_empty_return_path: bool
    has_autoreply_subject: bool
    has_bounce_subject: bool
    loop_marker: str | None


def _auto_submitted(message: ParsedMessage) -> str | None:
    value = (message.header("auto-submitted") or "").split(";")[0].strip().lower()
    return value if value and value != "no" else None


def _precedence(message: ParsedMessage) -> str | None:
    value = (message.header("precedence") or "").strip().lower()
    return value if value in _BULK_PRECEDENCE else None


def _suppresses(message: ParsedMessage) -> bool:
    value = (message.header("x-auto-response-suppress") or "").lower()
    return any(token in value for token in ("all", "oof", "autoreply"))


def _local_part(address: str | None) -> str:
    return (address or "").strip().strip("<>").partition("@")[0].lower()


def message_facts(message: ParsedMessage) -> MessageFacts:
    sender = message.sender.email if message.sender else None
    local_part = sender.partition("@")[0] if sender else ""
    return_path = message.header("return-path")
    return MessageFacts(
        sender_email=sender,
        auto_submitted=_auto_submitted(message),
        is_dsn=message.report is not None or message.content_type == "multipart/report",
        is_from_daemon=bool({local_part, _local_part(return_path)} & _DAEMON_LOCALPARTS),
        has_autoreply_header=bool(message.header("x-autoreply") or message.header("x-autorespond")),
        precedence=_precedence(message),
        is_list=bool(message.header("list-id") or message.header("list-unsubscribe")),
        suppresses_autoreply=_suppresses(message),
        has_empty_return_path=return_path is not None and return_path.strip() in ("<>", ""),
        has_autoreply_subject=bool(_AUTOREPLY_SUBJECT.match(message.subject)),
        has_bounce_subject=bool(_BOUNCE_SUBJECT.search(message.subject)),
        loop_marker=message.header("x-maild-loop"),
    )
