"""Several workers on PostgreSQL (issue 18): four `maild run --role workers` processes share
one spool of 2,000 messages whose replies race their originals, and one of them is killed
with SIGKILL every few seconds. Every message is stored once, no conversation is split, one
acknowledgement goes out per new ticket, ticket numbers have no gaps, and the threading is
the one a single process gives (`maild ingest` of the same messages into SQLite)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from maild.app import initialize
from maild.config import load_config
from storage.db import make_engine
from storage.models import (
    InboundMessage,
    MaildProcess,
    Message,
    OutboxMessage,
    SpoolMessage,
    Ticket,
)
from storage.shared_spool import DatabaseSpool
from storage.spool import SpoolMeta
from tests.conftest import write_config
from tests.mailbuilder import build_mail

pytestmark = pytest.mark.postgres
MESSAGES = 2000
WORKERS = 4
KILL_EVERY_SECONDS = 3.0


def conversation_corpus(
    count: int, seed: int = 18
) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """Messages in arrival order, each reply a few places after the message it answers (so
    that two workers would hold them at once), and the conversation each belongs to."""
    rng = random.Random(seed)
    corpus: list[tuple[str, bytes]] = []
    conversation: dict[str, str] = {}
    open_threads: list[list[str]] = []
    for n in range(count):
        message_id = f"<race{n}@client.example>"
        if open_threads and rng.random() < 0.6:
            thread = rng.choice(open_threads[-12:])  # a recent conversation: races its original
            answered = thread[-1]
            raw = build_mail(
                sender=f"client{thread[0][5:-16]}@firm{int(thread[0][5:-16]) % 31}.ru", subject="Re: Ошибка при запуске", message_id=message_id,
                in_reply_to=answered, references=" ".join(thread[-3:]),
                body=f"Дополнение {n}: после перезапуска то же самое.",
            )  # fmt: skip
            conversation[message_id] = conversation[thread[0]]
            thread.append(message_id)
        else:
            raw = build_mail(
                sender=f"client{n}@firm{n % 31}.ru", subject=f"Ошибка при запуске {n}", message_id=message_id,
                body=f"Cubisio 3.2.{n % 9} не запускается, запрос {n}.",
            )  # fmt: skip
            conversation[message_id] = message_id
            open_threads.append([message_id])
        corpus.append((message_id, raw))
    return corpus, conversation


def wait_until_running(engine, workers, timeout: float = 60.0) -> None:
    """Until every worker has written its heartbeat: its SIGTERM handler is in place then
    (one signalled while still importing would die of the signal, not drain)."""
    deadline = time.monotonic() + timeout
    pids = {worker.pid for worker in workers}
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            beating = set(connection.execute(select(MaildProcess.pid)).scalars())
        if pids <= beating or any(worker.poll() is not None for worker in workers):
            return
        time.sleep(0.1)


def partition(pairs) -> set[frozenset[str]]:
    groups: dict[object, set[str]] = defaultdict(set)
    for message_id, ticket in pairs:
        groups[ticket].add(message_id)
    return {frozenset(group) for group in groups.values()}


def single_process_threading(tmp_path: Path, corpus) -> set[frozenset[str]]:
    folder = tmp_path / "single"
    mail = folder / "mail"
    mail.mkdir(parents=True)
    for index, (_, raw) in enumerate(corpus):
        (mail / f"{index:05d}.eml").write_bytes(raw)
    config = write_config(folder, f"sqlite:///{folder / 'maild.db'}")
    maild = [sys.executable, "-m", "maild", "--config", str(config)]
    subprocess.run([*maild, "init"], check=True, capture_output=True)
    result = subprocess.run(
        [*maild, "ingest", "--json", "--parsers", "0", str(mail)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    decisions = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return partition((f"<{d['message_id']}>", d["ticket"]) for d in decisions)


def test_four_workers_killed_at_random_lose_split_and_double_nothing(tmp_path, postgres_admin):
    from tests.conftest import _fresh_postgres_database

    corpus, conversation = conversation_corpus(MESSAGES)
    expected = partition(conversation.items())
    assert expected == single_process_threading(tmp_path, corpus)

    database = _fresh_postgres_database(postgres_admin)
    url = next(database)
    try:
        config_path = write_config(tmp_path, url)
        config = load_config(config_path)
        initialize(config)
        engine = make_engine(url)
        spool = DatabaseSpool(engine, config.spool.path)
        for _, raw in corpus:
            spool.put(raw, SpoolMeta(source="smtp", received_at="2026-12-04T10:00:00+00:00"))

        def waiting() -> int:
            with engine.connect() as connection:
                return int(connection.scalar(select(func.count(SpoolMessage.id))) or 0)

        command = [sys.executable, "-m", "maild", "--config", str(config_path), "run", "--role"]
        log = (tmp_path / "workers.log").open("wb")

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen([*command, "workers"], stdout=log, stderr=log)

        workers = [start() for _ in range(WORKERS)]
        rng = random.Random(1818)
        kills = 0
        deadline = time.monotonic() + 600
        try:
            while waiting():
                assert time.monotonic() < deadline, "the workers did not drain the spool"
                time.sleep(KILL_EVERY_SECONDS)
                victim = rng.randrange(WORKERS)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                kills += 1
                workers[victim] = start()
        finally:
            wait_until_running(engine, workers)
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [worker.wait(timeout=60) for worker in workers]
            log.close()
        assert codes == [0] * WORKERS, (tmp_path / "workers.log").read_text(errors="replace")
        assert kills >= 2

        with engine.connect() as connection:
            ledger = connection.execute(select(InboundMessage.message_id)).scalars().all()
            received = connection.execute(
                select(Message.message_id, Message.ticket_id).where(Message.direction == "in")
            ).all()
            tickets = sorted(connection.execute(select(Ticket.id)).scalars())
            acks = connection.execute(
                select(OutboxMessage.recipient, func.count())
                .where(OutboxMessage.purpose == "acknowledgement")
                .group_by(OutboxMessage.recipient)
            ).all()
        engine.dispose()
        assert len(ledger) == MESSAGES
        assert len(set(ledger)) == MESSAGES  # each once
        assert len(received) == MESSAGES
        originals = sum(1 for m, c in conversation.items() if m == c)
        assert tickets == list(range(1, originals + 1))  # no duplicate ticket, no gap
        assert sum(count for _, count in acks) == originals  # one acknowledgement per ticket
        threaded = partition((f"<{m}>", ticket) for m, ticket in received)
        assert threaded == expected  # no conversation split: as one process threads it
    finally:
        next(database, None)
