"""Nothing lost, nothing doubled: `maild run` killed with SIGKILL mid-work, then restarted."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

from sqlalchemy import func, select

from maild.app import initialize, open_app
from maild.config import load_config
from storage.db import make_engine
from storage.models import InboundMessage, Message, OutboxMessage, SpoolMessage, Ticket
from storage.spool import Spool, SpoolMeta
from tests.conftest import write_config
from tests.mailbuilder import build_mail

MESSAGES = 200


def waiting(spool: Spool, engine) -> int:
    """Messages not yet processed: files in the spool folder, and on PostgreSQL the rows of
    the shared spool that `maild run` moves them into."""
    if engine.dialect.name != "postgresql":
        return len(spool.pending())
    with engine.connect() as connection:
        rows = connection.scalar(select(func.count(SpoolMessage.id)))
    return len(spool.pending()) + int(rows or 0)


def wait_until_working(
    spool: Spool, engine, pending: int, process: subprocess.Popen[bytes]
) -> None:
    """Return once the daemon has taken a message from the spool, however slow this machine is."""
    deadline = time.monotonic() + 60
    while waiting(spool, engine) == pending and process.poll() is None:
        assert time.monotonic() < deadline, "the daemon took nothing from the spool in 60 s"
        time.sleep(0.02)


def test_sigkill_at_random_moments_loses_and_doubles_nothing(tmp_path, db_url):
    config_path = write_config(tmp_path, db_url)
    config = load_config(config_path)
    initialize(config)
    spool = Spool(config.spool.path)
    for n in range(MESSAGES):
        raw = build_mail(
            sender=f"client{n}@firm{n % 7}.ru", subject=f"Запрос {n}", message_id=f"<m{n}@x.ru>"
        )
        spool.put(raw, SpoolMeta(source="test", received_at=""))
    rng = random.Random(20261125)
    kills = stalled = 0
    engine = make_engine(db_url)
    while pending := waiting(spool, engine):
        process = subprocess.Popen(
            [sys.executable, "-m", "maild", "--config", str(config_path), "run"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.05, 1.0))  # during start-up, migrations or the first message
        else:
            wait_until_working(spool, engine, pending, process)
            time.sleep(rng.uniform(0.0, 0.4))  # mid-stream, wherever the daemon happens to be
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        stalled = stalled + 1 if waiting(spool, engine) == pending else 0
        assert stalled < 10, "ten runs in a row drained nothing: the spool does not drain"
    engine.dispose()
    app = open_app(config)
    with app.sessions() as session:
        assert session.scalar(select(func.count(Ticket.id))) == MESSAGES
        assert session.scalar(select(func.count(InboundMessage.id))) == MESSAGES
        assert (
            session.scalar(select(func.count(Message.id)).where(Message.direction == "in"))
            == MESSAGES
        )
        acks = session.scalars(
            select(OutboxMessage.recipient).where(OutboxMessage.purpose == "acknowledgement")
        ).all()
        notices = session.scalars(
            select(OutboxMessage.recipient).where(OutboxMessage.purpose == "ticket_notice")
        ).all()
        numbers = sorted(session.scalars(select(Ticket.id)))
    app.close()
    assert sorted(acks) == sorted(f"client{n}@firm{n % 7}.ru" for n in range(MESSAGES))
    assert notices == ["ivanov@sis.ru"] * MESSAGES  # one notice per ticket, none doubled
    assert numbers == list(range(1, MESSAGES + 1))
    assert kills >= 2
