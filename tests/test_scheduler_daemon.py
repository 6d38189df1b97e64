"""`maild run` does the time-driven work by itself (issue 15): a real daemon, started at a
MAILD_NOW past 75% of a ticket's first-response target, sends the escalation once."""

from __future__ import annotations

import email
import email.header
import os
import subprocess
import sys
import time

from tests.conftest import free_port, write_config
from tests.daemon import running_daemon, wait_for
from tests.mailbuilder import build_mail

CONTRACT = """
[scheduler]
interval_seconds = 1

[[contracts]]
name = "stroymontazh"
domains = ["stroymontazh.ru"]
first_response_hours = { critical = 1, high = 2, normal = 4, low = 8 }
resolution_hours = { critical = 8, high = 16, normal = 40, low = 80 }
"""


def subject_of(path) -> str:
    message = email.message_from_bytes(path.read_bytes())
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def test_the_daemon_escalates_on_its_own_and_only_once(tmp_path):
    port = free_port()
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'maild.db'}", CONTRACT, smtp_port=port)
    maild = [sys.executable, "-m", "maild", "--config", str(config)]
    subprocess.run([*maild, "init"], check=True, capture_output=True)
    request = tmp_path / "request.eml"
    request.write_bytes(
        build_mail(sender="sidorov@stroymontazh.ru", subject="Округление в отчёте",
                   body="В отчёте по складу суммы округляются до рубля.")
    )  # fmt: skip
    friday = {**os.environ, "MAILD_NOW": "2025-03-07T17:30:00+03:00"}
    subprocess.run([*maild, "ingest", str(request)], check=True, capture_output=True, env=friday)
    outbox = tmp_path / "outbox" / "new"

    def escalations():
        return (
            [p for p in outbox.iterdir() if "Эскалация" in subject_of(p)] if outbox.exists() else []
        )

    monday = {"MAILD_NOW": "2025-03-10T12:30:00+03:00"}  # 210 of 240 working minutes
    with running_daemon(config, tmp_path / "daemon.log", port, extra_env=monday):
        [notice] = wait_for(escalations, timeout=30, what="the escalation in the outbox")
        wait_for(lambda: "scheduler" in (tmp_path / "daemon.log").read_text(), what="a tick log")
    with running_daemon(config, tmp_path / "daemon2.log", port, extra_env=monday):
        time.sleep(3)  # three ticks of the one-second scheduler
    assert escalations() == [notice]  # the restart sent nothing again
    assert "[SIS #1]" in subject_of(notice)
