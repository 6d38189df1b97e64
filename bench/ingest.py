"""Ingest throughput of `maild ingest` against two bare stdlib baselines, on one seeded corpus.

    python bench/ingest.py [--messages 2000] [--seed 42] [--repeat 3] [--out bench/out]

The corpus (~100 MB for 2,000 messages) is 40% new requests and 60% follow-ups (token, or
In-Reply-To only), in utf-8 (base64, QP), windows-1251 (8bit, QP) and koi8-r (8bit), 25% with
attachments and a few 1-5 MB dumps. Each measurement runs in its own child process so peak
RSS is that child's alone; medians of --repeat runs are printed, with maild's ratio to each
baseline, and maild's decisions are checked against the generator's manifest.
"""

from __future__ import annotations

import argparse
import email
import email.header
import email.policy
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

RU_WORDS = [
    "отчёт",
    "не",
    "открывается",
    "ошибка",
    "при",
    "сохранении",
    "проекта",
    "сервер",
    "возвращает",
    "сообщение",
    "пользователь",
    "не",
    "может",
    "войти",
    "в",
    "систему",
    "после",
    "обновления",
    "версии",
    "база",
    "данных",
    "медленно",
    "работает",
    "форма",
    "печати",
    "выгрузка",
    "данных",
    "зависает",
    "браузер",
    "консоль",
    "журнал",
    "приложения",
    "настройки",
    "подключения",
    "лицензия",
    "модуль",
    "интеграции",
]
EN_WORDS = [
    "report",
    "fails",
    "to",
    "open",
    "error",
    "while",
    "saving",
    "project",
    "server",
    "returns",
    "message",
    "user",
    "cannot",
    "log",
    "in",
    "after",
    "upgrade",
    "database",
    "slow",
    "print",
    "form",
    "export",
    "hangs",
    "browser",
    "console",
    "log",
]
CHARSETS = (
    ("utf-8", "base64"),
    ("utf-8", "quoted-printable"),
    ("windows-1251", "8bit"),
    ("windows-1251", "quoted-printable"),
    ("koi8-r", "8bit"),
)
QUOTE_STYLES = ("outlook", "gmail", "thunderbird")


@dataclass(frozen=True)
class Result:
    name: str
    seconds: float
    messages: int
    megabytes: float
    peak_rss_mb: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.megabytes / self.seconds


# --- corpus ---


def _sentence(rng: random.Random, words: tuple[str, ...] | list[str], count: int) -> str:
    return " ".join(rng.choice(words) for _ in range(count)).capitalize() + "."


def _body(rng: random.Random, english: bool) -> str:
    words = EN_WORDS if english else RU_WORDS
    paragraphs = [
        " ".join(_sentence(rng, words, rng.randint(6, 14)) for _ in range(rng.randint(2, 5)))
        for _ in range(rng.randint(1, 4))
    ]
    version = f"Cubisio {rng.randint(2, 4)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}"
    return "\n\n".join([("Hello," if english else "Добрый день!"), *paragraphs, version])


def _quoted(rng: random.Random, previous: str, style: str) -> str:
    quoted = "\n".join("> " + line for line in previous.splitlines())
    if style == "outlook":
        return (
            "\n\n-----Original Message-----\nFrom: SIS Support\nSent: Monday\nTo: client\n\n"
            + previous
        )
    if style == "gmail":
        minute = rng.randint(10, 59)
        return f"\n\nпн, 3 мар. 2026 г. в 10:{minute}, SIS Support <info@sis.ru>:\n{quoted}"
    return f"\n\n03.03.2026 10:{rng.randint(10, 59)}, SIS Support пишет:\n{quoted}"


def _attachments(rng: random.Random, mail: EmailMessage, index: int, dumps_left: list[int]) -> None:
    if dumps_left and rng.random() < 0.04:
        size = dumps_left.pop()
        mail.add_attachment(
            b"MDMP" + rng.randbytes(size - 4),
            maintype="application",
            subtype="octet-stream",
            filename=f"crash{index}.dmp",
        )
        return
    kind = rng.choice(("log", "png", "zip", "xml"))
    if kind == "log":
        lines = [
            f"2026-03-0{rng.randint(1, 9)} 10:{n % 60:02d}:00 ERROR module{n} failed"
            for n in range(rng.randint(200, 3000))
        ]
        mail.add_attachment(
            "\n".join(lines).encode(), maintype="text", subtype="plain", filename="cubisio.log"
        )
    elif kind == "png":
        mail.add_attachment(
            b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randint(20_000, 150_000)),
            maintype="image",
            subtype="png",
            filename=f"screen{index}.png",
        )
    elif kind == "zip":
        mail.add_attachment(
            b"PK\x03\x04" + rng.randbytes(rng.randint(10_000, 200_000)),
            maintype="application",
            subtype="zip",
            filename="workspace.zip",
        )
    else:
        mail.add_attachment(
            b"<config><db host='x'/></config>" * rng.randint(10, 400),
            maintype="application",
            subtype="xml",
            filename="config.xml",
        )


def generate_corpus(
    folder: Path, count: int, seed: int, *, first_ticket: int = 1
) -> dict[str, int]:
    """Write `count` .eml files; returns the manifest Message-ID -> expected ticket number
    (1, 2, ...). Subject tokens name the numbers the tickets will have in a database whose
    next ticket is `first_ticket` (one seeded with first_ticket - 1 tickets)."""
    shift = first_ticket - 1
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    clients = [(f"client{n}@org{n % 40}.ru", f"Клиент {n}") for n in range(150)]
    threads: list[tuple[int, str, str, str, str]] = []  # ticket, sender, name, last id, body
    dumps_left = [rng.randint(1, 5) * 1024 * 1024 for _ in range(15)]
    manifest: dict[str, int] = {}
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for index in range(count):
        charset, encoding = rng.choice(CHARSETS)
        english = charset == "utf-8" and rng.random() < 0.2
        message_id = f"bench{index}.{rng.getrandbits(40):x}@client.example"
        mail = EmailMessage(policy=email.policy.SMTP)
        engineer_answer = False
        if threads and rng.random() < 0.6:
            ticket, address, name, parent, previous = rng.choice(threads)
            body = _body(rng, english) + _quoted(rng, previous, rng.choice(QUOTE_STYLES))
            subject = f"RE: [SIS #{ticket + shift}] вопрос" if rng.random() < 0.67 else "Дополнение"
            mail["In-Reply-To"] = f"<{parent}>"
            mail["References"] = f"<{parent}>"
            if rng.random() < 0.25:  # an engineer answers from a mail client, proven by our MX
                engineer_answer = True
                address, name = rng.choice(ENGINEERS)
                subject = f"Re: [SIS #{ticket + shift}] вопрос"
                mail["Authentication-Results"] = "mx.sis.ru; dkim=pass header.d=sis.ru"
                if rng.random() < 0.2:
                    body = f"#take\n#priority high\n\n{body}"
        else:
            ticket = len(threads) + 1
            address, name = rng.choice(clients)
            body = _body(rng, english)
            subject = _sentence(rng, EN_WORDS if english else RU_WORDS, 5)[:-1]
        mail["From"] = f"{name} <{address}>"
        mail["To"] = "info@sis.ru"
        mail["Subject"] = subject
        mail["Date"] = format_datetime(start + timedelta(minutes=index))
        mail["Message-ID"] = f"<{message_id}>"
        mail["X-Mailer"] = rng.choice(("Microsoft Outlook 16.0", "Thunderbird 115", "Yandex.Mail"))
        mail.set_content(body, charset=charset, cte=encoding) if charset == "utf-8" else _legacy(
            mail, body, charset, encoding
        )
        if rng.random() < 0.25:
            _attachments(rng, mail, index, dumps_left)
        (folder / f"{index:05d}.eml").write_bytes(mail.as_bytes())
        manifest[message_id] = ticket
        if engineer_answer:
            continue  # the client's next message still answers the client's last one
        entry = (ticket, address, name, message_id, body[:400])
        if ticket > len(threads):
            threads.append(entry)
        else:
            threads[ticket - 1] = entry
    manifest_path(folder).write_text(json.dumps(manifest))
    return manifest


def manifest_path(corpus: Path) -> Path:
    name = "manifest.json" if corpus.name == "corpus" else f"{corpus.name}.manifest.json"
    return corpus.parent / name


ENGINEERS = [("ivanov@sis.ru", "Иван Иванов"), ("petrova@sis.ru", "Мария Петрова")]


def _legacy(mail: EmailMessage, body: str, charset: str, encoding: str) -> None:
    """8-bit legacy charsets as Outlook and old clients write them (set_content re-encodes)."""
    payload = body.encode(charset, "replace")
    if encoding == "8bit":
        mail.set_content(payload, maintype="text", subtype="plain", cte="8bit")
    else:
        mail.set_content(payload, maintype="text", subtype="plain", cte="quoted-printable")
    mail.set_param("charset", charset)


# --- the measured runs (each in a child process) ---


def _decode_compat32(message: email.message.Message) -> str:
    text = ""
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if part.get_content_maintype() == "text" and isinstance(payload, bytes):
            text += payload.decode(part.get_content_charset() or "ascii", "replace")
    return text


def _decode_default(message: email.message.EmailMessage) -> str:
    text = ""
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() == "text":
            text += part.get_content()
        else:
            part.get_payload(decode=True)
    return text


def _header(message: email.message.Message, name: str) -> str:
    value = message.get(name, "")
    return str(email.header.make_header(email.header.decode_header(str(value)))) if value else ""


def run_baseline(policy_name: str, corpus: Path, work: Path) -> None:
    database = sqlite3.connect(work / "baseline.db", isolation_level=None)
    database.execute("PRAGMA journal_mode=WAL")
    database.execute("PRAGMA synchronous=FULL")
    database.execute("CREATE TABLE m (id TEXT, subject TEXT, sender TEXT, body TEXT)")
    policy = email.policy.default if policy_name == "policy_default" else email.policy.compat32
    for path in sorted(corpus.iterdir()):
        message = email.message_from_bytes(path.read_bytes(), policy=policy)
        if policy_name == "policy_default":
            row = (
                str(message["Message-ID"]),
                str(message["Subject"]),
                str(message["From"]),
                _decode_default(message),
            )  # type: ignore[arg-type]
        else:
            row = (
                _header(message, "Message-ID"),
                _header(message, "Subject"),
                _header(message, "From"),
                _decode_compat32(message),
            )
        database.execute("BEGIN")
        database.execute("INSERT INTO m VALUES (?, ?, ?, ?)", row)
        database.execute("COMMIT")


# A child forked from this (large) process reports this process's peak RSS as its own on
# Linux; a small wrapper starts the measured command and reports its children's peak instead.
_RSS_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)


def measure_child(arguments: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one command, through the RSS wrapper."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-c", _RSS_WRAPPER, *arguments],
            stdout=output, stderr=subprocess.PIPE, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        if completed.returncode != 0:
            raise RuntimeError(f"{arguments[:4]} exited with {completed.returncode}")
        peak_kb = int(completed.stderr.decode().strip().splitlines()[-1])
        output.seek(0)
        return seconds, peak_kb / 1024, output.read().decode()


def measure_baseline(name: str, corpus: Path, count: int, megabytes: float) -> Result:
    with tempfile.TemporaryDirectory() as work:
        seconds, peak, _ = measure_child(
            [
                sys.executable,
                __file__,
                "--run-baseline",
                name,
                "--corpus",
                str(corpus),
                "--work",
                work,
            ]
        )
    return Result(name, seconds, count, megabytes, peak)


MAILD_CONFIG = """\
[mailbox]
address = "info@sis.ru"
comment_address = "info+comment@sis.ru"
[tokens]
prefix = "SIS"
[database]
url = "sqlite:///maild.db"
[artifacts]
path = "artifacts"
[spool]
path = "spool"
[outbound]
transport = "maildir:outbox"
from = "SIS Support <info@sis.ru>"
[inbound.smtp]
enabled = false
[guard]
autoreply_limit = 1000
[security]
trusted_authserv_ids = ["mx.sis.ru"]
[[engineers]]
email = "ivanov@sis.ru"
name = "Иван Иванов"
[[engineers]]
email = "petrova@sis.ru"
name = "Мария Петрова"
"""


class Database:
    """Where a maild run writes: a fresh SQLite file, or a fresh PostgreSQL database; with
    --seed-tickets, a copy of a seeded one (built once, then copied per run)."""

    def __init__(self, out: Path, seed_tickets: int, pg_url: str | None) -> None:
        self.out, self.seed_tickets, self.pg_url = out, seed_tickets, pg_url
        self._template: str | None = None

    def prepare(self, work: Path, maild: list[str], config: Path) -> None:
        """Leave an initialised (and seeded) database at the config's URL."""
        if self.pg_url is None:
            if not self.seed_tickets:
                subprocess.run([*maild, "init"], capture_output=True, check=True)
                return
            template = self.out / f"seeded-{self.seed_tickets}.db"
            if not template.exists():
                self._build(work, maild, config, template)
            shutil.copyfile(template, work / "maild.db")
            subprocess.run([*maild, "init"], capture_output=True, check=True)  # folders
            return
        name = self.pg_name()
        self._pg(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'
                 + (f' TEMPLATE "{self._pg_template(work, maild, config)}"'
                    if self.seed_tickets else ""))  # fmt: skip
        subprocess.run([*maild, "init"], capture_output=True, check=True)

    def url(self, work: Path) -> str:
        if self.pg_url is None:
            return f"sqlite:///{work / 'maild.db'}"
        return f"{self.pg_url.rsplit('/', 1)[0]}/{self.pg_name()}"

    def pg_name(self) -> str:
        return f"maild_bench_{os.getpid()}"

    def _pg(self, *statements: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(str(self.pg_url), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
        engine.dispose()

    def _pg_template(self, work: Path, maild: list[str], config: Path) -> str:
        name = f"maild_bench_seed_{self.seed_tickets}"
        if self._template is None:
            self._pg(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
            base = str(self.pg_url).rsplit("/", 1)[0]
            seeded = config.read_text().replace(self.url(work), f"{base}/{name}")
            seeded_config = work / "seed.toml"
            seeded_config.write_text(seeded)
            subprocess.run([*maild[:-1], str(seeded_config), "init"], check=True,
                           capture_output=True)  # fmt: skip
            _seed(f"{base}/{name}", self.seed_tickets)
            self._template = name
        return name

    def _build(self, work: Path, maild: list[str], config: Path, template: Path) -> None:
        del config
        subprocess.run([*maild, "init"], capture_output=True, check=True)
        _seed(self.url(work), self.seed_tickets)
        shutil.copyfile(work / "maild.db", template)

    def drop(self) -> None:
        if self.pg_url is not None:
            self._pg(f'DROP DATABASE IF EXISTS "{self.pg_name()}"')


def _seed(url: str, tickets: int) -> None:
    subprocess.run(
        [sys.executable, str(Path(__file__).parent / "seed_tickets.py"), url,
         "--tickets", str(tickets)], check=True,
    )  # fmt: skip


def measure_maild(
    corpus: Path, count: int, megabytes: float, manifest: dict[str, int], database: Database
) -> tuple[Result, int]:
    with tempfile.TemporaryDirectory() as work_name:
        work = Path(work_name)
        config = work / "maild.toml"
        config.write_text(MAILD_CONFIG.replace('"sqlite:///maild.db"', f'"{database.url(work)}"'))
        maild = [sys.executable, "-m", "maild", "--config", str(config)]
        database.prepare(work, maild, config)
        try:
            seconds, peak, stdout = measure_child([*maild, "ingest", "--json", str(corpus)])
        finally:
            database.drop()
    decisions = [json.loads(line) for line in stdout.splitlines()]
    offset = database.seed_tickets  # seeded tickets come first: new ones are numbered after
    mismatches = sum(
        1 for d in decisions if manifest.get(d["message_id"], -offset) + offset != d["ticket"]
    )
    mismatches += count - len(decisions)
    return Result("maild", seconds, count, megabytes, peak), mismatches


def summarise(runs: list[Result]) -> Result:
    def median(field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs)

    first = runs[0]
    return Result(
        first.name, median("seconds"), first.messages, first.megabytes, median("peak_rss_mb")
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--skip-maild", action="store_true")
    parser.add_argument(
        "--seed-tickets", type=int, default=0,
        help="ingest into a database already holding this many tickets (bench/seed_tickets.py)",
    )  # fmt: skip
    parser.add_argument(
        "--pg", metavar="URL",
        help="maild writes to PostgreSQL (a fresh database per run, made through this URL, "
        "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres)",
    )  # fmt: skip
    parser.add_argument("--run-baseline", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_baseline:
        run_baseline(args.run_baseline, args.corpus, args.work)
        return 0
    # After N seeded tickets the corpus's tokens name tickets N+1, N+2...: its own corpus.
    seeded = args.seed_tickets
    corpus = args.out / ("corpus" if not seeded else f"corpus-after-{seeded}")
    if not corpus.exists() or len(list(corpus.iterdir())) != args.messages:
        manifest = generate_corpus(corpus, args.messages, args.seed, first_ticket=seeded + 1)
    else:
        manifest = json.loads(manifest_path(corpus).read_text())
    megabytes = sum(path.stat().st_size for path in corpus.iterdir()) / 1e6
    tickets = len(set(manifest.values()))
    print(
        f"corpus: {args.messages} messages, {megabytes:.1f} MB, {tickets} tickets, "
        f"{args.messages - tickets} follow-ups"
    )
    results: dict[str, list[Result]] = {"policy_default": [], "compat32": [], "maild": []}
    mismatches = 0
    database = Database(args.out, args.seed_tickets, args.pg)
    for _ in range(args.repeat):
        for name in ("policy_default", "compat32"):
            results[name].append(measure_baseline(name, corpus, args.messages, megabytes))
        if not args.skip_maild:
            result, mismatches = measure_maild(corpus, args.messages, megabytes, manifest, database)
            results["maild"].append(result)
    medians = {name: summarise(runs) for name, runs in results.items() if runs}
    print(f"\n{'run':<16}{'msg/s':>10}{'MB/s':>10}{'seconds':>10}{'peak RSS MB':>14}")
    for result in medians.values():
        print(
            f"{result.name:<16}{result.per_second:>10.1f}{result.mb_per_second:>10.1f}"
            f"{result.seconds:>10.1f}{result.peak_rss_mb:>14.0f}"
        )
    if "maild" in medians:
        maild = medians["maild"].per_second
        print(f"\nmaild / compat32 = {maild / medians['compat32'].per_second:.2f}")
        print(f"maild / policy.default = {maild / medians['policy_default'].per_second:.2f}")
        print(f"maild threading mismatches against the manifest: {mismatches}")
    report = {name: {**asdict(r), "per_second": r.per_second} for name, r in medians.items()}
    (args.out / "ingest-results.json").write_text(
        json.dumps({"medians": report, "mismatches": mismatches}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
