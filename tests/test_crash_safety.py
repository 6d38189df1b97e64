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
from storage.models import InboundMessage, Message, OutboxMessage, Ticket
from storage.spool import Spool, SpoolMeta
from tests.conftest import write_config
from tests.mailbuilder import build_mail

MESSAGES = 400


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
    kills = 0
    while spool.pending():
        process = subprocess.Popen(
            [sys.executable, "-m", "maild", "--config", str(config_path), "run"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.6, 1.6))
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        assert kills < 60, "the spool does not drain"
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
