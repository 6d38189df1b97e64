"""The one place that orders the stages of a message and owns its transaction.

`source -> spool -> parse -> guard -> thread -> store -> act`: sources hand raw bytes to
`Pipeline.process`; each stage below reads and extends a `Work` record and may end the
pipeline with an `IngestResult`. Everything a message causes (ticket, events, outbox rows)
commits together or not at all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from maild import compose
from maild.assignment import assign_on_arrival
from maild.clock import Clock, at_moment
from maild.commands import split_commands
from maild.config import Config
from maild.contracts import channel_of, choose_contract, sla_terms
from maild.deadlines import settle_outcomes
from maild.engineer import handle_engineer_mail
from maild.guard import (
    AUTO_REPLIES,
    GuardAction,
    GuardDecision,
    decide_acknowledgement,
    decide_guard,
    forged_chat_sender,
)
from maild.metrics import Metrics
from maild.notices import ENGINEER_NOTICES, NoticeContext, notify_ticket, ticket_engineers
from maild.parseahead import parse_limited, store_raw
from maild.work import (
    Incoming,
    IngestAction,
    IngestResult,
    Work,
    finish,
    inbound_id,
    known,
    queue_mail,
)
from parsers.checklist import find_checklist_facts, merge_present, missing_from
from parsers.classify import message_facts
from parsers.criticality import CriticalityRule, decide_criticality
from parsers.identity import MessageIdentity, identify_message
from parsers.quotes import cut_own_mail
from parsers.reachability import chat_of_address, why_unanswerable
from storage import repositories as repo
from storage.artifacts import ArtifactStore
from storage.models import InboundMessage, Message, Ticket
from threading_rules.authenticity import (
    AuthorKind,
    identify_author,
    parse_networks,
    results_are_ours,
)
from threading_rules.decide import (
    ThreadAction,
    ThreadContext,
    ThreadFacts,
    decide_thread,
)
from threading_rules.lookalike import find_imitated
from threading_rules.token import clean_subject, find_ticket_numbers, format_token

log = logging.getLogger(__name__)


Stage = Callable[["Pipeline", Work], IngestResult | None]
# Results after which the ticket's SLA outcome may have changed (maild.deadlines).
SETTLING = frozenset({IngestAction.NEW_TICKET, IngestAction.FOLLOW_UP})


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
        self.metrics: Metrics | None = None
        """Set by the daemon: decisions and latency are counted for its metrics endpoint."""
        self.loop_marker = compose.loop_marker(config)
        self.engineer_addresses = frozenset(engineer.email for engineer in config.engineers)
        self.own_addresses = frozenset(
            address
            for address in (config.mailbox.address, config.mailbox.comment_address)
            if address
        )
        self.own_markers = frozenset({self.loop_marker.lower(), *self.own_addresses})
        self.criticality_rules = tuple(
            CriticalityRule(rule.level, rule.phrases, rule.name)
            for rule in config.criticality_rules
        )
        self.own_domains = tuple(
            sorted({config.mail_domain, *(e.rpartition("@")[2] for e in self.engineer_addresses)})
        )
        # We are nobody's colleague: our own domains never make an organisation.
        self.not_organizations = config.tickets.public_domains | frozenset(self.own_domains)
        self.trusted_networks = parse_networks(config.security.trusted_relays)
        self.mx_networks = parse_networks(config.security.mx_peers)

    def run_stages(self, session: Session, incoming: Incoming) -> IngestResult:
        """Every stage, in order, inside the caller's transaction (see maild.worker)."""
        work = Work(incoming=incoming, session=session, identity=identify_message(incoming.raw))
        with at_moment(self.clock.now()), repo.buffered_events(session):
            return self._run(work)

    def _run(self, work: Work) -> IngestResult:
        incoming = work.incoming
        for stage in STAGES:
            result = stage(self, work)
            if result is not None:
                if work.ticket is not None and result.action in SETTLING:
                    settle_outcomes(self.config, work.session, work.ticket, self.clock.now())
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
            blob = store_raw(self.artifacts, incoming.raw)
            repo.record_artifact(session, blob.sha256, blob.size)
            values = _ledger_values(incoming, identity, "quarantined", reason)
            values["explanation"] = f"quarantined: {detail}"[:2000]
            row = repo.insert_row(session, InboundMessage, **values)
            repo.add_event(
                session, "quarantined", reason, inbound_id=row.id, detail={"error": detail}
            )
        log.warning("spool=%s quarantined: %s", incoming.spool_id, reason)
        return IngestResult(
            incoming.spool_id, identity.message_id, IngestAction.QUARANTINED, None, reason,
            f"quarantined: {detail}",
        )  # fmt: skip


def _ledger_values(
    incoming: Incoming, identity: MessageIdentity, state: str, reason: str
) -> dict[str, Any]:
    return {
        "spool_id": incoming.spool_id, "source": incoming.source[:255],
        "dedup_key": identity.dedup_key, "raw_sha256": identity.raw_sha256,
        "raw_size": incoming.raw.size, "message_id": identity.message_id, "state": state,
        "reason": reason,
    }  # fmt: skip


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
    work.inbound = repo.insert_row(
        session, InboundMessage, **_ledger_values(incoming, work.identity, "processing", "")
    )
    if original is None:
        return None
    if original.ticket_id is not None:
        work.ticket = session.get(Ticket, original.ticket_id)
    return finish(
        work, IngestAction.DUPLICATE, "same_message_already_received",
        f"duplicate: the same message (Message-ID and body) was received before"
        f"{f' in ticket {original.ticket_id}' if original.ticket_id else ''}",
    )  # fmt: skip


# --- parse: raw kept first, then decoded; attachments go to the store as they are found ---


def stage_parse(pipeline: Pipeline, work: Work) -> IngestResult | None:
    ahead = work.incoming.preparsed
    if ahead is not None:  # parsed by another process (maild.parseahead): its blobs are ours
        for path in ahead.written:
            pipeline.artifacts.mark_unsynced(path)
        blob, work.parsed = ahead.raw, ahead.parsed
    else:
        blob = store_raw(pipeline.artifacts, work.incoming.raw)
        work.parsed = parse_limited(
            pipeline.artifacts, pipeline.config.artifacts, work.incoming.raw
        )
    repo.record_artifact(work.session, blob.sha256, blob.size)
    return None


# --- guard: machines are recorded, never answered ---


def stage_guard(pipeline: Pipeline, work: Work) -> IngestResult | None:
    parsed = known(work.parsed)
    work.facts = message_facts(parsed)
    if work.incoming.envelope_from == "":
        work.facts = dataclasses.replace(work.facts, null_reverse_path=True)
    work.guard = decide_guard(work.facts, pipeline.own_markers)
    if work.facts.sender_email in pipeline.own_addresses:
        work.guard = GuardDecision(
            GuardAction.IGNORE, "from_own_address",
            f"ignored: sent from our own address {work.facts.sender_email}",
        )  # fmt: skip
    sender = parsed.sender.email if parsed.sender is not None else ""
    forged = forged_chat_sender(sender, work.incoming.source)
    if forged is not None:
        repo.add_event(
            work.session, "quarantined", "chat_address_forged", inbound_id=inbound_id(work),
            detail={"explanation": forged},
        )  # fmt: skip
        return finish(work, IngestAction.QUARANTINED, "chat_address_forged", forged)
    if parsed.sender is not None:
        return None
    # Without a From there is no one to answer and no ticket to join: a machine's message
    # is recorded as ignored, anything else waits in quarantine for a person to look at.
    guard = work.guard
    if guard.action is GuardAction.IGNORE:
        repo.add_event(
            work.session, "ignored", guard.reason, inbound_id=inbound_id(work),
            detail={"explanation": guard.explanation},
        )  # fmt: skip
        return finish(work, IngestAction.IGNORED, guard.reason, guard.explanation)
    why = "quarantined: no usable From address, nobody to answer"
    repo.add_event(
        work.session, "quarantined", "no_sender", inbound_id=inbound_id(work),
        detail={"explanation": why},
    )  # fmt: skip
    return finish(work, IngestAction.QUARANTINED, "no_sender", why)


# --- thread: which ticket, by token, then In-Reply-To, then References ---


def stage_thread(pipeline: Pipeline, work: Work) -> IngestResult | None:
    parsed, guard = known(work.parsed), known(work.guard)
    sender = known(parsed.sender).email
    security = pipeline.config.security
    work.author = identify_author(
        sender, parsed.headers, peer=work.incoming.peer, engineers=pipeline.engineer_addresses,
        trusted_authserv_ids=security.trusted_authserv_ids,
        trusted_networks=pipeline.trusted_networks,
        results_trusted=results_are_ours(
            work.incoming.source, work.incoming.peer, pipeline.mx_networks
        ),
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
    loaded: dict[int, Ticket] = {}
    context = ThreadContext(
        tickets=repo.ticket_views(session, named, loaded=loaded),
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
        work.ticket = loaded.get(work.thread.ticket) or session.get(Ticket, work.thread.ticket)
        _follow_merges(work)
    if work.thread.action is ThreadAction.DUPLICATE:
        thread = work.thread
        repo.add_event(
            session, "duplicate", thread.reason, ticket_id=thread.ticket,
            inbound_id=inbound_id(work), detail={"explanation": thread.explanation},
        )  # fmt: skip
        return finish(work, IngestAction.DUPLICATE, thread.reason, thread.explanation)
    return None


def _follow_merges(work: Work) -> None:
    """Mail naming a ticket that was merged goes where the ticket's mail went (#merge)."""
    ticket, hops = repo.merged_destination(work.session, known(work.ticket))
    thread = known(work.thread)
    if hops:
        path = " -> ".join(str(number) for number in (*hops, ticket.id))
        work.ticket = ticket
        work.thread = replace(
            thread, ticket=ticket.id, action=ThreadAction.FOLLOW_UP,
            explanation=f"{thread.explanation}; ticket merged ({path})",
        )  # fmt: skip


# --- store: ticket, contact, message, attachments, participants, events ---


def stage_store(pipeline: Pipeline, work: Work) -> IngestResult | None:
    parsed, thread, guard = work.parsed, work.thread, work.guard
    parsed, thread, guard = known(parsed), known(thread), known(guard)
    sender = known(parsed.sender)
    session = work.session
    if guard.action is GuardAction.IGNORE:
        return _store_machine_mail(pipeline, work)
    if known(work.author).is_engineer:
        return handle_engineer_mail(work, pipeline.config, pipeline.artifacts, pipeline.clock.now())
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
        if work.ticket.status in ("waiting", "resolved"):
            old, work.ticket.status = work.ticket.status, "open"
            repo.add_event(
                session, "status_changed", "client_replied", ticket_id=work.ticket.id,
                actor=sender.email, detail={"old": old, "new": "open"},
            )  # fmt: skip
    own_text = _without_our_mail(
        session, work.ticket, parsed.new_text, is_new=thread.action is ThreadAction.NEW_TICKET
    )
    work.message = _store_message(
        pipeline, work, work.ticket, visibility="public", kind="mail", text=own_text
    )
    work.ticket.checklist = merge_present(
        work.ticket.checklist,
        find_checklist_facts(
            own_text or parsed.full_text,
            (a.kind for a in parsed.attachments if not a.refused),
        ),
    )
    _add_cc_participants(pipeline, work)
    work.ticket.updated_at = pipeline.clock.now()
    kind = "ticket_created" if thread.action is ThreadAction.NEW_TICKET else "follow_up"
    author = known(work.author)
    repo.add_event(
        session, kind, thread.reason, ticket_id=work.ticket.id, inbound_id=inbound_id(work),
        actor=sender.email,
        detail={"explanation": thread.explanation, "author": str(author.kind),
                "author_reason": author.reason},
    )  # fmt: skip
    return None


def _record_security(pipeline: Pipeline, work: Work) -> None:
    """What an attacker tried, for the audit trail; nothing here changes the decision."""
    parsed, thread, author = known(work.parsed), known(work.thread), known(work.author)
    sender = known(parsed.sender).email
    ledger_id, session = inbound_id(work), work.session
    if thread.security_reason:
        repo.add_event(
            session, "security", thread.security_reason, ticket_id=thread.refused_ticket,
            inbound_id=ledger_id, actor=sender,
            detail={"subject": parsed.subject, "explanation": thread.explanation},
        )  # fmt: skip
    if author.kind is AuthorKind.UNVERIFIED_ENGINEER and thread.security_reason != (
        "unverified_engineer"
    ):
        repo.add_event(
            session, "security", "unverified_engineer", inbound_id=ledger_id, actor=sender,
            detail={"subject": parsed.subject, "explanation": author.explanation,
                    "author_reason": author.reason},
        )  # fmt: skip
    if author.kind is AuthorKind.UNVERIFIED_ENGINEER:
        lines = [c.line for c in split_commands(parsed.new_text).commands]
        if lines:
            repo.add_event(
                session, "security", "commands_refused", ticket_id=thread.refused_ticket,
                inbound_id=ledger_id, actor=sender,
                detail={"commands": lines,
                        "explanation": f"commands not honoured: {author.explanation}"},
            )  # fmt: skip
    domain = sender.rpartition("@")[2]
    imitated = find_imitated(domain, pipeline.own_domains)
    if imitated is not None:
        repo.add_event(
            session, "security", "lookalike_own_domain", inbound_id=ledger_id, actor=sender,
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
        inbound_id=inbound_id(work), detail={"explanation": explanation},
    )  # fmt: skip
    _handle_bounce(pipeline, work)
    return finish(work, IngestAction.IGNORED, guard.reason, explanation)


def _handle_bounce(pipeline: Pipeline, work: Work) -> None:
    parsed, thread = known(work.parsed), known(work.thread)
    report = parsed.report
    if report is None or not report.failed_recipients:
        return
    if thread.reason != "returned_message_match" or work.ticket is None:
        # Anyone can write a DSN; only one that returns a message of ours (whose Message-ID
        # only its recipients saw) may mark an address as bouncing.
        repo.add_event(
            work.session, "bounce", "bounce_unmatched", inbound_id=inbound_id(work),
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
        inbound_id=inbound_id(work),
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
    engineers = ticket_engineers(pipeline.config, ticket)
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
    subject = (
        clean_subject(parsed.subject, pipeline.config.token_prefix) or compose.NO_SUBJECT[language]
    )
    now = pipeline.clock.now()
    config = pipeline.config
    recipients = [a.email for a in (*parsed.to, *parsed.cc)] + [
        value.strip().strip("<>") for name, value in parsed.headers
        if name in ("delivered-to", "x-original-to")
    ]  # fmt: skip
    choice = choose_contract(
        config, sender=sender.email, recipients=recipients, source=work.incoming.source
    )
    contract = choice.contract
    criticality = decide_criticality(
        parsed.subject, parsed.new_text or parsed.full_text,
        contract_default=contract.default_criticality if contract else None,
        extra_rules=pipeline.criticality_rules,
    )  # fmt: skip
    ticket = Ticket(
        id=repo.next_ticket_number(session),
        subject=subject[:1000],
        status="new",
        criticality=criticality.level,
        channel=channel_of(choice, work.incoming.source),
        language=language,
        organization_id=organization.id if organization else None,
        requester_id=contact.id,
        linked_ticket_id=thread.linked_ticket,
        contract_id=repo.contract_id(session, contract.name) if contract else None,
        sla_terms=sla_terms(config, contract),
        created_at=now,
        updated_at=now,
    )
    # Set on the ticket, the objects stay in memory for the notice (no lazy load later).
    ticket.requester, ticket.organization = contact, organization
    session.add(ticket)
    session.flush()
    repo.add_participant(session, ticket.id, contact.email, "requester", ticket_is_new=True)
    for kind, reason, explanation, value in (
        ("contract", choice.reason, choice.explanation, contract.name if contract else None),
        ("criticality", criticality.reason, criticality.explanation, criticality.level),
    ):
        repo.add_event(
            session, kind, reason, ticket_id=ticket.id, inbound_id=inbound_id(work),
            detail={"value": value, "explanation": explanation},
        )  # fmt: skip
        work.decisions[kind] = {"value": value, "reason": reason, "explanation": explanation}
    assigned = assign_on_arrival(config, session, ticket, contract, now)
    if assigned is not None:
        repo.add_event(
            session, "assignment", assigned[0], ticket_id=ticket.id,
            detail={"explanation": assigned[1]},
        )  # fmt: skip
        session.flush()
        session.refresh(ticket, ["assignee"])
    return ticket


def _without_our_mail(session: Session, ticket: Ticket, text: str, *, is_new: bool) -> str:
    """A client's text without our own earlier mail to this ticket pasted back under it
    with no '>' (quote stripping cannot see such a quote; we know what we sent). A ticket
    opened by this very message has had no mail from us yet."""
    if is_new or not text:
        return text
    return cut_own_mail(text, repo.recent_outgoing_texts(session, ticket.id))


def _store_message(
    pipeline: Pipeline,
    work: Work,
    ticket: Ticket,
    *,
    visibility: str,
    kind: str,
    text: str | None = None,
) -> Message:
    parsed = work.parsed
    parsed = known(parsed)
    sender = known(parsed.sender)
    recipients = ", ".join(address.email for address in (*parsed.to, *parsed.cc))
    message = repo.insert_row(
        work.session, Message, ticket_id=ticket.id, inbound_id=inbound_id(work), direction="in",
        visibility=visibility, kind=kind, message_id=parsed.message_id,
        in_reply_to=" ".join(parsed.in_reply_to) or None,
        references=" ".join(parsed.references) or None, sender_email=sender.email,
        sender_name=sender.name[:255], recipients=recipients, subject=parsed.subject,
        sent_at=parsed.date, created_at=pipeline.clock.now(),
        text=parsed.new_text if text is None else text, full_text=parsed.full_text,
    )  # fmt: skip
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
        if chat_of_address(email) is not None:
            # Only the bot makes a chat a participant: a Cc naming one would have our bot
            # deliver this ticket's answers into a stranger's Telegram chat.
            repo.add_event(work.session, "participant_refused", "chat_address_in_copy",
                           ticket_id=ticket.id, detail={"email": email})  # fmt: skip
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
    elif refused:
        _auto_reply(pipeline, work, ticket, purpose="attachment_refused")
    _notify_engineers(pipeline, work, ticket)
    if thread.action is ThreadAction.NEW_TICKET:
        return finish(work, IngestAction.NEW_TICKET, thread.reason, thread.explanation)
    return finish(work, IngestAction.FOLLOW_UP, thread.reason, thread.explanation)


def _notify_engineers(pipeline: Pipeline, work: Work, ticket: Ticket) -> None:
    """Tell the engineers what the client's side wrote, and what the ticket still needs."""
    event = {
        ThreadAction.NEW_TICKET: "new_ticket", ThreadAction.REOPEN: "reopened",
    }.get(known(work.thread).action, "follow_up")  # fmt: skip
    notify_ticket(
        NoticeContext(pipeline.config, work.session, pipeline.clock.now()), ticket,
        known(work.message), event=event, to=ticket_engineers(pipeline.config, ticket),
    )  # fmt: skip


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
        unanswerable=why_unanswerable(requester),
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
        missing = [str(item) for item in missing_from(ticket.checklist)]
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


STAGES: tuple[Stage, ...] = (
    stage_ledger,
    stage_parse,
    stage_guard,
    stage_thread,
    stage_store,
    stage_act,
)
