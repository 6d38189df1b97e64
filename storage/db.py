"""Engine and session factory; SQLite gets WAL and durable commits, any other URL is used as is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000

# SQLite result codes that pass: BUSY, LOCKED (another writer), IOERR, FULL (a disk that
# fills up and empties), CANTOPEN (out of descriptors), PROTOCOL (a WAL lock race).
_SQLITE_TRANSIENT_CODES = frozenset({5, 6, 10, 13, 14, 15})
_SQLITE_TRANSIENT_TEXT = (
    "database is locked", "database table is locked", "database is busy", "disk i/o error",
    "database or disk is full", "unable to open",
)  # fmt: skip
# PostgreSQL SQLSTATE classes and codes that pass: connection exceptions (08), transaction
# rollback (40: serialization failure, deadlock), insufficient resources (53), operator
# intervention (57: shutdown, statement or lock timeout), lock not available (55P03).
_PG_TRANSIENT_CLASSES = ("08", "40", "53", "57")
_PG_TRANSIENT_CODES = frozenset({"55P03", "55006"})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk when it returns; a 250 or an IMAP MOVE may depend on it.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # The savepoint around each message of a batch needs a statement journal; on disk that is
    # a temporary file per savepoint (2.6x the page writes of the WAL itself, issue 17).
    # Nothing in it outlives the transaction, so it may as well stay in memory.
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # pysqlite's own transaction handling defers BEGIN; take the write lock up front instead,
    # so two writers wait on busy_timeout rather than fail on a lock upgrade.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_transient_db_error(error: DBAPIError) -> bool:
    """A lock, a deadlock, a full disk or a lost link passes; retrying the same work later
    succeeds. Such an error must leave the message in the spool, never quarantine it."""
    if error.connection_invalidated:
        return True
    original = error.orig
    code = getattr(original, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _SQLITE_TRANSIENT_CODES
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate.startswith(_PG_TRANSIENT_CLASSES) or sqlstate in _PG_TRANSIENT_CODES
    text = str(original).lower()
    return any(marker in text for marker in _SQLITE_TRANSIENT_TEXT)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "isolation_level": None})
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
