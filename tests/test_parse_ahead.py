"""`maild ingest --parsers N`: parsing in child processes decides exactly what one process does."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

from maild.config import load_config
from maild.parseahead import WORTH_A_PROCESS, _collect, parse_ahead
from maild.work import Incoming
from tests.conftest import write_config

FIXTURES = Path(__file__).parent / "fixtures"


def _ingest(folder: Path, files: list[Path], parsers: int) -> tuple[list[dict], set[str]]:
    """Decisions and stored blobs of `maild ingest --parsers N`; the child processes must
    have parsed every message (no fallback to the writer)."""
    folder.mkdir()
    config = write_config(folder, f"sqlite:///{folder / 'maild.db'}")
    maild = [sys.executable, "-m", "maild", "--config", str(config)]
    subprocess.run([*maild, "init"], check=True, capture_output=True)
    result = subprocess.run(
        [*maild, "ingest", "--json", "--parsers", str(parsers), *map(str, files)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert "parsing ahead failed" not in result.stderr.decode()
    decisions = [json.loads(line) for line in result.stdout.decode().splitlines()]
    blobs = {
        path.name for path in (folder / "artifacts").rglob("*")
        if path.is_file() and path.parent.name != "tmp" and len(path.name) == 64
    }  # fmt: skip
    return decisions, blobs


def test_parser_processes_decide_what_one_process_decides(tmp_path):
    files = sorted(path for sub in ("mail", "bounces") for path in (FIXTURES / sub).rglob("*.eml"))
    assert len(files) > 2 * WORTH_A_PROCESS
    alone, alone_blobs = _ingest(tmp_path / "alone", files, parsers=0)
    ahead, ahead_blobs = _ingest(tmp_path / "ahead", files, parsers=2)

    def essentials(decisions: list[dict]) -> list[tuple]:
        return [
            (d["source"], d["message_id"], d["action"], d["ticket"], d["reason"], d["explanation"])
            for d in decisions
        ]

    assert essentials(ahead) == essentials(alone)
    assert len(ahead) == len(files)
    # The raw messages and every attachment, stored by the child processes, are all there.
    assert ahead_blobs == alone_blobs
    assert len(ahead_blobs) >= len(files)


def test_a_failed_parse_ahead_leaves_the_message_to_the_writer():
    # Whatever went wrong in the child (a crash, a broken pool, an exception), the writer gets
    # the message without a result and parses it itself: it is quarantined there if it fails.
    incoming = Incoming.of("spool-1", b"Subject: x\r\n\r\nbody\r\n", "test")
    failed: Future = Future()
    failed.set_exception(RuntimeError("child died"))
    warned: set[str] = set()
    assert _collect(incoming, failed, warned) is incoming
    assert warned == {"RuntimeError"}  # said once per kind of failure, in the log
    assert _collect(incoming, None, warned) is incoming


def test_a_few_messages_are_parsed_by_the_writer_without_starting_a_process(tmp_path):
    # `maild ingest one.eml` must not pay for starting a parser (about 0.6 s).
    few = [Incoming.of(f"spool-{n}", b"Subject: x\r\n\r\nbody\r\n", "test") for n in range(3)]
    assert len(few) < WORTH_A_PROCESS
    limits = load_config(write_config(tmp_path, f"sqlite:///{tmp_path / 'maild.db'}")).artifacts
    out = list(parse_ahead(iter(few), limits, workers=2))
    assert out == few
    assert all(item.preparsed is None for item in out)
