"""A database that refuses for a while loses nothing: locks and outages are waited out.

The attack (issue 13): another process held the SQLite write lock for 45 s (a backup, the
`sqlite3` shell, VACUUM) while mail arrived; every message got 250, and one of 100 ended
`quarantined / database_error: database is locked`, with no ticket, no acknowledgement, and a
dedup key that made a later `maild ingest` of the same raw answer `duplicate`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from maild import daemon as daemon_module
from maild import pipeline as pipeline_module
from maild.errors import PermanentError
from maild.pipeline import Incoming, IngestAction
from maild.worker import OUTAGE, process_safely
from storage import db as db_module
from storage.db import is_transient_db_error
from storage.models import InboundMessage, OutboxMessage, Ticket
from storage.quarantine import list_quarantined
from storage.spool import SpoolMeta, new_spool_id
from tests.conftest import PG_ADMIN_URL, POSTGRES_SKIP
from tests.mailbuilder import build_mail

MESSAGES = 12


def replace_stage(monkeypatch, real, replacement) -> None:
    """Run the pipeline with one stage swapped (a bug or a lock of our own making)."""
    stages = [replacement if stage is real else stage for stage in pipeline_module.STAGES]
    monkeypatch.setattr(pipeline_module, "STAGES", stages)


def wait_for(predicate, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_sqlite_lock_longer_than_busy_timeout_loses_nothing(
    make_app, tmp_path, monkeypatch, caplog
):
    """Mail spooled (so answered 250) while another process holds the write lock for longer
    than maild's busy timeout: afterwards each is a ticket, acknowledged once."""
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 300)
    monkeypatch.setattr(daemon_module, "STALL_BACKOFF_MAX_SECONDS", 0.5)
    app = make_app(engineers=False)
    if app.engine.dialect.name != "sqlite":
        pytest.skip("the SQLite write lock; PostgreSQL is covered by the classification test")
    database = app.engine.url.database
    worker = daemon_module.Daemon(app)
    worker.start()
    caplog.set_level(logging.INFO, logger="maild")
    holder = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the backup, the sqlite3 shell, VACUUM ...
        for number in range(MESSAGES):
            raw = build_mail(
                sender=f"client{number}@stroymontazh.ru",
                subject=f"Ошибка {number}",
                message_id=f"<lock-{number}@stroymontazh.ru>",
            )
            app.spool.put(raw, SpoolMeta(source="smtp", received_at="2026-03-03T09:00:00+00:00"))
            worker.wake_worker()
            time.sleep(0.1)
        time.sleep(1.5)  # several busy timeouts pass while the lock is held
        assert len(app.spool.pending()) == MESSAGES  # nothing settled, nothing lost
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    def all_settled() -> bool:
        # This read waits on the write lock under the test's short busy timeout too: a busy
        # moment is "not yet", not a failure (it made the test flaky under CPU load).
        try:
            with app.sessions() as session:
                return session.scalar(select(func.count(Ticket.id))) == MESSAGES
        except OperationalError:
            return False

    try:
        assert wait_for(all_settled), "not every accepted message became a ticket"
        assert wait_for(lambda: not app.spool.pending())
    finally:
        worker.stop()
    with app.sessions() as session:
        states = session.scalars(select(InboundMessage.state)).all()
        acks = session.scalars(
            select(OutboxMessage.recipient).where(OutboxMessage.purpose == "acknowledgement")
        ).all()
    assert sorted(states) == ["new_ticket"] * MESSAGES
    assert sorted(acks) == sorted(f"client{n}@stroymontazh.ru" for n in range(MESSAGES))
    # One line when the database went away and one when it came back, not one per attempt.
    warnings = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].exc_info is None
    assert any("database available again" in r.getMessage() for r in caplog.records)
    assert not OUTAGE.is_down


def test_sqlite_locked_error_is_transient(tmp_path):
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
        assert is_transient_db_error(caught.value)
        with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
            connection.execute(text("INSERT INTO missing_table VALUES (1)"))
        assert not is_transient_db_error(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(POSTGRES_SKIP is not None, reason=POSTGRES_SKIP or "")
def test_postgres_lock_timeout_and_deadlock_are_transient():
    engine = create_engine(PG_ADMIN_URL)
    table = f"maild_lock_{new_spool_id()[-12:]}"
    try:
        with engine.begin() as connection:
            connection.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)"))
            connection.execute(text(f"INSERT INTO {table} VALUES (1, 0), (2, 0)"))
        # Lock not available (55P03): another transaction holds the row.
        with engine.connect() as holder, engine.connect() as waiter:
            holder.begin()
            holder.execute(text(f"UPDATE {table} SET v = 1 WHERE id = 1"))
            waiter.begin()
            waiter.execute(text("SET LOCAL lock_timeout = '100ms'"))
            with pytest.raises(DBAPIError) as caught:
                waiter.execute(text(f"UPDATE {table} SET v = 2 WHERE id = 1"))
            assert is_transient_db_error(caught.value)
            holder.rollback()
            waiter.rollback()
        # Deadlock detected (40P01): two transactions wait for each other.
        errors: list[DBAPIError] = []
        first_locked = threading.Barrier(2)

        def lock_in_order(first: int, second: int) -> None:
            with engine.connect() as connection:
                connection.begin()
                connection.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
                connection.execute(text(f"UPDATE {table} SET v = v + 1 WHERE id = {first}"))
                first_locked.wait()
                try:
                    connection.execute(text(f"UPDATE {table} SET v = v + 1 WHERE id = {second}"))
                except DBAPIError as error:
                    errors.append(error)
                connection.rollback()

        threads = [threading.Thread(target=lock_in_order, args=pair) for pair in ((1, 2), (2, 1))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors, "PostgreSQL reported no deadlock"
        assert all(is_transient_db_error(error) for error in errors)
        # A permanent error (syntax) is not transient.
        with pytest.raises(DBAPIError) as caught, engine.connect() as connection:
            connection.execute(text("SELEC 1"))
        assert not is_transient_db_error(caught.value)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_quarantined_message_can_be_requeued_after_a_fix(app, monkeypatch):
    """A quarantine row keeps the raw for a person and blocks nothing: once the cause is
    fixed, the same message goes through, by --requeue or by ingesting the file anew."""
    raw = build_mail(message_id="<broken-once@stroymontazh.ru>")
    real_parse = pipeline_module.stage_parse

    def parse_with_a_bug(pipeline, work):
        raise PermanentError("a parser bug, fixed in the next release")

    replace_stage(monkeypatch, real_parse, parse_with_a_bug)
    first = process_safely(app.pipeline, Incoming.of(new_spool_id(), raw, "smtp"))
    assert first is not None
    assert first.action == IngestAction.QUARANTINED
    with app.sessions() as session:
        [waiting] = list_quarantined(session)
    assert waiting.reason == "permanent_error"
    monkeypatch.undo()  # the fix is deployed

    again = process_safely(app.pipeline, Incoming.of(new_spool_id(), raw, "smtp"))
    assert again is not None
    assert (again.action, again.ticket) == (IngestAction.NEW_TICKET, 1)
    third = process_safely(app.pipeline, Incoming.of(new_spool_id(), raw, "smtp"))
    assert third is not None
    assert third.action == IngestAction.DUPLICATE  # a real original blocks, as before


@pytest.mark.parametrize(
    "driver_error",
    [sqlite3.OperationalError("database is locked"), sqlite3.OperationalError("disk I/O error")],
)
def test_lock_met_inside_a_message_keeps_it_in_the_spool(app, monkeypatch, driver_error):
    """The old worker quarantined a message whose savepoint met `database is locked` when the
    lock was gone by the time it wrote the quarantine row (one of 100 in the attack)."""
    real_store = pipeline_module.stage_store
    calls: list[int] = []

    def store_meeting_a_lock(pipeline, work):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT INTO tickets ...", {}, driver_error)
        return real_store(pipeline, work)

    replace_stage(monkeypatch, real_store, store_meeting_a_lock)
    incoming = Incoming.of(new_spool_id(), build_mail(), "smtp")
    assert process_safely(app.pipeline, incoming) is None  # nothing committed: retry later
    with app.sessions() as session:
        assert session.scalar(select(func.count(InboundMessage.id))) == 0
    result = process_safely(app.pipeline, incoming)
    assert result is not None
    assert (result.action, result.ticket) == (IngestAction.NEW_TICKET, 1)


def test_requeue_from_the_command_line(app, monkeypatch, tmp_path):
    """`maild quarantine list` shows what waits; `maild ingest --requeue ID` runs it again."""
    import json
    import subprocess
    import sys

    real_parse = pipeline_module.stage_parse

    def parse_with_a_bug(pipeline, work):
        raise PermanentError("a parser bug")

    replace_stage(monkeypatch, real_parse, parse_with_a_bug)
    raw = build_mail(message_id="<cli-requeue@stroymontazh.ru>")
    assert process_safely(app.pipeline, Incoming.of(new_spool_id(), raw, "smtp")) is not None
    config = str(app.config.source_file)

    def maild(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "maild", *args, "--config", config],
            capture_output=True, check=False, timeout=120,
        )  # fmt: skip

    listed = maild("quarantine", "list", "--json")
    assert listed.returncode == 0, listed.stderr.decode()
    [entry] = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert (entry["reason"], entry["message_id"]) == (
        "permanent_error",
        "cli-requeue@stroymontazh.ru",
    )
    requeued = maild("ingest", "--requeue", str(entry["id"]), "--json", "--no-deliver")
    assert requeued.returncode == 0, requeued.stderr.decode()
    [outcome] = [json.loads(line) for line in requeued.stdout.decode().splitlines()]
    assert (outcome["requeued"], outcome["action"], outcome["ticket"]) == (
        entry["id"], "new_ticket", 1,
    )  # fmt: skip
    assert maild("quarantine", "list", "--json").stdout == b""
    unknown = maild("ingest", "--requeue", "999")
    assert unknown.returncode == 1
    assert b"no such quarantined message" in unknown.stderr
