"""Delivering the outbox: a transport per URL, rows sent in batches, retried with backoff.

Rows are written in the transaction that decided to send them; this module only moves
committed rows to the wire. The sender works in batches (`deliver_pending`): one
transaction claims the due rows, they are delivered outside any transaction (one row's
failure never holds up the others), the transport makes the batch durable (`flush`: one
folder fsync for a Maildir), and the next transaction records the whole batch's outcomes
and claims the next batch. Under sustained intake the sender thus needs the database's
write lock once per batch, not twice per row; on SQLite it takes that lock between two
batches of the spool worker (`WriteTurn`) instead of polling for it.

Crash story: a row delivered but not yet recorded when the process dies stays claimed and
falls due again after OUTBOX_CLAIM_SECONDS. Maildir delivery is exactly-once all the same
(the file name is the row id, so the second delivery finds it in new/ or cur/); SMTP is
at-least-once across such a crash, for at most one batch (OUTBOX_BATCH_ROWS rows,
OUTBOX_BATCH_SECONDS of sending), and the stable Message-ID lets the peer drop the copy.
"""

from __future__ import annotations

import logging
import os
import smtplib
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from maild.clock import Clock
from maild.errors import ConfigError, PermanentError, TransientError
from parsers.reachability import chat_of_address
from storage.fsutil import fsync_dir, write_durably
from storage.models import OutboxMessage

log = logging.getLogger(__name__)
SMTP_TIMEOUT_SECONDS = 30
MAX_BACKOFF_SECONDS = 6 * 3600
OUTBOX_BATCH_ROWS = 200
OUTBOX_BATCH_BYTES = 16 * 1024 * 1024
OUTBOX_BATCH_SECONDS = 10.0
"""A batch delivered for longer than this (a slow relay) is recorded, the rest handed back."""
OUTBOX_CLAIM_SECONDS = 120
"""A claimed row is due again after this, should its sender die before recording it."""
DELIVERED_REMEMBERED = 10_000
"""Outbox rows whose delivered parts a process remembers (see Delivered)."""
TURN_HANDOFF_SECONDS = 0.5
"""How long a committing thread waits for the outbox sender's transaction (see WriteTurn)."""


class Transport(Protocol):
    def send(self, key: str, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        """Deliver or raise TransientError (retry) / PermanentError (give up)."""

    def flush(self) -> None:
        """Make what `send` delivered durable; called once per batch, before the batch's
        outcomes are recorded. TransientError: the batch's rows are sent again later."""


class MaildirTransport:
    """Writes each message into a Maildir: the local default, nothing leaves the machine.

    Exactly-once: the file is named after the outbox row, and a row sent again (its sender
    died before recording it) finds its file in new/, or in cur/ where a reader moved it,
    and is not written twice. Each file is fsynced before its rename; the folder is listed
    once and synced once per batch (`flush`), not per message.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._present: set[str] | None = None
        """Messages in new/ and cur/ as listed after the last flush, plus those sent since."""
        self._unsynced = False

    def ensure(self) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def send(self, key: str, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        del envelope_from, recipients
        name = f"maild-{key}"
        try:
            present = self._list_present()
            if name in present:
                return
            write_durably(self.path / "new" / name, raw, self.path / "tmp", sync_folder=False)
        except OSError as error:
            raise TransientError(f"maildir {self.path}: {error.strerror}") from error
        present.add(name)
        self._unsynced = True

    def flush(self) -> None:
        self._present = None
        if not self._unsynced:
            return
        try:
            fsync_dir(self.path / "new")
        except OSError as error:
            raise TransientError(f"maildir {self.path}: {error.strerror}") from error
        self._unsynced = False

    def _list_present(self) -> set[str]:
        if self._present is None:
            self.ensure()
            self._present = {
                entry.name.partition(":")[0]  # cur/ names carry the reader's ":2,FLAGS"
                for folder in (self.path / "new", self.path / "cur")
                for entry in os.scandir(folder)
            }
        return self._present


class SmtpTransport:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def send(self, key: str, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        del key
        try:
            with smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS) as client:
                client.ehlo_or_helo_if_needed()
                if client.has_extn("starttls") and self.host not in (
                    "127.0.0.1",
                    "localhost",
                    "::1",
                ):
                    client.starttls()
                options = [] if all(r.isascii() for r in recipients) else ["SMTPUTF8"]
                refused = client.sendmail(envelope_from, recipients, raw, mail_options=options)
        except smtplib.SMTPRecipientsRefused as error:
            raise _classify_refusal(error.recipients) from error
        except smtplib.SMTPResponseException as error:
            message = f"smtp {self.host}:{self.port} answered {error.smtp_code}"
            if 500 <= error.smtp_code < 600:
                raise PermanentError(message) from error
            raise TransientError(message) from error
        except (TimeoutError, OSError, smtplib.SMTPException) as error:
            raise TransientError(f"smtp {self.host}:{self.port}: {error}") from error
        if refused:
            raise _classify_refusal(refused)

    def flush(self) -> None:
        """Nothing to do: the relay's 250 is its promise to keep the message."""


class Delivered:
    """Which parts of which outbox rows this process has delivered, so that a row retried
    after a later part failed does not deliver the earlier ones again. In memory and
    bounded (the oldest forgotten first): across a restart a retry is at-least-once, as
    SMTP's is."""

    def __init__(self, limit: int = DELIVERED_REMEMBERED) -> None:
        self.limit = limit
        self._parts: OrderedDict[tuple[str, str], int] = OrderedDict()

    def count(self, key: str, destination: str) -> int:
        return self._parts.get((key, destination), 0)

    def record(self, key: str, destination: str, parts: int) -> None:
        self._parts[(key, destination)] = parts
        self._parts.move_to_end((key, destination))
        while len(self._parts) > self.limit:
            self._parts.popitem(last=False)


class RoutedTransport:
    """Mail to mail recipients, and to Telegram chats (`tg<chat>@telegram.invalid`: the
    requester of a ticket opened in Telegram) through the bot. A row naming both kinds is
    sent to each; should the chat side fail, the retry does not mail again what the mail
    transport made durable (`flush`) in this process."""

    def __init__(self, mail: Transport, chats: Transport | None) -> None:
        self.mail = mail
        self.chats = chats
        self._mailed = Delivered()
        self._unflushed: list[str] = []

    def send(self, key: str, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        chats = [r for r in recipients if chat_of_address(r) is not None]
        others = [r for r in recipients if chat_of_address(r) is None]
        if others and not self._mailed.count(key, "mail"):
            self.mail.send(key, envelope_from, others, raw)
            if chats:
                self._unflushed.append(key)
        if not chats:
            return
        if self.chats is None:
            raise PermanentError(
                "addressed to a Telegram chat, and no bot is configured ([inbound.telegram])"
            )
        self.chats.send(key, envelope_from, chats, raw)

    def flush(self) -> None:
        unflushed, self._unflushed = self._unflushed, []
        self.mail.flush()
        for key in unflushed:  # durable now: a retry of the chat side skips the mail
            self._mailed.record(key, "mail", 1)
        if self.chats is not None:
            self.chats.flush()


def _classify_refusal(refused: dict[str, tuple[int, bytes]]) -> TransientError | PermanentError:
    codes = sorted({code for code, _ in refused.values()})
    message = f"recipients refused with {codes}"
    return TransientError(message) if any(code < 500 for code in codes) else PermanentError(message)


def transport_from_url(url: str) -> Transport:
    if url.startswith("maildir:"):
        transport = MaildirTransport(Path(url[len("maildir:") :]))
        transport.ensure()
        return transport
    if url.startswith("smtp://"):
        host, _, port = url[len("smtp://") :].rpartition(":")
        return SmtpTransport(host, int(port))
    raise ConfigError(f"outbound.transport: unsupported transport {url!r}")


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class DueMail:
    """An outbox row claimed for delivery, read in the claiming transaction."""

    id: int
    attempts: int
    envelope_from: str
    recipients: list[str]
    raw: bytes


OutcomeState = Literal["sent", "retrying", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt leaves in the row; `decide_outcome` makes it, pure."""

    row_id: int
    state: OutcomeState
    attempts: int
    error: str | None = None
    next_attempt_at: datetime | None = None


def _backoff(attempts: int, base_seconds: int) -> timedelta:
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, base_seconds * 2 ** max(0, attempts - 1)))


def decide_outcome(
    mail: DueMail,
    error: TransientError | PermanentError | None,
    now: datetime,
    *,
    max_attempts: int,
    retry_seconds: int,
) -> Outcome:
    """Sent; or retried with exponential backoff while attempts remain; or given up."""
    attempts = mail.attempts + 1
    if error is None:
        return Outcome(mail.id, "sent", attempts)
    if isinstance(error, TransientError) and attempts < max_attempts:
        retry_at = now + _backoff(attempts, retry_seconds)
        return Outcome(mail.id, "retrying", attempts, str(error), retry_at)
    return Outcome(mail.id, "failed", attempts, str(error))


def deliver_pending(
    sessions: sessionmaker[Session],
    transport: Transport,
    clock: Clock,
    *,
    max_attempts: int,
    retry_seconds: int,
    batch: int = OUTBOX_BATCH_ROWS,
    should_stop: Callable[[], bool] | None = None,
    wait_turn: Callable[[], None] | None = None,
) -> DeliveryCounts:
    """Send what is due, a batch at a time, until nothing is due (or `should_stop`).

    Each database transaction records the outcomes of the batch just sent and claims the
    next one, so a busy database is asked for its write lock once per batch, not twice per
    row. Delivery itself runs outside any transaction: a slow peer never holds the lock.
    `wait_turn` runs before each transaction: the daemon waits there for a moment when the
    spool worker has just committed and SQLite's write lock is free.
    """
    stop = should_stop or (lambda: False)
    counts: Counter[str] = Counter()
    outcomes: list[Outcome] = []
    unsent: list[int] = []
    while True:
        if wait_turn is not None:
            wait_turn()
        with sessions.begin() as session:
            record_outcomes(session, outcomes, unsent, clock.now())
            due = [] if stop() else claim_due(session, clock.now(), batch)
        if not due:
            break
        outcomes, unsent = _deliver_batch(
            transport, clock, due, stop, max_attempts=max_attempts, retry_seconds=retry_seconds
        )
        counts.update(outcome.state for outcome in outcomes)
    return DeliveryCounts(counts["sent"], counts["retrying"], counts["failed"])


def _deliver_batch(
    transport: Transport,
    clock: Clock,
    due: list[DueMail],
    stop: Callable[[], bool],
    *,
    max_attempts: int,
    retry_seconds: int,
) -> tuple[list[Outcome], list[int]]:
    """Each row on its own: one that fails is recorded and the next one is sent. After
    OUTBOX_BATCH_SECONDS (a slow relay) or on `stop` the rest is handed back unsent."""
    started = time.monotonic()
    tried: list[tuple[DueMail, TransientError | PermanentError | None]] = []
    unsent: list[int] = []
    for index, mail in enumerate(due):
        if stop() or time.monotonic() - started > OUTBOX_BATCH_SECONDS:
            unsent = [later.id for later in due[index:]]
            break
        tried.append((mail, _send_one(transport, mail)))
    try:
        transport.flush()
        unflushed: TransientError | None = None
    except TransientError as error:
        unflushed = error  # what was written may not survive a crash: send it again later
    now = clock.now()
    outcomes = []
    for mail, failure in tried:
        outcome = decide_outcome(
            mail, failure or unflushed, now, max_attempts=max_attempts, retry_seconds=retry_seconds
        )
        _log_outcome(outcome)
        outcomes.append(outcome)
    return outcomes, unsent


def _send_one(transport: Transport, mail: DueMail) -> TransientError | PermanentError | None:
    try:
        transport.send(str(mail.id), mail.envelope_from, mail.recipients, mail.raw)
    except (TransientError, PermanentError) as error:
        return error
    except Exception as error:  # per-row isolation in the runner loop (STYLE.md)
        # A transport bug on one row (an address smtplib cannot encode, ...) must not hold
        # back the rows after it: it counts as a failed attempt of this row alone.
        log.exception("outbox %s: transport failed unexpectedly", mail.id)
        return TransientError(f"unexpected {type(error).__name__}")
    return None


def _log_outcome(outcome: Outcome) -> None:
    if outcome.state == "sent":
        log.info("outbox %s: sent", outcome.row_id)
    elif outcome.state == "retrying":
        log.warning("outbox %s: will retry: %s", outcome.row_id, outcome.error)
    else:
        log.error(
            "outbox %s: gave up after %s attempts: %s",
            outcome.row_id, outcome.attempts, outcome.error,
        )  # fmt: skip


class WriteTurn:
    """A turn at SQLite's one write lock for the outbox sender, between the worker's batches.

    The spool worker, when busy, begins its next batch transaction moments after it commits
    the last one, and SQLite's busy handler only polls (sleeping up to 100 ms between
    tries), so a second writer in the same process may wait for seconds. With a turn the
    sender says it is waiting (`wait`); the next commit of another thread of this process
    wakes it, and that thread then waits for the sender's transaction to end (at most
    TURN_HANDOFF_SECONDS): one short transaction, a batch of outcomes recorded and the
    next batch claimed. Neither side polls for the lock.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sender: int | None = None
        self._wanted = threading.Event()
        self._lock_free = threading.Event()
        self._done = threading.Event()
        self.ended_at = 0.0
        """time.monotonic() when the sender's last transaction ended."""
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_transaction_end", self._after_transaction_end)

    @property
    def is_wanted(self) -> bool:
        """The sender is waiting for its turn."""
        return self._wanted.is_set()

    def wait(self, timeout: float) -> None:
        """Return just after another thread's next commit, or after `timeout` seconds; the
        caller begins its transaction at once."""
        self._sender = threading.get_ident()
        self._done.clear()
        self._lock_free.clear()
        self._wanted.set()
        self._lock_free.wait(timeout)

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        del session
        if transaction.parent is None and threading.get_ident() == self._sender:
            self._wanted.clear()
            self.ended_at = time.monotonic()
            self._done.set()

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction() or threading.get_ident() == self._sender:
            return  # a savepoint released, or the sender's own commit
        if self._wanted.is_set():
            self._wanted.clear()
            self._lock_free.set()
            self._done.wait(TURN_HANDOFF_SECONDS)


# --- the outbox rows: claimed and recorded in the sender's transactions ---


def claim_due(session: Session, now: datetime, limit: int) -> list[DueMail]:
    """Due rows in id order, at most `limit` and about OUTBOX_BATCH_BYTES, claimed for
    OUTBOX_CLAIM_SECONDS: another sender (a `maild ingest` beside the daemon) skips them,
    and if this process dies before recording them they fall due again by themselves."""
    due = (OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= now)
    sizes = session.execute(
        select(OutboxMessage.id, func.length(OutboxMessage.raw))
        .where(*due)
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's BEGIN IMMEDIATE serialises
    ).all()
    ids: list[int] = []
    total = 0
    for row_id, size in sizes:
        if ids and total + (size or 0) > OUTBOX_BATCH_BYTES:
            break
        ids.append(row_id)
        total += size or 0
    if not ids:
        return []
    rows = session.execute(
        select(
            OutboxMessage.id, OutboxMessage.attempts, OutboxMessage.envelope_from,
            OutboxMessage.recipients, OutboxMessage.raw,
        ).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)
    ).all()  # fmt: skip
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .values(next_attempt_at=now + timedelta(seconds=OUTBOX_CLAIM_SECONDS))
    )
    return [
        DueMail(row_id, attempts, envelope_from, recipients.split(","), raw)
        for row_id, attempts, envelope_from, recipients, raw in rows
    ]


def record_outcomes(
    session: Session, outcomes: Sequence[Outcome], unsent: Sequence[int], now: datetime
) -> None:
    """The outcomes of one batch, in the caller's transaction: the sent rows in one
    statement, each failure with its own error; claimed rows never tried are due again."""
    sent = [outcome.row_id for outcome in outcomes if outcome.state == "sent"]
    pending = OutboxMessage.state == "pending"
    if sent:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(sent), pending)
            .values(state="sent", sent_at=now, attempts=OutboxMessage.attempts + 1)
        )
    for outcome in outcomes:
        if outcome.state == "sent":
            continue
        values: dict[str, object] = {"attempts": outcome.attempts, "last_error": outcome.error}
        if outcome.state == "failed":
            values["state"] = "failed"
        else:
            values["next_attempt_at"] = outcome.next_attempt_at
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == outcome.row_id, pending).values(values)
        )
    if unsent:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(unsent), pending)
            .values(next_attempt_at=now)
        )
