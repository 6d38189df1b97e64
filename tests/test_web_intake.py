"""The site's request form over real HTTP (issue 19): `maild run` with `[inbound.web]`, driven
by aiohttp's client on 127.0.0.1 — a submission becomes a ticket of channel web with its
acknowledgement, and bad input is refused with the reason and nothing stored."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest

from tests.conftest import free_port, write_config
from tests.daemon import wait_for

LOG = b"2026-03-03 10:15:00 ERROR ReportService: 0x80004005\n" * 20


def maild(config, *args):
    return subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def wait_for_http(port: int) -> None:
    def is_open():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    wait_for(is_open, timeout=30, what="the web listener")


@pytest.fixture
def web(tmp_path, sqlite_url, request):
    port = free_port()
    extra = f'[inbound.web]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
    extra += getattr(request, "param", "")
    config = write_config(tmp_path, sqlite_url, extra)
    maild(config, "init")
    log = (tmp_path / "maild.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "maild", "--config", str(config), "run"], stdout=log, stderr=log
    )
    wait_for_http(port)
    yield config, f"http://127.0.0.1:{port}"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, (tmp_path / "maild.log").read_text()
    log.close()


def browser_session() -> aiohttp.ClientSession:
    """Keeps cookies of 127.0.0.1 as a browser does (aiohttp's jar refuses IP hosts)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def fetch_form(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/") as response:
        assert response.status == 200
        page = await response.text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    return match.group(1)


def form_data(csrf: str, **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("csrf", csrf)
    for name, value in fields.items():
        data.add_field(name, value)
    data.add_field("files", LOG, filename="cubisio.log", content_type="text/plain")
    return data


FIELDS = {
    "name": "Пётр Сидоров", "email": "sidorov@stroymontazh.ru", "version": "Cubisio 3.2.1",
    "problem": "Не открывается отчёт по складу", "steps": "Открыть отчёт, нажать «Сформировать»",
    "environment": "Windows 10", "criticality": "high", "website": "",
}  # fmt: skip


def test_a_submission_becomes_a_ticket_with_its_acknowledgement(web, tmp_path):
    config, base = web

    async def submit():
        async with browser_session() as session:
            csrf = await fetch_form(session, base)
            async with session.post(f"{base}/requests", data=form_data(csrf, **FIELDS)) as r:
                return r.status, await r.text()

    status, page = asyncio.run(submit())
    assert status == 201, page
    assert "[SIS #1]" in page
    shown = json.loads(maild(config, "tickets", "show", "1", "--json"))
    assert shown["channel"] == "web"
    assert shown["requester"]["email"] == "sidorov@stroymontazh.ru"
    [message] = [m for m in shown["messages"] if m["direction"] == "in"]
    assert [a["filename"] for a in message["attachments"]] == ["cubisio.log"]
    outbox = tmp_path / "outbox" / "new"
    wait_for(lambda: outbox.exists() and len(list(outbox.iterdir())) >= 2, what="the outbox")
    recipients = [p.read_bytes() for p in outbox.iterdir()]
    assert any(re.search(rb"^To: .*<sidorov@stroymontazh\.ru>", raw, re.M) for raw in recipients)


def test_bad_input_is_refused_with_its_reason_and_nothing_stored(web):
    config, base = web

    async def attempts():
        results = {}
        async with browser_session() as session:
            csrf = await fetch_form(session, base)
            # A forged token (the cookie is right, the field is not).
            async with session.post(
                f"{base}/requests", data=form_data("1.forged.00", **FIELDS)
            ) as r:
                results["forged"] = r.status
            # Script in every field, the problem missing: the page shows it back as text.
            # (Every page served carries a new token, the refusal's page too.)
            csrf = await fetch_form(session, base)
            hostile = dict.fromkeys(FIELDS, "<script>alert(1)</script>")
            hostile |= {"problem": "", "email": "x@y.ru", "website": ""}
            async with session.post(f"{base}/requests", data=form_data(csrf, **hostile)) as r:
                results["missing"] = (r.status, await r.text())
        async with (
            aiohttp.ClientSession() as api,
            api.post(f"{base}/requests", json={"email": "bad"}) as r,
        ):
            results["json"] = (r.status, await r.json())
        return results

    results = asyncio.run(attempts())
    assert results["forged"] == 403
    status, page = results["missing"]
    assert status == 400
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    status, body = results["json"]
    assert status == 400
    assert {(e["field"], e["code"]) for e in body["errors"]} == {
        ("email", "invalid"), ("problem", "missing"),
    }  # fmt: skip
    assert json.loads(maild(config, "tickets", "list", "--json")) == []


def test_a_3_gb_upload_is_refused_before_it_is_read(web):
    _, base = web
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            b"POST /requests HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 3221225472\r\n\r\n--x\r\n"
        )
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_a_hundred_submissions_a_minute_from_one_address_are_cut(web):
    config, base = web

    async def flood():
        async with aiohttp.ClientSession() as api:
            statuses = []
            for n in range(100):
                body = {"email": f"bot{n}@spam.example", "problem": f"спам {n}"}
                async with api.post(f"{base}/requests", json=body) as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        assert r.headers["Retry-After"] == "60"
            return statuses

    statuses = asyncio.run(flood())
    assert statuses.count(201) + statuses.count(202) == 5  # per_peer_per_minute default
    assert statuses.count(429) == 95
    wait_for(lambda: len(json.loads(maild(config, "tickets", "list", "--json"))) == 5,
             what="five tickets")  # fmt: skip


@pytest.mark.parametrize("web", ['trusted_proxies = ["127.0.0.0/8"]\n'], indirect=True)
def test_behind_a_trusted_proxy_the_limit_is_per_client(web):
    """The site's reverse proxy sends every request from one address: the limit counts the
    client it names in X-Forwarded-For (and only a trusted proxy is believed)."""
    _, base = web

    async def post(forwarded: str, n: int) -> int:
        body = {"email": f"c{n}@firm.example", "problem": f"запрос {n}"}
        headers = {"X-Forwarded-For": forwarded}
        async with (
            aiohttp.ClientSession() as api,
            api.post(f"{base}/requests", json=body, headers=headers) as response,
        ):
            return response.status

    async def run():
        one_client = [await post("198.51.100.7", n) for n in range(6)]
        # The same client claiming other addresses to the left of what the proxy added.
        spoofing = [await post(f"192.0.2.{n}, 198.51.100.7", 10 + n) for n in range(3)]
        many_clients = [await post(f"203.0.113.{n}", 100 + n) for n in range(6)]
        return one_client, spoofing, many_clients

    one_client, spoofing, many_clients = asyncio.run(run())
    assert one_client.count(429) == 1  # 5 a minute, counted for 198.51.100.7
    assert spoofing == [429, 429, 429]
    assert 429 not in many_clients  # each client its own limit, all through one proxy
