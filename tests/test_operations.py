"""Operating maild (issue 18): the metrics endpoint scraped after a known run, `maild status`,
the schema check at start, and SQLite's single-process mode said out loud."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from storage.db import make_engine
from tests.conftest import free_port, write_config
from tests.daemon import wait_for, wait_for_port
from tests.mailbuilder import build_mail


def maild(config, *args, **options):
    return subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), *args],
        capture_output=True, text=True, **options,
    )  # fmt: skip


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


@pytest.fixture
def daemon(tmp_path, sqlite_url):
    """`maild run` on SQLite with SMTP and the metrics endpoint, JSON logs."""
    smtp, metrics = free_port(), free_port()
    extra = f'[metrics]\nlisten = "127.0.0.1:{metrics}"\n[logging]\nformat = "json"\n'
    config = write_config(tmp_path, sqlite_url, extra, smtp_port=smtp)
    assert maild(config, "init").returncode == 0
    log = (tmp_path / "maild.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "maild", "--config", str(config), "run"], stdout=log, stderr=log
    )
    wait_for_port(smtp)
    yield config, smtp, metrics, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    log.close()


def test_metrics_after_a_known_run(daemon, tmp_path):
    _, smtp, metrics, _ = daemon
    with smtplib.SMTP("127.0.0.1", smtp) as client:
        for n in range(3):
            client.sendmail(
                f"client{n}@firm.ru", ["info@sis.ru"],
                build_mail(sender=f"client{n}@firm.ru", subject=f"Запрос {n}",
                           message_id=f"<m{n}@firm.ru>"),
            )  # fmt: skip
        client.sendmail(
            "client0@firm.ru", ["info@sis.ru"],
            build_mail(sender="client0@firm.ru", subject="RE: [SIS #1] Запрос 0",
                       message_id="<m3@firm.ru>"),
        )  # fmt: skip

    def settled():
        samples = scrape(metrics)
        decided = sum(v for (name, _), v in samples.items() if name == "maild_decisions_total")
        return samples if decided == 4 and samples.get(("maild_outbox_depth", ())) == 0 else None

    samples = wait_for(settled, timeout=30, what="four decisions and an empty outbox")
    assert samples[("maild_messages_received_total", (("source", "smtp"),))] == 4
    new = (("action", "new_ticket"), ("reason", "no_thread_match"))
    assert samples[("maild_decisions_total", new)] == 3
    follow = (("action", "follow_up"), ("reason", "token_match"))
    assert samples[("maild_decisions_total", follow)] == 1
    assert samples[("maild_pipeline_seconds_count", ())] == 4
    # Three acknowledgements and four notices to the engineer (three tickets, a follow-up).
    assert samples[("maild_deliveries_total", (("result", "sent"),))] == 7
    assert samples[("maild_spool_depth", ())] == 0
    assert samples[("maild_queue_depths_up", ())] == 1
    build = [key for key in samples if key[0] == "maild_build_info"]
    assert ("role", "all") in build[0][1]
    lines = (tmp_path / "maild.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(r["logger"] == "maild.pipeline" and "action=new_ticket" in r["message"]
               for r in records)  # fmt: skip


def test_status_reports_the_running_process_and_the_queues(daemon):
    config, _, _, process = daemon
    result = wait_for(
        lambda: (r := maild(config, "status", "--json")).returncode == 0 and r,
        timeout=30, what="a healthy status",
    )  # fmt: skip
    status = json.loads(result.stdout)
    assert status["schema_revision"] == status["schema_head"]
    (entry,) = [p for p in status["processes"] if p["pid"] == process.pid]
    assert entry["alive"]
    assert entry["role"] == "all"
    assert entry["state"]["sources"]["smtp"]["connected"]
    assert status["spool"] == 0
    assert status["problems"] == []
    text_status = maild(config, "status").stdout
    assert "processes: 1 alive" in text_status
    assert text_status.rstrip().endswith("ok")


def test_status_without_a_running_process_fails_with_the_reason(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url)
    maild(config, "init")
    result = maild(config, "status")
    assert result.returncode == 1
    assert "problem: no maild process has reported" in result.stdout


def test_sqlite_refuses_roles_and_a_second_daemon(daemon):
    config, *_ = daemon
    refused = maild(config, "run", "--role", "workers", timeout=60)
    assert refused.returncode == 2
    assert "needs a shared database" in refused.stderr
    second = maild(config, "run", timeout=60)
    assert second.returncode == 2
    assert "already serves this SQLite database" in second.stderr
    assert "several workers need PostgreSQL" in second.stderr


def test_run_refuses_an_older_schema_and_init_migrates_it(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url)
    assert maild(config, "init").returncode == 0
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0010'"))
        connection.execute(text("DROP TABLE telegram_chats"))
        connection.execute(text("DROP TABLE telegram_positions"))
    engine.dispose()
    refused = maild(config, "run", timeout=60)
    assert refused.returncode == 2
    assert "schema is at revision 0010, this maild needs 0011" in refused.stderr
    assert "run `maild init`" in refused.stderr
    assert maild(config, "init").returncode == 0
    status = json.loads(maild(config, "status", "--json").stdout)
    assert status["schema_revision"] == status["schema_head"] == "0011"


def test_sigterm_drains_within_a_bound(daemon):
    config, smtp, _, process = daemon
    with smtplib.SMTP("127.0.0.1", smtp) as client:
        for n in range(20):
            client.sendmail(
                f"c{n}@firm.ru", ["info@sis.ru"],
                build_mail(sender=f"c{n}@firm.ru", message_id=f"<d{n}@firm.ru>"),
            )  # fmt: skip
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert time.monotonic() - started < 15
    # What was not processed before the stop is still in the spool, and is processed next time.
    listed = json.loads(maild(config, "tickets", "list", "--json").stdout)
    pending = list((config.parent / "spool" / "new").glob("*.eml"))
    assert len(listed) + len(pending) == 20
