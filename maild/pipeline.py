"""The one place that orders the stages of a message and owns its transaction.

`source -> spool -> parse -> guard -> thread -> store -> act`: sources hand raw bytes to
`Pipeline.process`; each stage below reads and extends a `Work` record and may end the
pipeline with an `IngestResult`. Everything a message causes (ticket, events, outbox rows)
commits together or not at all.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from maild import compose
from maild.clock import Clock
from maild.config import Config
from maild.guard import GuardAction, GuardDecision, decide_acknowledgement, decide_guard
from parsers.checklist import find_checklist_facts, missing_items
from parsers.classify import MessageFacts, message_facts
from parsers.identity import MessageIdentity, identify_message
from parsers.message import parse_message
from parsers.rawmail import RawMail
from parsers.types import ParsedMessage, StoredBlob
from storage import repositories as repo
from storage.artifacts import ArtifactStore
from storage.models import InboundMessage, Message, OutboxMessage, Ticket
from threading_rules.authenticity import (
    AuthorIdentity,
    AuthorKind,
    identify_author,
    parse_networks,
)
from threading_rules.decide import (
    ThreadAction,
    ThreadContext,
    ThreadDecision,
    ThreadFacts,
    decide_thread,
)
from threading_rules.lookalike import find_imitated
from threading_rules.token import find_ticket_numbers, format_token, strip_tokens

log = logging.getLogger(__name__)
_REPLY_CHAIN = re.compile(
    r"^\s*(?:re|fwd?|aw|tr|sv|vs|wg|ответ|отв|пересл)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*",
    re.IGNORECASE,
)
NO_SUBJECT = {"ru": "(без темы)", "en": "(no subject)"}


class IngestAction(enum.StrEnum):
    NEW_TICKET = "new_ticket"
    FOLLOW_UP = "follow_up"
    IGNORED = "ignored"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class IngestResult:
    spool_id: str
    message_id: str | None
    action: IngestAction
    ticket: int | None
    reason: str
    explanation: str = ""

    def as_json(self, source: str | None = None) -> dict[str, Any]:
        extra = {"source": source} if source else {}
        return {
            **extra,
            "message_id": self.message_id,
            "action": str(self.action),
            "ticket": self.ticket,
            "reason": self.reason,
            "explanation": self.explanation,
        }


@dataclass(frozen=True, slots=True)
class Incoming:
    spool_id: str
    raw: RawMail
    source: str
    peer: str = ""
    """The IP address that handed the message to maild's own SMTP/LMTP listener, else ""."""

    @classmethod
    def of(cls, spool_id: str, raw: bytes, source: str, peer: str = "") -> Incoming:
        return cls(spool_id, RawMail.of(raw), source, peer)


@dataclass(slots=True)
class Work:
    """What the stages learn about one message, in order; typed fields, no free-form dict."""

    incoming: Incoming
    session: Session
    identity: MessageIdentity
    inbound: InboundMessage | None = None
    parsed: ParsedMessage | None = None
    facts: MessageFacts | None = None
    guard: GuardDecision | None = None
    author: AuthorIdentity | None = None
    thread: ThreadDecision | None = None
    ticket: Ticket | None = None
    message: Message | None = None
    notes: list[str] = field(default_factory=list)
    message_id_seen: bool = False
    """An earlier message had this Message-ID: the thread stage checks for a second route."""
    ticket_participants: frozenset[str] = frozenset()
    """Who was in the ticket before this message (from the thread context)."""


Stage = Callable[["Pipeline", Work], IngestResult | None]
T = TypeVar("T")


def known(value: T | None) -> T:
    """Stages run in order, so an earlier stage's result is always there; if not, it is a bug."""
    if value is None:
        raise RuntimeError("a pipeline stage ran before the stage that provides its input")
    return value


class Pipeline:
    def __init__(
        self,
        config: Config,
        sessions: sessionmaker[Session],
        artifacts: ArtifactStore,
        clock: Clock,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.artifacts = artifacts
        self.clock = clock
        self.loop_marker = compose.loop_marker(config)
        self.engineer_addresses = frozenset(engineer.email for engineer in config.engineers)
        self.own_addresses = frozenset(
            address
            for address in (config.mailbox.address, config.mailbox.comment_address)
            if address
        )
        self.own_markers = frozenset({self.loop_marker.lower(), *self.own_addresses})
        self.own_domains = tuple(
            sorted({config.mail_domain, *(e.rpartition("@")[2] for e in self.engineer_addresses)})
        )
        # We are nobody's colleague: our own domains never make an organisation.
        self.not_organizations = config.tickets.public_domains | frozenset(self.own_domains)
        self.trusted_networks = parse_networks(config.security.trusted_relays)

    def run_stages(self, session: Session, incoming: Incoming) -> IngestResult:
        """Every stage, in order, inside the caller's transaction (see maild.worker)."""
        work = Work(incoming=incoming, session=session, identity=identify_message(incoming.raw))
        for stage in STAGES:
            result = stage(self, work)
            if result is not None:
                log.info(
                    "spool=%s message_id=%s action=%s reason=%s ticket=%s (%s)",
                    incoming.spool_id, result.message_id, result.action, result.reason,
                    result.ticket, result.explanation,
                )  # fmt: skip
                return result
        raise AssertionError("the act stage always returns a result")  # pragma: no cover

    def record_quarantine(
        self, session: Session, incoming: Incoming, reason: str, detail: str
    ) -> IngestResult:
        """Record a message that broke the pipeline, raw bytes kept for a person to look at."""
        identity = identify_message(incoming.raw)
        replayed = repo.ledger_matches(session, incoming.spool_id, identity.dedup_key).replayed
        if replayed is None:
            blob = _store_raw(self.artifacts, incoming.raw)
            repo.record_artifact(session, blob.sha256, blob.size)
            row = _ledger_row(incoming, identity, "quarantined", reason)
            row.explanation = f"quarantined: {detail}"[:2000]
            session.add(row)
            session.flush()
            repo.add_event(
                session, "quarantined", reason, inbound_id=row.id, detail={"error": detail}
            )
        log.warning("spool=%s quarantined: %s", incoming.spool_id, reason)
        return IngestResult(
            incoming.spool_id, identity.message_id, IngestAction.QUARANTINED, None, reason,
            f"quarantined: {detail}",
        )  # fmt: skip


def _ledger_row(
    incoming: Incoming, identity: MessageIdentity, state: str, reason: str
) -> InboundMessage:
    return InboundMessage(
        spool_id=incoming.spool_id,
        source=incoming.source[:255],
        dedup_key=identity.dedup_key,
        raw_sha256=identity.raw_sha256,
        raw_size=incoming.raw.size,
        message_id=identity.message_id,
        state=state,
        reason=reason,
    )


def _finish(work: Work, action: IngestAction, reason: str, explanation: str) -> IngestResult:
    """Write the ledger outcome and turn it into the stage's result."""
    inbound = work.inbound
    inbound = known(inbound)
    inbound.state = str(action)
    inbound.reason = reason
    inbound.explanation = explanation
    inbound.ticket_id = work.ticket.id if work.ticket else None
    return IngestResult(
        work.incoming.spool_id, work.identity.message_id, action, inbound.ticket_id, reason,
        explanation,
    )  # fmt: skip


# --- spool: the ledger makes a replay after a crash, and a second copy, harmless ---


def stage_ledger(pipeline: Pipeline, work: Work) -> IngestResult | None:
    del pipeline
    session, incoming = work.session, work.incoming
    replayed, original, work.message_id_seen = repo.ledger_matches(
        session, incoming.spool_id, work.identity.dedup_key, work.identity.message_id
    )
    if replayed is not None:
        return IngestResult(
            incoming.spool_id, replayed.message_id, IngestAction(replayed.state),
            replayed.ticket_id, replayed.reason, replayed.explanation,
        )  # fmt: skip
    work.inbound = _ledger_row(incoming, work.identity, "processing", "")
    session.add(work.inbound)
    session.flush()
    if original is None:
        return None
    if original.ticket_id is not None:
        work.ticket = session.get(Ticket, original.ticket_id)
    return _finish(
        work, IngestAction.DUPLICATE, "same_message_already_received",
        f"duplicate: the same message (Message-ID and body) was received before"
        f"{f' in ticket {original.ticket_id}' if original.ticket_id else ''}",
    )  # fmt: skip


# --- parse: raw kept first, then decoded; attachments go to the store as they are found ---


def stage_parse(pipeline: Pipeline, work: Work) -> IngestResult | None:
    blob = _store_raw(pipeline.artifacts, work.incoming.raw)
    repo.record_artifact(work.session, blob.sha256, blob.size)
    limits = pipeline.config.artifacts
    work.parsed = parse_message(
        work.incoming.raw,
        pipeline.artifacts,
        max_attachment_bytes=limits.max_attachment_bytes,
        max_message_bytes=limits.max_message_bytes,
    )
    return None


def _store_raw(artifacts: ArtifactStore, raw: RawMail) -> StoredBlob:
    if raw.data is not None:
        return artifacts.put(raw.data)
    with raw.open() as stream:
        return artifacts.put_stream(stream)


def _inbound_id(work: Work) -> int:
    return known(work.inbound).id


# --- guard: machines are recorded, never answered ---


def stage_guard(pipeline: Pipeline, work: Work) -> IngestResult | None:
    parsed = known(work.parsed)
    work.facts = message_facts(parsed)
    work.guard = decide_guard(work.facts, pipeline.own_markers)
    if work.facts.sender_email in pipeline.own_addresses:
        work.guard = GuardDecision(
            GuardAction.IGNORE, "from_own_address",
            f"ignored: sent from our own address {work.facts.sender_email}",
        )  # fmt: skip
    if parsed.sender is not None:
        return None
    # Without a From there is no one to answer and no ticket to join: a machine's message
    # is recorded as ignored, anything else waits in quarantine for a person to look at.
    guard = work.guard
    if guard.action is GuardAction.IGNORE:
        repo.add_event(
            work.session, "ignored", guard.reason, inbound_id=_inbound_id(work),
            detail={"explanation": guard.explanation},
        )  # fmt: skip
        return _finish(work, IngestAction.IGNORED, guard.reason, guard.explanation)
    why = "quarantined: no usable From address, nobody to answer"
    repo.add_event(
        work.session, "quarantined", "no_sender", inbound_id=_inbound_id(work),
        detail={"explanation": why},
    )  # fmt: skip
    return _finish(work, IngestAction.QUARANTINED, "no_sender", why)


# --- thread: which ticket, by token, then In-Reply-To, then References ---


def stage_thread(pipeline: Pipeline, work: Work) -> IngestResult | None:
    parsed, guard = known(work.parsed), known(work.guard)
    sender = known(parsed.sender).email
    security = pipeline.config.security
    work.author = identify_author(
        sender, parsed.headers, peer=work.incoming.peer, engineers=pipeline.engineer_addresses,
        trusted_authserv_ids=security.trusted_authserv_ids,
        trusted_networks=pipeline.trusted_networks,
    )  # fmt: skip
    machine = guard.action is GuardAction.IGNORE
    facts = ThreadFacts(
        sender=sender,
        sender_domain=sender.rpartition("@")[2],
        tokens=find_ticket_numbers(parsed.subject, pipeline.config.token_prefix),
        in_reply_to=parsed.in_reply_to,
        references=parsed.references,
        message_id=parsed.message_id,
        text=parsed.full_text,
        # Only a machine's report is believed about which of our messages it returns.
        returned_message_ids=parsed.returned_message_ids if machine else (),
        is_engineer=work.author.is_engineer,
        claims_engineer=work.author.kind is AuthorKind.UNVERIFIED_ENGINEER,
    )
    session = work.session
    ids = (*facts.in_reply_to, *facts.references, *facts.returned_message_ids)
    known_ids = repo.known_messages(session, ids)
    named = (*facts.tokens, *(message.ticket for message in known_ids.values()))
    context = ThreadContext(
        tickets=repo.ticket_views(session, named),
        known_message_ids=known_ids,
        now=pipeline.clock.now(),
        reopen_days=pipeline.config.tickets.reopen_days,
        same_message=(
            repo.received_message(session, parsed.message_id) if work.message_id_seen else None
        ),
    )
    work.thread = decide_thread(facts, context)
    joined = context.tickets.get(work.thread.ticket) if work.thread.ticket is not None else None
    work.ticket_participants = joined.participants if joined is not None else frozenset()
    if work.author.kind is not AuthorKind.CLIENT:
        work.thread = replace(
            work.thread, explanation=f"{work.thread.explanation} [{work.author.explanation}]"
        )
    if work.thread.ticket is not None:
        work.ticket = session.get(Ticket, work.thread.ticket)
    if work.thread.action is ThreadAction.DUPLICATE:
        thread = work.thread
        repo.add_event(
            session, "duplicate", thread.reason, ticket_id=thread.ticket,
            inbound_id=_inbound_id(work), detail={"explanation": thread.explanation},
        )  # fmt: skip
        return _finish(work, IngestAction.DUPLICATE, thread.reason, thread.explanation)
    return None


# --- store: ticket, contact, message, attachments, participants, events ---


def stage_store(pipeline: Pipeline, work: Work) -> IngestResult | None:
    parsed, thread, guard = work.parsed, work.thread, work.guard
    parsed, thread, guard = known(parsed), known(thread), known(guard)
    sender = known(parsed.sender)
    session = work.session
    if guard.action is GuardAction.IGNORE:
        return _store_machine_mail(pipeline, work)
    _record_security(pipeline, work)
    if work.ticket is None:
        work.ticket = _open_ticket(pipeline, work)
        if thread.linked_ticket is not None:
            repo.add_event(
                session, "linked", "follow_up_after_close", ticket_id=thread.linked_ticket,
                detail={"new_ticket": work.ticket.id, "explanation": thread.explanation},
            )  # fmt: skip
    elif thread.action is ThreadAction.REOPEN:
        work.ticket.status = "open"
        work.ticket.closed_at = None
        repo.add_event(
            session, "reopened", thread.reason, ticket_id=work.ticket.id,
            detail={"explanation": thread.explanation},
        )  # fmt: skip
    else:
        repo.note_contact_alive(session, sender.email)
    work.message = _store_message(pipeline, work, work.ticket, visibility="public", kind="mail")
    _add_cc_participants(pipeline, work)
    work.ticket.updated_at = pipeline.clock.now()
    kind = "ticket_created" if thread.action is ThreadAction.NEW_TICKET else "follow_up"
    author = known(work.author)
    repo.add_event(
        session, kind, thread.reason, ticket_id=work.ticket.id, inbound_id=_inbound_id(work),
        actor=sender.email,
        detail={"explanation": thread.explanation, "author": str(author.kind),
                "author_reason": author.reason},
    )  # fmt: skip
    return None


def _record_security(pipeline: Pipeline, work: Work) -> None:
    """What an attacker tried, for the audit trail; nothing here changes the decision."""
    parsed, thread, author = known(work.parsed), known(work.thread), known(work.author)
    sender = known(parsed.sender).email
    inbound_id, session = _inbound_id(work), work.session
    if thread.security_reason:
        repo.add_event(
            session, "security", thread.security_reason, ticket_id=thread.refused_ticket,
            inbound_id=inbound_id, actor=sender,
            detail={"subject": parsed.subject, "explanation": thread.explanation},
        )  # fmt: skip
    if author.kind is AuthorKind.UNVERIFIED_ENGINEER and thread.security_reason != (
        "unverified_engineer"
    ):
        repo.add_event(
            session, "security", "unverified_engineer", inbound_id=inbound_id, actor=sender,
            detail={"subject": parsed.subject, "explanation": author.explanation,
                    "author_reason": author.reason},
        )  # fmt: skip
    domain = sender.rpartition("@")[2]
    imitated = find_imitated(domain, pipeline.own_domains)
    if imitated is not None:
        repo.add_event(
            session, "security", "lookalike_own_domain", inbound_id=inbound_id, actor=sender,
            detail={"subject": parsed.subject,
                    "explanation": f"{domain} imitates our domain {imitated}"},
        )  # fmt: skip


def _store_machine_mail(pipeline: Pipeline, work: Work) -> IngestResult:
    """Auto-replies and bounces are kept in their ticket (internal) and never answered; a
    bounce of our mail marks the recipient and tells the ticket's engineers."""
    guard, thread = known(work.guard), known(work.thread)
    session, ticket = work.session, work.ticket
    if ticket is not None:
        work.message = _store_message(pipeline, work, ticket, visibility="internal", kind="auto")
    explanation = guard.explanation
    if ticket is not None:
        explanation = f"{explanation}; filed in ticket {ticket.id} ({thread.explanation})"
    repo.add_event(
        session, "ignored", guard.reason, ticket_id=ticket.id if ticket else None,
        inbound_id=_inbound_id(work), detail={"explanation": explanation},
    )  # fmt: skip
    _handle_bounce(pipeline, work)
    return _finish(work, IngestAction.IGNORED, guard.reason, explanation)


def _handle_bounce(pipeline: Pipeline, work: Work) -> None:
    parsed, thread = known(work.parsed), known(work.thread)
    report = parsed.report
    if report is None or not report.failed_recipients:
        return
    if thread.reason != "returned_message_match" or work.ticket is None:
        # Anyone can write a DSN; only one that returns a message of ours (whose Message-ID
        # only its recipients saw) may mark an address as bouncing.
        repo.add_event(
            work.session, "bounce", "bounce_unmatched", inbound_id=_inbound_id(work),
            detail={"recipients": list(report.failed_recipients), "status": report.status,
                    "explanation": "a bounce that returns no message of ours: nobody marked"},
        )  # fmt: skip
        return
    bounced = repo.returned_outgoing(work.session, parsed.returned_message_ids)
    if bounced is None:
        return
    failed = [r for r in report.failed_recipients if r in bounced.recipients.lower()]
    marked = repo.mark_contacts_bouncing(work.session, failed)
    ticket = work.ticket
    repo.add_event(
        work.session, "bounce", "recipient_bouncing", ticket_id=ticket.id,
        inbound_id=_inbound_id(work),
        detail={"recipients": marked, "status": report.status, "diagnostic": report.diagnostic,
                "bounced_kind": bounced.kind,
                "explanation": f"our {bounced.kind} to {', '.join(marked) or 'nobody'} bounced"
                               f" ({report.status or 'no status'})"},
    )  # fmt: skip
    if not marked or bounced.kind in ENGINEER_NOTICES:
        return  # a notice about a bounced notice would be the start of a loop
    _notify_engineers_of_bounce(pipeline, work, ticket, bounced, marked)


def _notify_engineers_of_bounce(
    pipeline: Pipeline, work: Work, ticket: Ticket, bounced: Message, failed: list[str]
) -> None:
    parsed = known(work.parsed)
    report = known(parsed.report)
    engineers = _ticket_engineers(pipeline, ticket)
    if not engineers:
        return
    now = pipeline.clock.now()
    mail = compose.engineer_notice(
        pipeline.config, "bounce_notice",
        ticket_id=ticket.id, token=format_token(pipeline.config.token_prefix, ticket.id),
        subject=ticket.subject, to=engineers, answering=parsed.message_id, now=now,
        recipients=failed, status=report.status, action=report.action,
        diagnostic=report.diagnostic, bounced_kind=bounced.kind,
        bounced_at=(bounced.sent_at or bounced.created_at).strftime("%Y-%m-%d %H:%M UTC"),
    )  # fmt: skip
    queue_mail(
        work.session, ticket, mail, purpose="bounce_notice", recipient=engineers[0][1],
        now=now, sender=pipeline.config.mailbox.address, visibility="internal",
    )  # fmt: skip
    repo.add_event(
        work.session, "engineers_notified", "recipient_bouncing", ticket_id=ticket.id,
        detail={"to": [address for _, address in engineers]},
    )  # fmt: skip


ENGINEER_NOTICES = frozenset({"bounce_notice"})
"""Kinds of message maild sends to engineers, not to clients."""


def _ticket_engineers(pipeline: Pipeline, ticket: Ticket) -> list[tuple[str, str]]:
    """The assignee, else every engineer of the config."""
    if ticket.assignee is not None and ticket.assignee.active:
        return [(ticket.assignee.name, ticket.assignee.email)]
    return [(engineer.name, engineer.email) for engineer in pipeline.config.engineers]


def clean_subject(subject: str, prefix: str) -> str:
    """The subject without our tokens and without the Re:/Fwd:/Ответ: chain in front."""
    text = strip_tokens(subject, prefix)
    previous = None
    while previous != text:
        previous, text = text, _REPLY_CHAIN.sub("", text, count=1)
    return text.strip()


def _open_ticket(pipeline: Pipeline, work: Work) -> Ticket:
    parsed, thread = work.parsed, work.thread
    parsed = known(parsed)
    thread = known(thread)
    sender = known(parsed.sender)
    session = work.session
    domain = sender.email.rpartition("@")[2]
    organization = repo.organization_for_domain(session, domain, pipeline.not_organizations)
    contact = repo.contact_for_address(session, sender, organization)
    language = compose.choose_language(
        pipeline.config.tickets.language, parsed.subject, parsed.new_text
    )
    subject = clean_subject(parsed.subject, pipeline.config.token_prefix) or NO_SUBJECT[language]
    now = pipeline.clock.now()
    ticket = Ticket(
        id=repo.next_ticket_number(session),
        subject=subject[:1000],
        status="new",
        language=language,
        organization_id=organization.id if organization else None,
        requester_id=contact.id,
        linked_ticket_id=thread.linked_ticket,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    session.flush()
    repo.add_participant(session, ticket.id, contact.email, "requester", ticket_is_new=True)
    return ticket


def _store_message(
    pipeline: Pipeline, work: Work, ticket: Ticket, *, visibility: str, kind: str
) -> Message:
    parsed = work.parsed
    parsed = known(parsed)
    sender = known(parsed.sender)
    recipients = ", ".join(address.email for address in (*parsed.to, *parsed.cc))
    message = Message(
        ticket_id=ticket.id,
        inbound_id=_inbound_id(work),
        direction="in",
        visibility=visibility,
        kind=kind,
        message_id=parsed.message_id,
        in_reply_to=" ".join(parsed.in_reply_to) or None,
        references=" ".join(parsed.references) or None,
        sender_email=sender.email,
        sender_name=sender.name[:255],
        recipients=recipients,
        subject=parsed.subject,
        sent_at=parsed.date,
        created_at=pipeline.clock.now(),
        text=parsed.new_text,
        full_text=parsed.full_text,
    )
    work.session.add(message)
    work.session.flush()
    repo.add_attachments(work.session, message, parsed.attachments)
    return message


def _add_cc_participants(pipeline: Pipeline, work: Work) -> None:
    """People a participant copies join the ticket (an engineer can add others later)."""
    parsed, ticket = work.parsed, work.ticket
    parsed = known(parsed)
    ticket = known(ticket)
    engineers = pipeline.engineer_addresses
    author, sender = known(work.author), known(parsed.sender).email
    # A colleague let in by the organisation's domain, or a proven engineer, becomes a
    # participant by writing; so every Cc below comes from a participant.
    sender_role = "engineer" if author.is_engineer else "colleague"
    is_new = known(work.thread).action is ThreadAction.NEW_TICKET  # the sender is requester
    if (
        not is_new
        and sender not in work.ticket_participants
        and repo.add_participant(work.session, ticket.id, sender, sender_role)
    ):
        repo.add_event(
            work.session, "participant_added", "wrote_in_ticket", ticket_id=ticket.id,
            detail={"email": sender, "role": sender_role},
        )  # fmt: skip
    for address in (*parsed.to, *parsed.cc):
        email = address.email
        if email in pipeline.own_addresses or email.split("+")[0] in pipeline.own_addresses:
            continue
        if "+" in email.partition("@")[0] and _is_own_plus(email, pipeline.own_addresses):
            continue
        role = "engineer" if email in engineers else "cc"
        if repo.add_participant(work.session, ticket.id, email, role):
            repo.add_event(work.session, "participant_added", "cc_from_participant",
                           ticket_id=ticket.id, detail={"email": email, "role": role})  # fmt: skip


def _is_own_plus(email: str, own: frozenset[str]) -> bool:
    local, _, domain = email.partition("@")
    return f"{local.partition('+')[0]}@{domain}" in own


# --- act: the acknowledgement, through the outbox, in this same transaction ---


def stage_act(pipeline: Pipeline, work: Work) -> IngestResult | None:
    thread, ticket = work.thread, work.ticket
    thread = known(thread)
    ticket = known(ticket)
    refused = [a for a in known(work.parsed).attachments if a.refused]
    if refused:
        repo.add_event(
            work.session, "attachment_refused", refused[0].refused or "", ticket_id=ticket.id,
            detail={"files": [{"filename": a.filename, "size": a.size, "reason": a.refused}
                              for a in refused]},
        )  # fmt: skip
    if thread.action is ThreadAction.NEW_TICKET:
        _auto_reply(pipeline, work, ticket, purpose="acknowledgement")
        return _finish(work, IngestAction.NEW_TICKET, thread.reason, thread.explanation)
    if refused:
        _auto_reply(pipeline, work, ticket, purpose="attachment_refused")
    return _finish(work, IngestAction.FOLLOW_UP, thread.reason, thread.explanation)


def _auto_reply(pipeline: Pipeline, work: Work, ticket: Ticket, *, purpose: str) -> None:
    """The acknowledgement of a new ticket, or the note that a follow-up's file was refused;
    both under the guard's rules for automatic replies (RFC 3834, rate limit, bounces)."""
    parsed, facts = work.parsed, work.facts
    parsed = known(parsed)
    facts = known(facts)
    sender = known(parsed.sender)
    session, now, requester = work.session, pipeline.clock.now(), sender.email
    decision = decide_acknowledgement(
        facts,
        acks_today=repo.count_recent_outbox(
            session, requester, AUTO_REPLIES, now - timedelta(days=1)
        ),
        limit=pipeline.config.guard.autoreply_limit,
        sender_bouncing=repo.contact_is_bouncing(session, requester),
    )
    if not decision.send:
        repo.add_event(
            session, "ack_suppressed", decision.reason, ticket_id=ticket.id,
            detail={"purpose": purpose},
        )  # fmt: skip
        return
    reply = compose.ReplyTo(
        ticket_id=ticket.id,
        token=format_token(pipeline.config.token_prefix, ticket.id),
        subject=ticket.subject,
        language=ticket.language,
        client=(sender.name, requester),
        answering=parsed.message_id,
        references=parsed.references,
    )
    if purpose == "acknowledgement":
        checklist = find_checklist_facts(
            parsed.new_text or parsed.full_text,
            (a.kind for a in parsed.attachments if not a.refused),
        )
        missing = [str(item) for item in missing_items(checklist)]
        mail = compose.acknowledgement(
            pipeline.config, reply, attachments=parsed.attachments, missing=missing, now=now
        )
        detail: dict[str, Any] = {"missing": missing}
    else:
        mail = compose.attachment_refusal(
            pipeline.config, reply, attachments=parsed.attachments, now=now
        )
        detail = {}
    queue_mail(
        session, ticket, mail, purpose=purpose, recipient=requester, now=now,
        sender=pipeline.config.mailbox.address,
    )  # fmt: skip
    kind = "acknowledged" if purpose == "acknowledgement" else "refusal_sent"
    repo.add_event(session, kind, decision.reason, ticket_id=ticket.id, detail=detail)


AUTO_REPLIES = ("acknowledgement", "attachment_refused")
"""Automatic replies to clients: together at most `guard.autoreply_limit` a day per address."""


def queue_mail(
    session: Session,
    ticket: Ticket,
    mail: compose.OutgoingMail,
    *,
    purpose: str,
    recipient: str,
    now: datetime,
    sender: str,
    visibility: str = "public",
) -> OutboxMessage:
    """Record what we send as a ticket message (so replies thread to it) and queue it."""
    message = Message(
        ticket_id=ticket.id,
        direction="out",
        visibility=visibility,
        kind=purpose,
        message_id=mail.message_id,
        sender_email=sender,
        recipients=", ".join(mail.recipients),
        subject=mail.subject,
        sent_at=now,
        created_at=now,
        text=mail.text,
        full_text=mail.text,
    )
    session.add(message)
    session.flush()
    row = OutboxMessage(
        message_id=message.id,
        purpose=purpose,
        recipient=recipient,
        envelope_from=mail.envelope_from,
        recipients=",".join(mail.recipients),
        raw=mail.raw,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(row)
    return row


STAGES: tuple[Stage, ...] = (
    stage_ledger,
    stage_parse,
    stage_guard,
    stage_thread,
    stage_store,
    stage_act,
)
