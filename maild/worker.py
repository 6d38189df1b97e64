"""The worker loop: one message at a time, isolated, so one bad message never stops the rest."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, IntegrityError

from maild.errors import PermanentError, TransientError
from maild.pipeline import Incoming, IngestResult, Pipeline
from storage.spool import Spool

log = logging.getLogger(__name__)


def process_safely(pipeline: Pipeline, incoming: Incoming) -> IngestResult | None:
    """Run the pipeline; quarantine what it cannot take. None means: try again later."""
    try:
        return pipeline.process(incoming)
    except (TransientError, IntegrityError) as error:
        # A concurrent writer took the same row, or a peer is briefly away: the
        # transaction rolled back whole, so a later attempt starts clean.
        log.warning("spool=%s transient failure, will retry: %s", incoming.spool_id, error)
        return None
    except DBAPIError as error:
        if error.connection_invalidated:
            log.warning("spool=%s database connection lost, will retry", incoming.spool_id)
            return None
        log.exception("spool=%s database refused the message", incoming.spool_id)
        return pipeline.quarantine(incoming, "database_error", type(error.orig).__name__)
    except PermanentError as error:
        return pipeline.quarantine(incoming, "permanent_error", str(error))
    except Exception as error:
        log.exception("spool=%s processing failed", incoming.spool_id)
        return pipeline.quarantine(incoming, "processing_error", type(error).__name__)


def drain_spool(spool: Spool, pipeline: Pipeline, *, should_stop: object = None) -> int:
    """Process everything waiting in the spool; returns how many messages were settled."""
    settled = 0
    for spool_id in spool.pending():
        if callable(should_stop) and should_stop():
            break
        entry = spool.read(spool_id)
        result = process_safely(pipeline, Incoming(spool_id, entry.raw, entry.meta.source))
        if result is None:
            break
        spool.remove(spool_id)
        settled += 1
    return settled
