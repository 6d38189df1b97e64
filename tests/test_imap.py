"""IMAP intake against a real, throwaway Dovecot on loopback."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest

from maild.clock import FixedClock, SystemClock
from maild.config import load_config
from maild.sources.imap import ImapSource, UidState, UidStateFile
from storage.spool import Spool
from tests.conftest import write_config
from tests.dovecot import PASSWORD, Dovecot, dovecot_missing_reason
from tests.mailbuilder import build_mail
from tests.test_smtp_end_to_end import wait_for


def maild_cli(config, *args):
    out = subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), *args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout


@pytest.fixture
def imap_maild(tmp_path, sqlite_url, dovecot):
    """`maild run` watching the Dovecot INBOX (IDLE), SMTP off, acknowledgements to a Maildir."""
    config = write_config(tmp_path, sqlite_url, dovecot.config_toml())
    maild_cli(config, "init")
    processes = []

    def start():
        log = (tmp_path / "maild.log").open("ab")
        process = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"],
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        processes.append(process)
        return process

    yield config, start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, (tmp_path / "maild.log").read_text()


@pytest.fixture
def make_dovecot():
    """A Dovecot with options (no MOVE, TLS), started now and destroyed after the test."""
    reason = dovecot_missing_reason()
    if reason:
        pytest.skip(reason)
    servers = []

    def make(**options) -> Dovecot:
        server = Dovecot(**options)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.destroy()


def tickets(config) -> list[dict]:
    return json.loads(maild_cli(config, "tickets", "list", "--json"))


def test_new_messages_become_tickets_and_move_to_processed(imap_maild, dovecot):
    config, start = imap_maild
    dovecot.append(
        build_mail(subject="Первый", message_id="<i1@firm.ru>"),
        build_mail(sender="b@other.ru", subject="Второй", message_id="<i2@other.ru>"),
        build_mail(subject="RE: [SIS #1] Первый", message_id="<i3@firm.ru>"),
    )
    start()
    wait_for(lambda: dovecot.count("Processed") == 3, what="three messages in Processed")
    assert dovecot.count("INBOX") == 0
    wait_for(lambda: len(tickets(config)) == 2, what="two tickets")
    first = json.loads(maild_cli(config, "tickets", "show", "1", "--json"))
    assert [m["direction"] for m in first["messages"]].count("in") == 2


def test_idle_picks_up_a_message_appended_while_waiting(imap_maild, dovecot, tmp_path):
    config, start = imap_maild
    start()
    wait_for(lambda: dovecot.count("Processed") == 0 and "connected" in (tmp_path / "maild.log").read_text(),
             what="the IMAP source to connect")  # fmt: skip
    dovecot.append(build_mail(subject="Пока ждали", message_id="<idle@firm.ru>"))
    wait_for(lambda: len(tickets(config)) == 1, timeout=15, what="the ticket from IDLE")
    assert dovecot.count("Processed") == 1


def test_server_restart_is_survived(imap_maild, dovecot, tmp_path):
    config, start = imap_maild
    start()
    wait_for(lambda: "connected" in (tmp_path / "maild.log").read_text(), what="first connection")
    dovecot.stop()
    dovecot.start()
    dovecot.append(build_mail(subject="После перезапуска", message_id="<restart@firm.ru>"))
    wait_for(lambda: len(tickets(config)) == 1, timeout=40, what="the ticket after the restart")
    assert "connection lost" in (tmp_path / "maild.log").read_text()


def test_unparsable_mail_goes_to_the_quarantine_folder(imap_maild, dovecot):
    config, start = imap_maild
    dovecot.append(b"\x00\x01 not a mail at all\r\n", build_mail(message_id="<ok@firm.ru>"))
    start()
    wait_for(lambda: dovecot.count("Quarantine") == 1 and dovecot.count("Processed") == 1,
             what="one quarantined, one processed")  # fmt: skip
    wait_for(lambda: len(tickets(config)) == 1, what="one ticket")


def run_source_once(config_path, spool_root, dovecot, clock=None):
    """Drive one ImapSource in-process until the INBOX is empty, then stop it."""
    mailbox = load_config(config_path).imap[0]
    spool = Spool(spool_root)
    spool.ensure()
    stopping = threading.Event()
    source = ImapSource(mailbox, spool, lambda: None, stopping, clock=clock or SystemClock())
    thread = threading.Thread(target=source.run)
    thread.start()
    try:
        wait_for(
            lambda: source.connected.is_set() and dovecot.count("INBOX") == 0, what="INBOX drained"
        )
    finally:
        stopping.set()
        thread.join(timeout=30)
    return source, spool


def test_uidvalidity_change_rereads_the_folder(tmp_path, sqlite_url, dovecot):
    config = write_config(tmp_path, sqlite_url, dovecot.config_toml())
    spool_root = tmp_path / "spool"
    spool_root.mkdir()
    with dovecot.client() as client:
        uidvalidity = int(client.select_folder("INBOX")[b"UIDVALIDITY"])
    # A state from before the mailbox was recreated: old UIDVALIDITY, a high last UID.
    UidStateFile(spool_root / "imap-default.json").save(UidState(uidvalidity - 1, 10_000))
    dovecot.append(build_mail(message_id="<u1@firm.ru>"), build_mail(message_id="<u2@firm.ru>"))
    moment = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    source, spool = run_source_once(config, spool_root, dovecot, FixedClock(moment))
    assert len(spool.pending()) == 2
    assert source.state_file.load() == UidState(uidvalidity, 2)
    # Arrival times come from the one clock (MAILD_NOW), not the wall clock.
    assert {spool.read(i).meta.received_at for i in spool.pending()} == {moment.isoformat()}
    assert source.last_message_at == moment


def test_server_without_move_or_idle_gets_copy_expunge_and_polling(
    tmp_path, sqlite_url, make_dovecot
):
    server = make_dovecot(without_move=True)
    config = write_config(tmp_path, sqlite_url, server.config_toml(poll_seconds=1))
    server.append(build_mail(message_id="<nm1@firm.ru>"))
    _, spool = run_source_once(config, tmp_path / "spool", server)
    assert len(spool.pending()) == 1
    assert server.count("Processed") == 1


def test_password_never_appears_in_logs(imap_maild, dovecot, tmp_path):
    _, start = imap_maild
    start()
    wait_for(lambda: "connected" in (tmp_path / "maild.log").read_text(), what="connection")
    assert PASSWORD not in (tmp_path / "maild.log").read_text()


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_tls_is_verified_against_ca_file(tmp_path, sqlite_url, make_dovecot, mode):
    server = make_dovecot(tls=True)
    port = server.tls_port if mode == "ssl" else server.port
    toml = server.config_toml(**{mode: True}, ca_file=f'"{server.certificate}"').replace(
        f"port = {server.port}", f"port = {port}"
    )
    config = write_config(tmp_path, sqlite_url, toml)
    server.append(build_mail(message_id=f"<tls-{mode}@firm.ru>"))
    _, spool = run_source_once(config, tmp_path / "spool", server)
    assert len(spool.pending()) == 1


def test_untrusted_certificate_is_refused(tmp_path, sqlite_url, make_dovecot):
    server = make_dovecot(tls=True)
    toml = server.config_toml(ssl=True).replace(
        f"port = {server.port}", f"port = {server.tls_port}"
    )
    mailbox = load_config(write_config(tmp_path, sqlite_url, toml)).imap[0]
    source = ImapSource(
        mailbox, Spool(tmp_path / "spool"), lambda: None, threading.Event(), clock=SystemClock()
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        source.connect()
