"""maild as the admin runs it in production (issue 18): `etc/supervisor/maild.conf` started by a
real supervisord on PostgreSQL with a real Dovecot mailbox and the SMTP listener; a worker
and the sources process are killed and restarted by supervisor and nothing is lost; and a
second sources process takes the IMAP mailbox over from a killed one."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import make_engine
from storage.models import InboundMessage, MaildProcess, OutboxMessage, Ticket
from tests.conftest import ROOT, _fresh_postgres_database, free_port, write_config
from tests.daemon import wait_for
from tests.dovecot import Dovecot, dovecot_missing_reason
from tests.mailbuilder import build_mail
from tests.test_scheduler_daemon import CONTRACT

pytestmark = pytest.mark.postgres
SUPERVISOR_CONF = ROOT / "etc" / "supervisor" / "maild.conf"


@pytest.fixture(scope="module")
def shared_dovecot():
    reason = dovecot_missing_reason()
    if reason:
        pytest.skip(reason)
    server = Dovecot()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(postgres_admin):
    database = _fresh_postgres_database(postgres_admin)
    yield next(database)
    next(database, None)


def count(engine, column) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count(column))) or 0)


def environment(config: Path) -> dict[str, str]:
    """supervisord's environment, handed down to every maild it starts."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ, "MAILD_CONFIG": str(config), "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }  # fmt: skip


class Supervisor:
    """The repository's supervisor config, unchanged, in an installation folder of its own
    (its paths are relative to the file: etc/supervisor/ -> var/)."""

    def __init__(self, root: Path, config: Path) -> None:
        self.conf = root / "etc" / "supervisor" / "maild.conf"
        self.conf.parent.mkdir(parents=True)
        shutil.copyfile(SUPERVISOR_CONF, self.conf)
        for folder in ("var/log", "var/run"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.env = environment(config)
        self.root = root

    def start(self) -> None:
        subprocess.run(["supervisord", "-c", str(self.conf)], check=True, env=self.env)

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            ["supervisorctl", "-c", str(self.conf), *args],
            capture_output=True, text=True, env=self.env,
        )  # fmt: skip
        return result.stdout

    def pid(self, name: str) -> int:
        return int(self.ctl("pid", name).strip() or 0)

    def all_running(self) -> bool:
        lines = [line for line in self.ctl("status").splitlines() if line.strip()]
        return len(lines) == 7 and all(" RUNNING " in line for line in lines)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted((self.root / "var" / "log").glob("*.log"))
        )

    def shutdown(self) -> None:
        self.ctl("shutdown")
        pidfile = self.root / "var" / "run" / "supervisord.pid"
        wait_for(lambda: not pidfile.exists(), timeout=90, what="supervisord to stop")


def send_smtp(port: int, raw: bytes) -> None:
    def attempt():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail("client@firm.ru", ["info@sis.ru"], raw)
        except (OSError, smtplib.SMTPException):
            return False
        return True

    wait_for(attempt, timeout=60, what="the SMTP listener to take a message")


def test_supervisor_restarts_killed_processes_and_loses_nothing(tmp_path, pg_url, shared_dovecot):
    port = free_port()
    etc = tmp_path / "etc"
    etc.mkdir()
    config = write_config(etc, pg_url, shared_dovecot.config_toml(), smtp_port=port)
    subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), "init"],
        check=True, capture_output=True,
    )  # fmt: skip
    supervisor = Supervisor(tmp_path, config)
    engine = make_engine(pg_url)
    supervisor.start()
    try:
        wait_for(supervisor.all_running, timeout=60, what="all seven programs RUNNING")
        sent = 0
        for n in range(10):
            send_smtp(port, build_mail(subject=f"SMTP {n}", message_id=f"<smtp{n}@firm.ru>"))
            shared_dovecot.append(build_mail(subject=f"IMAP {n}", message_id=f"<imap{n}@firm.ru>"))
            sent += 2
        wait_for(lambda: count(engine, Ticket.id) == sent, timeout=60, what="the first tickets")

        worker, sources = (
            supervisor.pid("maild:maild-worker-0"),
            supervisor.pid("maild:maild-sources"),
        )
        os.kill(worker, signal.SIGKILL)
        os.kill(sources, signal.SIGKILL)
        # While the sources process is down, mail keeps arriving in the IMAP mailbox.
        for n in range(10, 20):
            shared_dovecot.append(build_mail(subject=f"IMAP {n}", message_id=f"<imap{n}@firm.ru>"))
            sent += 1
        wait_for(
            lambda: (
                supervisor.pid("maild:maild-worker-0") not in (0, worker)
                and supervisor.pid("maild:maild-sources") not in (0, sources)
                and supervisor.all_running()
            ),
            timeout=60,
            what="supervisor to restart the killed processes",
        )
        for n in range(10, 20):
            send_smtp(port, build_mail(subject=f"SMTP {n}", message_id=f"<smtp{n}@firm.ru>"))
            sent += 1
        wait_for(
            lambda: count(engine, Ticket.id) == sent, timeout=60, what="every message as a ticket"
        )
        assert count(engine, InboundMessage.id) == sent  # each once
        assert shared_dovecot.count("INBOX") == 0
        with engine.connect() as connection:
            roles = sorted(connection.execute(select(MaildProcess.role)).scalars())
        assert roles.count("workers") >= 4
        status = subprocess.run(
            [sys.executable, "-m", "maild", "--config", str(config), "status"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert "processes:" in status.stdout
    except AssertionError as error:
        raise AssertionError(f"{error}\n{supervisor.logs()}") from None
    finally:
        supervisor.shutdown()
        engine.dispose()
    log = supervisor.logs()
    for program in (
        "sources",
        "worker-0",
        "worker-1",
        "worker-2",
        "worker-3",
        "outbox",
        "scheduler",
    ):
        assert f"stopped: maild-{program} (exit status 0)" in log, log


def test_a_standby_sources_process_takes_the_mailbox_over(tmp_path, pg_url, shared_dovecot):
    config = write_config(tmp_path, pg_url, shared_dovecot.config_toml())
    maild = [sys.executable, "-m", "maild", "--config", str(config)]
    subprocess.run([*maild, "init"], check=True, capture_output=True)
    engine = make_engine(pg_url)
    logs = [(tmp_path / f"sources{n}.log").open("wb") for n in range(2)]
    first = subprocess.Popen([*maild, "run", "--role", "sources"], stdout=logs[0], stderr=logs[0])
    worker = subprocess.Popen([*maild, "run", "--role", "workers"], stdout=logs[1], stderr=logs[1])
    standby = None
    try:
        shared_dovecot.append(build_mail(subject="До сбоя", message_id="<before@firm.ru>"))
        wait_for(
            lambda: count(engine, Ticket.id) == 1, timeout=60, what="the first process to serve"
        )
        standby = subprocess.Popen(
            [*maild, "run", "--role", "sources"], stdout=logs[1], stderr=logs[1]
        )
        time.sleep(3)  # the standby is up and queued for the mailbox's lock
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
        shared_dovecot.append(build_mail(subject="После сбоя", message_id="<after@firm.ru>"))
        wait_for(lambda: count(engine, Ticket.id) == 2, timeout=30, what="the standby to serve")
        took_over = time.monotonic() - killed_at
        assert took_over < 15, f"the standby took {took_over:.1f} s"
    finally:
        for process in (standby, worker):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=60) == 0
        for log in logs:
            log.close()
        engine.dispose()


def test_two_schedulers_escalate_once_and_one_leads(tmp_path, pg_url):
    """Two `maild run --role scheduler` on one database: one holds the lock and ticks, the
    other waits; the overdue ticket is escalated once; killing the leader hands over."""
    config = write_config(tmp_path, pg_url, CONTRACT)
    maild = [sys.executable, "-m", "maild", "--config", str(config)]
    subprocess.run([*maild, "init"], check=True, capture_output=True)
    request = tmp_path / "request.eml"
    request.write_bytes(build_mail(sender="sidorov@stroymontazh.ru", subject="Округление"))
    friday = {**os.environ, "MAILD_NOW": "2025-03-07T17:30:00+03:00"}
    subprocess.run([*maild, "ingest", str(request)], check=True, capture_output=True, env=friday)
    monday = {**os.environ, "MAILD_NOW": "2025-03-10T12:30:00+03:00"}  # 210 of 240 minutes
    engine = make_engine(pg_url)
    logs = (tmp_path / "schedulers.log").open("wb")
    schedulers = [
        subprocess.Popen(
            [*maild, "run", "--role", "scheduler"], stdout=logs, stderr=logs, env=monday
        )
        for _ in range(2)
    ]

    def leaders() -> list[int]:
        with engine.connect() as connection:
            rows = connection.execute(select(MaildProcess.pid, MaildProcess.state)).all()
        return [pid for pid, state in rows if state.get("scheduler", {}).get("leader")]

    def escalations() -> int:
        with engine.connect() as connection:
            return int(
                connection.scalar(
                    select(func.count(OutboxMessage.id)).where(
                        OutboxMessage.purpose == "escalation"
                    )
                )
                or 0
            )

    try:
        wait_for(lambda: escalations() >= 1, timeout=60, what="the escalation")
        wait_for(lambda: len(leaders()) == 1, timeout=60, what="one leader among two schedulers")
        [leader] = leaders()
        time.sleep(3)  # three more ticks of the one-second scheduler
        victim = next(p for p in schedulers if p.pid == leader)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivor = next(p for p in schedulers if p.pid != leader)
        wait_for(lambda: leaders() == [survivor.pid] or survivor.pid in leaders(),
                 timeout=60, what="the standby scheduler to take over")  # fmt: skip
        time.sleep(3)
        assert escalations() == 1  # once, whoever ticked
    finally:
        for process in schedulers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=60) == 0
        logs.close()
        engine.dispose()
