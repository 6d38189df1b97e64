"""Wiring: the objects one maild process needs, built from the config and nothing else."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock, clock_from_environment
from maild.config import Config
from maild.contracts import contract_rows
from maild.errors import ConfigError
from maild.outbound import (
    DeliveryCounts,
    RoutedTransport,
    Transport,
    deliver_pending,
    transport_from_url,
)
from maild.pipeline import Pipeline
from storage import repositories as repo
from storage.artifacts import ArtifactStore
from storage.crypto import ArtifactCryptoError, create_key_file, load_key
from storage.db import make_engine, make_session_factory
from storage.fsutil import exclusive_folders, make_private
from storage.shared_spool import DatabaseSpool
from storage.spool import Spool, SpoolWriter

if TYPE_CHECKING:
    from maild.sources.telegram_bot import BotApi

log = logging.getLogger(__name__)


@dataclass(slots=True)
class App:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    artifacts: ArtifactStore
    spool: Spool
    pipeline: Pipeline
    transport: Transport
    clock: Clock
    shared_spool: DatabaseSpool | None = None
    """The spool in the database (PostgreSQL): what sources write and workers claim, so
    that several processes and machines share it. None on SQLite: the folder spool."""

    @property
    def inbox(self) -> SpoolWriter:
        """Where the sources put what they receive."""
        return self.shared_spool if self.shared_spool is not None else self.spool

    def deliver_outbox(self) -> DeliveryCounts:
        return deliver_pending(
            self.sessions,
            self.transport,
            self.clock,
            max_attempts=self.config.outbound.max_attempts,
            retry_seconds=self.config.outbound.retry_seconds,
        )

    bot: BotApi | None = None
    """The Telegram bot's API client for the outbox's answers to chats, when
    `[inbound.telegram]` is on (the polling source has its own, so that stopping one never
    cancels the other's call)."""

    def close(self) -> None:
        if self.bot is not None:
            self.bot.close()
        self.engine.dispose()


def is_shared_database(url: str) -> bool:
    """PostgreSQL is shared by several processes and machines; SQLite is one process's."""
    return make_url(url).get_backend_name() == "postgresql"


def read_schema(config: Config) -> tuple[str | None, str]:
    """(the database's schema revision, None before `maild init`; the code's)."""
    from storage.schema import schema_revisions

    engine = make_engine(config.database.url)
    try:
        return schema_revisions(engine)
    except OperationalError as error:
        raise ConfigError(f"database.url: cannot connect: {error.orig}") from None
    finally:
        engine.dispose()


def schema_problem(current: str | None, head: str) -> str | None:
    """What the admin must do before `maild run`, or None. `maild run` never migrates a
    schema that exists: other processes may be running on it."""
    if current == head:
        return None
    if current is None:
        return "the database has no maild schema: run `maild init` first"
    return (
        f"the database schema is at revision {current}, this maild needs {head}: stop every "
        "maild process on this database, run `maild init` (it migrates), then start them again"
    )


def initialize(config: Config, *, tighten_trees: bool = True, migrate: bool = True) -> None:
    """Create or migrate the database and the folders (what `maild init` does), and make what
    maild keeps private. `tighten_trees=False` (`maild run`, at every start) tightens the
    folders but does not walk them: what is inside a 0700 folder is out of other users' reach
    already, and a large artifact store is walked by `maild init` alone."""
    from storage.schema import upgrade_schema  # Alembic is heavy; only init needs it

    engine = make_engine(config.database.url)
    try:
        if migrate:
            upgrade_schema(engine)
        with make_session_factory(engine).begin() as session:
            repo.sync_engineers(session, ((e.email, e.name) for e in config.engineers))
    finally:
        engine.dispose()
    if create_key_file(config.artifacts.key_file):
        log.info("created the artifact key %s; back it up: without it no artifact can be read",
                 config.artifacts.key_file)  # fmt: skip
    open_artifact_store(config).ensure()
    Spool(config.spool.path).ensure()
    transport_from_url(config.outbound.transport)
    _make_private(config, tighten_trees=tighten_trees)


def _make_private(config: Config, *, tighten_trees: bool) -> None:
    """What maild keeps is for its own user alone. New files are private already (the CLI's
    umask, explicit modes); this tightens what an older maild or a loose umask left: the
    spool, the artifact store, a Maildir outbox, the SQLite files, the key and password
    files, and the folders that hold nothing else (the `var/` of them all). Never the config
    file's folder or one above it, and nothing the config does not name."""
    protected = {config.base_dir, *config.base_dir.parents}
    trees = [config.spool.path, config.artifacts.path]
    if config.outbound.transport.startswith("maildir:"):
        trees.append(Path(config.outbound.transport.removeprefix("maildir:")))
    files = [config.artifacts.key_file]
    files += [mailbox.password_file for mailbox in config.imap if mailbox.password_file]
    if config.telegram is not None:
        files.append(config.telegram.token_file)
    url = make_url(config.database.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        files += [
            database.with_name(database.name + end) for end in ("", "-wal", "-shm", "-journal")
        ]
    # "etc/../var/spool" (as the example config has it) and "var/spool" must be one path here.
    trees, files = _normalized(trees), _normalized(files)
    owned = [path for path in trees + files if path not in protected]
    folders = exclusive_folders(owned, protected)
    for path in owned + folders:
        changed = make_private(path, recursive=tighten_trees and path in trees)
        if changed:
            log.info("made %s private: %s files or folders were open to group or others",
                     path, changed)  # fmt: skip


def _normalized(paths: list[Path]) -> list[Path]:
    return [Path(os.path.normpath(path)) for path in paths]


def open_artifact_store(config: Config) -> ArtifactStore:
    try:
        key = load_key(config.artifacts.key_file)
    except ArtifactCryptoError as error:
        raise ConfigError(f"artifacts.key_file: {error}") from None
    return ArtifactStore(config.artifacts.path, key)


def open_app(config: Config, clock: Clock | None = None) -> App:
    """Connect to an initialised installation; refuse clearly if `maild init` never ran."""
    engine = make_engine(config.database.url)
    try:
        tables = set(inspect(engine).get_table_names())
    except OperationalError as error:
        engine.dispose()
        raise ConfigError(f"database.url: cannot connect: {error.orig}") from None
    if "tickets" not in tables:
        engine.dispose()
        raise ConfigError("the database has no maild schema: run `maild init` first")
    sessions = make_session_factory(engine)
    chosen_clock = clock or clock_from_environment()
    with sessions.begin() as session:
        repo.sync_engineers(session, ((e.email, e.name) for e in config.engineers))
        repo.sync_contracts(session, contract_rows(config), chosen_clock.now())
    try:
        artifacts = open_artifact_store(config)
    except ConfigError:
        engine.dispose()
        raise
    artifacts.ensure()
    spool = Spool(config.spool.path)
    spool.ensure()
    shared_spool = None
    if is_shared_database(config.database.url):
        shared_spool = DatabaseSpool(engine, config.spool.path)
        shared_spool.ensure()
    bot, chats = None, None
    if config.telegram is not None:
        # aiohttp only where a bot is configured: every CLI command opens an App.
        from maild.sources.telegram_bot import BotApi, TelegramTransport

        bot = BotApi(config.telegram.api_url, config.telegram.token)
        chats = TelegramTransport(bot)
    return App(
        config=config,
        engine=engine,
        sessions=sessions,
        artifacts=artifacts,
        spool=spool,
        pipeline=Pipeline(config, sessions, artifacts, chosen_clock),
        transport=RoutedTransport(transport_from_url(config.outbound.transport), chats),
        clock=chosen_clock,
        shared_spool=shared_spool,
        bot=bot,
    )
