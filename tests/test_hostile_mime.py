"""Hostile MIME shapes (issue 13): tens of thousands of parts, nesting thousands of levels deep,
and a header block of 10 MB. Each must end as a ticket with the text that could be read, an
acknowledgement and a small notice, never in quarantine; on the in-memory path and on the
streaming path (`parsers.streaming`) alike.

Every message is built here, so the suite needs no large fixtures; each goes through the real
pipeline over a real database (see tests/conftest.py).
"""

from __future__ import annotations

import email
from pathlib import Path

import pytest

from maild.notices import NOTICE_FILES, NOTICE_TEXT_CHARS
from maild.pipeline import Incoming, IngestAction
from maild.worker import process_safely
from parsers.message import parse_message
from parsers.rawmail import LARGE_MESSAGE_BYTES, RawMail
from parsers.streaming import MAX_DEPTH, MAX_FIELD_BYTES
from storage.spool import new_spool_id
from storage.views import ticket_detail
from tests.mailbuilder import build_mail
from tests.sinks import MemorySink
from tests.test_pipeline import client_outbox, notices

HEAD = (
    b"From: =?utf-8?b?0J/RkdGC0YAg0KHQuNC00L7RgNC+0LI=?= <sidorov@stroymontazh.ru>\r\n"
    b"To: info@sis.ru\r\n"
    b"Subject: Hostile shape\r\n"
    b"Date: Tue, 03 Mar 2026 10:15:00 +0000\r\n"
    b"Message-ID: <hostile@stroymontazh.ru>\r\n"
    b"MIME-Version: 1.0\r\n"
)
TOP_TEXT = b"Top text: the report does not open."
DEEP_TEXT = b"Deep text below the depth cap."
MB = 1024 * 1024


# --- building the hostile mail ---------------------------------------------------------------


def many_parts(count: int) -> bytes:
    """A text part and `count` tiny attachments (40,000 of them are about 5 MB)."""
    parts = [
        HEAD,
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n',
        b"--m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + TOP_TEXT + b"\r\n",
    ]
    parts += [
        b"--m\r\nContent-Type: text/plain\r\n"
        b'Content-Disposition: attachment; filename="f%d.log"\r\n\r\nline %d\r\n' % (n, n)
        for n in range(count)
    ]
    parts.append(b"--m--\r\n")
    return b"".join(parts)


def deep_multipart(levels: int) -> bytes:
    """The top text in the outer multipart, then multiparts nested `levels` deep."""
    parts = [
        HEAD,
        b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n',
        b"--b0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + TOP_TEXT + b"\r\n--b0\r\n",
    ]
    parts += [
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(1, levels)
    ]
    parts.append(b"Content-Type: text/plain\r\n\r\n" + DEEP_TEXT + b"\r\n")
    parts += [b"--b%d--\r\n" % n for n in range(levels - 1, -1, -1)]
    return b"".join(parts)


def deep_rfc822(levels: int) -> bytes:
    """The top text, then a forwarded message that forwards a message, `levels` deep."""
    parts = [
        HEAD,
        b'Content-Type: multipart/mixed; boundary="top"\r\n\r\n',
        b"--top\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + TOP_TEXT + b"\r\n",
        b"--top\r\nContent-Type: message/rfc822\r\n\r\n",
    ]
    parts += [
        b"From: x@example.com\r\nSubject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % n
        for n in range(levels)
    ]
    parts.append(b"From: x@example.com\r\nSubject: bottom\r\n\r\n" + DEEP_TEXT + b"\r\n")
    parts.append(b"--top--\r\n")
    return b"".join(parts)


def header_block(junk: bytes, *, late: bytes = b"") -> bytes:
    """HEAD, then `junk` header lines, then `late` headers, then a multipart body."""
    return (
        HEAD + junk + late + b'Content-Type: multipart/mixed; boundary="h"\r\n\r\n'
        b"--h\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + TOP_TEXT + b"\r\n"
        b"--h\r\nContent-Type: text/plain\r\n"
        b'Content-Disposition: attachment; filename="app.log"\r\n\r\nERROR boom\r\n--h--\r\n'
    )


def header_lines(count: int) -> bytes:
    return b"".join(b"X-Junk-%06d: %s\r\n" % (n, b"j" * 90) for n in range(count))


def one_header(size: int) -> bytes:
    return b"X-Big: " + b"a" * size + b"\r\n"


# --- running it ---------------------------------------------------------------------------------


def raw_mail(raw: bytes, tmp_path: Path, path: str) -> RawMail:
    """In memory, or from a file on the streaming path whatever its size (as a large one)."""
    if path == "memory":
        return RawMail.of(raw)
    eml = tmp_path / "hostile.eml"
    eml.write_bytes(raw)
    return RawMail(size=len(raw), path=eml)


def ingest_raw(app, raw: RawMail):
    result = process_safely(app.pipeline, Incoming(new_spool_id(), raw, "test"))
    assert result is not None
    return result


def client_message(app, result) -> dict:
    """The client's message in the new ticket, as `maild tickets show --json` gives it."""
    assert result.action is IngestAction.NEW_TICKET, result
    with app.sessions() as session:
        detail = ticket_detail(session, result.ticket, "SIS")
    assert detail is not None
    [message] = [m for m in detail["messages"] if m["direction"] == "in"]
    return message


def body_of(raw: bytes) -> str:
    mail = email.message_from_bytes(raw)
    part = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode().replace("\r\n", "\n")


def acknowledgement(app) -> str:
    [ack] = [row for row in client_outbox(app) if row.purpose == "acknowledgement"]
    return body_of(ack.raw)


PATHS = ["memory", "streaming"]


# --- no cap on MIME parts -----------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_parts_past_the_cap_are_counted_and_refused_as_one(make_app, tmp_path, path):
    app = make_app(artifacts="max_parts = 20")
    result = ingest_raw(app, raw_mail(many_parts(500), tmp_path, path))
    message = client_message(app, result)
    assert TOP_TEXT.decode() in message["text"]
    stored = [a for a in message["attachments"] if not a["refused"]]
    [refused] = [a for a in message["attachments"] if a["refused"]]
    assert [a["filename"] for a in stored] == [f"f{n}.log" for n in range(19)]  # + the text
    assert refused["refused"] == "too_many_parts"
    assert refused["filename"] == "481 more parts not processed (limit 20)"
    assert refused["sha256"] is None
    ack = acknowledgement(app)
    assert ack.count("481 more parts not processed (limit 20)") == 1
    assert "more parts than one message may have" in ack
    [notice] = notices(app)
    text = body_of(notice.raw)
    assert text.count("more parts not processed") == 1
    assert "f18.log" in text
    assert "f19.log" not in text


def test_forty_thousand_parts_at_the_default_cap(app):
    """The shape of the report: 40,000 tiny parts (5 MB) held the worker 35 s."""
    raw = many_parts(40_000)
    result = ingest_raw(app, RawMail.of(raw))
    message = client_message(app, result)
    assert TOP_TEXT.decode() in message["text"]
    assert len([a for a in message["attachments"] if not a["refused"]]) == 999
    [refused] = [a for a in message["attachments"] if a["refused"]]
    assert refused["filename"] == "39001 more parts not processed (limit 1000)"
    [notice] = notices(app)
    assert len(notice.raw) < 32 * 1024  # it was 4.5 MB to every engineer
    text = body_of(notice.raw)
    assert text.count(".log (") == NOTICE_FILES
    assert f"\n- и ещё {999 - NOTICE_FILES}\n" in text  # engineers read Russian (the default)
    assert "39001 more parts not processed (limit 1000)" in text


def test_notice_lists_this_messages_files_first_and_counts_the_rest(app):
    first = many_parts(3)
    assert ingest_raw(app, RawMail.of(first)).action is IngestAction.NEW_TICKET
    follow_up = (
        many_parts(NOTICE_FILES + 10)
        .replace(b"Subject: Hostile shape", b"Subject: Re: [SIS #1] Hostile shape")
        .replace(b"<hostile@", b"<hostile-2@")
        .replace(b'filename="f', b'filename="new-f')
    )
    assert ingest_raw(app, RawMail.of(follow_up)).action is IngestAction.FOLLOW_UP
    text = body_of(notices(app)[-1].raw)
    listed = [line for line in text.splitlines() if line.startswith("- ") and ".log (" in line]
    assert len(listed) == NOTICE_FILES
    assert all(line.startswith("- new-f") for line in listed)
    assert "\n- и ещё 13\n" in text  # 10 of this message and the 3 of the first


# --- hostile nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_ten_thousand_deep_multipart_is_a_ticket_with_the_top_text(make_app, tmp_path, path):
    app = make_app()
    result = ingest_raw(app, raw_mail(deep_multipart(10_000), tmp_path, path))
    message = client_message(app, result)
    assert TOP_TEXT.decode() in message["text"]
    assert DEEP_TEXT.decode() not in message["text"]  # below the cap: skipped, not shown
    assert "Hostile shape" in acknowledgement(app)
    assert len(notices(app)) == 1


@pytest.mark.parametrize("path", PATHS)
def test_thousand_deep_forwarded_messages_are_a_ticket_with_the_top_text(make_app, tmp_path, path):
    app = make_app()
    result = ingest_raw(app, raw_mail(deep_rfc822(1_000), tmp_path, path))
    message = client_message(app, result)
    assert TOP_TEXT.decode() in message["text"]
    forwarded = [a for a in message["attachments"] if a["content_type"] == "message/rfc822"]
    assert 0 < len(forwarded) <= MAX_DEPTH  # one .eml per level read, and no more
    assert "Hostile shape" in acknowledgement(app)


def nested_text(levels: int) -> bytes:
    """Text `levels` multiparts down: the part holding it lies at depth `levels`."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (n, n)
        for n in range(levels)
    )
    closing = b"".join(b"--n%d--\r\n" % n for n in range(levels - 1, -1, -1))
    return HEAD + opening + b"Content-Type: text/plain\r\n\r\n" + DEEP_TEXT + b"\r\n" + closing


@pytest.mark.parametrize("path", PATHS)
def test_text_at_the_depth_cap_is_read_and_below_it_is_a_defect(tmp_path, path):
    at_cap = parse_message(
        raw_mail(nested_text(MAX_DEPTH), tmp_path, path), MemorySink(), max_attachment_bytes=MB
    )
    assert at_cap.new_text == DEEP_TEXT.decode()
    assert "mime_too_deep" not in at_cap.defects
    below = parse_message(
        raw_mail(nested_text(MAX_DEPTH + 1), tmp_path, path), MemorySink(), max_attachment_bytes=MB
    )
    assert below.new_text == ""
    assert "mime_too_deep" in below.defects


@pytest.mark.parametrize("path", PATHS)
def test_a_multipart_digest_chain_does_not_recurse_out(tmp_path, path):
    """Parts of a multipart/digest are message/rfc822 without saying so (RFC 2046 5.1.5)."""
    levels = 2_000
    opening = b"".join(
        b'Content-Type: multipart/digest; boundary="d%d"\r\n\r\n--d%d\r\n\r\n' % (n, n)
        for n in range(levels)
    )
    closing = b"".join(b"--d%d--\r\n" % n for n in range(levels - 1, -1, -1))
    raw = HEAD + opening + b"Subject: bottom\r\n\r\n" + DEEP_TEXT + b"\r\n" + closing
    parsed = parse_message(raw_mail(raw, tmp_path, path), MemorySink(), max_attachment_bytes=MB)
    assert "mime_too_deep" in parsed.defects


# --- a header block of 10 MB ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [header_lines(100_000), one_header(10 * MB)],
    ids=["100000_header_lines", "one_10mb_header"],
)
def test_ten_megabyte_header_block_keeps_the_body(make_app, tmp_path, junk):
    app = make_app()
    eml = tmp_path / "headers.eml"
    eml.write_bytes(header_block(junk))
    raw = RawMail.from_file(eml)
    assert raw.is_large  # the streaming path, as in production
    message = client_message(app, ingest_raw(app, raw))
    assert message["text"] == TOP_TEXT.decode()
    assert [a["filename"] for a in message["attachments"]] == ["app.log"]
    assert message["subject"] == "Hostile shape"
    assert TOP_TEXT.decode() in body_of(notices(app)[0].raw)


def test_headers_after_the_junk_still_count(tmp_path):
    """Past the header budget the fields that say how to read the body and who wrote it are
    kept (the first of each), the rest are dropped; the message reads as it does in memory."""
    late = b"Reply-To: buh@stroymontazh.ru\r\nX-Other: dropped\r\n"
    raw = header_block(header_lines(30_000), late=late)
    assert len(raw) < LARGE_MESSAGE_BYTES
    in_memory = parse_message(raw, MemorySink(), max_attachment_bytes=MB)
    streamed = parse_message(
        raw_mail(raw, tmp_path, "streaming"), MemorySink(), max_attachment_bytes=MB
    )
    for parsed in (in_memory, streamed):
        assert parsed.new_text == TOP_TEXT.decode()
        assert [a.filename for a in parsed.attachments] == ["app.log"]
        assert [a.email for a in parsed.reply_to] == ["buh@stroymontazh.ru"]
    assert "header_block_truncated" in streamed.defects


@pytest.mark.parametrize("path", PATHS)
def test_a_giant_header_value_is_bounded(tmp_path, path):
    raw = header_block(b"", late=b"Subject: " + b"s" * (6 * MB) + b"\r\n").replace(
        b"Subject: Hostile shape\r\n", b""
    )
    parsed = parse_message(raw_mail(raw, tmp_path, path), MemorySink(), max_attachment_bytes=MB)
    assert parsed.subject == "s" * MAX_FIELD_BYTES
    assert parsed.new_text == TOP_TEXT.decode()


# --- notices stay small -------------------------------------------------------------------------


def test_notice_quotes_the_start_of_a_long_text(app):
    long_text = "".join(f"Строка журнала ошибок номер {n:06d}.\n" for n in range(5_000))
    assert len(long_text) > NOTICE_TEXT_CHARS
    result = ingest_raw(app, RawMail.of(build_mail(body=long_text)))
    message = client_message(app, result)
    assert "номер 004999." in message["text"]  # the ticket keeps it all
    body = body_of(notices(app)[0].raw)
    assert "номер 000000." in body
    assert "номер 004999." not in body
    assert f"[… ещё символов: {len(message['text']) - NOTICE_TEXT_CHARS};" in body
