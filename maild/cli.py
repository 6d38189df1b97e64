"""The `maild` command line: init, run, ingest, tickets. The only place that exits."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from tqdm import tqdm

from maild import __version__
from maild.app import (
    App,
    initialize,
    is_shared_database,
    open_app,
    read_schema,
    schema_problem,
)
from maild.clock import clock_from_environment
from maild.compose import filesize
from maild.config import Config, load_config
from maild.deadlines import ticket_sla
from maild.errors import ConfigError, MaildError
from maild.logformat import configure_logging
from maild.parseahead import parse_ahead
from maild.sources.files import input_size, iter_messages
from maild.terminal import print_json as _print_json
from maild.terminal import printable
from maild.terminal import say as _say
from maild.timecommands import add_time_commands
from maild.work import Incoming, IngestResult
from maild.worker import batched, process_batch
from storage.export import export_artifact, resolve_artifact
from storage.models import Ticket
from storage.quarantine import list_quarantined, mark_requeued
from storage.retention import find_purge_candidates, purge_artifacts
from storage.spool import new_spool_id
from storage.views import list_tickets, ticket_attachments, ticket_detail

log = logging.getLogger("maild.cli")
T = TypeVar("T")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TRANSIENT_RETRIES = 3
PRIVATE_UMASK = 0o077


class _PrintableFormatter(logging.Formatter):
    """Log lines reach terminals too (stderr, `tail -f`): a control character in a logged value
    is shown as an escape, not obeyed."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def _setup_logging(config: Config, verbose: bool) -> None:
    if config.log_format == "json":
        configure_logging(
            "DEBUG" if verbose else config.log_level, "json", secrets=_secrets(config)
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(
            level=logging.DEBUG if verbose else getattr(logging, config.log_level),
            handlers=[handler],
        )
    if not verbose:
        # aiosmtpd logs every SMTP command at INFO ("mail.log"), Alembic every plugin it loads:
        # one line per message is ours to write, theirs are details for --verbose.
        for noisy in ("mail.log", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _secrets(config: Config) -> list[str]:
    """What the JSON log masks wherever it appears: the IMAP and database passwords."""
    found = []
    for mailbox in config.imap:
        try:
            found.append(mailbox.password())
        except MaildError:
            continue
    password = make_url(config.database.url).password
    if password:
        found.append(str(password))
    return [secret for secret in found if secret]


# --- init ---


def cmd_init(config: Config, args: argparse.Namespace) -> int:
    del args
    initialize(config)
    _say(f"database ready: {config.database.url.split('@')[-1]}")
    _say(f"artifacts: {config.artifacts.path}")
    _say(f"spool: {config.spool.path}")
    return EXIT_OK


# --- run ---


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from maild.daemon import install_stop_handlers, run_daemon

    stop_requested = install_stop_handlers()  # a SIGTERM during start-up stops it cleanly
    current, head = read_schema(config)
    if current is None and not is_shared_database(config.database.url):
        # A first start on SQLite: one process, nothing else can be using the file.
        initialize(config, tighten_trees=False)
    else:
        problem = schema_problem(current, head)
        if problem is not None:
            raise ConfigError(problem)
        initialize(config, tighten_trees=False, migrate=False)
    listen = parse_listen_option(args.metrics_listen) if args.metrics_listen else None
    return run_daemon(open_app(config), args.role, listen, stop_requested)


def parse_listen_option(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--metrics-listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host.strip("[]"), int(port)


# --- status ---


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    """Exit 0 when all is well, 1 when something needs the admin (the problems listed)."""
    from maild.health import collect_status

    app = open_app(config)
    try:
        status = collect_status(
            app.engine, app.sessions, (app.spool, app.shared_spool), app.clock.now(), __version__
        )
    finally:
        app.close()
    if args.json:
        _print_json(status.as_json())
    else:
        _print_status(status)
    return EXIT_FAILED if status.problems else EXIT_OK


def _print_status(status: Any) -> None:
    _say(f"maild {status.version}, schema {status.schema_revision} (code {status.schema_head})")
    _say(f"spool: {status.spool} waiting, oldest {status.spool_oldest_seconds:.0f} s")
    _say(
        f"outbox: {status.outbox} waiting ({status.outbox_retrying} retrying), oldest "
        f"{status.outbox_oldest_seconds:.0f} s; {status.outbox_failed} failed"
    )
    _say(f"processes: {sum(p.alive for p in status.processes)} alive")
    for process in status.processes:
        mark = "up  " if process.alive else "gone"
        _say(f"  {mark} {process.role:<9} {process.name}  last seen {process.seen_at}")
        for name, source in process.state.get("sources", {}).items():
            connected = "connected" if source.get("connected") else "not connected"
            serving = "" if source.get("serving", True) else " (standby)"
            last = source.get("last_message_at") or "none yet"
            _say(f"       {name}: {connected}{serving}, last message {last}")
        scheduler = process.state.get("scheduler")
        if scheduler:
            _say(f"       scheduler: leader={scheduler.get('leader')}, "
                 f"last run {scheduler.get('last_run') or 'not yet'}")  # fmt: skip
    for problem in status.problems:
        _say(f"problem: {problem}")
    if not status.problems:
        _say("ok")


# --- ingest ---


def _ingest_batch(app: App, batch: list[Incoming]) -> list[IngestResult] | None:
    """All of the batch, in as many commits as the worker takes; None if the database stays away."""
    settled: list[IngestResult] = []
    attempt = 0
    while len(settled) < len(batch):
        results = process_batch(app.pipeline, batch[len(settled) :])
        if results is None:
            attempt += 1
            if attempt >= TRANSIENT_RETRIES:
                return None
            time.sleep(0.5 * attempt)
            continue
        settled += results
    return settled


def cmd_ingest(config: Config, args: argparse.Namespace) -> int:
    if args.requeue:
        return _requeue(config, args)
    if not args.paths:
        _say("maild: error: ingest needs PATH... or --requeue ID...", sys.stderr)
        return EXIT_USAGE
    app = open_app(config)
    paths: list[str] = args.paths
    tally: Counter[str] = Counter()
    interactive = sys.stderr.isatty() and not args.json
    if interactive and not getattr(args, "verbose", False):
        # The progress bar and the summary say it all; per-message lines are for -v and logs.
        logging.getLogger("maild").setLevel(logging.WARNING)
    with tqdm(
        total=input_size([p for p in paths if p != "-"]) or None, unit="B", unit_scale=True,
        disable=not interactive, desc="ingest",
    ) as progress:  # fmt: skip
        incoming = parse_ahead(
            (
                Incoming(f"ingest-{new_spool_id()}", item.raw, item.source)
                for item in iter_messages(paths, sys.stdin.buffer)
            ),
            config.artifacts,
            workers=args.parsers,
        )
        for batch in batched(incoming):
            results = _ingest_batch(app, batch)
            progress.update(sum(item.raw.size for item in batch))
            if results is None:
                tally["failed"] += len(batch)
                log.error("%s messages not ingested: the database stayed unavailable", len(batch))
                continue
            for item, result in zip(batch, results, strict=True):
                tally[str(result.action)] += 1
                if args.json:
                    _print_json(result.as_json(item.source))
    if not args.no_deliver:
        delivered = app.deliver_outbox()
        tally["mail_sent"] = delivered.sent
    app.close()
    summary = ", ".join(f"{count} {name}" for name, count in sorted(tally.items()))
    _say(f"ingested: {summary or 'nothing'}", sys.stderr)
    return EXIT_FAILED if tally["failed"] else EXIT_OK


def _requeue(config: Config, args: argparse.Namespace) -> int:
    """Quarantined messages (ids from `maild quarantine list`) through the pipeline again."""
    ids = [int(item) for item in args.paths if item.isdigit()]
    if len(ids) != len(args.paths) or not ids:
        _say("maild: error: --requeue takes quarantine ids (numbers)", sys.stderr)
        return EXIT_USAGE
    app = open_app(config)
    try:
        with app.sessions() as session:
            waiting = list_quarantined(session, ids)
        missing = sorted(set(ids) - {item.id for item in waiting})
        for ledger_id in missing:
            log.error("quarantine id %s: no such quarantined message", ledger_id)
        tally: Counter[str] = Counter(failed=len(missing))
        for item in waiting:
            raw = app.artifacts.read(item.raw_sha256)
            incoming = Incoming.of(f"requeue-{new_spool_id()}", raw, item.source)
            results = _ingest_batch(app, [incoming])
            if results is None:
                tally["failed"] += 1
                log.error("quarantine id %s: the database stayed unavailable", item.id)
                continue
            [result] = results
            tally[str(result.action)] += 1
            with app.sessions.begin() as session:
                mark_requeued(session, item.id, f"{result.action} {result.reason}")
            if args.json:
                _print_json({"requeued": item.id, **result.as_json(item.source)})
        if not args.no_deliver:
            tally["mail_sent"] = app.deliver_outbox().sent
    finally:
        app.close()
    summary = ", ".join(f"{count} {name}" for name, count in sorted(tally.items()) if count)
    _say(f"requeued: {summary or 'nothing'}", sys.stderr)
    return EXIT_FAILED if tally["failed"] else EXIT_OK


def cmd_quarantine_list(config: Config, args: argparse.Namespace) -> int:
    items = _read(config, list_quarantined)
    if args.json:
        for item in items:
            _print_json(item.as_json())
        return EXIT_OK
    for item in items:
        _say(
            f"{item.id:>6}  {item.received_at:%Y-%m-%d %H:%M}  {item.reason:<18} "
            f"{filesize(item.raw_size):>9}  {item.message_id or '-'}\n        {item.explanation}"
        )
    _say(f"{len(items)} quarantined; `maild ingest --requeue ID` tries one again", sys.stderr)
    return EXIT_OK


# --- tickets ---


def _read(config: Config, query: Callable[[Session], T]) -> T:
    """One read-only query against the installation, connection closed afterwards."""
    app = open_app(config)
    try:
        with app.sessions() as session:
            return query(session)
    finally:
        app.close()


def cmd_tickets_list(config: Config, args: argparse.Namespace) -> int:
    rows = _read(
        config, lambda s: list_tickets(s, config.token_prefix, status=args.status, limit=args.limit)
    )
    if args.json:
        _print_json(rows)
        return EXIT_OK
    for row in rows:
        _say(
            f"{row['token']:<12} {row['status']:<9} {row['criticality']:<9} "
            f"{row['updated_at'][:16]:<16}  {row['requester']:<30} {row['subject']}"
        )
    if not rows:
        _say("no tickets")
    return EXIT_OK


def _print_ticket(detail: dict[str, Any]) -> None:
    lines = [
        f"{detail['token']} {detail['subject']}",
        f"status: {detail['status']}   criticality: {detail['criticality']}   "
        f"organization: {detail['organization'] or '-'}",
        f"requester: {detail['requester']['name']} <{detail['requester']['email']}>   "
        f"channel: {detail['channel']}   assignee: {detail['assignee'] or '-'}",
        "participants: " + ", ".join(f"{p['email']} ({p['role']})" for p in detail["participants"]),
    ]
    sla = detail["sla"]
    lines.append(
        f"sla: {sla.get('mode')} ({sla.get('contract') or 'public offer'})"
        + ("   paused: waiting for the client" if sla.get("paused") else "")
    )
    for name, label in (("first_response", "first response"), ("resolution", "resolution")):
        clock = sla.get(name) or {}
        late = "   BREACHED" if clock.get("breached") else ""
        lines.append(
            f"{label}: {clock.get('elapsed_minutes')} of {clock.get('target_minutes')} min"
            f"   due: {clock.get('due') or '-'}{late}"
        )
    if detail["close_reason"]:
        merged = f" into {detail['merged_into']}" if detail["merged_into"] else ""
        lines.append(f"closed: {detail['close_reason']}{merged}")
    for message in detail["messages"]:
        arrow = "<-" if message["direction"] == "in" else "->"
        lines += ["", f"{arrow} {message['date']} {message['sender']} [{message['visibility']}]"]
        lines += ["   " + line for line in message["text"].splitlines()]
        lines += ["   " + _attachment_line(a) for a in message["attachments"]]
    if detail["events"]:
        lines += ["", "events:"]
        for event in detail["events"]:
            why = f": {event['explanation']}" if event["explanation"] else ""
            lines.append(f"  {event['at']} {event['kind']} [{event['reason']}]{why}")
    _say("\n".join(lines))


def _sla_json(config: Config, ticket_id: int) -> dict[str, Any] | None:
    """The SLA clocks of a ticket now (by MAILD_NOW when set), in the calendar's zone."""
    now = clock_from_environment().now()

    def read(session: Session) -> dict[str, Any] | None:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            return None
        zone = ZoneInfo(config.calendar.timezone)
        return ticket_sla(config, session, ticket, now).as_json(zone)

    return _read(config, read)


def cmd_tickets_show(config: Config, args: argparse.Namespace) -> int:
    detail = _read(config, lambda session: ticket_detail(session, args.id, config.token_prefix))
    if detail is None:
        _say(f"maild: no ticket {args.id}", sys.stderr)
        return EXIT_FAILED
    detail["sla"] = {**detail["sla"], **(_sla_json(config, detail["id"]) or {})}
    if args.json:
        _print_json(detail)
    else:
        _print_ticket(detail)
    return EXIT_OK


# --- artifacts ---


def _attachment_line(item: dict[str, Any]) -> str:
    state = (
        f"REFUSED: {item['refused']}" if item["refused"]
        else "purged" if item["purged"]
        else f"sha256 {item['sha256'][:12]}"
    )  # fmt: skip
    flags = f"  !{','.join(item['flags'])}" if item["flags"] else ""
    size = filesize(item["size"])
    return f"#{item['id']} [{item['kind']}] {item['filename']} ({size}, {state}){flags}"


def cmd_artifacts_list(config: Config, args: argparse.Namespace) -> int:
    found = _read(config, lambda session: ticket_attachments(session, args.ticket))
    if found is None:
        _say(f"maild: no ticket {args.ticket}", sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(found)
        return EXIT_OK
    lines = []
    for item in found:
        lines.append(_attachment_line(item))
        archive = item["archive"]
        if archive:
            lines.append(
                f"    {archive['format']}: {archive['entry_count']} entries, "
                f"{filesize(archive['total_size'])} unpacked"
            )
            lines += [
                f"    {'  ' * entry['depth']}{entry['name']} ({filesize(entry['size'])})"
                + ("  !unsafe path" if entry["unsafe_path"] else "")
                for entry in archive["entries"][:50]
            ]
            if archive["entry_count"] > 50:
                lines.append(f"    ... {archive['entry_count'] - 50} more (--json lists them)")
    _say("\n".join(lines) if lines else "no attachments")
    return EXIT_OK


def cmd_artifacts_get(config: Config, args: argparse.Namespace) -> int:
    if args.out == "-" and sys.stdout.isatty():
        # An attachment's bytes are the sender's: on a terminal they are escape sequences.
        _say("maild: error: an attachment is not written to a terminal; use --out FILE "
             "or a pipe", sys.stderr)  # fmt: skip
        return EXIT_USAGE
    app = open_app(config)
    try:
        with app.sessions() as session:
            sha256, filename = resolve_artifact(session, args.id)
        size = export_artifact(app.artifacts, sha256, args.out, force=args.force,
                               progress=sys.stderr.isatty() and args.out != "-")  # fmt: skip
    finally:
        app.close()
    if args.out != "-":
        _say(f"{filename}: {size} bytes written to {args.out} (sha256 verified)", sys.stderr)
    return EXIT_OK


def cmd_artifacts_purge(config: Config, args: argparse.Namespace) -> int:
    days = args.older_than if args.older_than is not None else config.artifacts.retention_days
    if days <= 0:
        _say("maild: artifacts.retention_days is 0: artifacts are kept forever", sys.stderr)
        return EXIT_OK
    app = open_app(config)
    now = app.clock.now()
    cutoff = now - timedelta(days=days)
    try:
        with app.sessions.begin() as session:
            candidates = find_purge_candidates(session, cutoff)
            total = sum(c.size for c in candidates)
            deleted = 0
            if not args.dry_run:
                with tqdm(total=total, unit="B", unit_scale=True, desc="purge",
                          disable=not sys.stderr.isatty() or args.json) as bar:  # fmt: skip
                    deleted = purge_artifacts(
                        session, app.artifacts, candidates, now=now,
                        on_purged=lambda c: bar.update(c.size),
                    )  # fmt: skip
    finally:
        app.close()
    summary = {
        "dry_run": args.dry_run, "cutoff": cutoff.isoformat(), "artifacts": len(candidates),
        "bytes": total, "deleted_files": deleted,
        "tickets": sorted({t for c in candidates for t in c.tickets}),
    }  # fmt: skip
    if args.json:
        _print_json(summary)
    else:
        verb = "would purge" if args.dry_run else "purged"
        _say(
            f"{verb} {len(candidates)} artifacts ({filesize(total)}) of "
            f"{len(summary['tickets'])} tickets closed before {cutoff:%Y-%m-%d}"
        )
    return EXIT_OK


# --- argument parsing ---


def _common() -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", "-c", default=argparse.SUPPRESS, help="TOML config file (or $MAILD_CONFIG)"
    )
    common.add_argument(
        "--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="maild", parents=[common], description="Email-centric support ticketing daemon."
    )
    parser.add_argument("--version", action="version", version=f"maild {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "init", parents=[common], help="create or migrate the database, folders and keys"
    ).set_defaults(handler=cmd_init)
    run = commands.add_parser(
        "run", parents=[common], help="run the daemon: sources, workers, outbox, scheduler"
    )
    run.add_argument(
        "--role", choices=("all", "sources", "workers", "outbox", "scheduler"), default="all",
        help="run one part only (several processes and machines need PostgreSQL)",
    )  # fmt: skip
    run.add_argument(
        "--metrics-listen", metavar="HOST:PORT",
        help="the Prometheus endpoint of this process (instead of [metrics] listen)",
    )  # fmt: skip
    run.set_defaults(handler=cmd_run)
    status = commands.add_parser(
        "status", parents=[common],
        help="processes, sources, spool and outbox, schema: exit 1 when something is wrong",
    )  # fmt: skip
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)
    ingest = commands.add_parser(
        "ingest",
        parents=[common],
        help="push .eml files, Maildirs or mbox files (or - for stdin) through the pipeline",
    )
    ingest.add_argument("paths", nargs="*", metavar="PATH")
    ingest.add_argument(
        "--requeue", action="store_true",
        help="the arguments are quarantine ids (`maild quarantine list`): run them again",
    )  # fmt: skip
    ingest.add_argument("--json", action="store_true", help="one JSON object per message on stdout")
    ingest.add_argument(
        "--no-deliver", action="store_true", help="leave outgoing mail in the outbox for the daemon"
    )
    ingest.add_argument(
        "--parsers", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0, metavar="N",
        help="processes that parse the next messages while this one writes the database, "
        "for 32 messages or more (default: 1 on a machine with more than one CPU, else 0: "
        "parse in this process)",
    )  # fmt: skip
    ingest.set_defaults(handler=cmd_ingest)
    tickets = commands.add_parser("tickets", parents=[common], help="list or show tickets")
    ticket_commands = tickets.add_subparsers(
        dest="tickets_command", required=True, metavar="ACTION"
    )
    listing = ticket_commands.add_parser(
        "list", parents=[common], help="list tickets, newest first"
    )
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--status", choices=["new", "open", "waiting", "resolved", "closed"])
    listing.add_argument("--limit", type=int, default=200)
    listing.set_defaults(handler=cmd_tickets_list)
    show = ticket_commands.add_parser(
        "show", parents=[common], help="show one ticket with its messages"
    )
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_tickets_show)
    _artifact_commands(commands, common)
    quarantine = commands.add_parser(
        "quarantine", parents=[common], help="messages the pipeline could not take"
    )
    quarantine_actions = quarantine.add_subparsers(
        dest="quarantine_command", required=True, metavar="ACTION"
    )
    waiting = quarantine_actions.add_parser(
        "list", parents=[common], help="quarantined messages with their reasons"
    )
    waiting.add_argument("--json", action="store_true")
    waiting.set_defaults(handler=cmd_quarantine_list)
    add_time_commands(commands, common)
    return parser


def _artifact_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    artifacts = commands.add_parser(
        "artifacts", parents=[common], help="list, export or purge stored attachments"
    )
    actions = artifacts.add_subparsers(dest="artifacts_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", parents=[common], help="a ticket's attachments, archive contents and warnings"
    )
    listing.add_argument("ticket", type=int, metavar="TICKET")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_artifacts_list)
    get = actions.add_parser(
        "get", parents=[common], help="decrypt one artifact into a file (or - for stdout)"
    )
    get.add_argument(
        "id", metavar="ID", help="attachment number from `artifacts list`, or sha256 (prefix)"
    )
    get.add_argument("--out", "-o", required=True, metavar="FILE")
    get.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    get.set_defaults(handler=cmd_artifacts_get)
    purge = actions.add_parser(
        "purge", parents=[common],
        help="delete artifacts of tickets closed longer than artifacts.retention_days",
    )  # fmt: skip
    purge.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    purge.add_argument("--older-than", type=int, metavar="DAYS", help="instead of retention_days")
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(handler=cmd_artifacts_purge)


def main(argv: Sequence[str] | None = None) -> int:
    # Mail, attachments and the database are for maild's user alone, whatever umask it was
    # started with (supervisord's is 022): every file and folder any subcommand creates is
    # 0600/0700. Restored on return, for callers that run commands in their own process.
    previous_umask = os.umask(PRIVATE_UMASK)
    try:
        return _run(argv)
    finally:
        os.umask(previous_umask)


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None))
        _setup_logging(config, getattr(args, "verbose", False))
        return int(args.handler(config, args))
    except MaildError as error:
        _say(f"maild: error: {error}", sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
