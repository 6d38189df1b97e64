"""The guard stage: machine-sent mail is stored but never answered (RFC 3834, RFC 3464).

Pure functions over `MessageFacts`; the pipeline loads the context (how many
acknowledgements this sender got today) and records the decision with its reason.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from parsers.classify import MessageFacts
from parsers.reachability import chat_of_address


class GuardAction(enum.StrEnum):
    ACCEPT = "accept"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class GuardDecision:
    action: GuardAction
    reason: str
    explanation: str = ""


GuardRule = Callable[[MessageFacts, frozenset[str]], "str | None"]
"""Returns why the message is a machine's (a sentence), or None."""


def _own_loop(facts: MessageFacts, own: frozenset[str]) -> str | None:
    found = next((marker for marker in facts.loop_markers if marker in own), None)
    return f"our loop marker {found} is on it: our own mail came back" if found else None


def _dsn(facts: MessageFacts, _: frozenset[str]) -> str | None:
    return "a delivery status notification (RFC 3464 multipart/report)" if facts.is_dsn else None


def _daemon(facts: MessageFacts, _: frozenset[str]) -> str | None:
    found = facts.daemon_address
    return f"sent by {found}, a mail system, not a person" if found else None


def _auto_submitted(facts: MessageFacts, _: frozenset[str]) -> str | None:
    found = facts.auto_submitted
    return f"Auto-Submitted: {found} (RFC 3834: never answer automatic mail)" if found else None


def _autoreply_header(facts: MessageFacts, _: frozenset[str]) -> str | None:
    return f"{facts.autoreply_header}: an autoresponder" if facts.autoreply_header else None


def _list(facts: MessageFacts, _: frozenset[str]) -> str | None:
    if facts.list_header:
        return f"{facts.list_header}: a mailing list post"
    return "Precedence: list: a mailing list post" if facts.precedence == "list" else None


def _unsubscribe(facts: MessageFacts, _: frozenset[str]) -> str | None:
    found = facts.unsubscribe_header
    return f"{found}: sent to a subscriber list" if found else None


def _bulk(facts: MessageFacts, _: frozenset[str]) -> str | None:
    found = facts.precedence
    return f"Precedence: {found}: bulk mail" if found in ("bulk", "junk") else None


def _empty_return_path(facts: MessageFacts, _: frozenset[str]) -> str | None:
    return "Return-Path: <> (RFC 5321: sent by a machine)" if facts.has_empty_return_path else None


def _null_reverse_path(facts: MessageFacts, _: frozenset[str]) -> str | None:
    if not facts.null_reverse_path:
        return None
    return "MAIL FROM:<> (RFC 5321 4.5.5: a notification, which must never be answered)"


def _bounce_subject(facts: MessageFacts, _: frozenset[str]) -> str | None:
    found = facts.bounce_subject
    return f"subject {found!r} is a bounce's" if found else None


def _bounce_shape(facts: MessageFacts, _: frozenset[str]) -> str | None:
    return facts.bounce_shape


def _autoreply_subject(facts: MessageFacts, _: frozenset[str]) -> str | None:
    found = facts.autoreply_subject
    return f"subject {found!r} is an out-of-office reply's" if found else None


# Ordered: the first rule that matches names the reason. A DSN goes first because bounces
# often also carry Auto-Submitted, and "dsn_bounce" is the more useful thing to record; a
# Mailman post says both List-Id and Precedence: list, and "list_message" says more; a
# newsletter says Precedence: bulk and List-Unsubscribe, and "precedence_bulk" says more.
_RULES: tuple[tuple[str, GuardRule], ...] = (
    ("loop_own_message", _own_loop),
    ("dsn_bounce", _dsn),
    ("mailer_daemon", _daemon),
    ("auto_submitted", _auto_submitted),
    ("x_autoreply", _autoreply_header),
    ("list_message", _list),
    ("precedence_bulk", _bulk),
    ("list_message", _unsubscribe),
    ("empty_return_path", _empty_return_path),
    ("bounce_subject", _bounce_subject),
    ("bounce_shape", _bounce_shape),
    ("autoreply_subject", _autoreply_subject),
    ("null_reverse_path", _null_reverse_path),
)


def decide_guard(facts: MessageFacts, own_markers: frozenset[str]) -> GuardDecision:
    """Is this a person writing to support, or a machine that must not be answered?"""
    for reason, rule in _RULES:
        why = rule(facts, own_markers)
        if why is not None:
            return GuardDecision(GuardAction.IGNORE, reason, f"ignored: {why}")
    return GuardDecision(GuardAction.ACCEPT, "from_person", "accepted: no sign of a machine")


def forged_chat_sender(sender: str, source: str) -> str | None:
    """Why this mail must not be taken as a Telegram user's, or None. A chat's address is
    written by maild's bot alone: mail or a form naming it as From would join that user's
    tickets as the user (their token is in every answer) and have our answers sent to
    their chat."""
    if chat_of_address(sender) is None or source == "telegram":
        return None
    return (
        f"quarantined: From {sender} is a Telegram chat's address, which only maild's bot "
        f"writes; this came by {source}"
    )


@dataclass(frozen=True, slots=True)
class AckDecision:
    send: bool
    reason: str


def decide_acknowledgement(
    facts: MessageFacts,
    *,
    acks_today: int,
    limit: int,
    sender_bouncing: bool,
    unanswerable: str | None = None,
) -> AckDecision:
    """Whether a new ticket's requester gets the acknowledgement now.

    `unanswerable` says why the requester's address cannot get mail (parsers.reachability).
    """
    if unanswerable is not None:
        return AckDecision(send=False, reason="sender_not_answerable")
    if facts.suppresses_autoreply:
        return AckDecision(send=False, reason="sender_suppresses_autoreply")
    if sender_bouncing:
        return AckDecision(send=False, reason="sender_bouncing")
    if acks_today >= limit:
        return AckDecision(send=False, reason="ack_rate_limited")
    return AckDecision(send=True, reason="ack_sent")


AUTO_REPLIES = ("acknowledgement", "attachment_refused")
"""Automatic replies to clients: together at most `guard.autoreply_limit` a day per address."""
