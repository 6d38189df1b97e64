"""Attack: mail readable by every local user (issue 13).

Under umask 022 (supervisord's default) `maild init` left var/ 0755 and the database, its WAL,
spool/new/*.eml and the outbox 0644: plaintext mail for anyone on the machine. Now every
subcommand runs under umask 077, spool files are created 0600 whatever the umask, and `maild
init` tightens what an older maild left open: the spool, the artifact store, the Maildir
outbox, the SQLite files, the key, and the folders that hold nothing but those (`maild run`
tightens the same folders and files at start, without walking the trees). The config file's
folder, and anything the config does not name, keep their modes.
"""

from __future__ import annotations

import os
import signal
import smtplib
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.fsutil import exclusive_folders, make_private, write_durably
from tests.conftest import free_port, write_config
from tests.daemon import running_daemon, wait_for, wait_for_port
from tests.mailbuilder import build_mail

LOOSE_UMASK = 0o022


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask supervisord (and most shells) hand down; children inherit it."""
    previous = os.umask(LOOSE_UMASK)
    yield
    os.umask(previous)


def write_install(root: Path, smtp_port: int | None = None) -> Path:
    """The layout of etc/maild.example.toml: the config in etc/, everything maild keeps in a
    sibling var/ named by relative paths."""
    etc = root / "etc"
    etc.mkdir()
    smtp = f'listen = "127.0.0.1:{smtp_port}"' if smtp_port else "enabled = false"
    config = etc / "maild.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [mailbox]
            address = "info@sis.ru"
            [tokens]
            prefix = "SIS"
            [database]
            url = "sqlite:///../var/maild.db"
            [artifacts]
            path = "../var/artifacts"
            key_file = "../var/secrets/artifacts.key"
            [spool]
            path = "../var/spool"
            [outbound]
            transport = "maildir:../var/outbox"
            from = "SIS Support <info@sis.ru>"
            [[engineers]]
            email = "ivanov@sis.ru"
            name = "Иван Иванов"
            [inbound.smtp]
            {smtp}
            """
        ),
        encoding="utf-8",
    )
    return config


def maild(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maild", *args, "--config", str(config)],
        capture_output=True, text=True, check=True, umask=LOOSE_UMASK,
    )  # fmt: skip


def modes(root: Path) -> dict[str, tuple[bool, int]]:
    """Relative name -> (is a folder, permission bits) of `root` and all under it."""
    found: dict[str, tuple[bool, int]] = {}
    for path in [root, *root.rglob("*")]:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:  # a spool file the worker just took
            continue
        found[str(path.relative_to(root))] = (stat.S_ISDIR(mode), stat.S_IMODE(mode))
    return found


def not_private(found: dict[str, tuple[bool, int]]) -> dict[str, str]:
    return {
        name: oct(mode)
        for name, (is_dir, mode) in found.items()
        if mode != (0o700 if is_dir else 0o600)
    }


def ingest_one(config: Path, folder: Path, message_id: str) -> None:
    mail = folder / f"{message_id}.eml"
    mail.write_bytes(build_mail(message_id=f"<{message_id}@stroymontazh.ru>"))
    maild(config, "ingest", str(mail))


def count_tickets(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM tickets").fetchone()[0])


# --- a fresh install under umask 022 ---


def test_init_ingest_and_run_under_umask_022_keep_everything_private(tmp_path, loose_umask):
    port = free_port()
    config = write_install(tmp_path, smtp_port=port)
    var = tmp_path / "var"
    maild(config, "init")
    ingest_one(config, tmp_path, "first")
    with running_daemon(config, tmp_path / "maild.log", port):
        # A backup holds the write lock, so the next message waits in the spool, as mail
        # does whenever the worker is behind: its .eml and sidecar are on disk to look at.
        holder = sqlite3.connect(var / "maild.db", isolation_level=None, timeout=30)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail(
                    "sidorov@stroymontazh.ru", ["info@sis.ru"],
                    build_mail(message_id="<second@stroymontazh.ru>"),
                )  # fmt: skip
            while_running = modes(var)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        wait_for(lambda: count_tickets(var / "maild.db") == 2, what="the spooled ticket")
    after = modes(var)
    names = set(while_running) | set(after)
    for expected in ("maild.db", "maild.db-wal", "maild.db-shm", "secrets/artifacts.key"):
        assert expected in names
    assert any(name.startswith("spool/new/") and name.endswith(".eml") for name in names)
    assert any(name.startswith("spool/new/") and name.endswith(".json") for name in names)
    assert any(name.startswith("outbox/new/maild-") for name in names)
    assert sum(name.startswith("artifacts/") and not is_dir
               for name, (is_dir, _) in after.items()) >= 2  # fmt: skip
    assert not_private(while_running) == {}
    assert not_private(after) == {}


# --- an install an older maild left open ---


def loosen(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_init_tightens_what_an_older_maild_left_open(tmp_path, loose_umask):
    config = write_install(tmp_path)
    var = tmp_path / "var"
    maild(config, "init")
    ingest_one(config, tmp_path, "first")
    outside = tmp_path / "other" / "notes.txt"
    outside.parent.mkdir()
    outside.write_text("not maild's")
    # A reader keeps the database open, so its -wal and -shm exist while init runs.
    reader = sqlite3.connect(var / "maild.db")
    try:
        reader.execute("SELECT count(*) FROM tickets").fetchone()
        loosen(var)
        assert set(not_private(modes(var))) >= {".", "maild.db", "maild.db-wal", "spool/new"}
        result = maild(config, "init")
        assert not_private(modes(var)) == {}
    finally:
        reader.close()
    for tightened in ("spool", "artifacts", "outbox", "maild.db", "artifacts.key"):
        assert f"{tightened} private:" in result.stderr
    assert f"made {var} private" in result.stderr
    # The config's folder and what the config does not name keep their modes.
    assert stat.S_IMODE((tmp_path / "etc").stat().st_mode) == 0o755
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert stat.S_IMODE(outside.parent.stat().st_mode) == 0o755
    # Nothing left to do: a second init says nothing about modes.
    assert "private:" not in maild(config, "init").stderr


def test_run_closes_the_folders_of_an_install_left_open(tmp_path, loose_umask):
    """An upgrade restarted by supervisor, `maild init` never run: at start `maild run`
    tightens every folder maild keeps (what is inside is then out of reach) and its files;
    walking a large artifact store is left to `maild init`."""
    port = free_port()
    config = write_install(tmp_path, smtp_port=port)
    var = tmp_path / "var"
    maild(config, "init")
    ingest_one(config, tmp_path, "first")
    loosen(var)
    log_path = tmp_path / "maild.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "maild", "run", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, umask=LOOSE_UMASK,
        )  # fmt: skip
        try:
            wait_for_port(port)
            found = modes(var)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    top_level = {name for name in found if "/" not in name} | {"secrets/artifacts.key"}
    assert {"maild.db", "maild.db-wal", "spool", "artifacts", "outbox"} <= top_level
    assert not_private({name: found[name] for name in top_level}) == {}
    assert f"made {var} private" in log_path.read_text()


def test_a_folder_holding_other_files_is_left_as_it_is(tmp_path, loose_umask):
    config = write_install(tmp_path)
    var = tmp_path / "var"
    maild(config, "init")
    loosen(var)
    backup = var / "maild.db.2026-03-01.bak"
    backup.write_bytes(b"an admin's copy")
    backup.chmod(0o644)
    maild(config, "init")
    assert stat.S_IMODE(var.stat().st_mode) == 0o755  # not maild's alone
    assert stat.S_IMODE(backup.stat().st_mode) == 0o644  # not named by the config
    found = modes(var)
    del found["."], found[backup.name]
    assert not_private(found) == {}


def test_the_config_folder_is_never_tightened(tmp_path, sqlite_url, loose_umask):
    """tests/conftest.py's layout: the database, spool and artifacts beside the config file."""
    config = write_config(tmp_path, sqlite_url)
    config.chmod(0o644)
    tmp_path.chmod(0o755)
    maild(config, "init")
    loosen(tmp_path / "spool")
    (tmp_path / "maild.db").chmod(0o644)
    maild(config, "init")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "maild.db").stat().st_mode) == 0o600
    assert not_private(modes(tmp_path / "spool")) == {}


# --- the file-level pieces ---


def test_write_durably_creates_0600_whatever_the_umask(tmp_path):
    folder = tmp_path / "new"
    tmp = tmp_path / "tmp"
    folder.mkdir()
    tmp.mkdir()
    # A leftover of a crashed writer with our pid, world-readable: replaced, not reused.
    (tmp / f"a.eml.{os.getpid()}.tmp").write_bytes(b"old")
    (tmp / f"a.eml.{os.getpid()}.tmp").chmod(0o666)
    previous = os.umask(0)
    try:
        write_durably(folder / "a.eml", b"mail", tmp)
        write_durably(folder / "b.eml", b"", tmp)
    finally:
        os.umask(previous)
    assert (folder / "a.eml").read_bytes() == b"mail"
    assert stat.S_IMODE((folder / "a.eml").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "b.eml").stat().st_mode) == 0o600
    assert list(tmp.iterdir()) == []


def test_make_private_does_not_follow_links(tmp_path):
    tree = tmp_path / "spool"
    (tree / "new").mkdir(parents=True)
    (tree / "new" / "m.eml").write_bytes(b"mail")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "public.txt").write_text("public")
    (tree / "new" / "link.txt").symlink_to(elsewhere / "public.txt")
    (tree / "linked").symlink_to(elsewhere, target_is_directory=True)
    loosen(tree)
    elsewhere.chmod(0o755)
    (elsewhere / "public.txt").chmod(0o644)
    assert make_private(tree) == 3  # spool, new, m.eml
    assert stat.S_IMODE((tree / "new" / "m.eml").stat().st_mode) == 0o600
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755
    assert stat.S_IMODE((elsewhere / "public.txt").stat().st_mode) == 0o644
    assert make_private(tree) == 0
    assert make_private(tmp_path / "missing") == 0


def test_exclusive_folders_stop_at_anything_else(tmp_path):
    var = tmp_path / "srv" / "var"
    (var / "secrets").mkdir(parents=True)
    (var / "spool").mkdir()
    (var / "secrets" / "key").write_bytes(b"k")
    (var / "db").write_bytes(b"d")
    (tmp_path / "srv" / "etc").mkdir()
    owned = [var / "spool", var / "secrets" / "key", var / "db", var / "db-wal"]
    assert exclusive_folders(owned, protected=set()) == [var / "secrets", var]
    assert exclusive_folders(owned, protected={var}) == [var / "secrets"]
    (var / "README").write_text("someone else's")
    assert exclusive_folders(owned, protected=set()) == [var / "secrets"]
