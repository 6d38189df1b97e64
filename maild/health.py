"""What `maild status` and the metrics endpoint say about an installation.

Every running process writes a heartbeat row (`maild_processes`) with what only it knows
(its sources connected, the last message each took, the scheduler's last run); the queues
(spool, outbox) are read from the database and the spool folder. `status_problems` turns a
status into the list of things an admin must look at, pure, so monitoring can rely on the
exit code of `maild status`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.metrics import QueueDepths
from storage.models import MaildProcess, OutboxMessage
from storage.shared_spool import DatabaseSpool
from storage.spool import Spool

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0
"""A process whose heartbeat is older than this is reported as gone."""
FORGET_GONE_AFTER = timedelta(days=1)
SPOOL_AGE_WARNING_SECONDS = 300.0
"""A message waiting this long means no worker is processing (or the database refuses)."""


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    name: str
    role: str
    host: str
    pid: int
    started_at: str
    seen_at: str
    alive: bool
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Status:
    version: str
    schema_revision: str | None
    schema_head: str
    processes: list[ProcessStatus]
    spool: int
    spool_oldest_seconds: float
    outbox: int
    outbox_retrying: int
    outbox_oldest_seconds: float
    outbox_failed: int
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


def queue_depths(
    session: Session, spool: Spool, shared: DatabaseSpool | None, now: datetime
) -> tuple[QueueDepths, int]:
    """The queues now, and how many outgoing mails wait for a retry."""
    if shared is not None:
        spooled, oldest = shared.depth(session)
        spool_age = _age(now, oldest)
    else:
        pending = spool.pending()
        spooled = len(pending)
        spool_age = _file_age(spool, pending[0], now) if pending else 0.0
    waiting = OutboxMessage.state == "pending"
    outbox, outbox_oldest, retrying = session.execute(
        select(
            func.count(OutboxMessage.id),
            func.min(OutboxMessage.created_at),
            func.count(OutboxMessage.id).filter(OutboxMessage.attempts > 0),
        ).where(waiting)
    ).one()
    failed = session.scalar(
        select(func.count(OutboxMessage.id)).where(OutboxMessage.state == "failed")
    )
    depths = QueueDepths(
        spool=spooled, spool_oldest_seconds=spool_age, outbox=int(outbox),
        outbox_oldest_seconds=_age(now, outbox_oldest), outbox_failed=int(failed or 0),
    )  # fmt: skip
    return depths, int(retrying)


def _file_age(spool: Spool, spool_id: str, now: datetime) -> float:
    try:
        mtime = (spool.new / f"{spool_id}.eml").stat().st_mtime
    except OSError:
        return 0.0
    return max(0.0, now.timestamp() - mtime)


def collect_status(
    engine: Engine,
    sessions: sessionmaker[Session],
    spools: tuple[Spool, DatabaseSpool | None],
    now: datetime,
    version: str,
) -> Status:
    from storage.schema import schema_revisions

    current, head = schema_revisions(engine)
    with sessions() as session:
        depths, retrying = queue_depths(session, *spools, now)
        rows: list[MaildProcess] = (
            list(
                session.scalars(select(MaildProcess).order_by(MaildProcess.role, MaildProcess.name))
            )
            if current is not None
            else []
        )
        processes = [
            ProcessStatus(
                row.name,
                row.role,
                row.host,
                row.pid,
                row.started_at.isoformat(),
                row.seen_at.isoformat(),
                _age(now, row.seen_at) <= STALE_SECONDS,
                row.state,
            )
            for row in rows
        ]
    status = Status(
        version=version, schema_revision=current, schema_head=head, processes=processes,
        spool=depths.spool, spool_oldest_seconds=depths.spool_oldest_seconds,
        outbox=depths.outbox, outbox_retrying=retrying,
        outbox_oldest_seconds=depths.outbox_oldest_seconds, outbox_failed=depths.outbox_failed,
    )  # fmt: skip
    status.problems.extend(status_problems(status))
    return status


def status_problems(status: Status) -> list[str]:
    """What an admin must look at; empty when all is well."""
    problems: list[str] = []
    if status.schema_revision != status.schema_head:
        problems.append(
            f"database schema {status.schema_revision or 'missing'}, code needs "
            f"{status.schema_head}: run `maild init`"
        )
    alive = [p for p in status.processes if p.alive]
    if not alive:
        problems.append("no maild process has reported in the last 30 s")
    roles = {p.role for p in alive}
    if alive and not roles & {"all", "workers"}:
        problems.append("no worker is running: stored mail is not processed")
    if alive and not roles & {"all", "outbox"}:
        problems.append("no outbox sender is running: nothing is sent")
    for process in alive:
        for name, source in process.state.get("sources", {}).items():
            if source.get("serving") and not source.get("connected"):
                problems.append(f"source {name} ({process.name}) is not connected")
    if status.spool and status.spool_oldest_seconds > SPOOL_AGE_WARNING_SECONDS:
        problems.append(
            f"{status.spool} stored messages wait, the oldest for "
            f"{status.spool_oldest_seconds:.0f} s"
        )
    if status.outbox_failed:
        problems.append(f"{status.outbox_failed} outgoing mails failed for good")
    return problems


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Writes this process's row every HEARTBEAT_SECONDS, and deletes it on a clean stop
    (a killed process's row goes stale and is reported as gone)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        role: str,
        state: Callable[[], dict[str, Any]],
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.role = role
        self.state = state
        self.name = process_name()
        self.started_at = clock.now()

    def beat(self) -> None:
        now = self.clock.now()
        values = {"seen_at": now, "state": self.state(), "role": self.role}
        with self.sessions.begin() as session:
            # Rows of processes killed long ago (a clean stop deletes its own row).
            session.execute(
                delete(MaildProcess).where(MaildProcess.seen_at < now - FORGET_GONE_AFTER)
            )
            updated = session.execute(
                update(MaildProcess).where(MaildProcess.name == self.name).values(**values)
            ).rowcount  # type: ignore[attr-defined]
            if not updated:
                session.add(
                    MaildProcess(
                        name=self.name,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        started_at=self.started_at,
                        **values,
                    )
                )

    def run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                self.beat()
            except SQLAlchemyError as error:
                log.debug("heartbeat not written: %s", type(error).__name__)
            stopping.wait(HEARTBEAT_SECONDS)

    def forget(self) -> None:
        try:
            with self.sessions.begin() as session:
                session.execute(delete(MaildProcess).where(MaildProcess.name == self.name))
        except SQLAlchemyError:
            log.debug("heartbeat row not removed (the database is away)")
