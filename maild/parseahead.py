"""Parsing in other processes while this one writes the database (`maild ingest`).

Parsing a message (and storing its raw bytes and attachments, encrypted) needs nothing from
the database, and the database writer needs the parsed message only when its turn comes:
so a child process parses the next messages while the writer settles the current ones,
and a catch-up or an import uses two cores instead of one. Order, transactions and every
guarantee stay with the writer (`maild.worker`): a child only writes content-addressed
blobs, and the writer fsyncs them with its own before the commit that names them. A
message the child could not parse is parsed again by the writer, which quarantines it
with the usual reason if it fails there too.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from itertools import chain, islice

from maild.config import ArtifactsConfig
from maild.work import Incoming, Preparsed
from parsers.message import parse_message
from parsers.rawmail import RawMail
from parsers.types import ParsedMessage, StoredBlob
from storage.artifacts import ArtifactStore
from storage.crypto import load_key

log = logging.getLogger(__name__)
AHEAD = 64
"""Messages handed to the parsers beyond the one being written: enough to keep a child busy
while a batch commits, few enough that a huge import does not sit in memory."""
WORTH_A_PROCESS = 32
"""A spawned parser takes about 0.6 s to start (imports); below this many messages the
writer parses faster alone."""


def store_raw(store: ArtifactStore, raw: RawMail) -> StoredBlob:
    """The raw message kept first, as it arrived (the same in both processes)."""
    if raw.data is not None:
        return store.put(raw.data)
    with raw.open() as stream:
        return store.put_stream(stream)


def parse_limited(store: ArtifactStore, limits: ArtifactsConfig, raw: RawMail) -> ParsedMessage:
    return parse_message(
        raw,
        store,
        max_attachment_bytes=limits.max_attachment_bytes,
        max_message_bytes=limits.max_message_bytes,
        max_parts=limits.max_parts,
    )


# --- in the child ---

_store: ArtifactStore | None = None
_limits: ArtifactsConfig | None = None


def _start(limits: ArtifactsConfig) -> None:
    global _store, _limits
    _store, _limits = ArtifactStore(limits.path, load_key(limits.key_file)), limits


def _parse(raw: RawMail) -> Preparsed:
    if _store is None or _limits is None:  # pragma: no cover - the initializer always ran
        raise RuntimeError("parser process not started")
    blob = store_raw(_store, raw)
    parsed = parse_limited(_store, _limits, raw)
    return Preparsed(blob, parsed, tuple(_store.take_unsynced()))


# --- in the writer ---


def parse_ahead(
    messages: Iterable[Incoming], limits: ArtifactsConfig, *, workers: int
) -> Iterator[Incoming]:
    """The messages in their order, each with its `preparsed` result when a child managed.
    Fewer than WORTH_A_PROCESS messages are parsed by the writer: starting a process
    costs more than it saves on a few."""
    stream = iter(messages)
    first = list(islice(stream, WORTH_A_PROCESS))
    if workers < 1 or len(first) < WORTH_A_PROCESS:
        yield from first
        yield from stream
        return
    context = multiprocessing.get_context("spawn")  # no inherited database connections
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start,
                             initargs=(limits,)) as pool:  # fmt: skip
        pending: deque[tuple[Incoming, Future[Preparsed] | None]] = deque()
        broken, warned = False, set[str]()
        for incoming in chain(first, stream):
            future = None
            if not broken:
                try:
                    future = pool.submit(_parse, incoming.raw)
                except BrokenProcessPool:
                    broken = True
                    log.warning("parser process gone: parsing in this process from now on")
            pending.append((incoming, future))
            if len(pending) > AHEAD:
                yield _collect(*pending.popleft(), warned)
        while pending:
            yield _collect(*pending.popleft(), warned)


def _collect(incoming: Incoming, future: Future[Preparsed] | None, warned: set[str]) -> Incoming:
    if future is None:
        return incoming
    try:
        return replace(incoming, preparsed=future.result())
    except Exception as error:  # noqa: BLE001 - any failure: the writer parses it again
        # and, if it fails there too, quarantines it with the usual reason and traceback.
        kind = type(error).__name__
        if kind not in warned:
            warned.add(kind)
            log.warning("parsing ahead failed (%s): this process parses such messages", kind)
        return incoming
