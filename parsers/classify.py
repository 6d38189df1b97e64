"""Facts about a message that decide whether a machine sent it: stated, not judged.

`maild.guard` turns these facts into a decision; keeping them apart lets the guard be tested
on hand-made facts and the facts on real messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from parsers.bounce_rules import match_bounce_shape
from parsers.types import ParsedMessage

_DAEMON_LOCALPARTS = frozenset({"mailer-daemon", "mailerdaemon", "postmaster", "mail-daemon"})
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(?:автоответ|автоматический ответ|automatic reply|auto(?:matic)?[- ]?reply|"
    r"auto[- ]?response|out of (?:the )?office|абонент временно недоступен|"
    r"отсутствие на рабочем месте|нет на месте|в отпуске|autosvar|abwesenheitsnotiz|"
    r"automatische antwort|réponse automatique|risposta automatica|respuesta automática)"
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
    """What was found, as found (header values, matched words), so that a decision can say
    exactly why it was taken."""

    sender_email: str | None
    auto_submitted: str | None
    """The Auto-Submitted value when it is not "no" (RFC 3834)."""
    is_dsn: bool
    daemon_address: str | None
    """MAILER-DAEMON or postmaster in From or Return-Path."""
    autoreply_header: str | None
    """`X-Autoreply: yes` or `X-Autorespond: ...`, as a line."""
    precedence: str | None
    """bulk, junk or list."""
    list_header: str | None
    """`List-Id: ...` as a line: a mailing list (RFC 2919)."""
    unsubscribe_header: str | None
    """`List-Unsubscribe: ...` as a line: a list or a newsletter (RFC 2369)."""
    suppresses_autoreply: bool
    has_empty_return_path: bool
    autoreply_subject: str | None
    """The out-of-office words the subject starts with."""
    bounce_subject: str | None
    loop_markers: tuple[str, ...] = ()
    """X-Maild-Loop and X-Loop values: an address of ours there means our mail came back."""
    null_reverse_path: bool = False
    """The SMTP envelope said `MAIL FROM:<>` (known only for mail our listener took)."""
    bounce_shape: str | None = None
    """Which mail server's (or list manager's) notice it is, with the evidence
    (parsers.bounce_rules)."""


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


def _first_line(message: ParsedMessage, *names: str) -> str | None:
    for name in names:
        value = message.header(name)
        if value:
            return f"{name.title()}: {' '.join(value.split())[:200]}"
    return None


def _daemon_address(sender: str | None, return_path: str | None) -> str | None:
    for address in (sender, (return_path or "").strip().strip("<>")):
        if address and _local_part(address) in _DAEMON_LOCALPARTS:
            return address
    return None


def _matched(pattern: re.Pattern[str], subject: str) -> str | None:
    found = pattern.search(subject)
    return found.group(0).strip(" :") if found else None


def message_facts(message: ParsedMessage) -> MessageFacts:
    sender = message.sender.email if message.sender else None
    return_path = message.header("return-path")
    loops = tuple(
        value.strip().strip("<>").lower()
        for name, value in message.headers
        if name in ("x-maild-loop", "x-loop") and value.strip()
    )
    return MessageFacts(
        sender_email=sender,
        auto_submitted=_auto_submitted(message),
        is_dsn=message.report is not None or message.content_type == "multipart/report",
        daemon_address=_daemon_address(sender, return_path),
        autoreply_header=_first_line(message, "x-autoreply", "x-autorespond"),
        precedence=_precedence(message),
        list_header=_first_line(message, "list-id"),
        unsubscribe_header=_first_line(message, "list-unsubscribe"),
        suppresses_autoreply=_suppresses(message),
        has_empty_return_path=return_path is not None and return_path.strip() in ("<>", ""),
        autoreply_subject=_matched(_AUTOREPLY_SUBJECT, message.subject),
        bounce_subject=_matched(_BOUNCE_SUBJECT, message.subject),
        loop_markers=loops,
        bounce_shape=_bounce_shape(message, sender),
    )


def _bounce_shape(message: ParsedMessage, sender: str | None) -> str | None:
    names = frozenset(name for name, _ in message.headers)
    shape = match_bounce_shape(sender, message.subject, message.full_text, names)
    return shape.describe() if shape else None
