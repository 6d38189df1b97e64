"""Repository functions: take a Session, read or add rows, never commit (the pipeline does)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    ColumnDefault,
    CursorResult,
    Executable,
    Table,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, joinedload

from maild.clock import current_time
from parsers.archives import ArchiveListing
from parsers.reachability import chat_of_address
from parsers.types import Address, AttachmentInfo
from storage.models import (
    Artifact,
    Attachment,
    Base,
    Contact,
    Contract,
    Counter,
    Engineer,
    Event,
    InboundMessage,
    Message,
    Organization,
    OutboxMessage,
    Participant,
    Ticket,
    UTCDateTime,
)
from storage.telegram import linked_addresses
from threading_rules.decide import KnownMessage, TicketView

TICKET_COUNTER = "ticket"

M = TypeVar("M", bound=Base)


def read(session: Session, statement: Executable, **parameters: Any) -> CursorResult[Any]:
    """A Core statement of columns, run on the session's connection after the session's
    pending changes are flushed (what the ORM's autoflush did), without the ORM's execution
    path: a third of the cost of `session.execute` for the hot path's small reads."""
    session.flush()
    return session.connection().execute(statement, parameters)


def insert_row(session: Session, model: type[M], **values: Any) -> M:
    """INSERT one row through the session's connection, without the unit of work, and return
    it as a detached object for reading: the hot path writes rows it never changes again,
    and an ORM flush per row cost more than its statement (bench/profile_ingest.py)."""
    table: Table = model.__table__  # type: ignore[assignment]
    row = _with_defaults(table, values)
    result = session.connection().execute(_insert_of(table), row)
    key = result.inserted_primary_key or ()
    for column, value in zip(table.primary_key.columns, key, strict=False):
        row[column.key] = value
    return model(**row)


def insert_rows(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Many rows in one executemany statement (their ids are not needed)."""
    if rows:
        table: Table = model.__table__  # type: ignore[assignment]
        session.connection().execute(_insert_of(table), [_with_defaults(table, r) for r in rows])


@functools.cache
def _insert_of(table: Table) -> Any:
    return insert(table)


def _with_defaults(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """The values with the columns' Python-side defaults filled in (as the ORM would)."""
    row = dict(values)
    for key, default in _defaults_of(table):
        if key not in row:
            row[key] = default.arg(None) if default.is_callable else default.arg
    return row


@functools.cache
def _defaults_of(table: Table) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (column.key, column.default)
        for column in table.columns
        if isinstance(column.default, ColumnDefault)
    )


def next_ticket_number(session: Session) -> int:
    """Gap-free: the counter row is locked until commit, and a rollback gives the number back."""
    result = session.execute(
        update(Counter)
        .where(Counter.name == TICKET_COUNTER)
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    ).scalar_one_or_none()
    if result is not None:
        return result
    # The first ticket ever: create the row, tolerating another worker that creates it at
    # the same moment (PostgreSQL: it waits for that one's commit, then counts on from it).
    insert_counter = (
        postgresql_insert(Counter).on_conflict_do_nothing()
        if session.get_bind().dialect.name == "postgresql"
        else sqlite_insert(Counter).on_conflict_do_nothing()
    )
    session.execute(insert_counter.values(name=TICKET_COUNTER, value=0))
    return int(
        session.execute(
            update(Counter)
            .where(Counter.name == TICKET_COUNTER)
            .values(value=Counter.value + 1)
            .returning(Counter.value)
        ).scalar_one()
    )


def organization_for_domain(
    session: Session, domain: str, public_domains: frozenset[str]
) -> Organization | None:
    """The sender's organisation by mail domain; people at public mail services have none
    (the caller adds our own domains to `public_domains`: we are nobody's colleague)."""
    if not domain or domain in public_domains:
        return None
    found = session.scalars(select(Organization).where(Organization.domain == domain)).first()
    if found is None:
        found = Organization(name=domain, domain=domain)
        session.add(found)
        session.flush()
    return found


def contact_for_address(
    session: Session, address: Address, organization: Organization | None
) -> Contact:
    found = session.scalars(select(Contact).where(Contact.email == address.email)).first()
    if found is None:
        found = Contact(
            email=address.email,
            name=address.name,
            organization_id=organization.id if organization else None,
        )
        session.add(found)
        session.flush()
    else:
        if address.name and not found.name:
            found.name = address.name
        found.bouncing = False  # they wrote to us: their mailbox works again
    return found


def sync_engineers(session: Session, engineers: Iterable[tuple[str, str]]) -> None:
    """Make the engineers table match the config: new ones added, missing ones deactivated."""
    wanted = dict(engineers)
    for engineer in session.scalars(select(Engineer)):
        engineer.active = engineer.email in wanted
        if engineer.email in wanted:
            engineer.name = wanted.pop(engineer.email) or engineer.name
    for email, name in wanted.items():
        session.add(Engineer(email=email, name=name))


class ContractRow(NamedTuple):
    name: str
    mode: str
    domains: Iterable[str]
    addresses: Iterable[str]
    terms: dict[str, Any]


def sync_contracts(session: Session, contracts: Iterable[ContractRow], now: datetime) -> None:
    """Mirror the config's contracts: new ones added, changed ones updated, missing ones kept
    but inactive (their tickets still name them)."""
    wanted = {row.name: row for row in contracts}
    for contract in session.scalars(select(Contract)):
        row = wanted.pop(contract.name, None)
        contract.active = row is not None
        if row is not None:
            _fill_contract(contract, row, now)
    for row in wanted.values():
        session.add(_fill_contract(Contract(name=row.name), row, now))


def _fill_contract(contract: Contract, row: ContractRow, now: datetime) -> Contract:
    values = {
        "mode": row.mode, "domains": ",".join(sorted(row.domains)),
        "addresses": ",".join(sorted(row.addresses)), "terms": row.terms,
    }  # fmt: skip
    if any(getattr(contract, key) != value for key, value in values.items()):
        for key, value in values.items():
            setattr(contract, key, value)
        contract.updated_at = now
    return contract


def contract_id(session: Session, name: str) -> int | None:
    return session.scalar(select(Contract.id).where(Contract.name == name))


def contracts_with_open_counts(session: Session) -> list[tuple[Contract, int]]:
    """Every mirrored contract with its number of tickets not closed or resolved."""
    open_tickets = (
        select(Ticket.contract_id, func.count().label("open"))
        .where(Ticket.status.not_in(("resolved", "closed")))
        .group_by(Ticket.contract_id)
        .subquery()
    )
    rows = session.execute(
        select(Contract, func.coalesce(open_tickets.c.open, 0))
        .outerjoin(open_tickets, open_tickets.c.contract_id == Contract.id)
        .order_by(Contract.name)
    )
    return [(contract, int(count)) for contract, count in rows]


def public_offer_open_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Ticket)
            .where(Ticket.contract_id.is_(None), Ticket.status.not_in(("resolved", "closed")))
        )
        or 0
    )


class LedgerRow(NamedTuple):
    id: int
    spool_id: str
    dedup_key: str
    message_id: str | None
    state: str
    reason: str
    explanation: str
    ticket_id: int | None


_LEDGER_TABLE: Table = InboundMessage.__table__  # type: ignore[assignment]
_LEDGER_LOOKUP = (
    select(*(_LEDGER_TABLE.c[name] for name in LedgerRow._fields))
    .where(
        or_(
            _LEDGER_TABLE.c.spool_id == bindparam("spool_id"),
            _LEDGER_TABLE.c.dedup_key == bindparam("dedup_key"),
            # NULL when the message has none: `= NULL` matches no row.
            _LEDGER_TABLE.c.message_id == bindparam("message_id"),
        )
    )
    .order_by(_LEDGER_TABLE.c.id)
)
"""Built once: statements on the hot path are constructed and cache-keyed a single time."""


def settle_ledger_row(session: Session, ledger_id: int, **outcome: Any) -> None:
    """The ledger row's outcome (state, reason, explanation, ticket_id): one UPDATE."""
    session.connection().execute(
        update(_LEDGER_TABLE).where(_LEDGER_TABLE.c.id == ledger_id).values(**outcome)
    )


class LedgerMatch(NamedTuple):
    replayed: LedgerRow | None
    """This spool entry, if it was already settled."""
    original: LedgerRow | None
    """The first copy of this message (same dedup key)."""
    message_id_seen: bool
    """Some earlier message had this Message-ID (worth asking whether it is the same one)."""


def ledger_matches(
    session: Session, spool_id: str, dedup_key: str, message_id: str | None = None
) -> LedgerMatch:
    """All three in one query (three indexes)."""
    parameters = {"spool_id": spool_id, "dedup_key": dedup_key, "message_id": message_id or None}
    rows = [LedgerRow(*row) for row in session.connection().execute(_LEDGER_LOOKUP, parameters)]
    replayed = next((row for row in rows if row.spool_id == spool_id), None)
    # A quarantined copy is no original: after a fix the same message must be able to go
    # through again (`maild ingest --requeue`, or the file ingested anew).
    original = next(
        (
            row
            for row in rows
            if row.dedup_key == dedup_key and row.state not in ("duplicate", "quarantined")
        ),
        None,
    )
    seen = any(row.message_id == message_id and row.spool_id != spool_id for row in rows)
    return LedgerMatch(replayed, original, bool(message_id) and seen)


def ticket_views(
    session: Session, ticket_ids: Iterable[int], *, loaded: dict[int, Ticket] | None = None
) -> dict[int, TicketView]:
    """What the threading rules know of these tickets. `loaded` receives the Ticket objects
    themselves, with organisation, requester and assignee, so that the stages after it
    read them without another query (the session holds objects only weakly)."""
    ids = sorted(set(ticket_ids))
    if not ids:
        return {}
    tickets = session.scalars(
        select(Ticket)
        .where(Ticket.id.in_(ids))
        .options(
            joinedload(Ticket.organization), joinedload(Ticket.requester),
            joinedload(Ticket.assignee),
        )
    ).all()  # fmt: skip
    if loaded is not None:
        loaded.update((ticket.id, ticket) for ticket in tickets)
    members: dict[int, set[str]] = {ticket.id: set() for ticket in tickets}
    for ticket_id, email in session.execute(
        select(Participant.ticket_id, Participant.email).where(Participant.ticket_id.in_(ids))
    ):
        members[ticket_id].add(email)
    _add_linked_addresses(session, members)
    return {
        ticket.id: TicketView(
            id=ticket.id,
            status=ticket.status,
            closed_at=ticket.closed_at,
            participants=frozenset(members[ticket.id]),
            organization_domain=ticket.organization.domain if ticket.organization else None,
        )
        for ticket in tickets
    }


def _add_linked_addresses(session: Session, members: dict[int, set[str]]) -> None:
    """A Telegram chat taking part in a ticket brings the mail address its user proved with
    a code (`/email`): that address's mail with the ticket's token joins the ticket."""
    chats: dict[int, list[int]] = {}
    for ticket_id, emails in members.items():
        for email in emails:
            chat = chat_of_address(email)
            if chat is not None:
                chats.setdefault(chat, []).append(ticket_id)
    if not chats:
        return
    for chat, email in linked_addresses(session, chats).items():
        for ticket_id in chats[chat]:
            members[ticket_id].add(email)


_KNOWN_MESSAGES = (
    select(Message.message_id, Message.ticket_id, Message.direction, Message.kind)
    .where(Message.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(Message.id)
)


def known_messages(session: Session, message_ids: Iterable[str]) -> dict[str, KnownMessage]:
    """Which ticket each known Message-ID (received or sent by maild) belongs to, and what it
    was; the first message with an id wins (a reused id cannot move a thread)."""
    ids = sorted(set(message_ids))
    if not ids:
        return {}
    rows = read(session, _KNOWN_MESSAGES, ids=ids)
    known: dict[str, KnownMessage] = {}
    for row in rows:
        message_id, ticket_id, direction, kind = tuple(row)
        if message_id is not None:
            known.setdefault(message_id, KnownMessage(ticket_id, direction, kind))
    return known


def received_message(session: Session, message_id: str | None) -> KnownMessage | None:
    """The first message received under this Message-ID, with its sender and decoded text."""
    if not message_id:
        return None
    row = session.execute(
        select(Message.ticket_id, Message.kind, Message.sender_email, Message.full_text)
        .where(Message.message_id == message_id, Message.direction == "in")
        .order_by(Message.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    return KnownMessage(row.ticket_id, "in", row.kind, row.sender_email, row.full_text)


def add_participant(
    session: Session, ticket_id: int, email: str, role: str, *, ticket_is_new: bool = False
) -> bool:
    if not ticket_is_new:
        exists = session.scalars(
            select(Participant.id).where(
                Participant.ticket_id == ticket_id, Participant.email == email
            )
        ).first()
        if exists is not None:
            return False
    session.add(Participant(ticket_id=ticket_id, email=email, role=role))
    return True


def insert_ignoring_duplicates(session: Session, table: type[Base], **values: Any) -> None:
    """INSERT, or nothing when a unique key already has the row: one statement, no SELECT."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        statement: Any = sqlite_insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "postgresql":
        statement = postgresql_insert(table).values(**values).on_conflict_do_nothing()
    else:
        with session.begin_nested():
            session.add(table(**values))
        return
    session.execute(statement)


def record_artifact(
    session: Session,
    sha256: str,
    size: int,
    *,
    listing: dict[str, Any] | None = None,
    flags: str = "",
) -> None:
    """Insert the artifact row, or revive it: bytes sent again after a purge are stored again,
    and bytes stored before archives were listed get their listing now. One statement."""
    values = {
        "sha256": sha256, "size": size, "created_at": current_time(), "listing": listing,
        "flags": flags, "purged_at": None,
    }  # fmt: skip
    dialect = session.get_bind().dialect.name
    statement = _ARTIFACT_UPSERT.get(dialect)
    if statement is None:  # pragma: no cover - both are tested
        insert_ignoring_duplicates(session, Artifact, **values)
        return
    session.connection().execute(statement, values)


def _artifact_upsert(insert: Any) -> Any:
    """INSERT ... ON CONFLICT (sha256) DO UPDATE, built once per dialect."""
    statement = insert(Artifact.__table__)
    excluded, table = statement.excluded, Artifact.__table__
    return statement.on_conflict_do_update(
        index_elements=[table.c.sha256],
        set_={
            "purged_at": None,
            "listing": func.coalesce(table.c.listing, excluded.listing),
            "flags": func.coalesce(func.nullif(table.c.flags, ""), excluded.flags),
        },
    )


_ARTIFACT_UPSERT = {
    "sqlite": _artifact_upsert(sqlite_insert), "postgresql": _artifact_upsert(postgresql_insert),
}  # fmt: skip


def add_attachments(
    session: Session, message: Message, attachments: Iterable[AttachmentInfo]
) -> None:
    rows = []
    for info in attachments:
        if info.sha256:
            listing = archive_listing_json(info.archive) if info.archive else None
            flags = ",".join(info.archive.flags) if info.archive else ""
            record_artifact(session, info.sha256, info.size, listing=listing, flags=flags)
        rows.append(
            {
                "message_id": message.id, "artifact_sha256": info.sha256 or None,
                "filename": info.filename, "content_type": info.content_type[:255],
                "kind": str(info.kind), "inline": info.inline, "size": info.size,
                "refused_reason": info.refused,
                "container": info.container[:255] if info.container else None,
            }
        )  # fmt: skip
    insert_rows(session, Attachment, rows)


def archive_listing_json(listing: ArchiveListing) -> dict[str, Any]:
    return {
        "format": listing.format,
        "entry_count": listing.entry_count,
        "total_size": listing.total_size,
        "flags": list(listing.flags),
        "error": listing.error,
        "entries": [
            {
                "name": entry.name, "size": entry.size, "compressed_size": entry.compressed_size,
                "is_dir": entry.is_dir, "depth": entry.depth, "unsafe_path": entry.unsafe_path,
                "encrypted": entry.encrypted,
            }
            for entry in listing.entries
        ],
    }  # fmt: skip


EVENT_BUFFER = "maild.event_buffer"


def add_event(
    session: Session,
    kind: str,
    reason: str,
    *,
    ticket_id: int | None = None,
    inbound_id: int | None = None,
    actor: str = "maild",
    detail: dict[str, Any] | None = None,
) -> None:
    values = {
        "kind": kind, "reason": reason, "ticket_id": ticket_id, "inbound_id": inbound_id,
        "actor": actor, "detail": detail or {}, "created_at": current_time(),
    }  # fmt: skip
    buffer = session.info.get(EVENT_BUFFER)
    if buffer is not None:
        buffer.append(values)
    else:
        session.add(Event(**values))


@contextmanager
def buffered_events(session: Session) -> Iterator[None]:
    """Events added inside are written in one statement at the end (or before the first read
    of events, `flush_events`): a message causes three or four, each an ORM flush otherwise.
    An exception forgets them with the rest of the message's work."""
    session.info[EVENT_BUFFER] = []
    try:
        yield
        flush_events(session)
    finally:
        session.info.pop(EVENT_BUFFER, None)


def flush_events(session: Session, *, kinds: Iterable[str] | None = None) -> None:
    """Write the buffered events now: a reader of events (of these `kinds`) is about to look."""
    buffer = session.info.get(EVENT_BUFFER)
    if buffer and (kinds is None or any(event["kind"] in kinds for event in buffer)):
        session.flush()  # the rows the events name
        session.connection().execute(_insert_of(Event.__table__), buffer)
        buffer.clear()


_RECENT_OUTBOX = select(func.count(OutboxMessage.id)).where(
    OutboxMessage.recipient == bindparam("recipient"),
    OutboxMessage.purpose.in_(bindparam("purposes", expanding=True)),
    OutboxMessage.created_at >= bindparam("since", type_=UTCDateTime()),
)


def count_recent_outbox(
    session: Session, recipient: str, purposes: Iterable[str], since: datetime
) -> int:
    parameters = {"recipient": recipient, "purposes": list(purposes), "since": since}
    return read(session, _RECENT_OUTBOX, **parameters).scalar() or 0


def mark_contacts_bouncing(session: Session, emails: Iterable[str]) -> list[str]:
    """Mark each address as bouncing, adding a contact for a CC we wrote to but never heard
    from (the caller passes only recipients of a message of ours that bounced)."""
    wanted = list(dict.fromkeys(emails))
    found = {c.email: c for c in session.scalars(select(Contact).where(Contact.email.in_(wanted)))}
    for email in wanted:
        contact = found.get(email)
        if contact is None:
            session.add(Contact(email=email, bouncing=True))
        else:
            contact.bouncing = True
    session.flush()
    return wanted


def note_contact_alive(session: Session, email: str) -> None:
    """Someone who writes to us receives mail again: their bounce mark is lifted. A Core
    UPDATE (the ORM's would first look for the contact among the session's objects); the
    mark is read back with SQL (`contact_is_bouncing`), never from a loaded Contact."""
    read(session, _CONTACT_ALIVE, address=email)


_CONTACTS: Table = Contact.__table__  # type: ignore[assignment]
_CONTACT_ALIVE = (
    update(_CONTACTS)
    .where(_CONTACTS.c.email == bindparam("address"), _CONTACTS.c.bouncing.is_(True))
    .values(bouncing=False)
)


def returned_outgoing(session: Session, message_ids: Iterable[str]) -> Message | None:
    """The message of ours a bounce returns."""
    ids = list(message_ids)
    if not ids:
        return None
    return session.scalars(
        select(Message)
        .where(Message.message_id.in_(ids), Message.direction == "out")
        .order_by(Message.id)
        .limit(1)
    ).first()


_CONTACT_BOUNCING = select(Contact.bouncing).where(Contact.email == bindparam("email"))


def contact_is_bouncing(session: Session, email: str) -> bool:
    return bool(read(session, _CONTACT_BOUNCING, email=email).scalar())


def engineer_by_email(session: Session, email: str) -> Engineer | None:
    return session.scalars(select(Engineer).where(Engineer.email == email)).first()


def ticket_participants(session: Session, ticket_id: int) -> list[Participant]:
    return list(
        session.scalars(
            select(Participant).where(Participant.ticket_id == ticket_id).order_by(Participant.id)
        )
    )


class TicketFile(NamedTuple):
    message_id: int
    filename: str
    kind: str
    size: int
    refused_reason: str | None
    flags: str


_TICKET_FILES = (
    select(
        Attachment.message_id, Attachment.filename, Attachment.kind, Attachment.size,
        Attachment.refused_reason, func.coalesce(Artifact.flags, ""),
    )
    .join(Message, Message.id == Attachment.message_id)
    .outerjoin(Artifact, Artifact.sha256 == Attachment.artifact_sha256)
    .where(Message.ticket_id == bindparam("ticket_id"), Attachment.inline.is_(False))
    .order_by(Attachment.id)
)  # fmt: skip


def ticket_files(session: Session, ticket_id: int) -> list[TicketFile]:
    """Every file of the ticket's mail that a person sent (not inline images), oldest first."""
    return [TicketFile._make(row) for row in read(session, _TICKET_FILES, ticket_id=ticket_id)]


_RECENT_OUTGOING = (
    select(Message.text)
    .where(
        Message.ticket_id == bindparam("ticket_id"), Message.direction == "out",
        Message.visibility == "public", Message.text.is_not(None),
    )
    .order_by(Message.id.desc())
    .limit(bindparam("limit"))
)  # fmt: skip


def recent_outgoing_texts(session: Session, ticket_id: int, limit: int = 20) -> list[str]:
    """What we sent to this ticket's client side lately (acknowledgements, answers,
    notices to the client), newest first: a client may paste it back unquoted."""
    return list(read(session, _RECENT_OUTGOING, ticket_id=ticket_id, limit=limit).scalars())


def latest_client_message(session: Session, ticket_id: int) -> Message | None:
    """What an engineer's answer replies to, for the client's mail program to thread it."""
    return session.scalars(
        select(Message)
        .where(
            Message.ticket_id == ticket_id, Message.direction == "in",
            Message.visibility == "public", Message.kind == "mail",
        )
        .order_by(Message.id.desc())
        .limit(1)
    ).first()  # fmt: skip


def ticket_texts(session: Session, ticket_id: int) -> list[tuple[str, str, str, str]]:
    """(kind, visibility, text, full_text) of every message of a ticket, notices included."""
    rows = session.execute(
        select(Message.kind, Message.visibility, Message.text, Message.full_text)
        .where(Message.ticket_id == ticket_id)
        .order_by(Message.id)
    )
    return [(kind, visibility, text, full) for kind, visibility, text, full in rows]


def merged_destination(session: Session, ticket: Ticket) -> tuple[Ticket, list[int]]:
    """Where a ticket's mail goes now: the end of its `merged_into` chain, and the numbers
    passed on the way (at most 10 hops, so a corrupt cycle cannot hang the pipeline)."""
    hops: list[int] = []
    while ticket.merged_into_id is not None and len(hops) < 10:
        hops.append(ticket.id)
        ticket = session.get_one(Ticket, ticket.merged_into_id)
    return ticket, hops


def merge_tickets(session: Session, source: Ticket, target: Ticket) -> int:
    """Move the source's messages and participants into the target; returns messages moved.
    The source stays, closed, as the pointer that later mail naming it follows."""
    result = session.execute(
        update(Message).where(Message.ticket_id == source.id).values(ticket_id=target.id)
    )
    moved = getattr(result, "rowcount", 0)
    present = set(
        session.scalars(select(Participant.email).where(Participant.ticket_id == target.id))
    )
    for participant in ticket_participants(session, source.id):
        if participant.email in present:
            continue
        # The source's requester is the target's colleague: answers reach them too.
        role = "colleague" if participant.role == "requester" else participant.role
        session.add(Participant(ticket_id=target.id, email=participant.email, role=role))
    return int(moved or 0)


def queue_outside_ticket(
    session: Session,
    raw: bytes,
    *,
    purpose: str,
    recipient: str,
    recipients: list[str],
    now: datetime,
    envelope_from: str = "",
) -> OutboxMessage:
    """Queue mail that belongs to no ticket (an engineer told that their mail named none)."""
    row = OutboxMessage(
        message_id=None, purpose=purpose, recipient=recipient, envelope_from=envelope_from,
        recipients=",".join(recipients), raw=raw, created_at=now, next_attempt_at=now,
    )  # fmt: skip
    session.add(row)
    return row
