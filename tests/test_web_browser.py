"""The request form in a real browser (issue 19): Debian's headless Chromium, driven by
Playwright, opens the form served by `maild run`, fills it in Russian, attaches a log, submits
and sees the ticket number; the acknowledgement is in the outbox, and the client's reply to it
by mail joins the same ticket. `MAILD_WRITE_DOCS=1` refreshes docs/webform.png."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.mailbuilder import build_mail
from tests.test_web_intake import LOG, maild, web  # noqa: F401 - the daemon fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
DOCS_PNG = ROOT / "docs" / "webform.png"


def test_a_client_fills_the_form_in_a_browser_and_mail_joins_the_ticket(web, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    config, base = web
    log = tmp_path / "cubisio.log"
    log.write_bytes(LOG)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 900, "height": 1200})
        page.goto(f"{base}/")
        page.fill("#name", "Пётр Сидоров")
        page.fill("#email", "sidorov@stroymontazh.ru")
        page.fill("#organization", "ООО «СтройМонтаж»")
        page.fill("#version", "Cubisio 3.2.1")
        page.fill("#problem", "Не открывается отчёт по складу: ошибка 0x80004005")
        page.fill("#steps", "1. Открыть «Склад»\n2. Нажать «Сформировать отчёт»")
        page.fill("#environment", "Windows 10 Pro, 16 ГБ, PostgreSQL 15")
        page.select_option("#criticality", "high")
        page.set_input_files("#files", str(log))
        if os.environ.get("MAILD_WRITE_DOCS") == "1":
            page.screenshot(path=str(DOCS_PNG), full_page=True)
        page.click("#submit")
        page.wait_for_selector("#ticket", timeout=30_000)
        number = page.inner_text("#ticket")
        browser.close()
    assert number == "[SIS #1]"
    shown = json.loads(maild(config, "tickets", "show", "1", "--json"))
    assert shown["channel"] == "web"
    outbox = config.parent / "outbox" / "new"
    acks = [
        message
        for message in (
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in outbox.iterdir()
        )
        if "sidorov@stroymontazh.ru" in str(message["To"])
    ]
    assert len(acks) == 1
    reply = tmp_path / "reply.eml"
    reply.write_bytes(
        build_mail(
            sender="sidorov@stroymontazh.ru", subject=f"Re: {acks[0]['Subject']}",
            message_id="<reply@stroymontazh.ru>", in_reply_to=str(acks[0]["Message-ID"]),
            body="Прикладываю ещё снимок экрана.",
        )
    )  # fmt: skip
    decided = subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), "ingest", "--json", str(reply)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(decided.stdout.splitlines()[0])
    assert result["action"] == "follow_up"
    assert result["ticket"] == 1
