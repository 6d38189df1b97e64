"""Throughput of `maild run --role workers` with 1, 2, 4... worker processes on PostgreSQL.

    python bench/scale.py [--messages 2000] [--workers 1,2,4] [--repeat 3] [--out bench/out]
                          [--pg URL] [--json] [--quiet]

For each worker count and repeat: a fresh PostgreSQL database (made through --pg, dropped
afterwards, also on a failure or Ctrl-C), `maild init`, the first --messages of the
bench/ingest.py corpus (generated when missing) put into the shared spool in corpus order
(not timed), then N `maild run --role workers` processes. The spool table is locked while
they start, so that none claims a row before all of them have written their heartbeat; the
clock starts when the lock is released and stops when `spool_messages` is empty (polled every
0.1 s). The workers are stopped with SIGTERM (each must exit 0), and `inbound_messages` must
hold every message. Medians of --repeat runs: msg/s, the ratio to one worker (issue 18), and
the workers' CPU seconds per message within the timed window (psutil).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
from ingest import MAILD_CONFIG, generate_corpus  # noqa: E402
from sqlalchemy import Connection, Engine, create_engine, make_url, text  # noqa: E402
from tqdm import tqdm  # noqa: E402

from storage.db import make_engine  # noqa: E402
from storage.shared_spool import DatabaseSpool  # noqa: E402
from storage.spool import SpoolMeta  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
POLL_SECONDS = 0.1
HEARTBEAT_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 60.0
STALL_SECONDS = 120.0
"""The spool has not shrunk for this long: the workers are stuck."""
RECEIVED_AT = "2026-12-04T10:00:00+00:00"
LOG_TAIL_LINES = 40


class BenchFailure(Exception):
    """A run that cannot be counted: a worker died or hung, or messages went missing."""


@dataclass(frozen=True)
class Run:
    workers: int
    messages: int
    seconds: float
    cpu_seconds: float
    """The workers' user+system CPU within the timed window."""
    cpu_total_seconds: float
    """The same since each worker started (imports, `open_app`, the wait at the gate)."""
    log_warnings: int
    log_errors: int

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds


@dataclass(frozen=True)
class Summary:
    workers: int
    runs: int
    per_second: float
    seconds: float
    cpu_ms_per_message: float
    ratio: float
    log_warnings: int
    log_errors: int


# --- the database ---


def admin(pg_url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE) on the --pg database."""
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def database_url(pg_url: str, name: str) -> str:
    return make_url(pg_url).set(database=name).render_as_string(hide_password=False)


def write_config(work: Path, url: str) -> Path:
    config = MAILD_CONFIG.replace('"sqlite:///maild.db"', json.dumps(url))
    config = config.replace('"artifacts"', json.dumps(str(work / "artifacts")))
    config = config.replace('"spool"', json.dumps(str(work / "spool")))
    config = config.replace('"maildir:outbox"', json.dumps(f"maildir:{work / 'outbox'}"))
    path = work / "maild.toml"
    path.write_text(config)
    return path


def spool_corpus(engine: Engine, folder: Path, files: Sequence[Path]) -> None:
    """Every message into the shared spool, in corpus order, one committed row each."""
    spool = DatabaseSpool(engine, folder)
    spool.ensure()
    meta = SpoolMeta(source="smtp", received_at=RECEIVED_AT)
    for path in files:
        spool.put(path.read_bytes(), meta)


def count(connection: Connection, table: str) -> int:
    return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


# --- the workers ---


class Workers:
    """N `maild run --role workers` processes, each with its own log file."""

    def __init__(self, config: Path, number: int, work: Path) -> None:
        self.logs = [work / f"worker-{index}.log" for index in range(number)]
        self.processes: list[subprocess.Popen[bytes]] = []
        command = [sys.executable, "-m", "maild", "--config", str(config), "run"]
        for log in self.logs:
            with log.open("wb") as output:
                self.processes.append(
                    subprocess.Popen(
                        [*command, "--role", "workers"],
                        cwd=ROOT,
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        self.handles = [psutil.Process(process.pid) for process in self.processes]

    @property
    def pids(self) -> set[int]:
        return {process.pid for process in self.processes}

    def check_alive(self) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                raise BenchFailure(
                    f"worker {index} (pid {process.pid}) exited with {process.returncode} "
                    f"before the end\n{self.tail(index)}"
                )

    def wait_heartbeats(self, connection: Connection) -> None:
        """Until every worker's pid is in `maild_processes` (its signal handlers are in)."""
        deadline = time.monotonic() + HEARTBEAT_TIMEOUT_SECONDS
        while True:
            self.check_alive()
            rows = connection.execute(
                text("SELECT pid FROM maild_processes WHERE role = 'workers'")
            ).scalars()
            if self.pids <= set(rows):
                return
            if time.monotonic() > deadline:
                raise BenchFailure(
                    f"no heartbeat from every worker in {HEARTBEAT_TIMEOUT_SECONDS} s"
                )
            time.sleep(POLL_SECONDS)

    def cpu_seconds(self) -> float:
        """User+system CPU of the workers (and of any children they have) so far."""
        total = 0.0
        for handle in self.handles:
            for process in (handle, *handle.children(recursive=True)):
                try:
                    times = process.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
        return total

    def stop(self) -> None:
        """SIGTERM to every worker; each must exit 0 within STOP_TIMEOUT_SECONDS."""
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        failures = []
        for index, process in enumerate(self.processes):
            try:
                code = process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                failures.append(f"worker {index} did not stop in {STOP_TIMEOUT_SECONDS} s")
                continue
            if code != 0:
                failures.append(f"worker {index} exited with {code}\n{self.tail(index)}")
        if failures:
            raise BenchFailure("\n".join(failures))

    def kill(self) -> None:
        """Cleanup after a failure: SIGTERM, then SIGKILL for any still running."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(STOP_TIMEOUT_SECONDS / 4)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def tail(self, index: int) -> str:
        lines = self.logs[index].read_text(errors="replace").splitlines()
        return f"--- {self.logs[index].name} (last lines) ---\n" + "\n".join(
            lines[-LOG_TAIL_LINES:]
        )

    def log_lines(self, *markers: str) -> list[str]:
        found = []
        for log in self.logs:
            found += [
                f"{log.name}: {line}"
                for line in log.read_text(errors="replace").splitlines()
                if any(marker in line for marker in markers)
            ]
        return found


def drain(connection: Connection, workers: Workers, total: int, quiet: bool) -> None:
    """Poll the spool until it is empty; a progress bar of the rows gone, on stderr."""
    moved_at, last = time.monotonic(), total
    with tqdm(total=total, unit="msg", file=sys.stderr, disable=quiet, leave=False) as bar:
        while True:
            waiting = count(connection, "spool_messages")
            bar.update(total - waiting - bar.n)
            if waiting == 0:
                return
            workers.check_alive()
            if waiting != last:
                moved_at, last = time.monotonic(), waiting
            elif time.monotonic() - moved_at > STALL_SECONDS:
                tails = "\n".join(workers.tail(i) for i in range(len(workers.logs)))
                raise BenchFailure(f"{waiting} rows unclaimed for {STALL_SECONDS} s\n{tails}")
            time.sleep(POLL_SECONDS)


# --- one run ---


def measure(pg_url: str, files: Sequence[Path], number: int, quiet: bool) -> Run:
    name = f"maild_scale_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = database_url(pg_url, name)
    with tempfile.TemporaryDirectory(prefix="maild-scale-") as work_name:
        work = Path(work_name)
        try:
            admin(pg_url, f'CREATE DATABASE "{name}"')
            return _measure(url, work, files, number, quiet)
        finally:
            admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _measure(url: str, work: Path, files: Sequence[Path], number: int, quiet: bool) -> Run:
    config = write_config(work, url)
    init = [sys.executable, "-m", "maild", "--config", str(config), "init"]
    done = subprocess.run(init, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchFailure(f"maild init exited with {done.returncode}\n{done.stderr}")
    engine = make_engine(url)
    watch = create_engine(url, isolation_level="AUTOCOMMIT")
    workers: Workers | None = None
    try:
        spool_corpus(engine, work / "spool", files)
        with watch.connect() as connection, engine.connect() as gate:
            # EXCLUSIVE blocks the workers' SELECT ... FOR UPDATE, not the plain count(*).
            gate.execute(text("LOCK TABLE spool_messages IN EXCLUSIVE MODE"))
            workers = Workers(config, number, work)
            workers.wait_heartbeats(connection)
            if count(connection, "spool_messages") != len(files):
                raise BenchFailure("a worker claimed rows before the clock started")
            cpu_before = workers.cpu_seconds()
            started = time.perf_counter()
            gate.commit()
            drain(connection, workers, len(files), quiet)
            seconds = time.perf_counter() - started
            cpu_after = workers.cpu_seconds()
            workers.stop()
            stored = count(connection, "inbound_messages")
        if stored != len(files):
            raise BenchFailure(f"inbound_messages holds {stored} rows, not {len(files)}")
        return Run(
            number, len(files), seconds, cpu_after - cpu_before, cpu_after,
            len(workers.log_lines(" WARNING ")),
            len(workers.log_lines(" ERROR ", " CRITICAL ", "Traceback")),
        )  # fmt: skip
    finally:
        if workers is not None:
            report_log(workers, quiet)
            workers.kill()
        engine.dispose()
        watch.dispose()


def report_log(workers: Workers, quiet: bool) -> None:
    """Warnings and errors in the workers' logs go to stderr (the work folder is removed),
    with --quiet too: they are what a benchmark run must not hide."""
    del quiet
    lines = workers.log_lines(" WARNING ", " ERROR ", " CRITICAL ", "Traceback")
    if lines:
        shown = "\n".join(f"  {line}" for line in lines[:20])
        more = f"\n  ... {len(lines) - 20} more" if len(lines) > 20 else ""
        print(f"worker log, {len(lines)} warning/error lines:\n{shown}{more}", file=sys.stderr)


# --- the report ---


def summarise(runs: dict[int, list[Run]]) -> list[Summary]:
    rates = {number: statistics.median(r.per_second for r in done) for number, done in runs.items()}
    base = rates.get(1) or rates[min(rates)]
    return [
        Summary(
            workers=number,
            runs=len(done),
            per_second=rates[number],
            seconds=statistics.median(r.seconds for r in done),
            cpu_ms_per_message=statistics.median(1000 * r.cpu_seconds / r.messages for r in done),
            ratio=rates[number] / base,
            log_warnings=sum(r.log_warnings for r in done),
            log_errors=sum(r.log_errors for r in done),
        )
        for number, done in runs.items()
    ]


def print_table(summaries: list[Summary], messages: int, repeat: int) -> None:
    base = "1 worker" if any(s.workers == 1 for s in summaries) else "the fewest workers"
    print(
        f"{messages} messages, medians of {repeat}; ratio to {base}; "
        f"this machine has {os.cpu_count()} CPUs"
    )
    print(
        f"\n{'workers':>8}{'msg/s':>10}{'ratio':>8}{'seconds':>10}{'CPU ms/msg':>12}{'log W/E':>10}"
    )
    for s in summaries:
        print(
            f"{s.workers:>8}{s.per_second:>10.1f}{s.ratio:>8.2f}{s.seconds:>10.1f}"
            f"{s.cpu_ms_per_message:>12.1f}{f'{s.log_warnings}/{s.log_errors}':>10}"
        )


def corpus_files(out: Path, messages: int) -> list[Path]:
    corpus = out / "corpus"
    if not corpus.exists() or len(list(corpus.iterdir())) < messages:
        generate_corpus(corpus, max(messages, 2000), 42)
    return sorted(corpus.iterdir())[:messages]


def worker_counts(value: str) -> list[int]:
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected e.g. 1,2,4") from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected e.g. 1,2,4")
    return numbers


def _terminated(signum: int, frame: FrameType | None) -> None:
    del frame
    raise KeyboardInterrupt(signal.Signals(signum).name)  # the runs' cleanup still happens


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=worker_counts, default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument(
        "--pg", default=PG_URL, metavar="URL",
        help=f"a PostgreSQL URL to make the fresh databases through (default {PG_URL})",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log notes")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    files = corpus_files(args.out, args.messages)
    runs: dict[int, list[Run]] = {number: [] for number in args.workers}
    try:
        for repeat in range(args.repeat):
            for number in args.workers:
                if not args.quiet:
                    print(f"run {repeat + 1}/{args.repeat}: {number} workers", file=sys.stderr)
                runs[number].append(measure(args.pg, files, number, args.quiet))
    except BenchFailure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the databases were dropped", file=sys.stderr)
        return 130
    summaries = summarise(runs)
    if args.json:
        print(json.dumps(
            {
                "messages": len(files), "repeat": args.repeat, "cpu_count": os.cpu_count(),
                "medians": [asdict(s) for s in summaries],
                "runs": [{**asdict(r), "per_second": r.per_second}
                         for done in runs.values() for r in done],
            },
            indent=2,
        ))  # fmt: skip
    else:
        print_table(summaries, len(files), args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
