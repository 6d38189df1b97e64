"""The managers' reports over a seeded database of 100,000 tickets, on SQLite and PostgreSQL.

    python bench/report.py [--tickets 100000] [--backends sqlite,postgres] [--repeat 3] [--keep]

For each backend it writes a maild config, runs `maild init`, and seeds the database with
SQLAlchemy Core bulk inserts (executemany in chunks of 5,000, one transaction per chunk;
random.Random(14), so every run holds the same rows): ~200 organisations, ~2,000 contacts,
5 contracts (mirrored exactly as `open_app` would, so the measured runs write nothing),
8 engineers (mirrored from the config by `maild init`) and N tickets spread over
2025-01-01..2026-10-31 UTC, mostly closed, half under a contract, with their SLA outcomes
settled. PostgreSQL is then analysed, as autovacuum would soon do by itself.

Then `maild report monthly --period 2026-10` and `maild report quarterly --period 2026-Q3`
each run in their own process, as JSON and as HTML with its charts: wall time (median of
--repeat runs) and the peak RSS of that process. The child is started by a small wrapper,
because on Linux a child forked from this (larger) process would report this one's peak as
its own. The JSON is checked (it parses, tickets were created in the period) and so is the
HTML (it holds the charts). PostgreSQL (a database of its own, dropped at the end unless
--keep) is skipped with a message when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, delete, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from maild.config import Config, load_config
from maild.contracts import contract_rows, sla_terms
from storage.db import make_engine
from storage.models import Contact, Contract, Counter, Engineer, Organization, Ticket
from storage.repositories import TICKET_COUNTER

SEED = 14
CHUNK = 5_000
ORGANIZATIONS = 200
CONTACTS = 2_000
CONTRACTS = 5
CONTRACT_ORGANIZATIONS = 100  # the first 100 organisations are under contracts, 20 each
ENGINEERS = 8
FIRST_DAY = datetime(2025, 1, 1, tzinfo=UTC)
LAST_DAY = datetime(2026, 10, 31, tzinfo=UTC)
RECENT = timedelta(days=45)  # tickets this close to the end may still be open
PG_ADMIN_URL = os.environ.get(
    "MAILD_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PG_DATABASE = "maild_bench_report"
ROOT = Path(__file__).resolve().parent.parent
REPORTS = (("monthly", "2026-10"), ("quarterly", "2026-Q3"))
FORMATS = ("json", "html")

WORDS = (
    "отчёт", "не", "открывается", "ошибка", "при", "сохранении", "сервер", "лицензия",
    "выгрузка", "зависает", "модуль", "интеграции", "обновление", "база", "данных", "печать",
)  # fmt: skip
FIRST_NAMES = ("Иван", "Мария", "Пётр", "Анна", "Олег", "Елена", "Сергей", "Ольга")
LAST_NAMES = ("Иванов", "Петрова", "Сидоров", "Кузнецова", "Смирнов", "Попова", "Волков")
PUBLIC_DOMAINS = ("mail.ru", "yandex.ru", "gmail.com")
CONTRACT_NAMES = ("stroymontazh", "uralsteel", "volgaport", "sibenergo", "nevatrans")
STATUSES_OLD = (("closed", 95), ("resolved", 3), ("open", 1), ("waiting", 1))
STATUSES_RECENT = (("closed", 40), ("resolved", 20), ("open", 25), ("waiting", 15))
CRITICALITY_WEIGHTS = (("critical", 3), ("high", 15), ("normal", 70), ("low", 12))
CLOSE_REASONS = (
    ("solved", 60), ("workaround", 15), ("fixed_in_version", 10), ("no_information", 10),
    ("not_reproducible", 5),
)  # fmt: skip

# Starts the measured command and reports the wall seconds and the peak RSS (KB) of that
# child alone (os.wait4), on stderr's last line.
_RSS_WRAPPER = (
    "import os, sys, time; started = time.perf_counter(); "
    "pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ); "
    "_, status, usage = os.wait4(pid, 0); "
    "print(time.perf_counter() - started, usage.ru_maxrss, file=sys.stderr); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


@dataclass(frozen=True, slots=True)
class World:
    """Who the tickets are about: organisations, their people, contracts and engineers."""

    domains: tuple[str, ...]
    contacts: tuple[tuple[str, str, int | None], ...]  # email, name, organisation index
    contract_domains: tuple[tuple[str, ...], ...]
    engineers: tuple[tuple[str, str], ...]  # email, name


@dataclass(frozen=True, slots=True)
class Directory:
    """Database ids of the seeded rows, and the SLA terms each contract promises."""

    contacts: tuple[tuple[int, int | None, int | None], ...]  # contact, organisation, contract
    engineers: tuple[int, ...]
    terms: dict[int | None, dict[str, Any]]  # contract id (None: public offer) -> terms


@dataclass(frozen=True, slots=True)
class Measurement:
    backend: str
    report: str
    fmt: str
    seconds: float
    peak_mb: float


@dataclass(frozen=True, slots=True)
class BackendResult:
    backend: str
    seed_seconds: float
    measurements: tuple[Measurement, ...]


def _weighted(rng: random.Random, table: Sequence[tuple[str, int]]) -> str:
    return rng.choices([name for name, _ in table], [weight for _, weight in table])[0]


def plan_world(rng: random.Random) -> World:
    """The organisations, contacts, contracts and engineers, the same for every backend."""
    domains = tuple(f"org{index:03d}.ru" for index in range(ORGANIZATIONS))
    contacts = []
    for index in range(CONTACTS):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if rng.random() < 0.1:
            contacts.append((f"user{index:04d}@{rng.choice(PUBLIC_DOMAINS)}", name, None))
            continue
        organization = rng.randrange(ORGANIZATIONS)
        contacts.append((f"user{index:04d}@{domains[organization]}", name, organization))
    per_contract = CONTRACT_ORGANIZATIONS // CONTRACTS
    contract_domains = tuple(
        domains[number * per_contract : (number + 1) * per_contract] for number in range(CONTRACTS)
    )
    engineers = tuple(
        (f"engineer{number}@sis.ru", f"{FIRST_NAMES[number]} {LAST_NAMES[number % 7]}")
        for number in range(ENGINEERS)
    )
    return World(domains, tuple(contacts), contract_domains, engineers)


def write_config(folder: Path, url: str, world: World) -> Path:
    """A minimal maild config (as tests/conftest.py writes one) naming the seeded engineers and
    contracts, so `open_app` in each report run finds them mirrored already."""
    body = textwrap.dedent(
        f"""\
        [mailbox]
        address = "info@sis.ru"
        comment_address = "info+comment@sis.ru"
        [tokens]
        prefix = "SIS"
        [database]
        url = "{url}"
        [artifacts]
        path = "artifacts"
        [spool]
        path = "spool"
        [outbound]
        transport = "maildir:outbox"
        from = "SIS Support <info@sis.ru>"
        [inbound.smtp]
        enabled = false
        """
    )
    for email, name in world.engineers:
        body += f'\n[[engineers]]\nemail = "{email}"\nname = "{name}"\n'
    contracts = zip(CONTRACT_NAMES, world.contract_domains, strict=True)
    for number, (name, domains) in enumerate(contracts):
        listed = ", ".join(f'"{domain}"' for domain in domains)
        mode = "24x7" if number % 2 else "business"
        body += textwrap.dedent(
            f"""
            [[contracts]]
            name = "{name}"
            domains = [{listed}]
            mode = "{mode}"
            first_response_hours = {{ critical = 1, high = 2, normal = 4, low = 8 }}
            resolution_hours = {{ critical = 8, high = 24, normal = 72, low = 120 }}
            """
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "maild.toml"
    path.write_text(body, encoding="utf-8")
    return path


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def insert_chunks(engine: Engine, table: Table, rows: Iterator[dict[str, Any]]) -> int:
    """Core executemany, CHUNK rows per statement and one transaction per chunk."""
    count = 0
    for chunk in _chunks(rows):
        with engine.begin() as connection:
            connection.execute(insert(table), chunk)
        count += len(chunk)
    return count


def seed_people(engine: Engine, config: Config, world: World) -> Directory:
    """Organisations, contacts, contracts and the counter; engineers come from `maild init`."""
    made = datetime(2024, 12, 1, tzinfo=UTC)
    insert_chunks(engine, Organization.__table__, (
        {"name": domain, "domain": domain, "created_at": made} for domain in world.domains
    ))  # fmt: skip
    with engine.connect() as connection:
        organizations = dict(connection.execute(select(Organization.domain, Organization.id)).all())
    insert_chunks(engine, Contact.__table__, (
        {"email": email, "name": name, "created_at": made,
         "organization_id": None if org is None else organizations[world.domains[org]]}
        for email, name, org in world.contacts
    ))  # fmt: skip
    rows = contract_rows(config)
    insert_chunks(engine, Contract.__table__, (
        {"name": row.name, "mode": row.mode, "domains": ",".join(sorted(row.domains)),
         "addresses": ",".join(sorted(row.addresses)), "terms": row.terms, "active": True,
         "updated_at": made}
        for row in rows
    ))  # fmt: skip
    with engine.begin() as connection:
        connection.execute(delete(Counter).where(Counter.name == TICKET_COUNTER))
        connection.execute(insert(Counter), [{"name": TICKET_COUNTER, "value": 0}])
        contacts = dict(connection.execute(select(Contact.email, Contact.id)).all())
        contracts = dict(connection.execute(select(Contract.name, Contract.id)).all())
        engineers = tuple(connection.scalars(select(Engineer.id).order_by(Engineer.id)))
    by_domain = {domain: contracts[c.name] for c in config.contracts for domain in c.domains}
    terms: dict[int | None, dict[str, Any]] = {contracts[row.name]: row.terms for row in rows}
    terms[None] = sla_terms(config, None)
    people = tuple(
        (contacts[email], None if org is None else organizations[world.domains[org]],
         None if org is None else by_domain.get(world.domains[org]))
        for email, _, org in world.contacts
    )  # fmt: skip
    return Directory(people, engineers, terms)


def _outcome(
    rng: random.Random, target: int, mode: str, start: datetime
) -> tuple[int, datetime, bool]:
    """Minutes of the SLA clock, the wall-clock moment and whether the target was missed."""
    minutes = max(1, round(rng.lognormvariate(math.log(target * 0.45), 0.8)))
    stretch = rng.uniform(1.5, 4.0) if mode == "business" else 1.0
    return minutes, start + timedelta(minutes=minutes * stretch), minutes > target


def _first_response(
    rng: random.Random, row: dict[str, Any], terms: dict[str, Any]
) -> dict[str, Any]:
    if (row["status"] == "open" and rng.random() < 0.4) or rng.random() < 0.03:
        return {"first_response_at": None, "first_response_minutes": None,
                "first_response_breached": None}  # fmt: skip
    target = terms["first_response_minutes"][row["criticality"]]
    minutes, moment, breached = _outcome(rng, target, terms["mode"], row["created_at"])
    return {"first_response_at": moment, "first_response_minutes": minutes,
            "first_response_breached": breached}  # fmt: skip


def _resolution(rng: random.Random, row: dict[str, Any], terms: dict[str, Any]) -> dict[str, Any]:
    done = {"resolved_at": None, "closed_at": None, "close_reason": None,
            "resolution_minutes": None, "resolution_breached": None}  # fmt: skip
    if row["status"] not in ("resolved", "closed"):
        return done
    target = terms["resolution_minutes"][row["criticality"]]
    minutes, moment, breached = _outcome(rng, target, terms["mode"], row["created_at"])
    answered = row["first_response_at"]
    if answered is not None and moment <= answered:
        moment = answered + timedelta(minutes=rng.randint(1, 120))
    done.update(resolved_at=moment, resolution_minutes=minutes, resolution_breached=breached)
    if row["status"] == "closed":
        done.update(closed_at=moment, close_reason=_weighted(rng, CLOSE_REASONS))
    return done


def ticket_rows(rng: random.Random, count: int, directory: Directory) -> Iterator[dict[str, Any]]:
    """Tickets 1..count in order of creation, evenly over FIRST_DAY..LAST_DAY (whole day)."""
    span = (LAST_DAY + timedelta(days=1) - FIRST_DAY).total_seconds() - 600
    for number in range(1, count + 1):
        created = FIRST_DAY + timedelta(seconds=span * (number - 1) / count + rng.uniform(0, 600))
        contact, organization, contract = rng.choice(directory.contacts)
        terms = directory.terms[contract]
        recent = created > LAST_DAY - RECENT
        row: dict[str, Any] = {
            "id": number, "subject": " ".join(rng.choices(WORDS, k=rng.randint(3, 8))),
            "status": _weighted(rng, STATUSES_RECENT if recent else STATUSES_OLD),
            "criticality": _weighted(rng, CRITICALITY_WEIGHTS), "channel": "email",
            "language": "ru", "organization_id": organization, "requester_id": contact,
            "contract_id": contract, "sla_terms": terms, "created_at": created, "checklist": "",
        }  # fmt: skip
        row.update(_first_response(rng, row, terms))
        row.update(_resolution(rng, row, terms))
        unanswered = row["first_response_at"] is None and rng.random() < 0.5
        row["assignee_id"] = None if unanswered else rng.choice(directory.engineers)
        moments = (row["closed_at"], row["resolved_at"], row["first_response_at"], created)
        row["updated_at"] = max(moment for moment in moments if moment is not None)
        yield row


def seed(config: Config, world: World, rng: random.Random, tickets: int) -> float:
    """Seed the database `maild init` made; returns the seconds the inserts took."""
    engine = make_engine(config.database.url)
    try:
        started = time.perf_counter()
        directory = seed_people(engine, config, world)
        insert_chunks(engine, Ticket.__table__, ticket_rows(rng, tickets, directory))
        with engine.begin() as connection:
            connection.execute(
                Counter.__table__.update()
                .where(Counter.name == TICKET_COUNTER)
                .values(value=tickets)
            )
        seconds = time.perf_counter() - started
        if engine.dialect.name == "postgresql":
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return seconds


def run_measured(arguments: list[str], stdout: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command in its own process, through the wrapper."""
    with stdout.open("wb") as output:
        completed = subprocess.run(
            [sys.executable, "-c", _RSS_WRAPPER, *arguments],
            stdout=output, stderr=subprocess.PIPE, check=False, cwd=ROOT,
        )  # fmt: skip
    lines = completed.stderr.decode(errors="replace").strip().splitlines()
    if completed.returncode != 0:
        tail = "\n".join(lines[-5:])
        raise RuntimeError(f"{' '.join(arguments[3:])} exited with {completed.returncode}:\n{tail}")
    seconds, peak_kb = lines[-1].split()
    return float(seconds), int(peak_kb) / 1024


def check_output(fmt: str, data: bytes) -> None:
    """The JSON parses and counts tickets; the HTML carries its charts inline."""
    if fmt == "json":
        created = json.loads(data)["tickets"]["created"]
        if not created > 0:
            raise RuntimeError(f"the JSON report counts {created} tickets created")
    elif b"data:image/png;base64," not in data:
        raise RuntimeError("the HTML report has no inline chart")


def measure_reports(backend: str, config_path: Path, repeat: int) -> list[Measurement]:
    results = []
    folder = config_path.parent
    for kind, period in REPORTS:
        for fmt in FORMATS:
            target = folder / f"report-{kind}.{fmt}"
            arguments = [sys.executable, "-m", "maild", "--config", str(config_path),
                         "report", kind, "--period", period, "--format", fmt]  # fmt: skip
            if fmt == "html":
                arguments += ["--out", str(target)]
            runs = []
            for _ in range(repeat):
                stdout = folder / "stdout.txt"
                runs.append(run_measured(arguments, stdout))
                check_output(fmt, (stdout if fmt == "json" else target).read_bytes())
            seconds = statistics.median(run[0] for run in runs)
            peak = max(run[1] for run in runs)
            results.append(Measurement(backend, f"{kind} {period}", fmt, seconds, peak))
            print(f"  {kind} {period} {fmt}: " + ", ".join(f"{s:.2f} s" for s, _ in runs)
                  + f"; peak {peak:.0f} MB", flush=True)  # fmt: skip
    return results


def postgres_unreachable(admin_url: str) -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    engine = create_engine(admin_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except OperationalError as error:
        return f"PostgreSQL at {make_url(admin_url).host}:{make_url(admin_url).port}: {error.orig}"
    finally:
        engine.dispose()


def recreate_postgres(admin_url: str, name: str, *, drop_only: bool = False) -> str:
    """Drop (and create afresh) the bench database; returns its URL."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if not drop_only:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def run_backend(backend: str, url: str, folder: Path, args: argparse.Namespace) -> BackendResult:
    """Config, `maild init`, seed, then the timed report runs."""
    rng = random.Random(SEED)
    world = plan_world(rng)
    config_path = write_config(folder, url, world)
    subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config_path), "init"],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    seconds = seed(load_config(config_path), world, rng, args.tickets)
    print(f"{backend}: seeded {args.tickets:,} tickets in {seconds:.1f} s", flush=True)
    measurements = measure_reports(backend, config_path, args.repeat)
    return BackendResult(backend, seconds, tuple(measurements))


def run_postgres(folder: Path, args: argparse.Namespace) -> BackendResult | None:
    reason = postgres_unreachable(args.pg_admin_url)
    if reason:
        print(f"postgres: skipped, server not reachable ({reason})", flush=True)
        return None
    url = recreate_postgres(args.pg_admin_url, PG_DATABASE)
    try:
        return run_backend("postgres", url, folder, args)
    finally:
        if args.keep:
            print(f"postgres: kept database {PG_DATABASE}", flush=True)
        else:
            recreate_postgres(args.pg_admin_url, PG_DATABASE, drop_only=True)


def print_tables(results: list[BackendResult], tickets: int) -> None:
    print(f"\n{tickets:,} tickets; wall time median of runs, peak RSS of the report process\n")
    print("| backend | report | format | median s | peak RSS MB |")
    print("| --- | --- | --- | ---: | ---: |")
    for result in results:
        for m in result.measurements:
            print(f"| {m.backend} | {m.report} | {m.fmt} | {m.seconds:.2f} | {m.peak_mb:.0f} |")
    print("\n| backend | seeding s | tickets/s |")
    print("| --- | ---: | ---: |")
    for result in results:
        rate = tickets / result.seed_seconds
        print(f"| {result.backend} | {result.seed_seconds:.1f} | {rate:,.0f} |")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the databases and folders")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    args.backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = set(args.backends) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_arguments()
    work = Path(tempfile.mkdtemp(prefix="maild-bench-report-"))
    results: list[BackendResult] = []
    try:
        for backend in args.backends:
            if backend == "sqlite":
                url = f"sqlite:///{work / 'sqlite' / 'maild.db'}"
                results.append(run_backend("sqlite", url, work / "sqlite", args))
            else:
                result = run_postgres(work / "postgres", args)
                results += [result] if result else []
    finally:
        if args.keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_tables(results, args.tickets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
