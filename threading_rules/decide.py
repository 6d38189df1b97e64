"""decide_thread: the ordered rules that put a message into a ticket, each with its reason.

The caller loads a `ThreadContext` (which tickets the token and the references point at, who
may write to them); the rules only read it, so each one is tested without a database.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


class ThreadAction(enum.StrEnum):
    NEW_TICKET = "new_ticket"
    FOLLOW_UP = "follow_up"
    REOPEN = "reopen"


@dataclass(frozen=True, slots=True)
class TicketView:
    """What the rules may know about one existing ticket."""

    id: int
    status: str
    closed_at: datetime | None
    participants: frozenset[str]
    organization_domain: str | None


@dataclass(frozen=True, slots=True)
class ThreadFacts:
    sender: str
    sender_domain: str
    tokens: tuple[int, ...]
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ThreadContext:
    tickets: Mapping[int, TicketView]
    """Tickets named by the tokens or found through the references."""
    known_message_ids: Mapping[str, int]
    """Message-ID -> ticket, for every id in In-Reply-To/References that maild knows."""
    now: datetime
    reopen_days: int


@dataclass(frozen=True, slots=True)
class ThreadDecision:
    action: ThreadAction
    ticket: int | None
    reason: str
    linked_ticket: int | None = None
    security_reason: str | None = None
    """Set when the message tried to enter a ticket it may not: the audit trail keeps it."""


def is_allowed(facts: ThreadFacts, ticket: TicketView) -> bool:
    """A sender joins a ticket as a participant or as a colleague from its organisation."""
    if facts.sender in ticket.participants:
        return True
    return (
        ticket.organization_domain is not None and facts.sender_domain == ticket.organization_domain
    )


def _join(ticket: TicketView, reason: str, ctx: ThreadContext) -> ThreadDecision:
    """Follow up an open ticket; reopen a recently closed one; else open a new linked one."""
    if ticket.status != "closed" or ticket.closed_at is None:
        return ThreadDecision(ThreadAction.FOLLOW_UP, ticket.id, reason)
    if ctx.now - ticket.closed_at <= timedelta(days=ctx.reopen_days):
        return ThreadDecision(ThreadAction.REOPEN, ticket.id, f"{reason}_reopened")
    return ThreadDecision(
        ThreadAction.NEW_TICKET, None, f"{reason}_closed_too_long", linked_ticket=ticket.id
    )


def rule_token(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
    refused: int | None = None
    for number in facts.tokens:
        ticket = ctx.tickets.get(number)
        if ticket is None:
            continue
        if is_allowed(facts, ticket):
            return _join(ticket, "token_match", ctx)
        refused = refused or number
    if refused is not None:
        return ThreadDecision(
            ThreadAction.NEW_TICKET, None, "token_sender_not_participant",
            security_reason="token_sender_not_participant",
        )  # fmt: skip
    return None


def _rule_ids(
    ids: tuple[str, ...], reason: str
) -> Callable[[ThreadFacts, ThreadContext], ThreadDecision | None]:
    def rule(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
        refused = False
        for message_id in ids:
            ticket = ctx.tickets.get(ctx.known_message_ids.get(message_id, -1))
            if ticket is None:
                continue
            if is_allowed(facts, ticket):
                return _join(ticket, reason, ctx)
            refused = True
        if refused:
            return ThreadDecision(
                ThreadAction.NEW_TICKET, None, f"{reason}_sender_not_participant",
                security_reason="reference_sender_not_participant",
            )  # fmt: skip
        return None

    return rule


def rule_in_reply_to(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
    return _rule_ids(facts.in_reply_to, "in_reply_to_match")(facts, ctx)


def rule_references(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
    # The newest reference is last; the closest ancestor is the best evidence.
    return _rule_ids(tuple(reversed(facts.references)), "references_match")(facts, ctx)


RULES: tuple[Callable[[ThreadFacts, ThreadContext], ThreadDecision | None], ...] = (
    rule_token,
    rule_in_reply_to,
    rule_references,
)


def decide_thread(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision:
    """The first rule with an answer wins; a refusal by the token rule is an answer too."""
    for rule in RULES:
        decision = rule(facts, ctx)
        if decision is not None:
            return decision
    reason = "token_unknown_ticket" if facts.tokens else "no_thread_match"
    return ThreadDecision(ThreadAction.NEW_TICKET, None, reason)
