"""Every whole message of ../shared/corpus through `maild ingest`: one decision each, no crash.

The corpus is ~400 public real-world messages from other mail projects (see its SOURCES.md);
it is read in place, never copied into this project.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import defaultdict

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from parsers.quotes import split_reply
from storage.models import OutboxMessage
from tests.conftest import SHARED, write_config

CORPUS = SHARED / "corpus"
pytestmark = pytest.mark.skipif(
    not (CORPUS / "INDEX.tsv").exists(),
    reason=f"the shared test-mail corpus is absent ({CORPUS}); it sits beside the project in CI",
)
MACHINE_CATEGORIES = frozenset({"bounce", "autoreply"})


def whole_messages() -> list[dict[str, str]]:
    """INDEX.tsv rows of complete messages (body-only reply snippets have no headers)."""
    with (CORPUS / "INDEX.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        row
        for row in rows
        if "body-only" not in row["charsets"] and "html fragment" not in row["charsets"]
    ]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    db_url = f"sqlite:///{folder / 'maild.db'}"
    config = write_config(folder, db_url)
    maild = [sys.executable, "-m", "maild", "--config", str(config)]
    subprocess.run([*maild, "init"], check=True, capture_output=True)
    rows = whole_messages()
    paths = [str(CORPUS / row["path"]) for row in rows]
    run = subprocess.run(
        [*maild, "ingest", "--json", "--no-deliver", *paths], capture_output=True, text=True
    )
    decisions: dict[str, list[dict]] = defaultdict(list)
    for line in run.stdout.splitlines():
        decision = json.loads(line)
        path = decision["source"].split(":", 1)[1].split("#", 1)[0]
        decisions[path].append(decision)
    engine = create_engine(db_url)
    with Session(engine) as session:
        acknowledged = {row.recipient for row in session.scalars(select(OutboxMessage))}
    engine.dispose()
    return rows, run, decisions, acknowledged


def test_ingest_finishes_without_traceback(corpus_run):
    _, run, _, _ = corpus_run
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "processing_error" not in run.stdout


def test_every_message_gets_exactly_one_decision_per_message(corpus_run):
    rows, _, decisions, _ = corpus_run
    missing = [row["path"] for row in rows if str(CORPUS / row["path"]) not in decisions]
    assert missing == []
    for path, found in decisions.items():
        assert found, path
        for decision in found:
            assert decision["action"] in {
                "new_ticket", "follow_up", "ignored", "quarantined", "duplicate",
            }  # fmt: skip
            assert decision["reason"], (path, decision)


def test_bounces_and_autoreplies_open_no_ticket_and_get_no_acknowledgement(corpus_run):
    rows, _, decisions, acknowledged = corpus_run
    wrong = []
    for row in rows:
        if row["category"] not in MACHINE_CATEGORIES:
            continue
        for decision in decisions[str(CORPUS / row["path"])]:
            if decision["action"] in {"new_ticket", "follow_up"}:
                wrong.append((row["path"], decision["reason"], row["note"][:60]))
    assert wrong == []
    assert not any(
        "mailer-daemon" in address or "postmaster" in address for address in acknowledged
    )


def test_people_writing_in_get_tickets(corpus_run):
    """Sanity in the other direction: most plain client mail does become tickets."""
    rows, _, decisions, _ = corpus_run
    people = [row for row in rows if row["category"] in {"reply", "plain", "charset"}]
    opened = [
        row
        for row in people
        if any(d["action"] == "new_ticket" for d in decisions[str(CORPUS / row["path"])])
    ]
    assert len(opened) >= 0.7 * len(people)


_QUOTE_LEFT = re.compile(r"(?m)^\s*>")
_ATTRIBUTION_LEFT = re.compile(
    r"(?im)(?:wrote|schrieb|a écrit|escribió|escreveu|scritto|napisał\(a\)|napisał|пишет|schreef)"
    r"\s*:\s*$"
)


def reply_snippets() -> list[dict[str, str]]:
    with (CORPUS / "INDEX.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [row for row in rows if row["category"] == "reply" and "body-only" in row["charsets"]]


@pytest.mark.parametrize("row", reply_snippets(), ids=lambda row: row["path"])
def test_reply_snippets_leave_no_quote_in_the_new_text(row):
    """Reply bodies from other projects' reply parsers (issue 14): what maild keeps as new text
    holds no '>' line and no attribution line, unless the body is a bare forward or all
    quote (then the whole body is kept, so the client's words are never lost)."""
    text = (CORPUS / row["path"]).read_bytes().decode("utf-8", "replace")
    parts = split_reply(text)
    if parts.new_text == text.replace("\r\n", "\n").strip("\n").rstrip() or not parts.quoted:
        return  # nothing recognised as history, or all of it history: kept whole
    assert not _QUOTE_LEFT.search(parts.new_text), parts.new_text
    assert not _ATTRIBUTION_LEFT.search(parts.new_text), parts.new_text
