"""`maild run`: every enabled source, the spool worker and the outbox sender, until a signal.

Threads, not asyncio, for the workers: the pipeline is synchronous SQLAlchemy, and one worker
per process keeps SQLite single-writer. aiosmtpd runs its own event loop in its own thread.
On SIGTERM/SIGINT the listener stops accepting, the worker finishes the message in hand and
commits, and the process exits 0; anything not yet committed is still in the spool.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from maild.app import App
from maild.limits import raise_open_file_limit
from maild.outbound import WriteTurn, deliver_pending
from maild.scheduler import run_due
from maild.sources.imap import ImapSource
from maild.sources.smtp import LmtpController, SpoolHandler, make_controller
from maild.worker import OUTAGE, describe_db_error, drain_spool
from storage.db import is_transient_db_error

log = logging.getLogger(__name__)
IDLE_WAKE_SECONDS = 1.0
OUTBOX_POLL_SECONDS = 5.0
OUTBOX_TURN_SECONDS = 1.0
OUTBOX_TURN_INTERVAL_SECONDS = 0.5
ERROR_BACKOFF_SECONDS = 5.0
STALL_BACKOFF_SECONDS = 0.5
STALL_BACKOFF_MAX_SECONDS = 30.0


class Daemon:
    def __init__(self, app: App) -> None:
        self.app = app
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

    def _work_spool(self) -> bool:
        outcome = drain_spool(self.app.spool, self.app.pipeline, should_stop=self.stopping.is_set)
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
        deliver_pending(
            self.app.sessions, self.app.transport, self.app.clock,
            max_attempts=outbound.max_attempts, retry_seconds=outbound.retry_seconds,
            should_stop=self.stopping.is_set, wait_turn=self._wait_outbox_turn,
        )  # fmt: skip
        return False

    def _work_schedule(self) -> bool:
        """Escalations, reminders and closes that fell due (maild.scheduler); the outbox
        sender is woken when any mail was queued."""
        report = run_due(self.app.config, self.app.sessions, self.app.clock)
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

    def start(self) -> None:
        temporary, orphans = self.app.spool.sweep_leftovers()
        if temporary or orphans:
            log.info(
                "spool: removed %s half-written files and %s sidecars without a message "
                "(left by a crash or a full disk; none of them had been acknowledged)",
                temporary, orphans,
            )  # fmt: skip
        self.threads = [
            threading.Thread(
                target=self._loop, name="spool-worker", daemon=True,
                args=("spool worker", self._work_spool, self.spooled, IDLE_WAKE_SECONDS),
            ),
            threading.Thread(
                target=self._loop, name="outbox-sender", daemon=True,
                args=("outbox sender", self._work_outbox, self.committed, OUTBOX_POLL_SECONDS),
            ),
            threading.Thread(
                target=self._loop, name="scheduler", daemon=True,
                args=("scheduler", self._work_schedule, self.ticked,
                      self.app.config.scheduler_seconds),
            ),
        ]  # fmt: skip
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.spooled.set()
        self.committed.set()
        self.ticked.set()
        for thread in self.threads:
            thread.join()


def run_daemon(app: App) -> int:
    config = app.config
    daemon = Daemon(app)
    raise_open_file_limit()
    served = frozenset(a for a in (config.mailbox.address, config.mailbox.comment_address) if a)
    controllers = [
        make_controller(
            listener,
            SpoolHandler(
                app.spool, served, daemon.wake_worker, app.clock,
                max_recipients=listener.max_recipients,
            ),
        )
        for listener in (config.smtp, config.lmtp)
        if listener is not None
    ]  # fmt: skip
    imap_threads = [
        threading.Thread(
            target=ImapSource(mailbox, app.spool, daemon.wake_worker, daemon.stopping).run,
            name=f"imap-{mailbox.name}", daemon=True,
        )
        for mailbox in config.imap
    ]  # fmt: skip
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    for thread in imap_threads:
        thread.start()
    for controller in controllers:
        controller.start()
        protocol = "LMTP" if isinstance(controller, LmtpController) else "SMTP"
        log.info("listening for %s on %s:%s", protocol, controller.hostname, controller.port)
    log.info("maild running; outbound via %s", config.outbound.transport.split("://")[0])
    stop_requested.wait()
    for controller in controllers:
        controller.stop()
    daemon.stop()
    for thread in imap_threads:
        thread.join()
    app.close()
    log.info("maild stopped")
    return 0
