"""IMAP intake: APPEND-to-acknowledgement latency with IDLE, and ingest throughput.

    python bench/imap_latency.py [--latency-messages 200] [--throughput-messages 2000]

Starts a throwaway Dovecot on a loopback port (as the tests do; needs root and
dovecot-imapd) and `maild run` watching its INBOX with IDLE, acknowledgements going to a
Maildir. Latency: one message at a time is APPENDed and the clock stops when its
acknowledgement file appears in the outbox; p50 and p99 are printed. Throughput: maild is
stopped, N messages of the seeded bench corpus are APPENDed, maild is started, and the
clock runs until every message has left the INBOX and been settled by the pipeline.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import MAILD_CONFIG, generate_corpus  # noqa: E402

from tests.dovecot import Dovecot  # noqa: E402
from tests.mailbuilder import build_mail  # noqa: E402

# The same installation as bench/ingest.py, with SMTP off and the IMAP table added below.
CONFIG = MAILD_CONFIG.replace("autoreply_limit = 1000", "autoreply_limit = 100000")


def wait(predicate, timeout: float = 600.0, step: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(step)


def settled_count(database: Path) -> int:
    try:
        with sqlite3.connect(database, timeout=30) as connection:
            return int(connection.execute("SELECT count(*) FROM inbound_messages").fetchone()[0])
    except sqlite3.Error:
        return 0


def start_maild(work: Path) -> subprocess.Popen[bytes]:
    log = (work / "maild.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "maild", "--config", str(work / "maild.toml"), "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait(lambda: "connected" in (work / "maild.log").read_text(), timeout=60)
    return process


def stop_maild(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure_latency(dovecot: Dovecot, work: Path, count: int) -> list[float]:
    outbox = work / "outbox" / "new"
    process = start_maild(work)
    latencies = []
    try:
        for index in range(count):
            before = len(list(outbox.iterdir())) if outbox.exists() else 0
            raw = build_mail(
                sender=f"lat{index}@org{index % 13}.ru",
                subject=f"Задержка {index}",
                message_id=f"<lat{index}@bench>",
            )
            started = time.perf_counter()
            dovecot.append(raw)
            wait(
                lambda before=before: outbox.exists() and len(list(outbox.iterdir())) > before,
                timeout=60,
            )
            latencies.append(time.perf_counter() - started)
    finally:
        stop_maild(process)
    return latencies


def measure_throughput(dovecot: Dovecot, work: Path, count: int) -> tuple[float, float]:
    corpus = work / "corpus"
    generate_corpus(corpus, count, seed=7)
    already = settled_count(work / "maild.db")
    with dovecot.client() as client:
        for path in sorted(corpus.iterdir()):
            client.append("INBOX", path.read_bytes())
    megabytes = sum(path.stat().st_size for path in corpus.iterdir()) / 1e6
    started = time.perf_counter()
    process = start_maild(work)
    try:
        wait(lambda: settled_count(work / "maild.db") >= already + count, timeout=3600, step=0.2)
        seconds = time.perf_counter() - started
    finally:
        stop_maild(process)
    return count / seconds, megabytes / seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-messages", type=int, default=200)
    parser.add_argument("--throughput-messages", type=int, default=2000)
    args = parser.parse_args()
    dovecot = Dovecot()
    dovecot.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            (work / "maild.toml").write_text(CONFIG + dovecot.config_toml())
            subprocess.run(
                [sys.executable, "-m", "maild", "--config", str(work / "maild.toml"), "init"],
                check=True,
                capture_output=True,
            )
            latencies = measure_latency(dovecot, work, args.latency_messages)
            print(f"APPEND -> acknowledgement in the outbox, {len(latencies)} messages, IDLE:")
            p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
            worst = max(latencies)
            print(
                f"  p50 {p50 * 1000:.0f} ms   p99 {p99 * 1000:.0f} ms   max {worst * 1000:.0f} ms"
            )
            per_second, mb_per_second = measure_throughput(dovecot, work, args.throughput_messages)
            count = args.throughput_messages
            print(
                f"IMAP ingest of {count} messages: {per_second:.1f} msg/s, {mb_per_second:.1f} MB/s"
            )
    finally:
        dovecot.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
