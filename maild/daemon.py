"""`maild run`: every enabled source, the spool worker, the outbox sender and the scheduler,
or one of them (`--role`), until a signal.

Threads, not asyncio, for the workers: the pipeline is synchronous SQLAlchemy, and one worker
per process keeps SQLite single-writer. aiosmtpd runs its own event loop in its own thread.
On SIGTERM/SIGINT the listener stops accepting, the worker finishes the batch in hand and
commits, and the process exits 0; anything not yet committed is still in the spool.

On PostgreSQL any number of processes, on any number of machines, may run any roles: the
spool is a table that workers claim rows of (storage.shared_spool), each IMAP mailbox and
the scheduler are served by whichever process holds their advisory lock (storage.locks),
and a standby takes over within seconds of the holder's death. On SQLite one `maild run`
(role `all`) is the whole installation, and a second one is refused.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from maild import __version__
from maild.app import App
from maild.errors import ConfigError
from maild.health import Heartbeat, queue_depths
from maild.limits import raise_open_file_limit
from maild.metrics import Metrics, MetricsServer, QueueDepths
from maild.outbound import WriteTurn, deliver_pending
from maild.scheduler import run_due
from maild.sources.imap import DatabasePosition, ImapSource, UidStateFile
from maild.sources.smtp import LmtpController, SpoolHandler, make_controller
from maild.sources.telegram_bot import BotApi, TelegramSource, link_secret
from maild.sources.web import WebController, WebIntake, csrf_secret
from maild.worker import OUTAGE, describe_db_error, drain_database_spool, drain_spool
from storage.db import is_transient_db_error
from storage.locks import AlreadyRunning, LeaderLock, RunLock

log = logging.getLogger(__name__)
IDLE_WAKE_SECONDS = 1.0
OUTBOX_POLL_SECONDS = 5.0
OUTBOX_TURN_SECONDS = 1.0
OUTBOX_TURN_INTERVAL_SECONDS = 0.5
ERROR_BACKOFF_SECONDS = 5.0
STALL_BACKOFF_SECONDS = 0.5
STALL_BACKOFF_MAX_SECONDS = 30.0
SHARED_POLL_SECONDS = 0.25
"""A worker on the shared spool looks for rows this often when no source of its own process
woke it: the sources may be in another process or on another machine."""
OUTBOX_ALONE_POLL_SECONDS = 1.0
"""An outbox sender without a worker in its process is not woken by commits: it looks for
new rows this often, so that an acknowledgement leaves within a second."""
ROLES = ("all", "sources", "workers", "outbox", "scheduler")


def import_file_spool(app: App) -> int:
    """Messages left in the folder spool (a crash under an older maild, or before the switch
    to PostgreSQL) move into the shared spool under the same spool id, so that the ledger
    still recognises one already stored; each file goes once its row is committed."""
    if app.shared_spool is None:
        return 0
    moved = 0
    for spool_id in app.spool.pending():
        entry = app.spool.read(spool_id)
        if not entry.raw.is_large or entry.raw.path is None:
            raw = entry.raw.read_all()
        else:
            raw = entry.raw.path.read_bytes()
        try:
            app.shared_spool.put(raw, entry.meta, spool_id=spool_id)
        except IntegrityError:
            log.debug("spool %s was moved before; removing the file", spool_id)
        app.spool.remove(spool_id)
        moved += 1
    return moved


class Daemon:
    def __init__(self, app: App, role: str = "all", metrics: Metrics | None = None) -> None:
        self.app = app
        self.role = role
        self.metrics = metrics or Metrics(role, __version__, depths=self.queue_depths)
        app.pipeline.metrics = self.metrics
        self.scheduler_lock = LeaderLock(app.engine, "scheduler")
        self.scheduler_last_run: str | None = None
        self.sources: dict[str, dict[str, object]] = {}
        """What the sources of this process report in the heartbeat."""
        self.imap_sources: dict[str, ImapSource] = {}
        self.telegram: TelegramSource | None = None
        self.stopping = threading.Event()
        self.spooled = threading.Event()
        self.committed = threading.Event()
        self.ticked = threading.Event()
        """Never set but on stop: the scheduler wakes by its interval."""
        self.threads: list[threading.Thread] = []
        self.stall_backoff = STALL_BACKOFF_SECONDS
        # The outbox sender and the spool worker take turns at SQLite's one write lock.
        sqlite = app.engine.dialect.name == "sqlite"
        self.write_turn = WriteTurn(app.sessions) if sqlite else None

    def wake_worker(self) -> None:
        self.spooled.set()

    def spooled_from(self, source: str) -> Callable[[], None]:
        """What a source calls once a message is durable: counted, and the worker woken."""
        counter = self.metrics.messages_received.labels(source=source)

        def spooled() -> None:
            counter.inc()
            self.sources.setdefault(source, {})["last_message_at"] = (
                self.app.clock.now().isoformat()
            )
            self.spooled.set()

        return spooled

    def watch_imap(self, name: str, source: ImapSource) -> None:
        """The heartbeat reads the mailbox's state from the source itself."""
        self.imap_sources[name] = source

    def _loop(
        self, name: str, step: Callable[[], bool], wake: threading.Event, poll: float
    ) -> None:
        """Run `step` until stopping; wait for a wake-up or `poll` seconds when it had no work."""
        while not self.stopping.is_set():
            try:
                busy = step()
            except DBAPIError as error:
                if not is_transient_db_error(error):
                    log.exception("%s: failed, retrying in %ss", name, ERROR_BACKOFF_SECONDS)
                else:  # one line per outage, not a traceback per attempt
                    OUTAGE.failed(0, f"{name}: {describe_db_error(error)}")
                self.stopping.wait(ERROR_BACKOFF_SECONDS)
                continue
            except (SQLAlchemyError, OSError):
                log.exception("%s: failed, retrying in %ss", name, ERROR_BACKOFF_SECONDS)
                self.stopping.wait(ERROR_BACKOFF_SECONDS)
                continue
            except Exception:  # the worker loop is the one catch-all (STYLE.md)
                # A bug outside one message's isolation must not leave the daemon accepting
                # mail (SMTP 250) that no thread processes; the spool keeps it until fixed.
                log.exception("%s: unexpected error, retrying in %ss", name, ERROR_BACKOFF_SECONDS)
                self.stopping.wait(ERROR_BACKOFF_SECONDS)
                continue
            if not busy:
                wake.wait(poll)
                wake.clear()

    def runs(self, part: str) -> bool:
        return self.role in ("all", part)

    def _work_spool(self) -> bool:
        if self.app.shared_spool is not None:
            outcome = drain_database_spool(
                self.app.shared_spool, self.app.pipeline, should_stop=self.stopping.is_set
            )
        else:
            outcome = drain_spool(
                self.app.spool, self.app.pipeline, should_stop=self.stopping.is_set
            )
        if outcome.settled:
            self.committed.set()
        if outcome.stalled:
            # The database refused (a lock held, a server away): the mail waits in the spool;
            # back off so that each arrival does not start another doomed attempt.
            self.stopping.wait(self.stall_backoff)
            self.stall_backoff = min(self.stall_backoff * 2, STALL_BACKOFF_MAX_SECONDS)
        else:
            self.stall_backoff = STALL_BACKOFF_SECONDS
        return False

    def _work_outbox(self) -> bool:
        """Send everything due, a batch per transaction; on SIGTERM the batch in hand is
        delivered and recorded, the rest waits in the outbox. Never busy afterwards: the
        loop sleeps until the worker commits (`committed`) or OUTBOX_POLL_SECONDS pass,
        when retries fall due."""
        outbound = self.app.config.outbound
        counts = deliver_pending(
            self.app.sessions, self.app.transport, self.app.clock,
            max_attempts=outbound.max_attempts, retry_seconds=outbound.retry_seconds,
            should_stop=self.stopping.is_set, wait_turn=self._wait_outbox_turn,
        )  # fmt: skip
        for result, count in (
            ("sent", counts.sent),
            ("retry", counts.retrying),
            ("failed", counts.failed),
        ):
            if count:
                self.metrics.deliveries.labels(result=result).inc(count)
        return False

    def _work_schedule(self) -> bool:
        """Escalations, reminders and closes that fell due (maild.scheduler); the outbox
        sender is woken when any mail was queued. One scheduler runs at a time across every
        process on a shared database (an advisory lock); its sends are once-only besides."""
        if not self.scheduler_lock.acquire():
            return False
        report = run_due(self.app.config, self.app.sessions, self.app.clock)
        self.scheduler_last_run = self.app.clock.now().isoformat()
        for kind, count in report.breaches.items():
            self.metrics.sla_breaches.labels(kind=kind).inc(count)
        if (
            report.escalations
            or report.reminders
            or report.closed
            or report.digests
            or report.reports
        ):
            log.info("scheduler: %s", report.as_json())
            self.committed.set()
        return False

    def _wait_outbox_turn(self) -> None:
        """On SQLite, take the write lock between two batches of a busy spool worker (see
        WriteTurn), at most one turn per OUTBOX_TURN_INTERVAL_SECONDS so that the worker
        is interrupted seldom and the sender's batches grow with the load. An idle worker
        (empty spool) is not waited for, a stalled one at most OUTBOX_TURN_SECONDS.
        PostgreSQL locks rows, not the database: no turn is needed."""
        if self.write_turn is None or not self.app.spool.pending():
            return
        rest = self.write_turn.ended_at + OUTBOX_TURN_INTERVAL_SECONDS - time.monotonic()
        if rest > 0:
            self.stopping.wait(rest)
        self.write_turn.wait(OUTBOX_TURN_SECONDS)

    def heartbeat_state(self) -> dict[str, object]:
        for name, source in self.imap_sources.items():
            entry = self.sources.setdefault(name, {})
            entry["connected"] = source.connected.is_set()
            entry["serving"] = source.leader is None or source.leader.held
        if self.telegram is not None:
            entry = self.sources.setdefault("telegram", {})
            entry["connected"] = self.telegram.connected.is_set()
            entry["serving"] = self.telegram.serving
        state: dict[str, object] = {"version": __version__, "sources": self.sources}
        if self.runs("scheduler"):
            state["scheduler"] = {
                "leader": self.scheduler_lock.held, "last_run": self.scheduler_last_run,
            }  # fmt: skip
        return state

    def queue_depths(self) -> QueueDepths:
        with self.app.sessions() as session:
            depths, _ = queue_depths(
                session, self.app.spool, self.app.shared_spool, self.app.clock.now()
            )
        return depths

    def start(self) -> None:
        if self.runs("workers") or self.runs("sources"):
            self._sweep_spool()
        poll = SHARED_POLL_SECONDS if self.app.shared_spool is not None else IDLE_WAKE_SECONDS
        parts = [
            ("workers", "spool-worker", "spool worker", self._work_spool, self.spooled, poll),
            ("outbox", "outbox-sender", "outbox sender", self._work_outbox, self.committed,
             OUTBOX_POLL_SECONDS if self.runs("workers") else OUTBOX_ALONE_POLL_SECONDS),
            ("scheduler", "scheduler", "scheduler", self._work_schedule, self.ticked,
             self.app.config.scheduler_seconds),
        ]  # fmt: skip
        self.threads = [
            threading.Thread(
                target=self._loop,
                name=thread_name,
                daemon=True,
                args=(label, step, wake, interval),
            )
            for part, thread_name, label, step, wake, interval in parts
            if self.runs(part)
        ]
        for thread in self.threads:
            thread.start()

    def _sweep_spool(self) -> None:
        temporary, orphans = self.app.spool.sweep_leftovers()
        if temporary or orphans:
            log.info(
                "spool: removed %s half-written files and %s sidecars without a message "
                "(left by a crash or a full disk; none of them had been acknowledged)",
                temporary, orphans,
            )  # fmt: skip
        moved = import_file_spool(self.app)
        if moved:
            log.info("spool: %s messages of the spool folder moved into the shared spool", moved)

    def stop(self) -> None:
        self.stopping.set()
        self.spooled.set()
        self.committed.set()
        self.ticked.set()
        for thread in self.threads:
            thread.join()
        self.scheduler_lock.release()


def check_role(app: App, role: str) -> RunLock | None:
    """SQLite is one process's database: one `maild run`, every role in it. Returns the
    lock that keeps a second one out (None on a shared database)."""
    if role not in ROLES:
        raise ConfigError(f"--role {role}: expected one of {', '.join(ROLES)}")
    if app.shared_spool is not None:
        return None
    if role != "all":
        raise ConfigError(
            f"--role {role} needs a shared database: on SQLite one `maild run` (role all) does "
            "everything; set database.url to PostgreSQL to run sources, workers, outbox and "
            "scheduler as separate processes"
        )
    lock = RunLock(app.config.spool.path / "maild-run.lock")
    try:
        lock.acquire()
    except AlreadyRunning as holder:
        raise ConfigError(
            f"another maild run ({holder}) already serves this SQLite database: SQLite keeps "
            "one process; several workers need PostgreSQL (database.url)"
        ) from None
    return lock


def install_stop_handlers(stop_requested: threading.Event | None = None) -> threading.Event:
    """SIGTERM and SIGINT set the returned event; `maild run` installs them before its
    start-up (schema check, folders, listeners), so that a stop asked for meanwhile ends in
    an orderly shutdown with exit 0 once started, not in the default death by signal."""
    event = stop_requested or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("signal %s: stopping", signal.Signals(signum).name)
        event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return event


def run_daemon(
    app: App,
    role: str = "all",
    metrics_listen: tuple[str, int] | None = None,
    stop_requested: threading.Event | None = None,
) -> int:
    config = app.config
    run_lock = check_role(app, role)
    daemon = Daemon(app, role)
    raise_open_file_limit()
    controllers, pollers = _sources(app, daemon) if daemon.runs("sources") else ([], [])
    heartbeat = Heartbeat(app.sessions, app.clock, role, daemon.heartbeat_state)
    listen = metrics_listen or config.metrics_listen
    server = None
    if listen is not None:
        server = MetricsServer(daemon.metrics, f"{listen[0]}:{listen[1]}")
        server.start()
        log.info("metrics on http://%s:%s/metrics", *server.address)
    stop_requested = stop_requested or install_stop_handlers()
    daemon.start()
    for thread in pollers:
        thread.start()
    _start_listeners(controllers, daemon)
    beating = threading.Thread(
        target=heartbeat.run, args=(daemon.stopping,), name="heartbeat", daemon=True
    )
    beating.start()
    log.info(
        "maild running (role %s); outbound via %s", role, config.outbound.transport.split(":")[0]
    )
    stop_requested.wait()
    for controller in controllers:
        controller.stop()
    if daemon.telegram is not None:
        daemon.telegram.api.close()  # a long poll in flight ends now, not in poll_seconds
    if app.bot is not None:
        # An upload to a chat in flight is cancelled, not waited for (up to two minutes):
        # its row is due again after the restart (at-least-once, as SMTP).
        app.bot.close()
    daemon.stop()
    for thread in pollers:
        thread.join()
    beating.join()
    heartbeat.forget()
    if server is not None:
        server.stop()
    app.close()
    if run_lock is not None:
        run_lock.release()
    log.info("maild stopped")
    return 0


def _start_listeners(controllers: list[Any], daemon: Daemon) -> None:
    for controller in controllers:
        controller.start()
        if isinstance(controller, WebController):
            protocol = "WEB"
            log.info("request form on http://%s:%s/", controller.host, controller.port)
        else:
            protocol = "LMTP" if isinstance(controller, LmtpController) else "SMTP"
            log.info("listening for %s on %s:%s", protocol, controller.hostname, controller.port)
        daemon.sources[protocol.lower()] = {"serving": True, "connected": True}


def _sources(app: App, daemon: Daemon) -> tuple[list[Any], list[threading.Thread]]:
    """The listeners (started by `_start_listeners`) and the threads of the polling sources
    (IMAP mailboxes, the Telegram bot)."""
    config = app.config
    served = frozenset(a for a in (config.mailbox.address, config.mailbox.comment_address) if a)
    controllers: list[Any] = []
    for listener in (config.smtp, config.lmtp):
        if listener is None:
            continue
        protocol = "lmtp" if listener is config.lmtp else "smtp"
        handler = SpoolHandler(
            app.inbox, served, daemon.spooled_from(protocol), app.clock,
            max_recipients=listener.max_recipients,
        )  # fmt: skip
        controllers.append(make_controller(listener, handler))
    if config.web is not None:
        intake = WebIntake(
            config, config.web, spool=app.inbox, sessions=app.sessions, clock=app.clock,
            secret=csrf_secret(app.artifacts.key.secret), on_spooled=daemon.spooled_from("web"),
        )  # fmt: skip
        controllers.append(WebController(intake, config.web.host, config.web.port))
    shared = app.shared_spool is not None
    pollers = []
    for mailbox in config.imap:
        name = f"imap:{mailbox.name}"
        positions = (
            DatabasePosition(app.engine, mailbox.name, app.clock)
            if shared
            else UidStateFile(app.spool.root / f"imap-{mailbox.name}.json")
        )
        imap = ImapSource(
            mailbox, app.inbox, daemon.spooled_from(name), daemon.stopping, clock=app.clock,
            positions=positions,
            leader=LeaderLock(app.engine, name) if shared else None,
            on_reconnect=daemon.metrics.imap_reconnects.labels(mailbox=mailbox.name).inc,
        )  # fmt: skip
        daemon.watch_imap(name, imap)
        pollers.append(threading.Thread(target=imap.run, name=f"imap-{mailbox.name}", daemon=True))
    if config.telegram is not None:
        daemon.telegram = TelegramSource(
            config, BotApi(config.telegram.api_url, config.telegram.token()), app.inbox,
            app.engine, clock=app.clock, on_spooled=daemon.spooled_from("telegram"),
            on_queued=daemon.committed.set, stopping=daemon.stopping,
            link_secret=link_secret(app.artifacts.key.secret),
            leader=LeaderLock(app.engine, "telegram") if shared else None,
        )  # fmt: skip
        pollers.append(threading.Thread(target=daemon.telegram.run, name="telegram", daemon=True))
    return controllers, pollers
