"""Who does a thing that must be done by one process at a time.

On PostgreSQL a `LeaderLock` is a session advisory lock on a connection of its own: held
while this process and that connection live, released by the server the moment either
dies, so another process takes over on its next try (an IMAP mailbox, the scheduler).
On SQLite there is one process (`RunLock` refuses a second `maild run`), so every leader
lock is simply held.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name, the same in every process and machine."""
    return int.from_bytes(hashlib.sha256(f"maild:{name}".encode()).digest()[:8], "big", signed=True)


class LeaderLock:
    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.key = advisory_key(name)
        self.connection: Connection | None = None
        self.shared = engine.dialect.name == "postgresql"

    @property
    def held(self) -> bool:
        return self.connection is not None or not self.shared

    def acquire(self) -> bool:
        """Take the lock if it is free, or confirm that it is still ours (the connection
        alive); False when another process holds it or the database is away."""
        if not self.shared:
            return True
        try:
            if self.connection is not None:
                self.connection.execute(text("SELECT 1"))
                return True
            connection = self.engine.connect()
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
            ).scalar()
            connection.commit()  # the session lock outlives the transaction
            if got:
                self.connection = connection
                log.info("lock %s: taken by this process", self.name)
                return True
            connection.close()
        except DBAPIError as error:
            log.warning("lock %s: lost with the database connection: %s", self.name, error.orig)
            self._drop()
        return False

    def release(self) -> None:
        if self.connection is None:
            return
        try:
            self.connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            self.connection.commit()
        except DBAPIError:
            log.debug("lock %s: connection already gone", self.name)
        self._drop()

    def _drop(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.invalidate()
                connection.close()
            except DBAPIError:
                log.debug("lock %s: closing a dead connection", self.name)


class AlreadyRunning(Exception):
    """Another `maild run` holds this installation's single-process lock."""


class RunLock:
    """SQLite keeps one `maild run` per installation: an exclusive flock on a file beside
    the spool, released by the kernel when the process dies however it dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AlreadyRunning(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
