"""500 messages in the IMAP mailbox, `maild run` SIGKILLed at random moments until all is done:
every message in exactly one ticket, exactly one acknowledgement per ticket."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

from sqlalchemy import func, select

from maild.app import open_app
from maild.config import load_config
from storage.models import InboundMessage, Message, OutboxMessage, Ticket
from tests.conftest import write_config
from tests.daemon import wait_for
from tests.mailbuilder import build_mail

MESSAGES = 300


def test_sigkill_during_imap_intake_loses_and_doubles_nothing(tmp_path, sqlite_url, dovecot):
    config_path = write_config(tmp_path, sqlite_url, dovecot.config_toml())
    maild = [sys.executable, "-m", "maild", "--config", str(config_path)]
    subprocess.run([*maild, "init"], check=True, capture_output=True)
    with dovecot.client() as client:
        for n in range(MESSAGES):
            client.append(
                "INBOX",
                build_mail(
                    sender=f"c{n}@org{n % 9}.ru",
                    subject=f"Запрос {n}",
                    message_id=f"<crash{n}@x.ru>",
                ),
            )
    config = load_config(config_path)

    def left() -> int:
        """Messages not yet settled: still in INBOX, or spooled and not yet processed."""
        return dovecot.count("INBOX") + len(list((config.spool.path / "new").glob("*.eml")))

    rng = random.Random(25112026)
    kills = stalled = 0
    remaining = MESSAGES
    while True:
        process = subprocess.Popen(
            [*maild, "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.3, 2.5))  # during start-up, login or the first fetch
        else:
            # Once something settled, however slow this machine is, then mid-stream.
            wait_for(
                lambda before=remaining: left() < before,
                timeout=120, what="maild to settle a message",
            )  # fmt: skip
            time.sleep(rng.uniform(0.0, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        now_left = left()
        if now_left == 0:
            break
        stalled, remaining = (stalled + 1 if now_left >= remaining else 0), now_left
        assert stalled < 10, "ten runs in a row settled nothing: intake does not finish"
    # One clean run delivers what the killed ones left in the outbox.
    process = subprocess.Popen(
        [*maild, "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    outbox = tmp_path / "outbox" / "new"
    wait_for(
        lambda: outbox.is_dir() and len(list(outbox.iterdir())) >= 2 * MESSAGES,
        timeout=180, what="the clean run to deliver the outbox",
    )  # fmt: skip
    time.sleep(1)  # anything delivered twice would show up now
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert kills >= 3
    assert dovecot.count("Processed") == MESSAGES
    app = open_app(config)
    with app.sessions() as session:
        tickets_by_message = dict(
            session.execute(
                select(Message.message_id, Message.ticket_id).where(Message.direction == "in")
            ).all()
        )
        assert (
            session.scalar(select(func.count(Message.id)).where(Message.direction == "in"))
            == MESSAGES
        )
        assert session.scalar(select(func.count(Ticket.id))) == MESSAGES
        acks = session.scalars(
            select(OutboxMessage.recipient).where(OutboxMessage.purpose == "acknowledgement")
        ).all()
        notices = session.scalars(
            select(OutboxMessage.recipient).where(OutboxMessage.purpose == "ticket_notice")
        ).all()
        states = session.scalars(select(InboundMessage.state)).all()
    app.close()
    assert set(tickets_by_message) == {f"crash{n}@x.ru" for n in range(MESSAGES)}
    assert len(acks) == len(set(acks)) == MESSAGES
    # Re-fetches after a kill between spooling and MOVE are recognised, never applied twice.
    assert set(states) <= {"new_ticket", "duplicate"}
    assert notices == ["ivanov@sis.ru"] * MESSAGES
    # Each acknowledgement and each notice delivered exactly once.
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 2 * MESSAGES
