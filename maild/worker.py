"""The worker loop: messages in batches, each isolated, so one bad message never stops the rest.

A batch is one database transaction with a savepoint per message (group commit): a message
that fails rolls back to its savepoint and is quarantined, the others commit together. The
commit, and the fsync of the artifacts it references, are paid once per batch. Nothing is
acknowledged or removed from the spool before that commit. This is the one place with a
catch-all (Mailman's `_one_iteration`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from maild.errors import PermanentError, TransientError
from maild.pipeline import Pipeline
from maild.work import Incoming, IngestAction, IngestResult
from parsers.rawmail import RawMail
from storage.db import is_transient_db_error
from storage.shared_spool import ClaimedMessage, DatabaseSpool
from storage.spool import Spool, SpoolMeta

log = logging.getLogger(__name__)
BATCH_MESSAGES = 64
BATCH_BYTES = 32 * 1024 * 1024
BATCH_SECONDS = 0.25


class BatchAborted(Exception):
    """The whole transaction is lost (connection gone, lock held, concurrent writer): retry
    the batch later; every message in it stays in the spool."""

    def __init__(self, reason: str, *, contention: bool = False) -> None:
        super().__init__(reason)
        self.contention = contention
        """Another worker wrote the same row first (a first contact, organisation or
        counter): nothing is wrong with the database, and trying again at once succeeds."""


class OutageLog:
    """One WARNING when the database goes away and one INFO when it is back, whatever the
    number of messages and retries in between (a traceback per message would bury the log)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None
        self.retries = 0

    def failed(self, waiting: int, reason: str) -> None:
        with self.lock:
            if self.since is None:
                self.since, self.retries = time.monotonic(), 0
                log.warning(
                    "database unavailable (%s): %s messages stay in the spool and are retried",
                    reason, waiting,
                )  # fmt: skip
            else:
                self.retries += 1
                log.debug("database still unavailable (%s), retry %s", reason, self.retries)

    def succeeded(self) -> None:
        with self.lock:
            if self.since is None:
                return
            log.info(
                "database available again after %.0f s and %s retries",
                time.monotonic() - self.since, self.retries,
            )  # fmt: skip
            self.since = None

    @property
    def is_down(self) -> bool:
        return self.since is not None


OUTAGE = OutageLog()


def describe_db_error(error: BaseException) -> str:
    """The driver's own words, first line only: never the SQL or its parameters (mail text)."""
    original = error.orig if isinstance(error, DBAPIError) else error
    first_line = (str(original).strip().splitlines() or [""])[0][:200]
    return f"{type(original).__name__}: {first_line}" if first_line else type(original).__name__


def _run_isolated(pipeline: Pipeline, session: Session, incoming: Incoming) -> IngestResult:
    started = time.monotonic()
    result = _settle_one(pipeline, session, incoming)
    if pipeline.metrics is not None:
        pipeline.metrics.decisions.labels(action=str(result.action), reason=result.reason).inc()
        pipeline.metrics.pipeline_seconds.observe(time.monotonic() - started)
    return result


def _settle_one(pipeline: Pipeline, session: Session, incoming: Incoming) -> IngestResult:
    try:
        with session.begin_nested():
            return pipeline.run_stages(session, incoming)
    except IntegrityError as error:
        # A concurrent writer (another worker, a `maild ingest`) took the same row first.
        raise BatchAborted(describe_db_error(error), contention=True) from error
    except TransientError as error:
        # A peer is briefly away.
        raise BatchAborted(describe_db_error(error)) from error
    except DBAPIError as error:
        if is_transient_db_error(error):
            # A lock, deadlock, full disk or lost link: the message is fine, the moment is not.
            raise BatchAborted(describe_db_error(error)) from error
        log.exception("spool=%s database refused the message", incoming.spool_id)
        reason, detail = "database_error", describe_db_error(error)
    except PermanentError as error:
        reason, detail = "permanent_error", str(error)
    except Exception as error:
        log.exception("spool=%s processing failed", incoming.spool_id)
        reason, detail = "processing_error", type(error).__name__
    with session.begin_nested():
        return pipeline.record_quarantine(session, incoming, reason, detail)


def process_batch(pipeline: Pipeline, batch: Sequence[Incoming]) -> list[IngestResult] | None:
    """Settle a prefix of the batch in one commit; None means nothing was committed.

    The transaction is closed after BATCH_SECONDS even if messages remain, so that the
    results of a busy worker reach the disk (and the source) steadily, and a daemon that
    keeps being killed still makes progress. The caller hands the rest in again.
    """
    started = time.monotonic()
    results: list[IngestResult] = []
    try:
        with pipeline.sessions.begin() as session:
            for incoming in batch:
                results.append(_run_isolated(pipeline, session, incoming))
                if time.monotonic() - started > BATCH_SECONDS:
                    break
            pipeline.artifacts.sync()
    except BatchAborted as error:
        if error.contention:
            log.info("another writer wrote a row of this batch first; it is retried: %s", error)
        else:
            OUTAGE.failed(len(batch), str(error))
        return None
    except TransientError as error:
        OUTAGE.failed(len(batch), str(error))
        return None
    except DBAPIError as error:
        # Raised outside a message's savepoint (BEGIN, COMMIT, connecting): the batch waits.
        OUTAGE.failed(len(batch), describe_db_error(error))
        return None
    OUTAGE.succeeded()
    return results


def process_safely(pipeline: Pipeline, incoming: Incoming) -> IngestResult | None:
    """One message in its own transaction."""
    results = process_batch(pipeline, [incoming])
    return results[0] if results else None


def batched(
    items: Iterable[Incoming], *, size_of: Callable[[Incoming], int] = lambda i: i.raw.size
) -> Iterator[list[Incoming]]:
    """Groups of at most BATCH_MESSAGES messages and about BATCH_BYTES bytes."""
    batch: list[Incoming] = []
    total = 0
    for item in items:
        batch.append(item)
        total += size_of(item)
        if len(batch) >= BATCH_MESSAGES or total >= BATCH_BYTES:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


@dataclass(frozen=True, slots=True)
class DrainOutcome:
    settled: int
    stalled: bool
    """The database refused a batch: the caller backs off before trying again."""


def drain_spool(
    spool: Spool, pipeline: Pipeline, *, should_stop: Callable[[], bool] | None = None
) -> DrainOutcome:
    """Process everything waiting in the spool; says how many messages were settled."""
    settled = 0
    pending = iter(spool.pending())
    while chunk := list(islice(pending, BATCH_MESSAGES)):
        if should_stop is not None and should_stop():
            break
        batch = [_from_spool(spool, spool_id) for spool_id in chunk]
        for group in batched(batch):
            while group:
                results = process_batch(pipeline, group)
                if results is None:
                    return DrainOutcome(settled, stalled=True)
                for incoming in group[: len(results)]:
                    spool.remove(incoming.spool_id)
                settled += len(results)
                group = group[len(results) :]
    return DrainOutcome(settled, stalled=False)


CLAIM_MESSAGES = 8
"""A worker on the shared spool claims this many at a time and commits them together, but
commits at once after a message that opened a ticket: the ticket counter's row lock is held
until the commit, and every other worker's next new ticket waits for it (bench/scale.py:
without that commit 2 workers ran 1.02x one, with it 1.56x)."""
CONTENTION_RETRIES = 5
"""Batches retried at once after another worker's write collided with ours; past that the
collision is treated as an outage (backed off), so that a bug cannot spin."""


def drain_database_spool(
    spool: DatabaseSpool, pipeline: Pipeline, *, should_stop: Callable[[], bool] | None = None
) -> DrainOutcome:
    """Claim, process and delete rows of the shared spool until none is claimable; each
    batch is one transaction, so a worker killed at any point leaves its rows to another."""
    settled = contended = 0
    while should_stop is None or not should_stop():
        done: list[ClaimedMessage] = []
        started = time.monotonic()
        try:
            with pipeline.sessions.begin() as session:
                claimed = spool.claim(session, CLAIM_MESSAGES)
                for item in claimed:
                    entry = spool.load(session, item)
                    result = _run_isolated(
                        pipeline, session, _incoming(entry.spool_id, entry.raw, entry.meta)
                    )
                    done.append(item)
                    if result.action == IngestAction.NEW_TICKET:
                        break  # commit now: the ticket counter stays locked until we do
                    if time.monotonic() - started > BATCH_SECONDS:
                        break
                spool.settle(session, done)
                pipeline.artifacts.sync()
        except BatchAborted as error:
            if error.contention and contended < CONTENTION_RETRIES:
                contended += 1
                log.info("another worker wrote a row of this batch first; retrying: %s", error)
                continue
            OUTAGE.failed(len(done), str(error))
            return DrainOutcome(settled, stalled=True)
        except TransientError as error:
            OUTAGE.failed(len(done), str(error))
            return DrainOutcome(settled, stalled=True)
        except DBAPIError as error:
            OUTAGE.failed(len(done), describe_db_error(error))
            return DrainOutcome(settled, stalled=True)
        OUTAGE.succeeded()
        contended = 0
        spool.forget_files(done)
        settled += len(done)
        if not claimed:
            break
    return DrainOutcome(settled, stalled=False)


def _from_spool(spool: Spool, spool_id: str) -> Incoming:
    entry = spool.read(spool_id)
    return _incoming(spool_id, entry.raw, entry.meta)


def _incoming(spool_id: str, raw: RawMail, meta: SpoolMeta) -> Incoming:
    # Only maild's own listener saw the peer itself; an IMAP source's "peer" is the IMAP server.
    if meta.source not in ("smtp", "lmtp"):
        return Incoming(spool_id, raw, meta.source)
    return Incoming(spool_id, raw, meta.source, peer=meta.peer, envelope_from=meta.envelope_from)
