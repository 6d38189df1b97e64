"""The guard stage: machine-sent mail is stored but never answered (RFC 3834, RFC 3464).

Pure functions over `MessageFacts`; the pipeline loads the context (how many
acknowledgements this sender got today) and records the decision with its reason.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from parsers.classify import MessageFacts


class GuardAction(enum.StrEnum):
    ACCEPT = "accept"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class GuardDecision:
    action: GuardAction
    reason: str


# Ordered: the first rule that matches names the reason. A DSN goes first because bounces
# often also carry Auto-Submitted, and "dsn_bounce" is the more useful thing to record.
_RULES: tuple[tuple[str, Callable[[MessageFacts, str], bool]], ...] = (
    ("loop_own_message", lambda facts, marker: facts.loop_marker == marker),
    ("dsn_bounce", lambda facts, _: facts.is_dsn),
    ("mailer_daemon", lambda facts, _: facts.is_from_daemon),
    ("auto_submitted", lambda facts, _: facts.auto_submitted is not None),
    ("x_autoreply", lambda facts, _: facts.has_autoreply_header),
    ("precedence_bulk", lambda facts, _: facts.precedence is not None),
    ("list_message", lambda facts, _: facts.is_list),
    ("empty_return_path", lambda facts, _: facts.has_empty_return_path),
    ("bounce_subject", lambda facts, _: facts.has_bounce_subject),
    ("autoreply_subject", lambda facts, _: facts.has_autoreply_subject),
)


def decide_guard(facts: MessageFacts, loop_marker: str) -> GuardDecision:
    """Is this a person writing to support, or a machine that must not be answered?"""
    for reason, matches in _RULES:
        if matches(facts, loop_marker):
            return GuardDecision(GuardAction.IGNORE, reason)
    return GuardDecision(GuardAction.ACCEPT, "from_person")


@dataclass(frozen=True, slots=True)
class AckDecision:
    send: bool
    reason: str


def decide_acknowledgement(
    facts: MessageFacts, *, acks_today: int, limit: int, sender_bouncing: bool
) -> AckDecision:
    """Whether a new ticket's requester gets the acknowledgement now."""
    if facts.suppresses_autoreply:
        return AckDecision(send=False, reason="sender_suppresses_autoreply")
    if sender_bouncing:
        return AckDecision(send=False, reason="sender_bouncing")
    if acks_today >= limit:
        return AckDecision(send=False, reason="ack_rate_limited")
    return AckDecision(send=True, reason="ack_sent")
