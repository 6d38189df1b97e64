"""Header injection: no text from a client's mail can add a header line to mail maild sends.

The attack (issue 13): a display name that is an RFC 2047 encoded word decoding to CR LF
(`=?us-ascii?Q?Bob=0D=0AX-Injected_=3A_yes?=`) became header lines of the acknowledgement,
and everything after it (Subject, Message-ID, Auto-Submitted) fell into the body. The property
tests encode arbitrary text, controls included, into display names, subjects and filenames in
every encoding a client could use, run it through the real pipeline, and read the bytes of
every mail maild queued.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
from email.header import decode_header, make_header
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from maild.compose import HeaderInjectionError, check_header_lines
from maild.pipeline import Incoming
from maild.worker import process_safely
from parsers.message import decode_header_value, header_text, parse_message
from storage.models import OutboxMessage
from storage.spool import new_spool_id
from tests.sinks import MemorySink

# Every header name maild writes, top level and in MIME parts; anything else is injected.
OUR_HEADERS = {
    "from", "to", "cc", "reply-to", "subject", "date", "message-id", "in-reply-to",
    "references", "auto-submitted", "x-auto-response-suppress", "x-maild-loop", "x-loop",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
}  # fmt: skip
HEADER_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:")
CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def encoded_word(text: str, charset: str, encoding: str) -> str:
    data = text.encode(charset)
    if encoding == "B":
        return f"=?{charset}?B?{base64.b64encode(data).decode()}?="
    quoted = "".join(
        chr(byte) if chr(byte).isalnum() else f"={byte:02X}" for byte in data
    )  # every other byte as =XX, so CR LF and '?' travel intact
    return f"=?{charset}?Q?{quoted}?="


def header_names(raw: bytes) -> list[str]:
    """The names of the header lines of the top-level header block and of every MIME part."""
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    boundaries = {
        b"--" + boundary.encode()
        for part in parsed.walk()
        if (boundary := part.get_boundary()) is not None
    }
    names: list[str] = []
    in_header = True
    for line in raw.split(b"\r\n"):
        if in_header:
            if not line:
                in_header = False
                continue
            if line[:1] in (b" ", b"\t"):
                continue
            found = HEADER_LINE.match(line)
            assert found, f"a header line that is neither a header nor folding: {line!r}"
            names.append(found.group(1).decode().lower())
        elif line in boundaries:
            in_header = True  # a MIME boundary: the part's headers follow
    return names


def assert_sent_mail_is_ours(raw: bytes) -> None:
    names = header_names(raw)
    assert set(names) <= OUR_HEADERS, sorted(set(names) - OUR_HEADERS)
    top = email.message_from_bytes(raw, policy=email.policy.compat32)
    for name in ("Subject", "Message-ID", "Auto-Submitted", "X-Loop", "Date", "From", "To"):
        assert name in top or name == "Auto-Submitted", f"{name} missing"
        assert top.get_all(name, []).__len__() <= 1, f"{name} twice"
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", top["Subject"])
    decoded_subject = str(make_header(decode_header(unfolded)))
    assert "[SIS #" in decoded_subject
    assert not CONTROLS.search(decoded_subject.replace("\t", " "))


def request(from_header: str, subject_header: str, filename_params: str = "") -> bytes:
    lines = [
        f"From: {from_header}",
        "To: info@sis.ru",
        f"Subject: {subject_header}",
        f"Message-ID: <{new_spool_id()}@client.example>",
        "Date: Tue, 03 Mar 2026 12:00:00 +0300",
        "MIME-Version: 1.0",
    ]
    if not filename_params:
        lines += ["Content-Type: text/plain; charset=utf-8", "", "Cubisio 3.2 падает", ""]
        return "\r\n".join(lines).encode()
    lines += [
        'Content-Type: multipart/mixed; boundary="b1"',
        "",
        "--b1",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Cubisio 3.2 падает, лог во вложении",
        "--b1",
        f"Content-Type: text/plain;{filename_params}",
        f"Content-Disposition: attachment;{filename_params}",
        "",
        "log line",
        "--b1--",
        "",
    ]
    return "\r\n".join(lines).encode()


def sent_mail(app) -> list[bytes]:
    with app.sessions.begin() as session:
        rows = [row.raw for row in session.scalars(select(OutboxMessage))]
        session.execute(delete(OutboxMessage))
    return rows


def ingest(app, raw: bytes) -> None:
    result = process_safely(app.pipeline, Incoming.of(new_spool_id(), raw, "test"))
    assert result is not None
    assert result.action == "new_ticket", result


ATTACKS = [
    "=?us-ascii?Q?Bob=0D=0AX-Injected_=3A_yes?=",
    "=?us-ascii?Q?Bob=0D=0AX-Injected=3A_yes?=",
    "=?utf-8?B?" + base64.b64encode(b"Bob\r\nBcc: victim@example.com\r\n\r\nbody").decode() + "?=",
    "=?koi8-r?Q?=F0=C5=D4=D2=0AX-Injected:_yes?=",
    "=?windows-1251?Q?=CF=E5=F2=F0=0DX-Injected=3A_yes?=",
    "=?us-ascii?Q?Bob=0AX-Injected=3A_yes=0A=0A?=",
    "=?us-ascii?Q?Bob=85X-Injected=3A_yes?=",
    "=?utf-8?Q?Bob=E2=80=A8X-Injected=3A_yes?=",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_decoded_header_is_one_line(attack):
    decoded = decode_header_value(attack)
    assert "\r" not in decoded
    assert "\n" not in decoded
    assert not CONTROLS.search(decoded)


@pytest.mark.parametrize("attack", ATTACKS)
def test_injected_name_and_subject_do_not_reach_sent_mail(app, attack):
    ingest(app, request(f"{attack} <client@stroymontazh.ru>", f"Ошибка {attack}"))
    queued = sent_mail(app)
    assert len(queued) == 2  # the acknowledgement and the engineer's notice
    for raw in queued:
        assert_sent_mail_is_ours(raw)
        assert b"\nX-Injected" not in raw.split(b"\r\n\r\n")[0]
        assert b"\nBcc" not in raw


def test_bidi_overrides_leave_names_and_subjects():
    decoded = decode_header_value("=?utf-8?Q?report=E2=80=AEtxt.exe=E2=81=A6x?=")
    assert decoded == "reporttxt.exex"


def test_filename_with_line_breaks_is_one_line():
    raw = request(
        "Client <client@stroymontazh.ru>",
        "Лог",
        " filename*=utf-8''" + quote("log\r\nX-Injected: yes.txt"),
    )
    parsed = parse_message(raw, MemorySink(), max_attachment_bytes=2**20)
    [attachment] = parsed.attachments
    assert "\n" not in attachment.filename
    assert "\r" not in attachment.filename


def test_last_guard_refuses_a_line_break_that_is_not_folding():
    message = email.message.Message()
    message["Subject"] = "fine\n folded"
    check_header_lines(message)
    message["X-Test"] = "bad\nX-Injected: yes"
    with pytest.raises(HeaderInjectionError):
        check_header_lines(message)


# --- properties over arbitrary text -----------------------------------------------------------

ANY_TEXT = st.lists(
    st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from(["\r", "\n", "\r\n", "\x1b", "\x85", "\u2028", ":", "?=", "=?", "\x00"]),
    min_size=1,
    max_size=30,
).map("".join)
CHARSETS = st.sampled_from(["utf-8", "us-ascii", "koi8-r", "windows-1251", "iso-8859-1"])


@st.composite
def encoded_header_texts(draw) -> str:
    text = draw(ANY_TEXT)
    charset = draw(CHARSETS)
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    return encoded_word(text, charset, draw(st.sampled_from(["Q", "B"])))


@settings(max_examples=400, deadline=None)
@given(encoded_header_texts())
def test_any_encoded_word_decodes_to_one_line(word):
    decoded = header_text(decode_header_value(word))
    assert not CONTROLS.search(decoded)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=encoded_header_texts(), subject=encoded_header_texts(), filename=ANY_TEXT)
def test_no_header_line_can_be_added_to_any_mail_maild_sends(flood_app, name, subject, filename):
    # The fixture is made once for all examples (hence the health check suppressed above).
    params = " filename*=utf-8''" + quote(filename, safe="")
    ingest(flood_app, request(f"{name} <client@stroymontazh.ru>", subject, params))
    queued = sent_mail(flood_app)
    assert queued
    for raw in queued:
        assert_sent_mail_is_ours(raw)


@pytest.fixture
def flood_app(make_app):
    """One sender writes every example: lift the daily acknowledgement limit."""
    return make_app(extra="[guard]\nautoreply_limit = 1000\n")
