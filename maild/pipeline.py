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
from dataclasses import dataclass, field
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
from threading_rules.decide import (
    ThreadAction,
    ThreadContext,
    ThreadDecision,
    ThreadFacts,
    decide_thread,
)
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

    def as_json(self, source: str | None = None) -> dict[str, Any]:
        extra = {"source": source} if source else {}
        return {
            **extra,
            "message_id": self.message_id,
            "action": str(self.action),
            "ticket": self.ticket,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Incoming:
    spool_id: str
    raw: RawMail
    source: str

    @classmethod
    def of(cls, spool_id: str, raw: bytes, source: str) -> Incoming:
        return cls(spool_id, RawMail.of(raw), source)


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
    thread: ThreadDecision | None = None
    ticket: Ticket | None = None
    message: Message | None = None
    notes: list[str] = field(default_factory=list)


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

    def run_stages(self, session: Session, incoming: Incoming) -> IngestResult:
        """Every stage, in order, inside the caller's transaction (see maild.worker)."""
        work = Work(incoming=incoming, session=session, identity=identify_message(incoming.raw))
        for stage in STAGES:
            result = stage(self, work)
            if result is not None:
                log.info(
                    "spool=%s message_id=%s action=%s reason=%s ticket=%s",
                    incoming.spool_id, result.message_id, result.action, result.reason,
                    result.ticket,
                )  # fmt: skip
                return result
        raise AssertionError("the act stage always returns a result")  # pragma: no cover

    def record_quarantine(
        self, session: Session, incoming: Incoming, reason: str, detail: str
    ) -> IngestResult:
        """Record a message that broke the pipeline, raw bytes kept for a person to look at."""
        identity = identify_message(incoming.raw)
        replayed, _ = repo.ledger_matches(session, incoming.spool_id, identity.dedup_key)
        if replayed is None:
            blob = _store_raw(self.artifacts, incoming.raw)
            repo.record_artifact(session, blob.sha256, blob.size)
            row = _ledger_row(incoming, identity, "quarantined", reason)
            session.add(row)
            session.flush()
            repo.add_event(
                session, "quarantined", reason, inbound_id=row.id, detail={"error": detail}
            )
        log.warning("spool=%s quarantined: %s", incoming.spool_id, reason)
        return IngestResult(
            incoming.spool_id, identity.message_id, IngestAction.QUARANTINED, None, reason
        )


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


def _finish(work: Work, action: IngestAction, reason: str) -> IngestResult:
    """Write the ledger outcome and turn it into the stage's result."""
    inbound = work.inbound
    inbound = known(inbound)
    inbound.state = str(action)
    inbound.reason = reason
    inbound.ticket_id = work.ticket.id if work.ticket else None
    return IngestResult(
        work.incoming.spool_id, work.identity.message_id, action, inbound.ticket_id, reason
    )


# --- spool: the ledger makes a replay after a crash, and a second copy, harmless ---


def stage_ledger(pipeline: Pipeline, work: Work) -> IngestResult | None:
    del pipeline
    session, incoming = work.session, work.incoming
    replayed, original = repo.ledger_matches(session, incoming.spool_id, work.identity.dedup_key)
    if replayed is not None:
        return IngestResult(
            incoming.spool_id, replayed.message_id, IngestAction(replayed.state),
            replayed.ticket_id, replayed.reason,
        )  # fmt: skip
    work.inbound = _ledger_row(incoming, work.identity, "processing", "")
    session.add(work.inbound)
    session.flush()
    if original is None:
        return None
    if original.ticket_id is not None:
        work.ticket = session.get(Ticket, original.ticket_id)
    return _finish(work, IngestAction.DUPLICATE, "same_message_already_received")


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
    work.guard = decide_guard(work.facts, pipeline.loop_marker)
    if work.facts.sender_email in pipeline.own_addresses:
        work.guard = GuardDecision(GuardAction.IGNORE, "from_own_address")
    report = parsed.report
    if report is not None and report.failed_recipients:
        marked = repo.mark_contacts_bouncing(work.session, report.failed_recipients)
        if marked:
            repo.add_event(
                work.session, "bounce", "recipient_bouncing", inbound_id=_inbound_id(work),
                detail={"recipients": marked, "status": report.status},
            )  # fmt: skip
    if parsed.sender is not None:
        return None
    # Without a From there is no one to answer and no ticket to join: a machine's message
    # is recorded as ignored, anything else waits in quarantine for a person to look at.
    if work.guard.action is GuardAction.IGNORE:
        repo.add_event(work.session, "ignored", work.guard.reason, inbound_id=_inbound_id(work))
        return _finish(work, IngestAction.IGNORED, work.guard.reason)
    repo.add_event(work.session, "quarantined", "no_sender", inbound_id=_inbound_id(work))
    return _finish(work, IngestAction.QUARANTINED, "no_sender")


# --- thread: which ticket, by token, then In-Reply-To, then References ---


def stage_thread(pipeline: Pipeline, work: Work) -> IngestResult | None:
    parsed = known(work.parsed)
    sender = known(parsed.sender).email
    facts = ThreadFacts(
        sender=sender,
        sender_domain=sender.rpartition("@")[2],
        tokens=find_ticket_numbers(parsed.subject, pipeline.config.token_prefix),
        in_reply_to=parsed.in_reply_to,
        references=parsed.references,
    )
    by_id = repo.tickets_by_message_ids(work.session, (*facts.in_reply_to, *facts.references))
    context = ThreadContext(
        tickets=repo.ticket_views(work.session, (*facts.tokens, *by_id.values())),
        known_message_ids=by_id,
        now=pipeline.clock.now(),
        reopen_days=pipeline.config.tickets.reopen_days,
    )
    work.thread = decide_thread(facts, context)
    if work.thread.ticket is not None:
        work.ticket = work.session.get(Ticket, work.thread.ticket)
    return None


# --- store: ticket, contact, message, attachments, participants, events ---


def stage_store(pipeline: Pipeline, work: Work) -> IngestResult | None:
    parsed, thread, guard = work.parsed, work.thread, work.guard
    parsed, thread, guard = known(parsed), known(thread), known(guard)
    sender = known(parsed.sender)
    session = work.session
    if thread.security_reason:
        repo.add_event(
            session, "security", thread.security_reason, inbound_id=_inbound_id(work),
            actor=sender.email, detail={"subject": parsed.subject},
        )  # fmt: skip
    if guard.action is GuardAction.IGNORE:
        if work.ticket is not None:
            work.message = _store_message(
                pipeline, work, work.ticket, visibility="internal", kind="auto"
            )
        repo.add_event(
            session, "ignored", guard.reason,
            ticket_id=work.ticket.id if work.ticket else None, inbound_id=_inbound_id(work),
        )  # fmt: skip
        return _finish(work, IngestAction.IGNORED, guard.reason)
    if work.ticket is None:
        work.ticket = _open_ticket(pipeline, work)
    elif thread.action is ThreadAction.REOPEN:
        work.ticket.status = "open"
        work.ticket.closed_at = None
        repo.add_event(session, "reopened", thread.reason, ticket_id=work.ticket.id)
    work.message = _store_message(pipeline, work, work.ticket, visibility="public", kind="mail")
    _add_cc_participants(pipeline, work)
    work.ticket.updated_at = pipeline.clock.now()
    kind = "ticket_created" if thread.action is ThreadAction.NEW_TICKET else "follow_up"
    repo.add_event(
        session, kind, thread.reason, ticket_id=work.ticket.id, inbound_id=_inbound_id(work),
        actor=sender.email,
    )  # fmt: skip
    return None


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
    organization = repo.organization_for_domain(
        session, domain, pipeline.config.tickets.public_domains
    )
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
        return _finish(work, IngestAction.NEW_TICKET, thread.reason)
    if refused:
        _auto_reply(pipeline, work, ticket, purpose="attachment_refused")
    return _finish(work, IngestAction.FOLLOW_UP, thread.reason)


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
        acks_today=repo.count_recent_outbox(session, requester, purpose, now - timedelta(days=1)),
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


def queue_mail(
    session: Session,
    ticket: Ticket,
    mail: compose.OutgoingMail,
    *,
    purpose: str,
    recipient: str,
    now: datetime,
    sender: str,
) -> OutboxMessage:
    """Record what we send as a ticket message (so replies thread to it) and queue it."""
    message = Message(
        ticket_id=ticket.id,
        direction="out",
        visibility="public",
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
