"""The outbox sender works in batches: claim the due rows, deliver them, record them together.

On SQLite and PostgreSQL (the `make_app` fixture), with the real Maildir transport where the
crash story is about files; the decisions themselves (`decide_outcome`) are tested pure.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, text

from maild import daemon as daemon_module
from maild import outbound
from maild.app import initialize, open_app
from maild.config import load_config
from maild.daemon import Daemon
from maild.errors import PermanentError, TransientError
from maild.outbound import (
    OUTBOX_CLAIM_SECONDS,
    DueMail,
    MaildirTransport,
    WriteTurn,
    decide_outcome,
    deliver_pending,
)
from storage.models import Counter, OutboxMessage
from tests.conftest import write_config
from tests.daemon import wait_for
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


class Crash(BaseException):
    """The process dies here: nothing after this point runs, nothing catches it."""


class RecordingTransport:
    """Keeps what it is given; fails the keys it is told to, the way it is told to."""

    def __init__(self, failures: dict[str, Exception] | None = None) -> None:
        self.failures = dict(failures or {})
        self.sent: list[str] = []
        self.on_send = lambda _key: None
        self.flushes = 0

    def send(self, key, envelope_from, recipients, raw):
        del envelope_from, recipients, raw
        self.on_send(key)
        if key in self.failures:
            raise self.failures[key]
        self.sent.append(key)

    def flush(self):
        self.flushes += 1


class CrashingMaildir(MaildirTransport):
    """Writes the files, then the process dies before the outcomes are recorded."""

    def flush(self):
        super().flush()
        raise Crash


@pytest.fixture
def app(make_app):
    """No engineers: each client mail queues exactly one row, its acknowledgement."""
    return make_app(engineers=False)


def queue_acknowledgements(app, count: int) -> list[str]:
    for index in range(count):
        ingest(app, build_mail(sender=f"Клиент {index} <c{index}@org{index}.ru>"))
    return [str(row.id) for row in rows(app)]


def rows(app) -> list[OutboxMessage]:
    with app.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def deliver(app, transport, **options):
    return deliver_pending(
        app.sessions, transport, app.clock, max_attempts=3, retry_seconds=60, **options
    )


def count_commits(app) -> list[int]:
    commits = [0]

    def on_commit(connection):
        commits[0] += 1

    event.listen(app.engine, "commit", on_commit)
    return commits


def test_a_batch_is_claimed_in_one_transaction_and_recorded_in_one(app):
    keys = queue_acknowledgements(app, 5)
    transport = RecordingTransport()
    commits = count_commits(app)
    counts = deliver(app, transport)
    assert (counts.sent, counts.retrying, counts.failed) == (5, 0, 0)
    assert transport.sent == keys
    assert transport.flushes == 1
    # The claim, then the outcomes of all five together (with the claim of nothing more).
    assert commits[0] == 2
    assert {(row.state, row.attempts) for row in rows(app)} == {("sent", 1)}
    assert all(row.sent_at == app.clock.now() for row in rows(app))
    assert deliver(app, transport).sent == 0
    assert transport.sent == keys


def test_batches_follow_each_other_until_nothing_is_due(app):
    keys = queue_acknowledgements(app, 5)
    transport = RecordingTransport()
    commits = count_commits(app)
    assert deliver(app, transport, batch=2).sent == 5
    assert transport.sent == keys
    assert transport.flushes == 3
    # Claim 1-2; record 1-2 and claim 3-4; record 3-4 and claim 5; record 5.
    assert commits[0] == 4


def test_claimed_rows_are_not_sent_by_a_second_sender(app):
    queue_acknowledgements(app, 3)
    first = RecordingTransport()
    second = RecordingTransport()
    seen_by_second = []
    first.on_send = lambda _key: seen_by_second.append(deliver(app, second).sent)
    assert deliver(app, first).sent == 3
    assert seen_by_second == [0, 0, 0]
    assert second.sent == []


def test_a_failing_row_is_retried_later_and_does_not_hold_up_the_others(app, clock):
    keys = queue_acknowledgements(app, 4)
    transport = RecordingTransport({keys[1]: TransientError("451 4.3.0 try later")})
    counts = deliver(app, transport)
    assert (counts.sent, counts.retrying, counts.failed) == (3, 1, 0)
    assert transport.sent == [keys[0], keys[2], keys[3]]
    failing = next(row for row in rows(app) if str(row.id) == keys[1])
    assert (failing.state, failing.attempts) == ("pending", 1)
    assert failing.next_attempt_at == clock.now() + timedelta(seconds=60)
    assert "451" in failing.last_error
    assert deliver(app, transport).sent == 0  # not due yet
    del transport.failures[keys[1]]
    clock.current += timedelta(seconds=61)
    assert deliver(app, transport).sent == 1
    assert sorted(transport.sent) == sorted(keys)
    assert {(row.state, row.attempts) for row in rows(app) if str(row.id) == keys[1]} == {
        ("sent", 2)
    }


def test_an_unexpected_transport_error_costs_only_its_own_row(app):
    keys = queue_acknowledgements(app, 3)
    transport = RecordingTransport({keys[0]: ValueError("bad address for smtplib")})
    counts = deliver(app, transport)
    assert (counts.sent, counts.retrying) == (2, 1)
    first = rows(app)[0]
    assert (first.state, first.attempts, first.last_error) == (
        "pending",
        1,
        "unexpected ValueError",
    )


def test_permanent_failure_and_exhausted_retries_give_up(app, clock):
    keys = queue_acknowledgements(app, 2)
    transport = RecordingTransport(
        {keys[0]: PermanentError("554 5.7.1 rejected"), keys[1]: TransientError("timeout")}
    )
    outcomes = []
    for _ in range(3):
        counts = deliver(app, transport)
        outcomes.append((counts.sent, counts.retrying, counts.failed))
        clock.current += timedelta(hours=7)
    assert outcomes == [(0, 1, 1), (0, 1, 0), (0, 0, 1)]
    assert [(row.state, row.attempts) for row in rows(app)] == [("failed", 1), ("failed", 3)]


def test_on_stop_the_rows_not_tried_are_due_again_at_once(app):
    keys = queue_acknowledgements(app, 3)
    transport = RecordingTransport()
    stop = []
    transport.on_send = lambda key: stop.append(key)
    assert deliver(app, transport, should_stop=lambda: bool(stop)).sent == 1
    assert [(row.state, row.attempts) for row in rows(app)] == [
        ("sent", 1), ("pending", 0), ("pending", 0),
    ]  # fmt: skip
    assert all(row.next_attempt_at <= app.clock.now() for row in rows(app)[1:])
    assert deliver(app, transport).sent == 2
    assert transport.sent == keys


def test_a_crash_between_delivery_and_commit_does_not_duplicate_into_the_maildir(
    app, clock, tmp_path
):
    keys = queue_acknowledgements(app, 4)
    box = tmp_path / "crash-box"
    with pytest.raises(Crash):
        deliver(app, CrashingMaildir(box))
    delivered = sorted(path.name for path in (box / "new").iterdir())
    assert delivered == sorted(f"maild-{key}" for key in keys)
    assert {(row.state, row.attempts) for row in rows(app)} == {("pending", 0)}
    # A reader took one of them meanwhile (Maildir moves it to cur/ with its flags).
    (box / "new" / f"maild-{keys[0]}").rename(box / "cur" / f"maild-{keys[0]}:2,S")
    restarted = MaildirTransport(box)  # a new process
    assert deliver(app, restarted).sent == 0  # still claimed by the dead sender
    clock.current += timedelta(seconds=OUTBOX_CLAIM_SECONDS + 1)
    assert deliver(app, restarted).sent == 4
    assert sorted(path.name for path in (box / "new").iterdir()) == [
        f"maild-{key}" for key in sorted(keys[1:])
    ]
    assert [path.name for path in (box / "cur").iterdir()] == [f"maild-{keys[0]}:2,S"]
    assert not list((box / "tmp").iterdir())
    assert {(row.state, row.attempts) for row in rows(app)} == {("sent", 1)}


def test_a_maildir_that_cannot_be_synced_sends_the_batch_again(app, clock, tmp_path):
    keys = queue_acknowledgements(app, 2)
    transport = MaildirTransport(tmp_path / "box")
    transport.ensure()
    real_flush = transport.flush

    def failing_flush():
        real_flush()
        raise TransientError("maildir: Input/output error")

    transport.flush = failing_flush
    counts = deliver(app, transport)
    assert (counts.sent, counts.retrying) == (0, 2)
    transport.flush = real_flush
    clock.current += timedelta(seconds=61)
    assert deliver(app, transport).sent == 2
    assert sorted(path.name for path in (tmp_path / "box" / "new").iterdir()) == sorted(
        f"maild-{key}" for key in keys
    )


# --- the decision alone, without a database ---


def due(attempts: int = 0) -> DueMail:
    return DueMail(7, attempts, "", ["a@b.ru"], b"")


@pytest.mark.parametrize(
    ("attempts", "error", "expected"),
    [
        (0, None, ("sent", 1, None)),
        (0, TransientError("451"), ("retrying", 1, NOW + timedelta(seconds=60))),
        (1, TransientError("451"), ("retrying", 2, NOW + timedelta(seconds=120))),
        (2, TransientError("451"), ("retrying", 3, NOW + timedelta(seconds=240))),
        (3, TransientError("451"), ("failed", 4, None)),
        (0, PermanentError("554"), ("failed", 1, None)),
    ],
    ids=["sent", "first_retry", "backoff_doubles", "last_retry", "exhausted", "permanent"],
)
def test_decide_outcome(attempts, error, expected):
    outcome = decide_outcome(due(attempts), error, NOW, max_attempts=4, retry_seconds=60)
    assert (outcome.state, outcome.attempts, outcome.next_attempt_at) == expected
    assert outcome.error == (str(error) if error else None)


def test_backoff_is_capped():
    outcome = decide_outcome(
        due(40), TransientError("451"), NOW, max_attempts=100, retry_seconds=60
    )
    assert outcome.next_attempt_at == NOW + timedelta(hours=6)


# --- SQLite: the sender's turn at the write lock between two of the worker's batches ---


@pytest.fixture
def sqlite_app(tmp_path, sqlite_url, clock):
    config = load_config(write_config(tmp_path, sqlite_url, engineers=False))
    initialize(config)
    app = open_app(config, clock=clock)
    yield app
    app.close()


def test_the_sender_takes_the_write_lock_right_after_the_workers_commit(sqlite_app, monkeypatch):
    # No time limit on the handoff here: the worker waits until the sender has begun.
    monkeypatch.setattr(outbound, "TURN_HANDOFF_SECONDS", 30.0)
    sessions = sqlite_app.sessions
    turn = WriteTurn(sessions)

    def sender():
        turn.wait(30.0)
        with sessions.begin() as session:
            session.add(Counter(name="sender", value=1))

    thread = threading.Thread(target=sender)
    thread.start()
    wait_for(lambda: turn.is_wanted, what="the sender to ask for its turn")
    with sessions.begin() as session:  # a batch of the worker: one savepoint per message
        session.execute(text("SELECT 1"))
        with session.begin_nested():
            session.add(Counter(name="worker", value=1))
        assert turn.is_wanted  # a savepoint released is no commit: the lock is still held
    # The commit handed the lock over: the worker's next batch begins only once the
    # sender's transaction has committed, so it sees the sender's row.
    with sessions.begin() as session:
        names = set(session.scalars(select(Counter.name)))
    thread.join(timeout=30)
    assert {"worker", "sender"} <= names
    assert not turn.is_wanted


def test_the_daemon_waits_for_no_turn_when_the_spool_is_empty(sqlite_app, monkeypatch):
    monkeypatch.setattr(daemon_module, "OUTBOX_TURN_SECONDS", 3600.0)
    daemon = Daemon(sqlite_app)
    assert isinstance(daemon.write_turn, WriteTurn)
    thread = threading.Thread(target=daemon._wait_outbox_turn)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not daemon.write_turn.is_wanted


def test_postgres_needs_no_turn(make_app, db_url):
    app = make_app(engineers=False)
    expected = WriteTurn if db_url.startswith("sqlite") else type(None)
    assert isinstance(Daemon(app).write_turn, expected)
