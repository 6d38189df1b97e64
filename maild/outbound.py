"""Delivering the outbox: a transport per URL, each row sent once and retried with backoff.

Rows are written in the transaction that decided to send them; this module only moves
committed rows to the wire. Maildir delivery is exactly-once (the file name is the row id,
so a retry after a crash finds it already there); SMTP is at-least-once across a crash
between the peer's 250 and our commit, and the stable Message-ID lets the peer drop the copy.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.errors import ConfigError, PermanentError, TransientError
from storage.fsutil import write_durably
from storage.models import OutboxMessage

log = logging.getLogger(__name__)
SMTP_TIMEOUT_SECONDS = 30
MAX_BACKOFF_SECONDS = 6 * 3600


class Transport(Protocol):
    def send(self, key: str, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        """Deliver or raise TransientError (retry) / PermanentError (give up)."""


class MaildirTransport:
    """Writes each message into a Maildir: the local default, nothing leaves the machine."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def send(self, key: str, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        del envelope_from, recipients
        self.ensure()
        name = f"maild-{key}"
        if (self.path / "new" / name).exists() or any((self.path / "cur").glob(f"{name}:*")):
            return
        try:
            write_durably(self.path / "new" / name, raw, self.path / "tmp")
        except OSError as error:
            raise TransientError(f"maildir {self.path}: {error.strerror}") from error


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


def _backoff(attempts: int, base_seconds: int) -> timedelta:
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, base_seconds * 2 ** max(0, attempts - 1)))


def deliver_pending(
    sessions: sessionmaker[Session],
    transport: Transport,
    clock: Clock,
    *,
    max_attempts: int,
    retry_seconds: int,
    batch: int = 100,
) -> DeliveryCounts:
    """Send what is due; each row's outcome is committed before the next row is sent."""
    with sessions() as session:
        due = session.scalars(
            select(OutboxMessage.id)
            .where(OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= clock.now())
            .order_by(OutboxMessage.id)
            .limit(batch)
        ).all()
    counts = {"sent": 0, "retrying": 0, "failed": 0}
    for row_id in due:
        outcome = _deliver_one(
            sessions,
            transport,
            clock,
            row_id,
            max_attempts=max_attempts,
            retry_seconds=retry_seconds,
        )
        counts[outcome] += 1
    return DeliveryCounts(**counts)


@dataclass(frozen=True, slots=True)
class _Pending:
    id: int
    envelope_from: str
    recipients: list[str]
    raw: bytes


def _load_pending(sessions: sessionmaker[Session], row_id: int) -> _Pending | None:
    with sessions() as session:
        row = session.get(OutboxMessage, row_id)
        if row is None or row.state != "pending":
            return None
        return _Pending(row.id, row.envelope_from, row.recipients.split(","), row.raw)


def _deliver_one(
    sessions: sessionmaker[Session],
    transport: Transport,
    clock: Clock,
    row_id: int,
    *,
    max_attempts: int,
    retry_seconds: int,
) -> str:
    """Send outside any transaction (a slow peer must not hold the database), then record."""
    pending = _load_pending(sessions, row_id)
    if pending is None:
        return "sent"
    error: TransientError | PermanentError | None = None
    try:
        transport.send(str(pending.id), pending.envelope_from, pending.recipients, pending.raw)
    except (TransientError, PermanentError) as caught:
        error = caught
    with sessions.begin() as session:
        row = session.get_one(OutboxMessage, row_id)
        row.attempts += 1
        return _record_outcome(row, error, clock, max_attempts, retry_seconds)


def _record_outcome(
    row: OutboxMessage,
    error: TransientError | PermanentError | None,
    clock: Clock,
    max_attempts: int,
    retry_seconds: int,
) -> str:
    if error is None:
        row.state = "sent"
        row.sent_at = clock.now()
        log.info("outbox %s: sent", row.id)
        return "sent"
    row.last_error = str(error)
    if isinstance(error, TransientError) and row.attempts < max_attempts:
        row.next_attempt_at = clock.now() + _backoff(row.attempts, retry_seconds)
        log.warning("outbox %s: will retry: %s", row.id, error)
        return "retrying"
    row.state = "failed"
    log.error("outbox %s: gave up after %s attempts: %s", row.id, row.attempts, error)
    return "failed"
