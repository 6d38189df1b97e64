"""The HTML digest in a real browser (issue 16): Debian's headless Chromium renders it with
its inline charts; the PNG is what docs/digest.png shows (MAILD_WRITE_DOCS=1 refreshes it)."""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from maild.reports.digest import digest_figures, digest_html
from maild.scheduler import run_due
from tests.test_digest import MANAGERS
from tests.test_reports import CONFIG, at, seed

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
DOCS_PNG = Path(__file__).resolve().parent.parent / "docs" / "digest.png"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_digest_renders_in_headless_chromium(make_app, clock, tmp_path):
    app = make_app(CONFIG + MANAGERS)
    seed(app, clock)
    clock.current = at(2025, 3, 11, 9, 0)
    run_due(app.config, app.sessions, clock)
    with app.sessions() as session:
        html, images = digest_html(digest_figures(app.config, session, clock.current), "ru")
    for name, png in images.items():  # what a mail client does with cid: parts
        html = html.replace(
            f"cid:{name}", "data:image/png;base64," + base64.b64encode(png).decode()
        )
    page = tmp_path / "digest.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "digest.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=800,1500", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    data = shot.read_bytes()
    assert png_size(data) == (800, 1500)
    assert len(data) > 30_000  # text, tables and two charts, not a blank page
    if os.environ.get("MAILD_WRITE_DOCS") == "1":
        DOCS_PNG.write_bytes(data)
