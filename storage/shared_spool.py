"""The inbound spool in the database, for several processes and machines on PostgreSQL.

Why rows and not a shared folder: the source's acknowledgement waits for one commit that
every machine sees at once; a worker claims a row with `SELECT ... FOR UPDATE SKIP LOCKED`,
and the row is deleted in the same transaction that stores the message, so exactly-once
needs no rename on a network filesystem (whose rename and fsync guarantees vary). A worker
that dies releases its claim with its connection. Only a message larger than
`LARGE_MESSAGE_BYTES` (a memory dump mailed whole) is kept as a file in the spool folder,
which several machines must then share, as they share the artifact store.

A reply is not claimed while the message it answers (or an earlier copy of itself) is still
waiting or in another worker's hands: two workers never split one conversation, and the
reply finds its original's ticket as it would in one process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

from sqlalchemy import Engine, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from maild.clock import current_time
from parsers.identity import normalize_message_id
from parsers.rawmail import LARGE_MESSAGE_BYTES, RawMail
from storage.fsutil import write_durably
from storage.models import ImapPosition, SpoolMessage
from storage.spool import SpoolMeta, new_spool_id

log = logging.getLogger(__name__)
HEADER_BYTES = 256 * 1024
"""Headers longer than this are not looked at for the conversation order (the pipeline
still reads them all)."""


@dataclass(frozen=True, slots=True)
class ConversationKeys:
    message_id: str | None
    refs: str
    """`<id>` of each In-Reply-To and References entry, space-separated."""


def conversation_keys(raw: bytes) -> ConversationKeys:
    """The Message-ID and the ids the message answers, from its header block alone."""
    headers = BytesHeaderParser().parsebytes(raw[:HEADER_BYTES])
    message_id = normalize_message_id(str(headers.get("message-id") or "") or None)
    seen: list[str] = []
    for name in ("in-reply-to", "references"):
        for value in headers.get_all(name) or ():
            for token in str(value).replace(">", "> ").split():
                normalized = normalize_message_id(token)
                if normalized and f"<{normalized}>" not in seen:
                    seen.append(f"<{normalized}>")
    return ConversationKeys(f"<{message_id}>" if message_id else None, " ".join(seen)[:60_000])


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    row_id: int
    spool_id: str
    size: int


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    spool_id: str
    raw: RawMail
    meta: SpoolMeta


class DatabaseSpool:
    """`put` for the sources (its own short transaction, committed before it returns);
    `claim`, `load` and `settle` for a worker, inside the worker's batch transaction."""

    def __init__(self, engine: Engine, folder: Path) -> None:
        self.engine = engine
        self.folder = folder
        self.large = folder / "large"
        self.tmp = folder / "large.tmp"
        """Not the folder spool's tmp/: `maild run` empties that one at start, and here a
        sources process may be writing while another process starts. A source killed while
        writing a large message leaves its half file here (it never acknowledged it); such
        files are not swept, as no process can tell another machine's write in progress
        from a dead one's."""

    def ensure(self) -> None:
        for path in (self.large, self.tmp):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def put(self, raw: bytes, meta: SpoolMeta, *, spool_id: str | None = None) -> str:
        spool_id = spool_id or new_spool_id()
        keys = conversation_keys(raw)
        large_file = None
        if len(raw) > LARGE_MESSAGE_BYTES:
            large_file = f"{spool_id}.eml"
            write_durably(self.large / large_file, raw, self.tmp)
        row = {
            "spool_id": spool_id,
            "source": meta.source[:255],
            "received_at": _parse_time(meta.received_at),
            "envelope_from": meta.envelope_from,
            "recipients": ",".join(meta.recipients),
            "peer": meta.peer[:255],
            "message_id": keys.message_id,
            "refs": keys.refs,
            "size": len(raw),
            "raw": None if large_file else raw,
            "large_file": large_file,
        }
        with self.engine.begin() as connection:
            connection.execute(insert(SpoolMessage), row)
        return spool_id

    def claim(self, session: Session, limit: int) -> list[ClaimedMessage]:
        """The oldest rows no other worker holds, skipping a reply whose original (or an
        earlier copy of itself) waits or is in hand; locked until the transaction ends."""
        earlier = aliased(SpoolMessage)
        blocked = exists().where(
            earlier.id < SpoolMessage.id,
            earlier.message_id.is_not(None),
            or_(
                earlier.message_id == SpoolMessage.message_id,
                and_(
                    SpoolMessage.refs != "", func.strpos(SpoolMessage.refs, earlier.message_id) > 0
                ),
            ),
        )
        rows = session.execute(
            select(SpoolMessage.id, SpoolMessage.spool_id, SpoolMessage.size)
            .where(~blocked)
            .order_by(SpoolMessage.id)
            .limit(limit)
            .with_for_update(of=SpoolMessage, skip_locked=True)
        ).all()
        return [ClaimedMessage(row_id, spool_id, size) for row_id, spool_id, size in rows]

    def load(self, session: Session, claimed: ClaimedMessage) -> SpooledMessage:
        row = session.get_one(SpoolMessage, claimed.row_id)
        if row.large_file:
            raw = RawMail.from_file(self.large / row.large_file)
        else:
            raw = RawMail.of(row.raw or b"")
        meta = SpoolMeta(
            source=row.source, received_at=row.received_at.isoformat(),
            envelope_from=row.envelope_from,
            recipients=tuple(r for r in row.recipients.split(",") if r), peer=row.peer,
        )  # fmt: skip
        session.expunge(row)  # the raw bytes leave the identity map with the message
        return SpooledMessage(row.spool_id, raw, meta)

    def settle(self, session: Session, settled: Sequence[ClaimedMessage]) -> None:
        """Delete the rows of messages stored in this transaction."""
        if settled:
            session.execute(
                delete(SpoolMessage).where(SpoolMessage.id.in_([c.row_id for c in settled]))
            )

    def forget_files(self, settled: Sequence[ClaimedMessage]) -> None:
        """After the commit: the files of large messages just stored."""
        for claimed in settled:
            if claimed.size > LARGE_MESSAGE_BYTES:
                (self.large / f"{claimed.spool_id}.eml").unlink(missing_ok=True)

    def depth(self, session: Session) -> tuple[int, datetime | None]:
        """How many messages wait, and when the oldest of them arrived."""
        count, oldest = session.execute(
            select(func.count(SpoolMessage.id), func.min(SpoolMessage.received_at))
        ).one()
        return int(count), oldest


def _parse_time(value: str) -> datetime:
    """The source's arrival time; now when it gave none (a file spooled by a test or a
    tool), in UTC when it gave no offset."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return current_time()
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def load_imap_position(engine: Engine, mailbox: str) -> tuple[int, int] | None:
    """(UIDVALIDITY, last UID spooled) of a mailbox, shared by every machine."""
    with engine.connect() as connection:
        row = connection.execute(
            select(ImapPosition.uidvalidity, ImapPosition.last_uid).where(
                ImapPosition.mailbox == mailbox
            )
        ).first()
    return (int(row[0]), int(row[1])) if row else None


def save_imap_position(
    engine: Engine, mailbox: str, uidvalidity: int, last_uid: int, now: datetime
) -> None:
    with engine.begin() as connection:
        updated = connection.execute(
            update(ImapPosition)
            .where(ImapPosition.mailbox == mailbox)
            .values(uidvalidity=uidvalidity, last_uid=last_uid, updated_at=now)
        ).rowcount
        if not updated:
            connection.execute(
                insert(ImapPosition),
                {"mailbox": mailbox, "uidvalidity": uidvalidity, "last_uid": last_uid,
                 "updated_at": now},
            )  # fmt: skip
