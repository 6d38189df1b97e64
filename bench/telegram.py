"""The Telegram channel's round trip: push-to-acknowledgement latency and intake, against a
real `maild run`.

    python bench/telegram.py [--messages 300] [--chats 100] [--rate 20] [--pg]

Starts the tests' Bot API stand-in (tests/botapi.py) on loopback in this process and
`maild run` in its own (own temporary folder and config with `[inbound.telegram]` polling
the stand-in, SQLite by default, a fresh PostgreSQL database on 127.0.0.1:5432 with --pg),
then pushes --messages users' messages from --chats private chats at --rate per second
(which chat writes next is a seeded shuffle; each chat writes about messages / chats
times). A chat's first message opens a ticket and its later ones join it. For a first
message the clock starts at the push and stops when the stand-in records the bot's
sendMessage of its acknowledgement (text `[SIS #N] ...`) to that chat; follow-ups get no
answer in the chat. Intake: an update is taken once the bot asks getUpdates from an offset
past it, which it does only after the message is in the spool and its position recorded.
Prints p50/p90/p99/max of push -> acknowledgement (split at the worker's settling, from the
daemon's log) and of push -> confirmation, the intake rate, the tickets opened (a MISMATCH
line unless one per chat), how the stored messages were settled and the daemon's peak RSS.

The stand-in answers every call at once: the figures are maild's own share of the round
trip (long poll, spool, worker, outbox, sendMessage), not Telegram's, whose network round
trips and per-chat flood limit come on top.

Bounded: the wait for the last acknowledgements and for every message to be stored ends
after --drain-seconds. --tree runs another source tree (for example an export of an older
commit) with the same harness. The SMTP listener is on only because ack_latency's start-up
check looks for it.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ack_latency import (  # noqa: E402
    config_text,
    database,
    free_port,
    percentile,
    running_maild,
    sample_rss,
)
from sqlalchemy import create_engine, text  # noqa: E402

from tests.botapi import TOKEN, BotApiStandIn, user_message  # noqa: E402

FIRST_CHAT = 5_812_300_000
POLL_SECONDS = 0.02
STORED_POLL_SECONDS = 0.1
READY_SECONDS = 60.0
BOT_CONFIG = (
    '[inbound.telegram]\nenabled = true\ntoken_file = "tg.token"\n'
    'api_url = "{url}"\npoll_seconds = 25\n'
)


@dataclass
class TimedStandIn(BotApiStandIn):
    """The tests' stand-in, also noting when (time.time()) each sendMessage was recorded and
    each getUpdates asked, with its offset."""

    sent_at: list[float] = field(default_factory=list)
    asked: list[tuple[float, int]] = field(default_factory=list)

    async def _m_getUpdates(self, params: Any, files: Any) -> Any:
        self.asked.append((time.time(), int(params.get("offset", 0))))
        return await super()._m_getUpdates(params, files)

    async def _m_sendMessage(self, params: Any, files: Any) -> Any:
        response = await super()._m_sendMessage(params, files)  # no await inside: same moment
        now = time.time()
        with self._lock:
            self.sent_at.extend([now] * (len(self.sent) - len(self.sent_at)))
        return response


@dataclass
class Tally:
    """What the pusher saw and the stand-in recorded; times are time.time() seconds (the
    daemon's log, read for the worker's part, has only wall-clock times)."""

    pushed: dict[int, float] = field(default_factory=dict)  # update_id -> its push
    openings: dict[int, int] = field(default_factory=dict)  # chat -> its first update_id
    message_ids: dict[tuple[int, int], int] = field(default_factory=dict)  # (chat, msg) -> upd
    behind_schedule: float = 0.0
    peak_rss: int = 0  # written by ack_latency.sample_rss
    stored: float | None = None  # when every message was in the database
    settled: dict[int, float] = field(default_factory=dict)  # update_id -> settled (log)
    tickets: int = 0
    states: Counter[str] = field(default_factory=Counter)  # inbound messages by state


def chat_order(messages: int, chats: int, seed: int) -> list[int]:
    """The chat of each message in turn: every chat writes, most of them more than once."""
    order = [FIRST_CHAT + index % chats for index in range(messages)]
    random.Random(seed).shuffle(order)
    return order


def push_at_rate(standin: TimedStandIn, order: list[int], rate: float, tally: Tally) -> float:
    """Message i is pushed at start + i / rate; returns the seconds the pushing took."""
    written: Counter[int] = Counter()
    started = time.monotonic()
    for index, chat in enumerate(order):
        lag = time.monotonic() - (started + index / rate)
        if lag < 0:
            time.sleep(-lag)
        written[chat] += 1
        message_id = written[chat]
        if message_id == 1:
            body = f"Не открывается отчёт по складу {chat}\nCubisio 3.2.1, ошибка 0x80004005"
        else:
            body = f"Дополнение {message_id - 1}: после перезапуска службы ошибка та же."
        pushed = time.time()
        update_id = standin.push(user_message(chat, message_id, body))
        tally.pushed[update_id] = pushed
        tally.message_ids[(chat, message_id)] = update_id
        tally.openings.setdefault(chat, update_id)
        tally.behind_schedule = max(tally.behind_schedule, lag)
    return time.monotonic() - started


def acknowledgements(standin: TimedStandIn) -> tuple[dict[int, float], int, int]:
    """(chat -> when its first `[SIS #` text was sent, duplicates, other texts sent)."""
    with standin._lock:
        sent = [(s, at) for s, at in zip(standin.sent, standin.sent_at, strict=False)]
    acked: dict[int, float] = {}
    duplicates = others = 0
    for item, at in sent:
        if item.method != "sendMessage" or not item.text.startswith("[SIS #"):
            others += 1
        elif item.chat_id in acked:
            duplicates += 1
        else:
            acked[item.chat_id] = at
    return acked, duplicates, others


def confirmations(standin: TimedStandIn, tally: Tally) -> dict[int, float]:
    """update_id -> when the bot first asked from an offset past it (after its push)."""
    asked = list(standin.asked)
    confirmed: dict[int, float] = {}
    for update_id, pushed in tally.pushed.items():
        for at, offset in asked:
            if offset > update_id and at >= pushed:
                confirmed[update_id] = at
                break
    return confirmed


def wait_for_bot(standin: TimedStandIn) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not standin.asked:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bot did not ask getUpdates in {READY_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)


def stored_count(engine: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM inbound_messages")).scalar_one())


def drain(standin: TimedStandIn, tally: Tally, engine: Any, seconds: float) -> float | None:
    """Wait for every acknowledgement and confirmation, then for every message stored; when
    (time.time()) the last was stored, or None if --drain-seconds ran out first."""
    deadline = time.monotonic() + seconds
    last = max(tally.pushed)
    while time.monotonic() < deadline:
        done = standin.asked and standin.asked[-1][1] > last
        if done and len(acknowledgements(standin)[0]) >= len(tally.openings):
            break
        time.sleep(POLL_SECONDS)
    while time.monotonic() < deadline:
        if stored_count(engine) >= len(tally.pushed):
            return time.time()
        time.sleep(STORED_POLL_SECONDS)
    return None


def settled_times(log: Path, tally: Tally) -> dict[int, float]:
    """When the worker settled each update (time.time()), from its INFO line in the daemon's
    log (written inside the batch transaction, at most BATCH_SECONDS before the commit)."""
    pattern = re.compile(
        r"^(\S+ \S+),(\d{3}) INFO maild\.pipeline: .*message_id=<?tg\.(\d+)\.(\d+)@"
    )
    settled: dict[int, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = pattern.match(line)
        if match and (key := (int(match[3]), int(match[4]))) in tally.message_ids:
            stamp = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S"))
            settled[tally.message_ids[key]] = stamp + int(match[2]) / 1000
    return settled


def final_counts(engine: Any) -> tuple[int, Counter[str]]:
    """(tickets, inbound messages by state)."""
    with engine.connect() as connection:
        tickets = int(connection.execute(text("SELECT count(*) FROM tickets")).scalar_one())
        rows = connection.execute(
            text("SELECT state, count(*) FROM inbound_messages GROUP BY state")
        ).all()
    return tickets, Counter({str(state): int(count) for state, count in rows})


def query_url(db_url: str, work: Path) -> str:
    # maild reads a relative SQLite path from the config's folder; this process is elsewhere.
    return f"sqlite:///{work / 'maild.db'}" if db_url == "sqlite:///maild.db" else db_url


def run(args: argparse.Namespace) -> int:
    order = chat_order(args.messages, args.chats, args.seed)
    tally = Tally()
    stop = threading.Event()
    standin = TimedStandIn().start()
    try:
        with tempfile.TemporaryDirectory(prefix="maild-tg-") as folder:
            work = Path(folder)
            port = free_port()
            with database(args.pg) as db_url:
                (work / "tg.token").write_text(TOKEN + "\n")
                bot = BOT_CONFIG.format(url=standin.url)
                (work / "maild.toml").write_text(config_text(db_url, port) + bot)
                engine = create_engine(query_url(db_url, work))
                try:
                    with running_maild(work, args.tree, port) as process:
                        rss = threading.Thread(target=sample_rss, args=(process.pid, tally, stop))
                        rss.start()
                        try:
                            wait_for_bot(standin)
                            pushing = push_at_rate(standin, order, args.rate, tally)
                            tally.stored = drain(standin, tally, engine, args.drain_seconds)
                        finally:
                            stop.set()
                            rss.join()
                    tally.tickets, tally.states = final_counts(engine)
                finally:
                    engine.dispose()
                tally.settled = settled_times(work / "maild.log", tally)
                if args.keep_log:
                    (work / "maild.log").replace(args.keep_log)
    finally:
        standin.stop()
    return report(args, standin, tally, pushing)


def spans_line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: none"
    return (
        f"{name}: p50 {statistics.median(values) * 1000:7.1f} ms   "
        f"p90 {percentile(values, 0.9) * 1000:7.1f} ms   "
        f"p99 {percentile(values, 0.99) * 1000:7.1f} ms   "
        f"max {max(values) * 1000:7.1f} ms   ({len(values)})"
    )


def report(args: argparse.Namespace, standin: TimedStandIn, tally: Tally, pushing: float) -> int:
    acked, duplicates, others = acknowledgements(standin)
    confirmed = confirmations(standin, tally)
    settled = tally.settled
    backend = "PostgreSQL" if args.pg else "SQLite"
    count, chats = len(tally.pushed), len(tally.openings)
    print(
        f"{backend}: {count} messages from {chats} chats at {args.rate:g}/s, pushed in "
        f"{pushing:.2f} s ({count / pushing:.1f} msg/s), at most "
        f"{tally.behind_schedule * 1000:.0f} ms behind schedule"
    )
    first = {update: chat for chat, update in tally.openings.items()}
    done = [u for u in first if first[u] in acked]
    spans = {
        "push -> acknowledgement sent": [acked[first[u]] - tally.pushed[u] for u in done],
        "  push -> settled by the worker (log)": [
            settled[u] - tally.pushed[u] for u in first if u in settled
        ],
        "  settled -> acknowledgement sent": [
            acked[first[u]] - settled[u] for u in done if u in settled
        ],
        "push -> update confirmed (in the spool)": [
            confirmed[u] - tally.pushed[u] for u in confirmed
        ],
    }
    for name, values in spans.items():
        print(spans_line(name, values))
    print(intake_line(args, tally, confirmed))
    by_state = ", ".join(f"{state} {n}" for state, n in tally.states.most_common())
    print(f"tickets opened: {tally.tickets} for {chats} chats   stored messages: {by_state}")
    print(
        f"missing acknowledgements: {chats - len(done)}   duplicates: {duplicates}   "
        f"other texts sent: {others}   daemon peak RSS: {tally.peak_rss / 2**20:.0f} MB"
    )
    if tally.tickets != chats:
        print(f"MISMATCH: {tally.tickets} tickets opened for {chats} chats")
        return 1
    return 0


def intake_line(args: argparse.Namespace, tally: Tally, confirmed: dict[int, float]) -> str:
    """Rates from the first push: to the last confirmation, and to every message stored."""
    count, start = len(tally.pushed), min(tally.pushed.values())
    line = f"intake: {len(confirmed)} of {count} confirmed"
    if confirmed:
        span = max(confirmed.values()) - start
        line += f" {span:.2f} s after the first push ({len(confirmed) / span:.1f} msg/s)"
    if tally.stored is None:
        return line + f"; not all stored {args.drain_seconds:g} s after the last push"
    span = tally.stored - start
    return line + f"; all {count} stored in the database by {span:.2f} s ({count / span:.1f} msg/s)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=300, help="messages pushed in all")
    parser.add_argument("--chats", type=int, default=100, help="distinct chats writing")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--seed", type=int, default=19, help="which chat writes when")
    parser.add_argument("--drain-seconds", type=float, default=60.0)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL at 127.0.0.1:5432")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the maild source tree to run")
    parser.add_argument("--keep-log", type=Path, help="keep the daemon's log here")
    args = parser.parse_args()
    if args.rate <= 0 or args.chats < 1 or args.messages < args.chats:
        parser.error("--rate and --chats must be positive, and --messages at least --chats")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
