"""decide_thread: the ordered rules that put a message into a ticket, each with its reason.

The caller loads a `ThreadContext` (which tickets the token and the references point at, who
may write to them, which of our messages they name); the rules only read it, so each one is
tested without a database. Every decision carries a stable reason code and a sentence that
says why, for `ingest --json` and the ticket's event log.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from threading_rules.lookalike import find_imitated, to_unicode


class ThreadAction(enum.StrEnum):
    NEW_TICKET = "new_ticket"
    FOLLOW_UP = "follow_up"
    REOPEN = "reopen"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class TicketView:
    """What the rules may know about one existing ticket."""

    id: int
    status: str
    closed_at: datetime | None
    participants: frozenset[str]
    organization_domain: str | None

    def domains(self) -> tuple[str, ...]:
        """The domains of the people who may write in it (what a look-alike would imitate)."""
        found = {email.rpartition("@")[2] for email in self.participants}
        if self.organization_domain:
            found.add(self.organization_domain)
        return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class KnownMessage:
    """A Message-ID maild has seen: one it received or one it sent."""

    ticket: int
    direction: str
    """`in` (received) or `out` (sent by maild)."""
    kind: str
    """What it was: mail, acknowledgement, bounce_notice, ..."""
    sender: str = ""
    text: str = ""
    """For received mail: the decoded text, to recognise the same message by another route."""

    def describe(self) -> str:
        if self.direction == "out":
            return f"our {self.kind.replace('_', ' ')} in ticket {self.ticket}"
        return f"a message received in ticket {self.ticket}"


@dataclass(frozen=True, slots=True)
class ThreadFacts:
    sender: str
    sender_domain: str
    tokens: tuple[int, ...]
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    message_id: str | None = None
    text: str = ""
    returned_message_ids: tuple[str, ...] = ()
    """Message-IDs quoted back by a bounce (RFC 3464 returned headers)."""
    is_engineer: bool = False
    """Proven by `threading_rules.authenticity`; an engineer may write in every ticket."""
    claims_engineer: bool = False
    """An engineer's address without proof: it gets no participant's rights."""


@dataclass(frozen=True, slots=True)
class ThreadContext:
    tickets: Mapping[int, TicketView]
    """Tickets named by the tokens or found through the references."""
    known_message_ids: Mapping[str, KnownMessage]
    """Every id in In-Reply-To/References/returned headers that maild knows."""
    now: datetime
    reopen_days: int
    same_message: KnownMessage | None = None
    """A message already received under this message's own Message-ID."""


@dataclass(frozen=True, slots=True)
class ThreadDecision:
    action: ThreadAction
    ticket: int | None
    reason: str
    explanation: str = ""
    linked_ticket: int | None = None
    security_reason: str | None = None
    """Set when the message tried to enter a ticket it may not: the audit trail keeps it."""
    refused_ticket: int | None = None
    """The ticket it tried to enter; its event log shows the attempt."""


Rule = Callable[[ThreadFacts, ThreadContext], "ThreadDecision | None"]


def is_allowed(facts: ThreadFacts, ticket: TicketView) -> bool:
    """A sender joins a ticket as a participant or as a colleague from its organisation;
    an engineer proven by DKIM or relay joins any; an unproven engineer address none."""
    if facts.is_engineer:
        return True
    if facts.claims_engineer:
        return False
    if facts.sender in ticket.participants:
        return True
    return (
        ticket.organization_domain is not None and facts.sender_domain == ticket.organization_domain
    )


def _join(ticket: TicketView, reason: str, why: str, ctx: ThreadContext) -> ThreadDecision:
    """Follow up an open ticket; reopen a recently closed one; else open a new linked one."""
    if ticket.status != "closed" or ticket.closed_at is None:
        return ThreadDecision(ThreadAction.FOLLOW_UP, ticket.id, reason, f"follow_up: {why}")
    closed_days = (ctx.now - ticket.closed_at).days
    if ctx.now - ticket.closed_at <= timedelta(days=ctx.reopen_days):
        return ThreadDecision(
            ThreadAction.REOPEN, ticket.id, f"{reason}_reopened",
            f"follow_up: {why}; it reopens, closed {closed_days} d ago (within "
            f"{ctx.reopen_days} d)",
        )  # fmt: skip
    return ThreadDecision(
        ThreadAction.NEW_TICKET, None, f"{reason}_closed_too_long",
        f"new_ticket: {why}, but it was closed {closed_days} d ago (reopen window "
        f"{ctx.reopen_days} d); the new ticket links to it",
        linked_ticket=ticket.id,
    )  # fmt: skip


def _refusal(facts: ThreadFacts, ticket: TicketView, reason: str, what: str) -> ThreadDecision:
    """A message that named a ticket it may not join opens its own, and the attempt is kept."""
    security = reason
    why = f"{what}, but {facts.sender} is not a participant of ticket {ticket.id}"
    if facts.claims_engineer:
        security, why = "unverified_engineer", f"{why} (engineer's address, not proven)"
    else:
        imitated = find_imitated(facts.sender_domain, ticket.domains())
        if imitated is not None:
            shown = to_unicode(facts.sender_domain)
            domain = (
                facts.sender_domain
                if shown == facts.sender_domain
                else (f"{facts.sender_domain} ({shown})")
            )
            security, why = "lookalike_domain", f"{why}; {domain} imitates {imitated}"
    return ThreadDecision(
        ThreadAction.NEW_TICKET, None, reason, f"new_ticket: {why}",
        security_reason=security, refused_ticket=ticket.id,
    )  # fmt: skip


def rule_same_message(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
    """A reply-all reaching us twice (support and an engineer's forwarded copy) is one message:
    same Message-ID, same sender and the same decoded text, whatever the transport did."""
    known = ctx.same_message
    if known is None or facts.message_id is None:
        return None
    if known.sender != facts.sender or _normalized(known.text) != _normalized(facts.text):
        return None
    return ThreadDecision(
        ThreadAction.DUPLICATE, known.ticket, "same_message_other_route",
        f"duplicate: <{facts.message_id}> from {facts.sender} is already in ticket "
        f"{known.ticket} (another copy of it)",
    )  # fmt: skip


def _normalized(text: str) -> str:
    return " ".join(text.split())


def rule_returned_message(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
    """A bounce names the message of ours it returns; our Message-IDs are unguessable, so the
    bounce is filed in that ticket whoever the reporting MTA is."""
    for message_id in facts.returned_message_ids:
        known = ctx.known_message_ids.get(message_id)
        if known is None or known.direction != "out" or known.ticket not in ctx.tickets:
            continue
        return ThreadDecision(
            ThreadAction.FOLLOW_UP, known.ticket, "returned_message_match",
            f"follow_up: the bounce returns <{message_id}>, {known.describe()}",
        )  # fmt: skip
    return None


def rule_token(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
    refused: TicketView | None = None
    for number in facts.tokens:
        ticket = ctx.tickets.get(number)
        if ticket is None:
            continue
        if is_allowed(facts, ticket):
            return _join(ticket, "token_match", f"subject token names ticket {number}", ctx)
        refused = refused or ticket
    if refused is not None:
        return _refusal(
            facts, refused, "token_sender_not_participant", f"subject token names ticket "
            f"{refused.id}",
        )  # fmt: skip
    return None


def _rule_ids(ids: tuple[str, ...], reason: str, header: str) -> Rule:
    def rule(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
        refused: tuple[TicketView, str] | None = None
        for message_id in ids:
            known = ctx.known_message_ids.get(message_id)
            ticket = ctx.tickets.get(known.ticket) if known else None
            if known is None or ticket is None:
                continue
            why = f"{header} <{message_id}> is {known.describe()}"
            if is_allowed(facts, ticket):
                return _join(ticket, reason, why, ctx)
            refused = refused or (ticket, why)
        if refused is not None:
            return _refusal(facts, refused[0], f"{reason}_sender_not_participant", refused[1])
        return None

    return rule


def rule_in_reply_to(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
    return _rule_ids(facts.in_reply_to, "in_reply_to_match", "In-Reply-To")(facts, ctx)


def rule_references(facts: ThreadFacts, ctx: ThreadContext) -> ThreadDecision | None:
    # The newest reference is last; the closest ancestor is the best evidence.
    return _rule_ids(tuple(reversed(facts.references)), "references_match", "References")(
        facts, ctx
    )


RULES: tuple[Rule, ...] = (
    rule_same_message,
    rule_returned_message,
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
    if facts.tokens:
        numbers = ", ".join(f"#{n}" for n in facts.tokens)
        return ThreadDecision(
            ThreadAction.NEW_TICKET, None, "token_unknown_ticket",
            f"new_ticket: subject token {numbers} names no ticket",
        )  # fmt: skip
    return ThreadDecision(
        ThreadAction.NEW_TICKET, None, "no_thread_match",
        "new_ticket: no token of ours and no reference to a message we know",
    )  # fmt: skip
