"""Golden tests: each real-shaped fixture in tests/fixtures/mail against its .expected.json.

Parsing is checked without a database (a sink that only hashes); the decision is checked
by ingesting each message alone into an empty database.
"""

from __future__ import annotations

import json

import pytest

from maild.pipeline import Incoming
from maild.worker import process_safely
from parsers.message import parse_message
from tests.conftest import FIXTURES
from tests.sinks import MemorySink

CASES = sorted(FIXTURES.glob("*.eml"))


def expected_for(path):
    return json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))


def normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip("\n")


def test_fixture_set_is_complete():
    assert len(CASES) >= 20
    assert all(path.with_suffix(".expected.json").exists() for path in CASES)


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_parse_matches_golden(path):
    expected = expected_for(path)
    parsed = parse_message(path.read_bytes(), MemorySink(), max_attachment_bytes=50 * 2**20)
    assert parsed.subject == expected["subject"]
    assert (parsed.sender.email if parsed.sender else None) == expected["sender"]
    if expected["text"] is not None:
        assert normalise(parsed.new_text) == normalise(expected["text"])
    attachments = [
        {"filename": a.filename, "kind": str(a.kind)} for a in parsed.attachments if not a.inline
    ]
    assert attachments == expected["attachments"]


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_decision_matches_golden(app, path):
    expected = expected_for(path)
    result = process_safely(
        app.pipeline, Incoming.of(f"fixture-{path.stem}", path.read_bytes(), "test")
    )
    assert result is not None
    assert str(result.action) == expected["action"]
    if "reason" in expected:
        assert result.reason == expected["reason"]
