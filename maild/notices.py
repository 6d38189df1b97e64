"""Mail to engineers: what a ticket needs of them, written so that a plain reply works.

Every notice comes from the support address (Reply-To too) and carries the token and a
Message-ID of its own, so the engineer's reply finds its ticket and reaches the client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from maild import compose
from maild.config import Config
from maild.deadlines import ticket_sla
from maild.work import queue_mail
from parsers.checklist import missing_from
from storage import repositories as repo
from storage.models import Message, Ticket
from threading_rules.token import format_token

T = TypeVar("T")

ENGINEER_NOTICES = frozenset(
    {"bounce_notice", "ticket_notice", "comment_notice", "command_result", "escalation"}
)
"""Kinds of message maild sends to engineers, not to clients: a bounce of one never
starts another notice, and the ticket view leaves them out."""

NOTICE_FILES = 50
"""Files a notice lists by name (this message's first); the rest are a count, so a notice
stays small whatever arrives (40,000 parts once made a 4.5 MB notice to every engineer)."""
NOTICE_TEXT_CHARS = 64 * 1024
"""What a notice quotes of the text; the ticket keeps all of it (`maild tickets show`)."""


@dataclass(frozen=True, slots=True)
class NoticeContext:
    config: Config
    session: Session
    now: datetime


def ticket_engineers(
    config: Config, ticket: Ticket, *, exclude: str | None = None
) -> list[tuple[str, str]]:
    """The assignee; else the team address when one is configured; else every engineer.
    `exclude` (the engineer whose mail caused the notice) is never told of their own mail."""
    if ticket.assignee is not None and ticket.assignee.active:
        if ticket.assignee.email != exclude:
            return [(ticket.assignee.name, ticket.assignee.email)]
        return []
    return team(config, exclude=exclude)


def team(config: Config, *, exclude: str | None = None) -> list[tuple[str, str]]:
    if config.notifications.team_address:
        return [("", config.notifications.team_address)]
    return [(e.name, e.email) for e in config.engineers if e.email != exclude]


def notify_ticket(
    context: NoticeContext,
    ticket: Ticket,
    message: Message,
    *,
    event: str,
    to: Sequence[tuple[str, str]],
    registered_by: str | None = None,
) -> None:
    """A new ticket, a client's follow-up, a reopening or an assignment, with everything
    needed to answer it without opening another tool."""
    if not to:
        return
    config, session = context.config, context.session
    files = repo.ticket_files(session, ticket.id)
    artifacts = [
        {
            "filename": f.filename, "kind": f.kind, "size": f.size,
            "new": f.message_id == message.id, "flags": f.flags,
        }
        for f in files
        if f.refused_reason is None
    ]  # fmt: skip
    refused = [f for f in files if f.refused_reason is not None and f.message_id == message.id]
    artifacts, more_artifacts = _listed(artifacts, new=lambda item: bool(item["new"]))
    refused, more_refused = _listed(refused, new=lambda _: True)
    text, text_cut = _quoted(message.text)
    due = ticket_sla(config, context.session, ticket, context.now).due_times()
    headline = compose.NOTICE_SUBJECTS[event][config.tickets.language]
    requester = ticket.requester
    author = message.sender_name or message.sender_email
    mail = compose.engineer_notice(
        config, "ticket_notice", ticket_id=ticket.id,
        token=format_token(config.token_prefix, ticket.id), subject=ticket.subject, to=to,
        answering=message.message_id, references=(message.references or "").split(),
        now=context.now, headline=headline, from_name=compose.sender_name(author, config),
        client_name=requester.name, client_email=requester.email,
        author_email=message.sender_email,
        organization=ticket.organization.domain if ticket.organization else None,
        channel=ticket.channel, registered_by=registered_by, criticality=ticket.criticality,
        status=ticket.status, assignee=ticket.assignee.name or ticket.assignee.email
        if ticket.assignee else None,
        due=due, text=text, text_cut=text_cut, artifacts=artifacts,
        more_artifacts=more_artifacts, refused=refused, more_refused=more_refused,
        missing=[str(item) for item in missing_from(ticket.checklist)],
    )  # fmt: skip
    _queue(context, ticket, mail, "ticket_notice", to, event=event)


def notify_comment(
    context: NoticeContext,
    ticket: Ticket,
    comment: Message,
    *,
    to: Sequence[tuple[str, str]],
    attachments: Sequence[Any],
) -> None:
    if not to:
        return
    config = context.config
    author = comment.sender_name or comment.sender_email
    listed, more_attachments = _listed(list(attachments), new=lambda _: True)
    text, text_cut = _quoted(comment.text)
    mail = compose.engineer_notice(
        config, "comment_notice", ticket_id=ticket.id,
        token=format_token(config.token_prefix, ticket.id), subject=ticket.subject, to=to,
        answering=comment.message_id, now=context.now,
        from_name=compose.sender_name(author, config), author=author, text=text,
        text_cut=text_cut, attachments=listed, more_attachments=more_attachments,
    )  # fmt: skip
    _queue(context, ticket, mail, "comment_notice", to, event="comment")


def _listed(items: list[T], *, new: Callable[[T], bool]) -> tuple[list[T], int]:
    """At most NOTICE_FILES items, in their order; when there are more, the new ones are
    kept first. Returns the items to list and how many are left out."""
    if len(items) <= NOTICE_FILES:
        return items, 0
    chosen = sorted(items, key=lambda item: not new(item))[:NOTICE_FILES]
    kept = {id(item) for item in chosen}
    return [item for item in items if id(item) in kept], len(items) - NOTICE_FILES


def _quoted(text: str | None) -> tuple[str, int]:
    """The text a notice shows, and how many characters of it were left out."""
    text = text or ""
    if len(text) <= NOTICE_TEXT_CHARS:
        return text, 0
    return text[:NOTICE_TEXT_CHARS], len(text) - NOTICE_TEXT_CHARS


def _queue(
    context: NoticeContext,
    ticket: Ticket,
    mail: compose.OutgoingMail,
    purpose: str,
    to: Sequence[tuple[str, str]],
    *,
    event: str,
) -> None:
    queue_mail(
        context.session, ticket, mail, purpose=purpose, recipient=to[0][1], now=context.now,
        sender=context.config.mailbox.address, visibility="internal",
    )  # fmt: skip
    repo.add_event(
        context.session, "engineers_notified", event, ticket_id=ticket.id,
        detail={"to": [address for _, address in to], "purpose": purpose},
    )  # fmt: skip
