"""A database that already holds years of support: N tickets with their mail, for growth runs.

    python bench/seed_tickets.py URL --tickets 200000

The schema comes from `maild init` (Alembic); this fills it through SQLAlchemy Core in
chunks: per ticket a requester at one of 2,000 organisations, the client's request, our
acknowledgement, a follow-up (each message with its own Message-ID, the incoming ones with
their ledger rows), one participant, three events and the sent outbox row; 90% of the
tickets closed. The ticket counter is left at N, so new tickets are numbered N+1, N+2...
Used by bench/ingest.py --seed-tickets (built once per size, then copied for each run).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, insert, text  # noqa: E402

from storage.db import make_engine  # noqa: E402
from storage.models import (  # noqa: E402
    Contact,
    Counter,
    Event,
    InboundMessage,
    Message,
    Organization,
    OutboxMessage,
    Participant,
    Ticket,
)

ORGANIZATIONS = 2_000
CONTACTS = 20_000
CHUNK = 5_000
START = datetime(2023, 3, 1, 9, 0, tzinfo=UTC)


def seed_database(engine: Engine, tickets: int, *, seed: int = 7, quiet: bool = False) -> None:
    rng = random.Random(seed)
    started = time.monotonic()
    _seed_people(engine)
    ids = _Ids()
    for first in range(1, tickets + 1, CHUNK):
        last = min(first + CHUNK - 1, tickets)
        rows: dict[Any, list[dict[str, Any]]] = {model: [] for model in _TICKET_TABLES}
        for number in range(first, last + 1):
            _ticket_rows(rng, number, ids, rows)
        with engine.begin() as connection:
            for model in _TICKET_TABLES:
                connection.execute(insert(model), rows[model])
        if not quiet:
            print(f"\rseeded {last:,} / {tickets:,} tickets", end="", file=sys.stderr)
    _finish(engine, tickets)
    if not quiet:
        print(f"\nseeded in {time.monotonic() - started:.0f} s", file=sys.stderr)


_TICKET_TABLES = (Ticket, InboundMessage, Message, OutboxMessage, Participant, Event)


class _Ids:
    def __init__(self) -> None:
        self.message = self.inbound = 0


def _seed_people(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(Organization),
            [{"id": n + 1, "name": f"org{n}.example", "domain": f"org{n}.example",
              "created_at": START} for n in range(ORGANIZATIONS)],
        )  # fmt: skip
        connection.execute(
            insert(Contact),
            [{"id": n + 1, "email": f"user{n}@org{n % ORGANIZATIONS}.example",
              "name": f"User {n}", "organization_id": n % ORGANIZATIONS + 1,
              "created_at": START} for n in range(CONTACTS)],
        )  # fmt: skip


def _ticket_rows(
    rng: random.Random, number: int, ids: _Ids, rows: dict[Any, list[dict[str, Any]]]
) -> None:
    contact = rng.randrange(CONTACTS)
    domain = f"org{contact % ORGANIZATIONS}.example"
    email = f"user{contact}@{domain}"
    opened = START + timedelta(minutes=number * 7 + rng.randrange(5))
    closed = rng.random() < 0.9
    done = opened + timedelta(days=2) if closed else None
    rows[Ticket].append({
        "id": number, "subject": f"Вопрос {number}", "status": "closed" if closed else "open",
        "criticality": "normal", "channel": "email", "language": "ru",
        "organization_id": contact % ORGANIZATIONS + 1, "requester_id": contact + 1,
        "created_at": opened, "updated_at": opened + timedelta(days=2),
        "first_response_at": opened + timedelta(minutes=30), "closed_at": done,
        "resolved_at": done, "close_reason": "solved" if closed else None,
        "checklist": "version",
    })  # fmt: skip
    rows[Participant].append(
        {"ticket_id": number, "email": email, "role": "requester", "added_at": opened}
    )
    for step, (direction, kind) in enumerate(
        (("in", "mail"), ("out", "acknowledgement"), ("in", "mail"))
    ):
        ids.message += 1
        at = opened + timedelta(hours=step)
        header_id = f"seed{ids.message}.{rng.getrandbits(32):x}@" + (
            "sis.ru" if direction == "out" else domain
        )
        inbound = None
        if direction == "in":
            ids.inbound += 1
            inbound = ids.inbound
            rows[InboundMessage].append({
                "id": inbound, "spool_id": f"seed-{inbound}", "source": "seed",
                "dedup_key": f"{rng.getrandbits(128):032x}",
                "raw_sha256": f"{rng.getrandbits(256):064x}", "raw_size": 4000,
                "message_id": header_id, "state": "follow_up" if step else "new_ticket",
                "reason": "seed", "explanation": "", "ticket_id": number,
                "received_at": at, "processed_at": at,
            })  # fmt: skip
        rows[Message].append({
            "id": ids.message, "ticket_id": number, "inbound_id": inbound,
            "direction": direction, "visibility": "public", "kind": kind,
            "message_id": header_id,
            "sender_email": email if direction == "in" else "info@sis.ru", "sender_name": "",
            "recipients": "", "subject": f"[SIS #{number}] Вопрос {number}", "sent_at": at,
            "created_at": at, "text": "Добрый день! Не открывается отчёт.",
            "full_text": "Добрый день! Не открывается отчёт.",
        })  # fmt: skip
        if direction == "out":
            rows[OutboxMessage].append({
                "message_id": ids.message, "purpose": kind, "recipient": email,
                "envelope_from": "", "recipients": email, "raw": b"seeded", "state": "sent",
                "attempts": 1, "created_at": at, "next_attempt_at": at, "sent_at": at,
            })  # fmt: skip
    for kind in ("ticket_created", "acknowledged", "status_changed"):
        rows[Event].append({
            "ticket_id": number, "kind": kind, "reason": "seed", "actor": "maild",
            "detail": {}, "created_at": opened,
        })  # fmt: skip


def _finish(engine: Engine, tickets: int) -> None:
    with engine.begin() as connection:
        connection.execute(insert(Counter), [{"name": "ticket", "value": tickets}])
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in ("organizations", "contacts", "messages", "inbound_messages"):
                statement = (  # our own table names, no input
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"(SELECT max(id) FROM {table}))"
                )
                connection.execute(text(statement))
        connection.execute(text("ANALYZE"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="a database made by `maild init`, still empty")
    parser.add_argument("--tickets", type=int, default=200_000)
    args = parser.parse_args()
    seed_database(make_engine(args.url), args.tickets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
