"""IMAP intake (imapclient): fetch, spool durably, and only then move out of the folder.

One `ImapSource` per configured mailbox, each in its own thread. The order per message is
FETCH (BODY.PEEK[], so nothing is marked before we have it) -> `Spool.put` (fsynced) ->
record the UID -> MOVE to `processed_folder` (or COPY + \\Deleted + EXPUNGE where MOVE is
missing). A crash between any two steps at worst fetches the message again, and the
pipeline's ledger turns the second copy into a `duplicate`. Unparsable mail is spooled
too (the pipeline quarantines it with a reason) and moved to `quarantine_folder` so the
mailbox shows it. Any network or server error: log, back off, reconnect; never exit.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from maild.clock import Clock
from maild.config import ImapMailboxConfig
from maild.errors import ConfigError
from storage.fsutil import write_durably
from storage.locks import LeaderLock
from storage.shared_spool import load_imap_position, save_imap_position
from storage.spool import Spool, SpoolMeta, SpoolWriter

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_SECONDS = 30
MAX_BACKOFF_SECONDS = 60
IDLE_CHECK_SECONDS = 1.0
NETWORK_ERRORS = (IMAPClientError, OSError, socket.timeout, ssl.SSLError, EOFError)
TAKEOVER_SECONDS = 2.0
"""How often a standby process tries to take a mailbox whose lock another process holds."""
LEADER_CHECK_SECONDS = 5.0


class PositionStore(Protocol):
    def load(self) -> UidState | None: ...
    def save(self, state: UidState) -> None: ...


def is_unparsable(raw: bytes) -> bool:
    """Mail no one could answer or thread: no header block with a From or Sender in it."""
    headers = BytesHeaderParser().parsebytes(raw[: 256 * 1024])
    return not (headers.get("from") or headers.get("sender"))


@dataclass(slots=True)
class UidState:
    """Where this mailbox got to: survives restarts, reset when UIDVALIDITY changes."""

    uidvalidity: int
    last_uid: int


class DatabasePosition:
    """The mailbox's position in the shared database: a process on another machine that
    takes the mailbox over continues from it."""

    def __init__(self, engine: Engine, mailbox: str, clock: Clock) -> None:
        self.engine = engine
        self.mailbox = mailbox
        self.clock = clock

    def load(self) -> UidState | None:
        position = load_imap_position(self.engine, self.mailbox)
        return UidState(*position) if position else None

    def save(self, state: UidState) -> None:
        save_imap_position(
            self.engine, self.mailbox, state.uidvalidity, state.last_uid, self.clock.now()
        )


class UidStateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> UidState | None:
        try:
            data = json.loads(self.path.read_text())
            return UidState(int(data["uidvalidity"]), int(data["last_uid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, state: UidState) -> None:
        payload = json.dumps({"uidvalidity": state.uidvalidity, "last_uid": state.last_uid})
        write_durably(self.path, payload.encode(), self.path.parent)


class ImapSource:
    def __init__(
        self,
        config: ImapMailboxConfig,
        spool: SpoolWriter,
        on_spooled: Callable[[], None],
        stopping: threading.Event,
        *,
        clock: Clock,
        positions: PositionStore | None = None,
        leader: LeaderLock | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        """The one clock (MAILD_NOW when set): arrival times in the spool and the heartbeat."""
        self.spool = spool
        self.on_spooled = on_spooled
        self.stopping = stopping
        if positions is None:
            if not isinstance(spool, Spool):
                raise TypeError("a shared spool needs a position store of its own")
            positions = UidStateFile(spool.root / f"imap-{config.name}.json")
        self.state_file = positions
        self.leader = leader
        """Held while this process serves the mailbox; None: always ours (one process)."""
        self.on_reconnect = on_reconnect
        self.connected = threading.Event()
        self.last_message_at: datetime | None = None
        self.connections = 0

    # --- connection ---

    def connect(self) -> IMAPClient:
        config = self.config
        context = ssl.create_default_context(cafile=config.ca_file)
        client = IMAPClient(
            config.host, port=config.port, ssl=config.ssl, ssl_context=context,
            timeout=CONNECT_TIMEOUT_SECONDS,
        )  # fmt: skip
        if config.starttls:
            client.starttls(context)
        client.login(config.user, config.password())
        for folder in (config.processed_folder, config.quarantine_folder):
            if not client.folder_exists(folder):
                client.create_folder(folder)
        return client

    def run(self) -> None:
        """Until stopped: connect, drain, wait (IDLE or poll); on any error back off and retry."""
        backoff = 1.0
        while not self.stopping.is_set():
            if self.leader is not None and not self.leader.acquire():
                # Another process serves this mailbox; take it over when its lock goes.
                self.stopping.wait(TAKEOVER_SECONDS)
                continue
            try:
                client = self.connect()
            except ConfigError:
                log.exception("imap %s: configuration problem, retrying", self.config.name)
                self.stopping.wait(MAX_BACKOFF_SECONDS)
                continue
            except NETWORK_ERRORS as error:
                log.warning(
                    "imap %s: cannot connect: %s; retry in %.0fs", self.config.name, error, backoff
                )
                self.stopping.wait(backoff)
                backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
                continue
            backoff = 1.0
            log.info(
                "imap %s: connected to %s:%s", self.config.name, self.config.host, self.config.port
            )
            self.connections += 1
            if self.connections > 1 and self.on_reconnect is not None:
                self.on_reconnect()
            self.connected.set()
            try:
                self._serve(client)
            except NETWORK_ERRORS as error:
                log.warning("imap %s: connection lost: %s", self.config.name, error)
            except SQLAlchemyError as error:
                # The shared spool is away: nothing was moved that is not stored; wait.
                log.warning(
                    "imap %s: database unavailable, retry in %.0fs: %s",
                    self.config.name, MAX_BACKOFF_SECONDS / 4, type(error).__name__,
                )  # fmt: skip
                self.stopping.wait(MAX_BACKOFF_SECONDS / 4)
            finally:
                self.connected.clear()
                _close_quietly(client)

    def _serve(self, client: IMAPClient) -> None:
        idle = self.config.idle and client.has_capability("IDLE")
        while not self.stopping.is_set() and self._still_ours():
            uidvalidity = int(client.select_folder(self.config.folder)[b"UIDVALIDITY"])
            self.drain(client, uidvalidity)
            if idle:
                self._idle(client)
            else:
                self.stopping.wait(self.config.poll_seconds)

    def _still_ours(self) -> bool:
        """False once the mailbox lock is lost (the database connection dropped): another
        process may serve the mailbox now, so this one lets go and queues for it again."""
        if self.leader is None or self.leader.acquire():
            return True
        log.warning("imap %s: mailbox lock lost; disconnecting", self.config.name)
        return False

    # --- one pass over the folder ---

    def drain(self, client: IMAPClient, uidvalidity: int) -> int:
        state = self.state_file.load()
        if state is None or state.uidvalidity != uidvalidity:
            if state is not None:
                log.warning(
                    "imap %s: UIDVALIDITY changed %s -> %s; re-reading the folder (copies "
                    "already taken are recognised as duplicates)",
                    self.config.name, state.uidvalidity, uidvalidity,
                )  # fmt: skip
            state = UidState(uidvalidity, 0)
            self.state_file.save(state)
        taken = 0
        for uid in sorted(client.search(["ALL"])):
            if self.stopping.is_set():
                break
            if uid > state.last_uid:
                self._take(client, uid, uidvalidity)
                state.last_uid = uid
                self.state_file.save(state)
                taken += 1
            else:
                # Spooled before a crash that came before the move: only the move is left.
                self._move(client, uid, self.config.processed_folder)
        return taken

    def _take(self, client: IMAPClient, uid: int, uidvalidity: int) -> None:
        response = client.fetch([uid], [b"BODY.PEEK[]"])
        raw = response.get(uid, {}).get(b"BODY[]")
        if not isinstance(raw, bytes):
            log.warning("imap %s: uid %s vanished before it was fetched", self.config.name, uid)
            return
        meta = SpoolMeta(
            source=f"imap:{self.config.name}/{self.config.folder}/{uidvalidity}/{uid}",
            received_at=self.clock.now().isoformat(),
            peer=self.config.host,
        )
        unparsable = is_unparsable(raw)
        spool_id = self.spool.put(raw, meta)
        del raw, response
        self.last_message_at = self.clock.now()
        self.on_spooled()
        folder = self.config.quarantine_folder if unparsable else self.config.processed_folder
        self._move(client, uid, folder)
        log.debug(
            "imap %s: uid %s spooled as %s, moved to %s", self.config.name, uid, spool_id, folder
        )

    def _move(self, client: IMAPClient, uid: int, folder: str) -> None:
        if client.has_capability("MOVE"):
            client.move([uid], folder)
            return
        client.copy([uid], folder)
        client.delete_messages([uid])
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])
        else:
            client.expunge()

    def _idle(self, client: IMAPClient) -> None:
        """IDLE until the server reports new mail, the re-issue deadline, or a stop."""
        client.idle()
        waited = 0.0
        try:
            while not self.stopping.is_set() and waited < self.config.idle_seconds:
                responses: list[Any] = client.idle_check(timeout=IDLE_CHECK_SECONDS)
                waited += IDLE_CHECK_SECONDS
                if (
                    self.leader is not None
                    and waited % LEADER_CHECK_SECONDS < IDLE_CHECK_SECONDS
                    and not self._still_ours()
                ):
                    break
                if any(len(item) > 1 and item[1] in (b"EXISTS", b"RECENT") for item in responses):
                    break
        finally:
            client.idle_done()


def _close_quietly(client: IMAPClient) -> None:
    try:
        client.logout()
    except NETWORK_ERRORS:
        try:
            client.shutdown()
        except NETWORK_ERRORS:
            log.debug("imap connection already gone")
