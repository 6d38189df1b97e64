"""Wiring: the objects one maild process needs, built from the config and nothing else."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock, SystemClock
from maild.config import Config
from maild.errors import ConfigError
from maild.outbound import DeliveryCounts, Transport, deliver_pending, transport_from_url
from maild.pipeline import Pipeline
from storage import repositories as repo
from storage.artifacts import ArtifactStore
from storage.crypto import ArtifactCryptoError, create_key_file, load_key
from storage.db import make_engine, make_session_factory
from storage.spool import Spool

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

    def deliver_outbox(self) -> DeliveryCounts:
        return deliver_pending(
            self.sessions,
            self.transport,
            self.clock,
            max_attempts=self.config.outbound.max_attempts,
            retry_seconds=self.config.outbound.retry_seconds,
        )

    def close(self) -> None:
        self.engine.dispose()


def initialize(config: Config) -> None:
    """Create or migrate the database and the folders (what `maild init` does)."""
    from storage.schema import upgrade_schema  # Alembic is heavy; only init needs it

    engine = make_engine(config.database.url)
    try:
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
    with sessions.begin() as session:
        repo.sync_engineers(session, ((e.email, e.name) for e in config.engineers))
    try:
        artifacts = open_artifact_store(config)
    except ConfigError:
        engine.dispose()
        raise
    artifacts.ensure()
    spool = Spool(config.spool.path)
    spool.ensure()
    chosen_clock = clock or SystemClock()
    return App(
        config=config,
        engine=engine,
        sessions=sessions,
        artifacts=artifacts,
        spool=spool,
        pipeline=Pipeline(config, sessions, artifacts, chosen_clock),
        transport=transport_from_url(config.outbound.transport),
        clock=chosen_clock,
    )
