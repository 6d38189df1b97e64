"""Acknowledgement latency under sustained SMTP intake, against a real `maild run`.

    python bench/ack_latency.py [--rate 50] [--seconds 60] [--connections 4] [--pg]

Starts `maild run` in its own process (own temporary folder and config, SQLite by default,
a fresh PostgreSQL database on 127.0.0.1:5432 with --pg), sends real SMTP mail to its
listener on loopback at a fixed rate, each message from its own client address, and watches
the Maildir outbox. For each message the clock starts at the listener's 250 and stops when
its acknowledgement (subject `[SIS #N]`, addressed to that client, In-Reply-To its
Message-ID) appears in `outbox/new`. Prints p50/p90/p99/max of that delay, accept latency
(MAIL FROM to the 250 after DATA) p50/p99, the rates reached and the daemon's peak RSS.

Bounded: at most --max-messages messages, and the wait for the last acknowledgements ends
after --drain-seconds. --tree runs another source tree (for example an export of an older
commit) with the same harness.
"""

from __future__ import annotations

import argparse
import email.header
import email.parser
import email.policy
import email.utils
import os
import re
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import MAILD_CONFIG  # noqa: E402

from tests.mailbuilder import build_mail  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "MAILD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
POLL_SECONDS = 0.02
RSS_SAMPLE_SECONDS = 0.2


@dataclass
class Tally:
    """What the senders and the outbox watcher saw; times are time.time() seconds (the
    daemon's log, read for the worker's part, has only wall-clock times)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[int, float] = field(default_factory=dict)  # message -> its 250
    acked: dict[int, float] = field(default_factory=dict)  # message -> its ack in outbox/new
    accept_seconds: list[float] = field(default_factory=list)
    duplicate_acks: int = 0
    refused: int = 0
    behind_schedule: float = 0.0
    peak_rss: int = 0


def config_text(db_url: str, port: int) -> str:
    # The bench installation of bench/ingest.py (two engineers: every new ticket also queues
    # a notice), with the SMTP listener on and the per-address reply limit out of the way.
    text = MAILD_CONFIG.replace('url = "sqlite:///maild.db"', f'url = "{db_url}"')
    text = text.replace("autoreply_limit = 1000", "autoreply_limit = 100000")
    listener = f'[inbound.smtp]\nlisten = "127.0.0.1:{port}"\n'
    return text.replace("[inbound.smtp]\nenabled = false\n", listener)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def database(postgres: bool) -> Iterator[str]:
    if not postgres:
        yield "sqlite:///maild.db"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"maild_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def running_maild(work: Path, tree: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    maild = [sys.executable, "-m", "maild", "--config", str(work / "maild.toml")]
    subprocess.run([*maild, "init"], check=True, capture_output=True, env=env, cwd=tree)
    with (work / "maild.log").open("wb") as log:
        process = subprocess.Popen(
            [*maild, "run"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tree
        )
        try:
            wait_for_listener(port, process)
            yield process
        except RuntimeError:
            print((work / "maild.log").read_text(errors="replace")[-3000:])
            raise
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code != 0:
                print(f"maild run exited with {code}; log: {work / 'maild.log'}")


def wait_for_listener(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"maild run exited with {process.returncode} at start")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=1) as client:
                if client.noop()[0] == 250:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("the SMTP listener did not come up in 60 s")


def client_address(index: int, run: str) -> str:
    return f"c{index}.{run}@org{index % 40}.ru"


def send_at_rate(
    port: int, rate: float, count: int, *, connections: int, run: str, tally: Tally
) -> float:
    """Message i leaves at start + i / rate over one of `connections` kept-open sessions;
    returns the seconds the sending took."""
    next_index = iter(range(count))
    take = threading.Lock()
    started = time.monotonic()

    def sender() -> None:
        client = smtplib.SMTP("127.0.0.1", port, timeout=60)
        try:
            while True:
                with take:
                    index = next(next_index, None)
                if index is None:
                    return
                due = started + index / rate
                lag = time.monotonic() - due
                if lag < 0:
                    time.sleep(-lag)
                address = client_address(index, run)
                raw = build_mail(
                    sender=f"Клиент {index} <{address}>",
                    subject=f"Задержка подтверждения {index}",
                    message_id=f"<m{index}.{run}@bench.example>",
                )
                before = time.perf_counter()
                try:
                    client.sendmail(address, ["info@sis.ru"], raw)
                except smtplib.SMTPException:
                    with take:
                        tally.refused += 1
                    client.close()
                    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
                    continue
                accepted, after = time.time(), time.perf_counter()
                with tally.lock:
                    tally.accepted[index] = accepted
                    tally.accept_seconds.append(after - before)
                    tally.behind_schedule = max(tally.behind_schedule, lag)
        finally:
            client.close()

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def acknowledged_client(path: Path, clients: dict[str, int]) -> int | None:
    """The message an outbox file acknowledges (by its client's address), or None (an
    engineer's notice, another mail)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16384)
    except FileNotFoundError:  # moved to cur/ by a reader: never here
        return None
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    subject = str(email.header.make_header(email.header.decode_header(headers["Subject"] or "")))
    if "[SIS #" not in subject:
        return None
    for _, address in email.utils.getaddresses(headers.get_all("To", [])):
        if address.lower() in clients:
            return clients[address.lower()]
    return None


def watch_outbox(
    outbox: Path, clients: dict[str, int], tally: Tally, stop: threading.Event
) -> None:
    seen: set[str] = set()
    while not stop.is_set():
        now = time.time()
        paths = list(outbox.iterdir()) if outbox.exists() else []
        for path in paths:
            if path.name in seen:
                continue
            seen.add(path.name)
            index = acknowledged_client(path, clients)
            if index is None:
                continue
            with tally.lock:
                if index in tally.acked:
                    tally.duplicate_acks += 1
                else:
                    tally.acked[index] = now
        stop.wait(POLL_SECONDS)


def sample_rss(pid: int, tally: Tally, stop: threading.Event) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            tally.peak_rss = max(tally.peak_rss, process.memory_info().rss)
        except psutil.Error:
            return
        stop.wait(RSS_SAMPLE_SECONDS)


def worker_times(log: Path, run: str) -> dict[int, float]:
    """When the worker settled each message (time.time()), from its INFO line in the
    daemon's log (written inside the batch transaction, at most BATCH_SECONDS before the
    commit)."""
    pattern = re.compile(rf"^(\S+ \S+),(\d{{3}}) INFO maild\.pipeline: .*message_id=m(\d+)\.{run}@")
    settled: dict[int, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = pattern.match(line)
        if match:
            stamp = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S"))
            settled[int(match[3])] = stamp + int(match[2]) / 1000
    return settled


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> int:
    count = min(args.max_messages, round(args.rate * args.seconds))
    run_id = uuid.uuid4().hex[:8]
    clients = {client_address(index, run_id): index for index in range(count)}
    tally = Tally()
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="maild-ack-") as folder:
        work = Path(folder)
        port = free_port()
        with database(args.pg) as db_url:
            (work / "maild.toml").write_text(config_text(db_url, port))
            with running_maild(work, args.tree, port) as process:
                watchers = [
                    threading.Thread(
                        target=watch_outbox, args=(work / "outbox" / "new", clients, tally, stop)
                    ),
                    threading.Thread(target=sample_rss, args=(process.pid, tally, stop)),
                ]
                for thread in watchers:
                    thread.start()
                try:
                    sending = send_at_rate(
                        port,
                        args.rate,
                        count,
                        connections=args.connections,
                        run=run_id,
                        tally=tally,
                    )
                    deadline = time.monotonic() + args.drain_seconds
                    while time.monotonic() < deadline:
                        with tally.lock:
                            if len(tally.acked) >= len(tally.accepted):
                                break
                        time.sleep(0.1)
                finally:
                    stop.set()
                    for thread in watchers:
                        thread.join()
            settled = worker_times(work / "maild.log", run_id)
            if args.keep_log:
                (work / "maild.log").replace(args.keep_log)
    report(args, count, sending, tally, settled)
    return 0


def report(
    args: argparse.Namespace, count: int, sending: float, tally: Tally, settled: dict[int, float]
) -> None:
    accepted = len(tally.accepted)
    backend = "PostgreSQL" if args.pg else "SQLite"
    print(
        f"{backend}: {count} messages at {args.rate:g}/s over {args.connections} connections; "
        f"{accepted} accepted ({accepted / sending:.1f} msg/s), {tally.refused} refused, "
        f"at most {tally.behind_schedule * 1000:.0f} ms behind schedule"
    )
    if tally.accept_seconds:
        print(
            f"accept latency (MAIL FROM to 250): "
            f"p50 {statistics.median(tally.accept_seconds) * 1000:.1f} ms   "
            f"p99 {percentile(tally.accept_seconds, 0.99) * 1000:.1f} ms"
        )
    acked = [i for i in tally.accepted if i in tally.acked]
    spans = {
        "250 -> acknowledgement in the outbox": [tally.acked[i] - tally.accepted[i] for i in acked],
        "  250 -> settled by the worker (log)": [
            settled[i] - tally.accepted[i] for i in tally.accepted if i in settled
        ],
        "  settled -> acknowledgement": [
            tally.acked[i] - settled[i] for i in acked if i in settled
        ],
    }
    for name, values in spans.items():
        if values:
            print(
                f"{name}: p50 {statistics.median(values):6.2f} s   "
                f"p90 {percentile(values, 0.9):6.2f} s   p99 {percentile(values, 0.99):6.2f} s   "
                f"max {max(values):6.2f} s   ({len(values)})"
            )
    print(
        f"missing acknowledgements: {accepted - len(acked)}   "
        f"duplicates: {tally.duplicate_acks}   daemon peak RSS: {tally.peak_rss / 2**20:.0f} MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send")
    parser.add_argument("--max-messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4, help="SMTP sessions kept open")
    parser.add_argument("--drain-seconds", type=float, default=300.0)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL at 127.0.0.1:5432")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the maild source tree to run")
    parser.add_argument("--keep-log", type=Path, help="keep the daemon's log here")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.connections < 1:
        parser.error("--rate, --seconds and --connections must be positive")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
