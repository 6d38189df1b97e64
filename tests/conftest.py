"""Shared fixtures: real SQLite files, a real PostgreSQL database per test, real configs."""

from __future__ import annotations

import os
import socket
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from maild.app import App, initialize, open_app
from maild.clock import FixedClock
from maild.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "mail"
SHARED = ROOT.parent / "shared"
PG_ADMIN_URL = os.environ.get(
    "MAILD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    url = make_url(PG_ADMIN_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=2):
            pass
    except OSError as error:
        where = f"{url.host}:{url.port}"
        return f"no PostgreSQL reachable at {where} ({error.strerror}); set MAILD_TEST_PG_URL"
    return None


POSTGRES_SKIP = _postgres_reason()


@pytest.fixture(scope="session")
def postgres_admin():
    if POSTGRES_SKIP:
        pytest.skip(POSTGRES_SKIP)
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _fresh_postgres_database(admin) -> Iterator[str]:
    name = f"maild_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> Iterator[str]:
    """Every storage and pipeline test runs on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'maild.db'}"
        return
    yield from _fresh_postgres_database(request.getfixturevalue("postgres_admin"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'maild.db'}"


def write_config(
    folder: Path,
    db_url: str,
    extra: str = "",
    *,
    smtp_port: int | None = None,
    transport: str = "maildir:outbox",
    artifacts: str = "",
    engineers: bool = True,
) -> Path:
    """A complete config file in `folder`, paths relative to it, as an admin would write;
    `engineers=False` for tests of machinery that engineers' notices would only crowd."""
    smtp = (
        f'[inbound.smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
        if smtp_port
        else "[inbound.smtp]\nenabled = false\n"
    )
    body = textwrap.dedent(
        f"""\
        [mailbox]
        address = "info@sis.ru"
        comment_address = "info+comment@sis.ru"
        [tokens]
        prefix = "SIS"
        [database]
        url = "{db_url}"
        [artifacts]
        path = "artifacts"
        @ARTIFACTS@
        [spool]
        path = "spool"
        [outbound]
        transport = "{transport}"
        from = "SIS Support <info@sis.ru>"
        retry_seconds = 1
        [[engineers]]
        email = "ivanov@sis.ru"
        name = "Иван Иванов"
        """
    )
    body = body.replace("@ARTIFACTS@\n", f"{artifacts.strip()}\n" if artifacts else "")
    if not engineers:
        body = body[: body.index("[[engineers]]")]
    path = folder / "maild.toml"
    path.write_text(body + smtp + extra, encoding="utf-8")
    return path


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 3, 9, 0, tzinfo=UTC))


@pytest.fixture
def make_app(tmp_path, db_url, clock) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def factory(extra: str = "", artifacts: str = "", engineers: bool = True) -> App:
        config = load_config(
            write_config(tmp_path, db_url, extra, artifacts=artifacts, engineers=engineers)
        )
        initialize(config)
        app = open_app(config, clock=clock)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app) -> App:
    return make_app()


@pytest.fixture
def config(app) -> Config:
    return app.config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def dovecot():
    from tests.dovecot import Dovecot, dovecot_missing_reason

    reason = dovecot_missing_reason()
    if reason:
        pytest.skip(reason)
    server = Dovecot()
    server.start()
    yield server
    server.destroy()
