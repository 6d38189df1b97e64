"""Mail from a proven engineer: an answer to the client, an internal comment, commands.

The store stage hands over every message whose author `threading_rules.authenticity`
proved to be an engineer. What the mail means is decided first (`split_commands`, the
comment address); then each command changes the ticket and says so in a `CommandResult`;
last, one mail may go to the client (the engineer's text plus what the commands ask of
the client) and one short confirmation to the engineer.

The engineer's text reaches the client only when every command line was understood: a
mistyped `#coment` must not send an internal remark to the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from maild import commands, compose
from maild.commands import Command, EngineerEntry, EngineerText, Name, Refusal, split_commands
from maild.config import Config
from maild.deadlines import settle_next_response
from maild.guard import AUTO_REPLIES, decide_acknowledgement
from maild.notices import (
    ENGINEER_NOTICES,
    NoticeContext,
    notify_comment,
    notify_ticket,
    team,
    ticket_engineers,
)
from maild.work import IngestAction, IngestResult, Work, finish, inbound_id, known, queue_mail
from parsers.checklist import find_checklist_facts, merge_present, missing_from, stored_facts
from parsers.quotes import shared_passage
from parsers.reachability import why_unanswerable
from parsers.types import Address, AttachmentInfo, ParsedMessage
from storage import repositories as repo
from storage.artifacts import ArtifactStore
from storage.models import Engineer, Message, Ticket
from threading_rules.decide import ThreadAction
from threading_rules.token import clean_subject, format_token


@dataclass(frozen=True, slots=True)
class CommandResult:
    line: str
    ok: bool
    code: str
    values: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "ok": self.ok, "code": self.code, **self.values}


def _refused(command: Command, refusal: Refusal, **values: Any) -> CommandResult:
    return CommandResult(
        command.line, False, refusal.reason, {"allowed": refusal.allowed, **values}
    )


@dataclass(slots=True)
class EngineerMail:
    """One engineer's mail on its way through the commands."""

    config: Config
    session: Session
    artifacts: ArtifactStore
    now: datetime
    engineer: Engineer
    parsed: ParsedMessage
    ticket: Ticket | None
    results: list[CommandResult] = field(default_factory=list)
    client_blocks: list[str] = field(default_factory=list)
    """Texts for the client that commands add (#request, #close, #merge), after the answer."""
    client_purposes: list[str] = field(default_factory=list)
    show_help: bool = False
    new_ticket: bool = False
    held_passage: str | None = None
    """A notice's words found in the engineer's answer, which held the answer back."""

    @property
    def notices(self) -> NoticeContext:
        return NoticeContext(self.config, self.session, self.now)

    def event(self, kind: str, reason: str, **detail: Any) -> None:
        repo.add_event(
            self.session, kind, reason, ticket_id=self.ticket.id if self.ticket else None,
            actor=self.engineer.email, detail=detail,
        )  # fmt: skip

    def tell_client(self, purpose: str, template: str, language: str, **context: Any) -> None:
        """A block for the one mail the client gets after the commands ran."""
        self.client_blocks.append(compose.render(template, language, **context).strip())
        self.client_purposes.append(purpose)

    def token(self, ticket_id: int) -> str:
        return format_token(self.config.token_prefix, ticket_id)


def handle_engineer_mail(
    work: Work, config: Config, artifacts: ArtifactStore, now: datetime
) -> IngestResult:
    """Everything a proven engineer's mail causes; returns the ingest result."""
    parsed, thread = known(work.parsed), known(work.thread)
    sender = known(parsed.sender).email
    engineer = repo.engineer_by_email(work.session, sender)
    if engineer is None:  # pragma: no cover - the engineers table is synced from the config
        raise RuntimeError(f"engineer {sender} is in the config but not in the database")
    ticket = work.ticket
    if ticket is None and thread.linked_ticket is not None:
        # An engineer's mail to a ticket closed long ago still belongs to that ticket (or
        # to the one it was merged into).
        linked = work.session.get(Ticket, thread.linked_ticket)
        ticket = repo.merged_destination(work.session, linked)[0] if linked else None
    mail = EngineerMail(config, work.session, artifacts, now, engineer, parsed, ticket)
    text = split_commands(parsed.new_text)
    comment = (
        text.is_comment
        or _addressed_to_comment(parsed, config)
        or _answers_comment_notice(work.session, parsed)
    )
    _register_new_requests(mail, work, text)
    if mail.ticket is None:
        return _no_ticket(mail, work, text)
    work.ticket = mail.ticket
    if not mail.new_ticket:
        for command in text.commands:
            if command.name != Name.NEW:
                mail.results.append(_run(mail, command))
    held = any(not result.ok for result in mail.results)
    outcome, recipients = _deliver_text(mail, work, text, comment=comment, held=held)
    work.ticket = mail.ticket  # after #merge, the ticket the mail now lives in
    # `#comment` alone needs no confirmation: the comment notice shows it was understood.
    told = outcome in ("held_quote", "files_kept")
    if told or held or any(c.name != Name.COMMENT for c in text.commands):
        _confirm(mail, outcome=outcome, recipients=recipients)
    mail.ticket.updated_at = now
    explanation = _explain(thread.explanation, outcome, recipients, mail.results)
    if mail.new_ticket:
        return finish(work, IngestAction.NEW_TICKET, "registered_on_behalf", explanation)
    reason = thread.reason if thread.action is not ThreadAction.NEW_TICKET else "engineer_token"
    return finish(work, IngestAction.FOLLOW_UP, reason, explanation)


def _addressed_to_comment(parsed: ParsedMessage, config: Config) -> bool:
    wanted = config.mailbox.comment_address
    if not wanted:
        return False
    addressed = {a.email for a in (*parsed.to, *parsed.cc)}
    delivered = {(parsed.header("delivered-to") or "").strip().lower()}
    return wanted in addressed | delivered


def _answers_comment_notice(session: Session, parsed: ParsedMessage) -> bool:
    """A reply to an internal comment stays internal, whatever address it went to: the
    engineer is talking to colleagues, and the comment must not reach the client quoted."""
    known_ids = repo.known_messages(session, parsed.in_reply_to)
    return any(message.kind == "comment_notice" for message in known_ids.values())


def _explain(thread: str, outcome: str, recipients: list[str], results: list[CommandResult]) -> str:
    parts = [thread]
    if outcome == "answer_sent":
        parts.append(f"engineer's answer relayed to {', '.join(recipients)}")
    elif outcome == "comment_saved":
        parts.append("internal comment")
    elif outcome == "held":
        parts.append("text held back: a command was refused")
    elif outcome == "files_kept":
        parts.append("attachments kept internal: commands and files, no text")
    elif outcome == "held_quote":
        parts.append("text held back: it quotes a notice to engineers")
    if results:
        done = ", ".join(f"{r.line.split()[0]} {'ok' if r.ok else r.code}" for r in results)
        parts.append(f"commands: {done}")
    return "; ".join(part for part in parts if part)


# --- #new: a request that came by phone, Telegram or the web, registered by the engineer ---


def _register_new_requests(mail: EngineerMail, work: Work, text: EngineerText) -> None:
    requests = text.named(Name.NEW)
    if not requests:
        return
    first, *extra = requests
    verdict = commands.new_request(first.argument)
    if isinstance(verdict, Refusal):
        mail.results.append(_refused(first, verdict))
    else:
        client, channel = verdict
        if client in _own_addresses(mail.config):
            mail.results.append(CommandResult(first.line, False, "own_address"))
        else:
            _open_on_behalf(mail, work, text, client, channel)
            mail.results.append(
                CommandResult(
                    first.line, True, "new_ok",
                    {"token": mail.token(known(mail.ticket).id), "client": client,
                     "channel": channel},
                )
            )  # fmt: skip
    mail.results.extend(CommandResult(c.line, False, "new_twice") for c in extra)
    if mail.new_ticket:
        for command in text.commands:
            if command.name != Name.NEW:
                mail.results.append(_run(mail, command))


def _open_on_behalf(
    mail: EngineerMail, work: Work, text: EngineerText, client: str, channel: str
) -> None:
    session, config, parsed = mail.session, mail.config, mail.parsed
    public = config.tickets.public_domains | {config.mail_domain}
    organization = repo.organization_for_domain(session, client.rpartition("@")[2], public)
    contact = repo.contact_for_address(session, Address("", client), organization)
    language = compose.choose_language(config.tickets.language, parsed.subject, text.body)
    subject = clean_subject(parsed.subject, config.token_prefix) or compose.NO_SUBJECT[language]
    ticket = Ticket(
        id=repo.next_ticket_number(session), subject=subject[:1000], status="new",
        channel=channel, language=language,
        organization_id=organization.id if organization else None, requester_id=contact.id,
        created_at=mail.now, updated_at=mail.now,
    )  # fmt: skip
    session.add(ticket)
    session.flush()
    repo.add_participant(session, ticket.id, client, "requester", ticket_is_new=True)
    repo.add_participant(session, ticket.id, mail.engineer.email, "engineer", ticket_is_new=True)
    mail.ticket, mail.new_ticket = ticket, True
    work.ticket = ticket
    message = _store(mail, work, text.body, direction="in", visibility="public", kind="on_behalf")
    accepted = (a.kind for a in parsed.attachments if not a.refused)
    ticket.checklist = merge_present("", find_checklist_facts(text.body, accepted))
    mail.event(
        "ticket_created", "registered_on_behalf", channel=channel, client=client,
        explanation=f"registered by {mail.engineer.email} for {client} (channel {channel})",
    )  # fmt: skip
    _acknowledge_client(mail, work, ticket, (contact.name, client))
    notify_ticket(
        mail.notices, ticket, message, event="on_behalf",
        to=ticket_engineers(config, ticket, exclude=mail.engineer.email),
        registered_by=mail.engineer.name or mail.engineer.email,
    )  # fmt: skip


def _acknowledge_client(
    mail: EngineerMail, work: Work, ticket: Ticket, client: tuple[str, str]
) -> None:
    """The client learns the number of the request the engineer registered for them."""
    session, config = mail.session, mail.config
    decision = decide_acknowledgement(
        known(work.facts),
        acks_today=repo.count_recent_outbox(
            session, client[1], AUTO_REPLIES, mail.now - timedelta(days=1)
        ),
        limit=config.guard.autoreply_limit,
        sender_bouncing=repo.contact_is_bouncing(session, client[1]),
        unanswerable=why_unanswerable(client[1]),
    )  # fmt: skip
    if not decision.send:
        mail.event("ack_suppressed", decision.reason, purpose="acknowledgement")
        return
    missing = [str(item) for item in missing_from(ticket.checklist)]
    reply = compose.ReplyTo(
        ticket_id=ticket.id, token=mail.token(ticket.id), subject=ticket.subject,
        language=ticket.language, client=client, answering=None, references=(),
    )  # fmt: skip
    acknowledgement = compose.acknowledgement(
        config, reply, attachments=mail.parsed.attachments, missing=missing, now=mail.now
    )
    queue_mail(
        session, ticket, acknowledgement, purpose="acknowledgement", recipient=client[1],
        now=mail.now, sender=config.mailbox.address,
    )  # fmt: skip
    mail.event("acknowledged", decision.reason, missing=missing)


# --- the commands ------------------------------------------------------------------------------


def _run(mail: EngineerMail, command: Command) -> CommandResult:
    if not command.known:
        return CommandResult(command.line, False, "unknown_command")
    handler = _HANDLERS.get(command.name)
    if handler is None:  # comment, help, new: handled by the caller
        if command.name == Name.HELP:
            mail.show_help = True
            return CommandResult(command.line, True, "help_ok")
        return CommandResult(command.line, True, f"{command.name}_ok")
    return handler(mail, command)


def _ticket(mail: EngineerMail) -> Ticket:
    return known(mail.ticket)


def _take(mail: EngineerMail, command: Command) -> CommandResult:
    _assign_to(mail, mail.engineer)
    return CommandResult(command.line, True, "take_ok")


def _assign(mail: EngineerMail, command: Command) -> CommandResult:
    entries = [EngineerEntry(e.email, e.name) for e in mail.config.engineers]
    found = commands.find_engineer(command.argument, entries)
    if isinstance(found, Refusal):
        return _refused(command, found)
    engineer = repo.engineer_by_email(mail.session, found.email)
    if engineer is None or not engineer.active:
        return CommandResult(command.line, False, "inactive_engineer", {"email": found.email})
    _assign_to(mail, engineer)
    if engineer.id != mail.engineer.id:
        ticket = _ticket(mail)
        latest = repo.latest_client_message(mail.session, ticket.id)
        if latest is not None:
            notify_ticket(
                mail.notices, ticket, latest, event="assigned",
                to=[(engineer.name, engineer.email)],
            )  # fmt: skip
    return CommandResult(
        command.line, True, "assign_ok", {"name": engineer.name, "email": engineer.email}
    )


def _assign_to(mail: EngineerMail, engineer: Engineer) -> None:
    ticket = _ticket(mail)
    previous = ticket.assignee.email if ticket.assignee else None
    ticket.assignee_id = engineer.id
    ticket.assignee = engineer
    mail.event("assigned", "command", assignee=engineer.email, previous=previous)


def _priority(mail: EngineerMail, command: Command) -> CommandResult:
    level = commands.priority(command.argument)
    if isinstance(level, Refusal):
        return _refused(command, level)
    ticket = _ticket(mail)
    old, ticket.criticality = ticket.criticality, level
    mail.event("criticality_changed", "command", old=old, new=level)
    return CommandResult(command.line, True, "priority_ok", {"old": old, "new": level})


def _status(mail: EngineerMail, command: Command) -> CommandResult:
    status = commands.choice(command.argument, commands.STATUSES)
    if isinstance(status, Refusal):
        return _refused(command, status)
    ticket = _ticket(mail)
    old = _set_status(mail, ticket, status)
    return CommandResult(command.line, True, "status_ok", {"old": old, "new": status})


def _set_status(mail: EngineerMail, ticket: Ticket, status: str, reason: str = "command") -> str:
    old, ticket.status = ticket.status, status
    if status == "closed":
        ticket.closed_at = ticket.closed_at if old == "closed" else mail.now
    else:
        ticket.closed_at, ticket.close_reason = None, None
    if old != status:
        mail.event("status_changed", reason, old=old, new=status)
    return old


def _close(mail: EngineerMail, command: Command) -> CommandResult:
    reason = commands.choice(command.argument.split()[0] if command.argument else "",
                             commands.CLOSE_REASONS)  # fmt: skip
    if isinstance(reason, Refusal):
        return _refused(command, reason)
    ticket = _ticket(mail)
    _set_status(mail, ticket, "closed", reason="closed")
    ticket.close_reason = reason
    mail.event("closed", reason, explanation=f"closed by {mail.engineer.email}: {reason}")
    mail.tell_client(
        "closing", "closed", ticket.language, reason=reason, token=mail.token(ticket.id),
        reopen_days=mail.config.tickets.reopen_days,
    )  # fmt: skip
    return CommandResult(command.line, True, "close_ok", {"reason": reason})


def _merge(mail: EngineerMail, command: Command) -> CommandResult:
    number = commands.ticket_number(command.argument)
    if isinstance(number, Refusal):
        return _refused(command, number)
    source = _ticket(mail)
    target = mail.session.get(Ticket, number)
    values: dict[str, Any] = {"target": mail.token(number)}
    if target is None:
        return CommandResult(command.line, False, "merge_unknown_ticket", values)
    if target.id == source.id:
        return CommandResult(command.line, False, "merge_same_ticket", values)
    if target.merged_into_id is not None:
        values["final"] = mail.token(target.merged_into_id)
        return CommandResult(command.line, False, "merge_target_merged", values)
    if not _same_client(source, target):
        values.update(mine=_client_of(source), theirs=_client_of(target))
        return CommandResult(command.line, False, "merge_other_client", values)
    moved = repo.merge_tickets(mail.session, source, target)
    target.checklist = merge_present(target.checklist, stored_facts(source.checklist))
    _set_status(mail, source, "closed", reason="merged")
    source.close_reason, source.merged_into_id = "merged", target.id
    mail.event("merged", "command", into=target.id, messages=moved)
    repo.add_event(
        mail.session, "merged", "command", ticket_id=target.id, actor=mail.engineer.email,
        detail={"from": source.id, "messages": moved},
    )  # fmt: skip
    mail.tell_client(
        "merged", "merged", source.language, token=mail.token(source.id),
        target_token=mail.token(target.id),
    )  # fmt: skip
    mail.ticket = target  # what follows in this mail concerns the ticket it now lives in
    return CommandResult(command.line, True, "merge_ok", values)


def _client_of(ticket: Ticket) -> str:
    return ticket.organization.domain if ticket.organization else ticket.requester.email


def _same_client(first: Ticket, second: Ticket) -> bool:
    """Merging shows each side the other's mail: only within one organisation (or one
    private person)."""
    if first.organization_id is not None or second.organization_id is not None:
        return first.organization_id == second.organization_id
    return first.requester_id == second.requester_id


def _cc(mail: EngineerMail, command: Command) -> CommandResult:
    address = commands.address(command.argument)
    if isinstance(address, Refusal):
        return _refused(command, address)
    if address in _own_addresses(mail.config):
        return CommandResult(command.line, False, "own_address", {"address": address})
    ticket = _ticket(mail)
    if not repo.add_participant(mail.session, ticket.id, address, "cc"):
        return CommandResult(command.line, True, "cc_exists", {"address": address})
    mail.event("participant_added", "cc_command", email=address, role="cc")
    return CommandResult(command.line, True, "cc_ok", {"address": address})


def _request(mail: EngineerMail, command: Command) -> CommandResult:
    items = commands.request_items(command.argument)
    if isinstance(items, Refusal):
        return _refused(command, items)
    ticket = _ticket(mail)
    mail.tell_client("request", "request", ticket.language, items=list(items))
    _set_status(mail, ticket, "waiting", reason="requested")
    mail.event("information_requested", "command", items=list(items))
    return CommandResult(command.line, True, "request_ok", {"items": list(items)})


_HANDLERS: dict[str, Callable[[EngineerMail, Command], CommandResult]] = {
    Name.TAKE: _take,
    Name.ASSIGN: _assign,
    Name.PRIORITY: _priority,
    Name.STATUS: _status,
    Name.CLOSE: _close,
    Name.MERGE: _merge,
    Name.CC: _cc,
    Name.REQUEST: _request,
}


def _own_addresses(config: Config) -> frozenset[str]:
    own = {config.mailbox.address, *(e.email for e in config.engineers)}
    if config.mailbox.comment_address:
        own.add(config.mailbox.comment_address)
    return frozenset(own)


# --- the text: an answer to the client, or an internal comment ---------------------------------


def _deliver_text(
    mail: EngineerMail, work: Work, text: EngineerText, *, comment: bool, held: bool
) -> tuple[str, list[str]]:
    """Returns the outcome (registered, comment_saved, answer_sent, held, held_quote,
    files_kept, commands) and who got mail."""
    ticket, body = known(mail.ticket), text.body.strip()
    if mail.new_ticket:
        _send_blocks_alone(mail, work)
        return "registered", []
    if comment:
        note = _store(mail, work, body, direction="in", visibility="internal", kind="comment")
        mail.event("comment", "internal", explanation="internal comment by an engineer")
        others = team(mail.config, exclude=mail.engineer.email)
        files = [a for a in mail.parsed.attachments if not a.inline]
        notify_comment(mail.notices, ticket, note, to=others, attachments=files)
        _send_blocks_alone(mail, work)
        return "comment_saved", [address for _, address in others]
    return _deliver_answer(mail, work, text, held=held)


def _deliver_answer(
    mail: EngineerMail, work: Work, text: EngineerText, *, held: bool
) -> tuple[str, list[str]]:
    """The text meant for the client: sent, or held back with the reason."""
    body = text.body.strip()
    if held:
        if body or _files(mail.parsed):
            _store(mail, work, body, direction="in", visibility="internal", kind="held")
        _send_blocks_alone(mail, work)
        return ("held" if body else "commands"), []
    if body and (passage := _quoted_notice(mail, body)):
        _store(mail, work, body, direction="in", visibility="internal", kind="held")
        mail.held_passage = passage
        mail.event("answer_held", "quoted_notice", passage=passage)
        _send_blocks_alone(mail, work)
        return "held_quote", []
    files_only = not body and bool(_files(mail.parsed))
    if body or mail.client_blocks or (files_only and not text.commands):
        # A plain Reply with only a file attached is an answer too: the file goes.
        return "answer_sent", _answer_client(mail, work, body)
    if files_only:
        # Commands and a file but no words: not clearly meant for the client; kept, and said.
        _store(mail, work, "", direction="in", visibility="internal", kind="engineer_mail")
        return "files_kept", []
    return "commands", []


def _send_blocks_alone(mail: EngineerMail, work: Work) -> None:
    """The engineer's text is held, internal or the request itself (#new), but what accepted
    commands tell the client (#close, #request, #merge) still goes: the ticket already
    changed, and the confirmation says so."""
    if mail.client_blocks:
        _answer_client(mail, work, "", relay_files=False)


def _quoted_notice(mail: EngineerMail, body: str) -> str | None:
    """A passage of one of our notices to engineers left in the answer, if any: quote
    stripping missed the history, and the client must not get the internal text."""
    notices: list[str] = []
    public: list[str] = []
    for kind, visibility, text, full_text in repo.ticket_texts(mail.session, known(mail.ticket).id):
        if kind in ENGINEER_NOTICES:
            notices.append(full_text)
        elif visibility == "public":
            public.extend((text, full_text))
    # Only what the client's side has seen is no secret: comments and held texts are not
    # (a held answer carries the very notice that held it).
    return shared_passage(body, notices, public)


def _files(parsed: ParsedMessage) -> list[AttachmentInfo]:
    return [a for a in parsed.attachments if not a.inline and not a.refused and a.sha256]


def _answer_client(
    mail: EngineerMail, work: Work, body: str, *, relay_files: bool = True
) -> list[str]:
    """One mail to the client's side: the engineer's words, then what the commands ask."""
    session, config = mail.session, mail.config
    ticket = known(mail.ticket)
    requester = ticket.requester
    cc = [
        ("", p.email)
        for p in repo.ticket_participants(session, ticket.id)
        if p.role in ("colleague", "cc") and p.email != requester.email
    ]
    latest = repo.latest_client_message(session, ticket.id)
    reply = compose.ReplyTo(
        ticket_id=ticket.id, token=mail.token(ticket.id), subject=ticket.subject,
        language=ticket.language, client=(requester.name, requester.email),
        answering=latest.message_id if latest else None,
        references=(latest.references or "").split() if latest else (),
    )  # fmt: skip
    relayed = _files(mail.parsed) if relay_files else []
    files = [
        compose.OutgoingFile(a.filename, a.content_type, mail.artifacts.read(a.sha256))
        for a in relayed
    ]
    outgoing = compose.client_mail(
        config, reply, engineer_text=body, blocks=mail.client_blocks, cc=cc, files=files,
        from_name=compose.sender_name(mail.engineer.name, config), now=mail.now,
    )  # fmt: skip
    kind = "answer" if body or relayed else mail.client_purposes[0]
    queued = queue_mail(
        session, ticket, outgoing, purpose=kind, recipient=requester.email, now=mail.now,
        sender=config.mailbox.address,
    )  # fmt: skip
    message = session.get_one(Message, queued.message_id)
    # The ticket shows the engineer's own words under the engineer's name; the mail the
    # client got (with footer and blocks) stays in the outbox.
    message.sender_email, message.sender_name = mail.engineer.email, mail.engineer.name
    message.text, message.inbound_id = body, inbound_id(work)
    repo.add_attachments(session, message, relayed)
    if ticket.first_response_at is None:
        ticket.first_response_at = mail.now
        mail.event("first_response", kind, by=mail.engineer.email)
    elif kind == "answer":
        session.flush()
        settle_next_response(config, session, ticket, message, mail.now)
    if body and ticket.status == "new":
        _set_status(mail, ticket, "open", reason="answered")
    mail.event("answered", kind, to=list(outgoing.recipients))
    return list(outgoing.recipients)


def _store(
    mail: EngineerMail, work: Work, text: str, *, direction: str, visibility: str, kind: str
) -> Message:
    parsed, ticket = mail.parsed, known(mail.ticket)
    message = Message(
        ticket_id=ticket.id, inbound_id=inbound_id(work), direction=direction,
        visibility=visibility, kind=kind, message_id=parsed.message_id,
        in_reply_to=" ".join(parsed.in_reply_to) or None,
        references=" ".join(parsed.references) or None, sender_email=mail.engineer.email,
        sender_name=mail.engineer.name[:255],
        recipients=", ".join(a.email for a in (*parsed.to, *parsed.cc)), subject=parsed.subject,
        sent_at=parsed.date, created_at=mail.now, text=text, full_text=parsed.full_text,
    )  # fmt: skip
    mail.session.add(message)
    mail.session.flush()
    repo.add_attachments(mail.session, message, parsed.attachments)
    return message


# --- the engineer's confirmation ---------------------------------------------------------------


def _confirm(mail: EngineerMail, *, outcome: str, recipients: list[str]) -> None:
    config = mail.config
    ticket = mail.ticket
    to = [(mail.engineer.name, mail.engineer.email)]
    ticket_id = ticket.id if ticket else 0
    outgoing = compose.engineer_notice(
        config, "command_result", ticket_id=ticket_id,
        token=mail.token(ticket.id) if ticket else "",
        subject=ticket.subject if ticket else mail.parsed.subject, to=to,
        answering=mail.parsed.message_id, references=mail.parsed.references, now=mail.now,
        results=mail.results, outcome=outcome, recipients=recipients, help=mail.show_help,
        passage=mail.held_passage,
        close_reasons=commands.CLOSE_REASONS,
    )  # fmt: skip
    if ticket is not None:
        queue_mail(
            mail.session, ticket, outgoing, purpose="command_result",
            recipient=mail.engineer.email, now=mail.now, sender=config.mailbox.address,
            visibility="internal",
        )  # fmt: skip
    else:
        repo.queue_outside_ticket(
            mail.session, outgoing.raw, purpose="command_result", recipient=mail.engineer.email,
            recipients=list(outgoing.recipients), now=mail.now,
        )  # fmt: skip
    mail.event(
        "commands", "confirmed" if all(r.ok for r in mail.results) else "refused",
        results=[r.as_json() for r in mail.results], outcome=outcome,
    )  # fmt: skip


def _no_ticket(mail: EngineerMail, work: Work, text: EngineerText) -> IngestResult:
    """An engineer's mail that names no ticket opens none: the engineer is told how to
    answer a ticket or register one, and nothing else happens."""
    for command in text.commands:
        if command.name == Name.HELP:
            mail.show_help = True
            mail.results.append(CommandResult(command.line, True, "help_ok"))
        elif command.name != Name.NEW:
            mail.results.append(CommandResult(command.line, False, "no_ticket"))
    if not any(r.code == "help_ok" for r in mail.results) and not any(
        r.line.startswith("#new") for r in mail.results
    ):
        mail.results.append(CommandResult(mail.parsed.subject or "—", False, "no_ticket"))
    _confirm(mail, outcome="no_ticket", recipients=[])
    repo.add_event(
        mail.session, "ignored", "engineer_without_ticket", inbound_id=inbound_id(work),
        actor=mail.engineer.email, detail={"subject": mail.parsed.subject},
    )  # fmt: skip
    explanation = (
        f"ignored: mail from engineer {mail.engineer.email} names no ticket and registers "
        "none (#new ADDRESS); the engineer was told"
    )
    return finish(work, IngestAction.IGNORED, "engineer_without_ticket", explanation)
