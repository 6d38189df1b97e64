"""SQLAlchemy 2.0 models. Times are timezone-aware UTC; the schema is owned by Alembic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from maild.clock import current_time


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in and out, on SQLite too (which forgets the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        """Stored in UTC: SQLite keeps the wall time and drops the offset, so a Moscow time
        would come back three hours off."""
        del dialect
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value  # type: ignore[no-any-return]

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        del dialect
        if not isinstance(value, datetime):
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        # PostgreSQL renders timestamptz in the session's TimeZone (Europe/Moscow on a
        # server installed in Russia): the same instant, given back in UTC like the rest.
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Counter(Base):
    """Gap-free counters (ticket numbers are 1, 2, 3... even after a rolled-back transaction)."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    support_mode: Mapped[str] = mapped_column(String(16), default="public_offer")
    created_at: Mapped[datetime] = mapped_column(default=current_time)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    bouncing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=current_time)
    organization: Mapped[Organization | None] = relationship()


class Engineer(Base):
    __tablename__ = "engineers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Ticket(Base):
    __tablename__ = "tickets"
    # The managers' reports select by period on each of these moments (maild.reports).
    __table_args__ = (
        Index("ix_tickets_created_at", "created_at"),
        Index("ix_tickets_closed_at", "closed_at"),
        Index("ix_tickets_resolved_at", "resolved_at"),
        Index("ix_tickets_first_response_at", "first_response_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="new")
    criticality: Mapped[str] = mapped_column(String(16), default="normal")
    channel: Mapped[str] = mapped_column(String(16), default="email")
    language: Mapped[str] = mapped_column(String(8), default="ru")
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    requester_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"))
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime] = mapped_column(default=current_time)
    updated_at: Mapped[datetime] = mapped_column(default=current_time)
    first_response_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    close_reason: Mapped[str | None] = mapped_column(String(32))
    """One of the regulation's closing reasons (maild.commands.CLOSE_REASONS), or merged."""
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    """Set by #merge: mail naming this ticket goes to that one."""
    contract_id: Mapped[int | None] = mapped_column(ForeignKey("contracts.id"))
    """The contract the ticket was opened under; None = the public offer."""
    sla_terms: Mapped[dict[str, Any] | None] = mapped_column()
    """The SLA promised when the ticket opened (mode, contract, target minutes per
    criticality): a later change of the contract does not move this ticket's deadlines."""
    resolved_at: Mapped[datetime | None] = mapped_column()
    """When the ticket was last resolved or closed; None while it is open."""
    first_response_minutes: Mapped[int | None] = mapped_column()
    """Minutes of its SLA clock (working minutes in business mode) to the first answer."""
    first_response_breached: Mapped[bool | None] = mapped_column()
    resolution_minutes: Mapped[int | None] = mapped_column()
    resolution_breached: Mapped[bool | None] = mapped_column()
    checklist: Mapped[str] = mapped_column(String(255), default="", server_default="")
    """Checklist items the client's side has sent so far, comma-separated; each message adds
    its own, so no notice has to read the whole conversation again."""
    organization: Mapped[Organization | None] = relationship()
    requester: Mapped[Contact] = relationship()
    assignee: Mapped[Engineer | None] = relationship()


class Contract(Base):
    """The config's [[contracts]], mirrored at start so tickets keep the one they opened under."""

    __tablename__ = "contracts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    mode: Mapped[str] = mapped_column(String(16))
    domains: Mapped[str] = mapped_column(Text, default="")
    addresses: Mapped[str] = mapped_column(Text, default="")
    terms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    """False once the contract left the config (its tickets keep it)."""
    updated_at: Mapped[datetime] = mapped_column()


class ScheduledSend(Base):
    """Time-driven work done once: an escalation, a reminder, an automatic close. The unique
    key makes a second tick, a restart or a second process a no-op."""

    __tablename__ = "scheduled_sends"
    __table_args__ = (UniqueConstraint("ticket_id", "kind", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column()


class SchedulerState(Base):
    """Small named values of the scheduler (round-robin pointer, last tick)."""

    __tablename__ = "scheduler_state"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column()


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "email"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(default=current_time)


class InboundMessage(Base):
    """One row per message a source handed over: the spool's ledger and the dedup index."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    spool_id: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(255))
    dedup_key: Mapped[str] = mapped_column(String(64), index=True)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    raw_size: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    explanation: Mapped[str] = mapped_column(Text, default="", server_default="")
    """The reason as a sentence: which header, which ticket, which rule."""
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    received_at: Mapped[datetime] = mapped_column(default=current_time)
    processed_at: Mapped[datetime] = mapped_column(default=current_time)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_kind_created", "kind", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    direction: Mapped[str] = mapped_column(String(8))
    visibility: Mapped[str] = mapped_column(String(8), default="public")
    kind: Mapped[str] = mapped_column(String(24), default="mail")
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str | None] = mapped_column(Text)
    sender_email: Mapped[str] = mapped_column(String(320))
    sender_name: Mapped[str] = mapped_column(String(255), default="")
    recipients: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=current_time)
    response_minutes: Mapped[int | None] = mapped_column()
    """A later answer (not the first response): SLA-clock minutes since the client's mail it
    answers; reports count next responses against the ticket's first-response target."""
    response_breached: Mapped[bool | None] = mapped_column()
    text: Mapped[str] = mapped_column(Text, default="")
    full_text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id")


class Artifact(Base):
    """One stored blob, content-addressed: the same bytes sent twice are kept once."""

    __tablename__ = "artifacts"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=current_time)
    listing: Mapped[dict[str, Any] | None] = mapped_column()
    """What an archive holds (entries, flags), from `parsers.archives`; None for other files."""
    flags: Mapped[str] = mapped_column(String(255), default="")
    """Comma-separated warnings for engineers: bomb_ratio, unsafe_paths, ..."""
    purged_at: Mapped[datetime | None] = mapped_column()
    """Set when retention deleted the blob; the row stays so the history still names it."""


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    artifact_sha256: Mapped[str | None] = mapped_column(ForeignKey("artifacts.sha256"), index=True)
    """None when the attachment was refused (too large): nothing was stored."""
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    refused_reason: Mapped[str | None] = mapped_column(String(32))
    container: Mapped[str | None] = mapped_column(String(255))
    """The winmail.dat or forwarded message it was unpacked from."""
    artifact: Mapped[Artifact | None] = relationship()


class Event(Base):
    """The audit trail: every decision with its stable reason code."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_ticket", "ticket_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(320), default="maild")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=current_time)


class OutboxMessage(Base):
    """Mail to send, written in the transaction that decided to send it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "state", "next_attempt_at"),
        Index("ix_outbox_recipient", "recipient", "purpose", "created_at"),
        Index("ix_outbox_state_id", "state", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    """The ticket message this row sends; None for a reply to mail outside any ticket."""
    purpose: Mapped[str] = mapped_column(String(24))
    recipient: Mapped[str] = mapped_column(String(320))
    envelope_from: Mapped[str] = mapped_column(String(320), default="")
    recipients: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=current_time)
    next_attempt_at: Mapped[datetime] = mapped_column(default=current_time)
    sent_at: Mapped[datetime | None] = mapped_column()


class SpoolMessage(Base):
    """A message stored but not yet processed, when the database is shared (PostgreSQL):
    committed before the source acknowledges, claimed by one worker with SKIP LOCKED, and
    deleted in the transaction that stores it (storage.shared_spool)."""

    __tablename__ = "spool_messages"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    spool_id: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column()
    envelope_from: Mapped[str | None] = mapped_column(String(320))
    recipients: Mapped[str] = mapped_column(Text, default="")
    peer: Mapped[str] = mapped_column(String(255), default="")
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    refs: Mapped[str] = mapped_column(Text, default="")
    """The Message-IDs of In-Reply-To and References, each in <>, space-separated: a worker
    does not claim a reply while the message it answers is still waiting or in hand."""
    size: Mapped[int] = mapped_column(BigInteger)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    large_file: Mapped[str | None] = mapped_column(String(255))
    """A message too large for a row lives in this file of the spool folder instead."""


class ImapPosition(Base):
    """Where a mailbox's intake got to (UIDVALIDITY and the last UID spooled)."""

    __tablename__ = "imap_positions"
    mailbox: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column()


class TelegramPosition(Base):
    """Where a bot's intake got to: the next update to ask getUpdates for. Updates before it
    are in the spool, and asking from it confirms them to Telegram."""

    __tablename__ = "telegram_positions"
    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    next_update_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column()


class TelegramChat(Base):
    """A chat's last message spooled, which the chat's next one answers (In-Reply-To): a
    chat is one conversation, even while its earlier message still waits in the spool. And
    the mail address its user proved with a code (`/email`), whose mail with a ticket's
    token joins the chat's tickets."""

    __tablename__ = "telegram_chats"
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_message_id: Mapped[str | None] = mapped_column(String(998))
    updated_at: Mapped[datetime] = mapped_column()
    linked_email: Mapped[str | None] = mapped_column(String(320), index=True)
    pending_email: Mapped[str | None] = mapped_column(String(320))
    """The address a code was mailed to and not yet confirmed."""
    pending_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Wrong codes given for the pending address."""
    codes_day: Mapped[str | None] = mapped_column(String(10))
    """The day (UTC, YYYY-MM-DD) `codes_today` counts."""
    codes_today: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class MaildProcess(Base):
    """What a running maild process last said about itself (`maild status`)."""

    __tablename__ = "maild_processes"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    """host:pid: unique while the process lives."""
    role: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column()
    seen_at: Mapped[datetime] = mapped_column()
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
