"""Where `maild ingest` spends its time: cProfile, SQL statements and ORM flushes per message.

    python bench/profile_ingest.py [--messages 600] [--out bench/out] [--pg URL] [--stats FILE]

Ingests the first --messages of the bench/ingest.py corpus (generated when missing) in this
process, through the same App and batches as `maild ingest`, into a fresh database and
artifact store. Prints the statement and flush counts per message, the statements grouped
by their SQL (the hot path's queries), and the top of the profile by cumulative time.
`--stats FILE` keeps the raw cProfile data for snakeviz/flameprof; a flame graph is made with
py-spy (`py-spy record -o bench/flame.svg -- python -m maild ingest ...`, see bench/README).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import MAILD_CONFIG, generate_corpus  # noqa: E402
from sqlalchemy import Engine, event  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from maild.app import initialize, open_app  # noqa: E402
from maild.config import load_config  # noqa: E402
from maild.pipeline import Pipeline  # noqa: E402
from maild.work import Incoming  # noqa: E402
from maild.worker import batched, process_batch  # noqa: E402
from parsers.rawmail import RawMail  # noqa: E402


class StatementCounter:
    """Counts every statement the engine executes, by its SQL shape, and every ORM flush."""

    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()
        self.examples: dict[str, tuple[str, Any]] = {}
        self.flushes = 0

    def attach(self, engine: object) -> None:
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(Session, "after_flush", self._flush)

    def _statement(self, _conn, _cursor, statement, parameters, *_rest) -> None:  # type: ignore[no-untyped-def]
        shape = re.sub(r"\s+", " ", statement).strip()[:110]
        self.statements[shape] += 1
        self.examples.setdefault(shape, (statement, parameters))

    def _flush(self, _session, _context) -> None:  # type: ignore[no-untyped-def]
        self.flushes += 1

    @property
    def total(self) -> int:
        return sum(self.statements.values())


def query_plans(engine: Engine, counter: StatementCounter) -> list[tuple[str, list[str]]]:
    """The plan of each statement shape that reads rows, with the parameters it first ran with."""
    sqlite = engine.dialect.name == "sqlite"
    plans = []
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        for shape, (statement, parameters) in counter.examples.items():
            if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
                continue
            cursor = raw.cursor()  # type: ignore[union-attr]
            cursor.execute(
                ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, parameters
            )
            rows = cursor.fetchall()
            plans.append((shape, [str(row[-1] if sqlite else row[0]) for row in rows]))
        connection.rollback()
    return plans


def ingest_all(pipeline: Pipeline, incoming: list[Incoming]) -> Counter[str]:
    """Every message through the worker's batches, as `maild ingest` does; the actions."""
    actions: Counter[str] = Counter()
    for batch in batched(incoming):
        while batch:
            results = process_batch(pipeline, batch)
            if results is None:
                raise SystemExit("the database refused a batch")
            actions.update(str(result.action) for result in results)
            batch = batch[len(results) :]
    return actions


def corpus_files(out: Path, messages: int, corpus: Path | None = None) -> list[Path]:
    if corpus is not None:  # given: used as it is
        return sorted(corpus.iterdir())[:messages]
    corpus = out / "corpus"
    if not corpus.exists() or len(list(corpus.iterdir())) < messages:
        generate_corpus(corpus, max(messages, 2000), 42)
    return sorted(corpus.iterdir())[:messages]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--pg", help="a PostgreSQL URL (an empty database) instead of SQLite")
    parser.add_argument(
        "--corpus", type=Path,
        help="messages to ingest (default: the bench/ingest.py corpus in --out; with --seeded "
        "use the one bench/ingest.py --seed-tickets N made: corpus-after-N)",
    )  # fmt: skip
    parser.add_argument("--stats", type=Path, help="keep the cProfile data in this file")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-profile", action="store_true", help="count statements only")
    parser.add_argument(
        "--seeded", type=Path,
        help="start from a copy of this SQLite database (bench/seed_tickets.py) instead of "
        "an empty one",
    )  # fmt: skip
    parser.add_argument(
        "--plans", action="store_true",
        help="print the query plan of every statement shape that reads (EXPLAIN QUERY PLAN / "
        "EXPLAIN), to check that the hot path uses an index",
    )  # fmt: skip
    args = parser.parse_args()
    files = corpus_files(args.out, args.messages, args.corpus)
    with tempfile.TemporaryDirectory() as work:
        text = MAILD_CONFIG.replace(
            '"sqlite:///maild.db"', json.dumps(args.pg or f"sqlite:///{work}/maild.db")
        )
        text = text.replace('"artifacts"', json.dumps(f"{work}/artifacts"))
        text = text.replace('"spool"', json.dumps(f"{work}/spool"))
        text = text.replace('"maildir:outbox"', json.dumps(f"maildir:{work}/outbox"))
        (Path(work) / "maild.toml").write_text(text)
        config = load_config(Path(work) / "maild.toml")
        if args.seeded:
            shutil.copyfile(args.seeded, Path(work) / "maild.db")
        initialize(config)
        app = open_app(config)
        counter = StatementCounter()
        counter.attach(app.engine)
        incoming = [
            Incoming(f"profile-{n}", RawMail.of(path.read_bytes()), "profile")
            for n, path in enumerate(files)
        ]
        profile = cProfile.Profile()
        started, cpu_started = time.perf_counter(), time.process_time()
        if not args.no_profile:
            profile.enable()
        actions = ingest_all(app.pipeline, incoming)
        app.deliver_outbox()
        profile.disable()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        plans = query_plans(app.engine, counter) if args.plans else []
        app.close()
    count = len(files)
    print("actions: " + ", ".join(f"{n} {action}" for action, n in sorted(actions.items())))
    if actions["quarantined"]:
        print("WARNING: messages were quarantined: the figures below are not comparable")
    print(
        f"{count} messages in {seconds:.1f} s ({count / seconds:.1f} msg/s"
        f"{', under cProfile' if not args.no_profile else ''}), "
        f"CPU {1000 * cpu / count:.2f} ms per message"
    )
    print(
        f"SQL statements: {counter.total} ({counter.total / count:.1f} per message); "
        f"ORM flushes: {counter.flushes} ({counter.flushes / count:.1f} per message)"
    )
    print("\nstatements by shape (per message):")
    for shape, number in counter.statements.most_common(30):
        print(f"{number / count:7.2f}  {shape}")
    for shape, plan in plans:
        print(f"\n{shape}\n    " + "\n    ".join(plan))
    if not args.no_profile:
        if args.stats:
            profile.dump_stats(args.stats)
        print()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
