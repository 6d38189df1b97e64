"""Group commit: a batch is one transaction with a savepoint per message."""

from __future__ import annotations

from sqlalchemy import func, select

from maild.pipeline import Incoming, IngestAction, IngestResult, Pipeline
from maild.worker import process_batch
from storage.models import InboundMessage, Ticket
from tests.mailbuilder import build_mail


class FailsOnSubject(Pipeline):
    """The real pipeline, made to break half-way through one chosen message."""

    def run_stages(self, session, incoming):
        result = super().run_stages(session, incoming)
        if b"BREAK-ME" in incoming.raw.read_all():
            raise RuntimeError("simulated bug after the ticket was written")
        return result


def settle_all(pipeline: Pipeline, batch: list[Incoming]) -> list[IngestResult]:
    """What every caller does: a batch may close after BATCH_SECONDS (a slow or busy
    machine), and the rest is handed in again."""
    settled: list[IngestResult] = []
    while len(settled) < len(batch):
        results = process_batch(pipeline, batch[len(settled) :])
        assert results, "a batch committed nothing"
        settled += results
    return settled


def test_failing_message_is_quarantined_and_the_rest_commit(app):
    pipeline = FailsOnSubject(app.config, app.sessions, app.artifacts, app.clock)
    batch = [
        Incoming.of("b1", build_mail(subject="первый", message_id="<b1@x.ru>"), "test"),
        Incoming.of("b2", build_mail(subject="BREAK-ME", message_id="<b2@x.ru>"), "test"),
        Incoming.of("b3", build_mail(subject="третий", message_id="<b3@x.ru>"), "test"),
    ]
    results = settle_all(pipeline, batch)
    assert [(r.action, r.ticket, r.reason) for r in results] == [
        (IngestAction.NEW_TICKET, 1, "no_thread_match"),
        (IngestAction.QUARANTINED, None, "processing_error"),
        (IngestAction.NEW_TICKET, 2, "no_thread_match"),
    ]
    with app.sessions() as session:
        assert sorted(session.scalars(select(Ticket.subject))) == ["первый", "третий"]
        states = dict(session.execute(select(InboundMessage.spool_id, InboundMessage.state)).all())
        assert session.scalar(select(func.count(Ticket.id))) == 2
    assert states == {"b1": "new_ticket", "b2": "quarantined", "b3": "new_ticket"}


def test_replaying_a_committed_batch_changes_nothing(app):
    batch = [
        Incoming.of(f"r{n}", build_mail(subject=f"s{n}", message_id=f"<r{n}@x.ru>"), "test")
        for n in range(5)
    ]
    first = settle_all(app.pipeline, batch)
    again = settle_all(app.pipeline, batch)
    assert [(r.action, r.ticket) for r in again] == [(r.action, r.ticket) for r in first]
    with app.sessions() as session:
        assert session.scalar(select(func.count(Ticket.id))) == 5


def test_savepoint_journal_in_memory_still_rolls_back_one_message(tmp_path):
    """Issue 17: the per-message savepoint's statement journal lives in memory
    (temp_store=MEMORY), not in a temporary file per savepoint; a rolled-back message larger
    than SQLite's in-memory spill threshold (64 KiB) must still vanish, its neighbours stay."""
    from sqlalchemy import text

    from storage.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'journal.db'}")
    with engine.begin() as connection:
        assert connection.exec_driver_sql("PRAGMA temp_store").scalar() == 2  # MEMORY
        connection.execute(text("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT)"))
        connection.execute(text("INSERT INTO rows (body) VALUES ('kept before')"))
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO rows (body) VALUES ('kept in batch')"))
        savepoint = connection.begin_nested()
        for _ in range(40):
            connection.execute(text("INSERT INTO rows (body) VALUES (:b)"), {"b": "x" * 50_000})
        connection.execute(text("UPDATE rows SET body = 'clobbered'"))
        savepoint.rollback()
        connection.execute(text("INSERT INTO rows (body) VALUES ('kept after')"))
    with engine.connect() as connection:
        bodies = connection.execute(text("SELECT body FROM rows ORDER BY id")).scalars().all()
    engine.dispose()
    assert bodies == ["kept before", "kept in batch", "kept after"]
