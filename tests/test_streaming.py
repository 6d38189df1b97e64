"""Large messages: the streaming pre-pass decodes big parts into the store, the rest parses as usual.

The strongest check is equivalence: with thresholds lowered so that every non-text part is
streamed, every fixture and a sample of the shared corpus must parse exactly as it does in
memory. The other tests build real large messages on disk.
"""

from __future__ import annotations

import base64
import hashlib
import os
import quopri
from pathlib import Path

import pytest

from parsers import streaming
from parsers.message import parse_message
from parsers.rawmail import LARGE_MESSAGE_BYTES, RawMail
from parsers.streaming import PLACEHOLDER_HEADER, SizeBudget, slim_message
from tests.conftest import FIXTURES, SHARED
from tests.sinks import MemorySink

MB = 1024 * 1024
CORPUS = SHARED / "corpus"


def _as_large(path: Path) -> RawMail:
    """A RawMail that takes the streaming path whatever its size."""
    return RawMail(size=path.stat().st_size, path=path)


def _summary(parsed):
    return {
        "subject": parsed.subject,
        "sender": parsed.sender,
        "full_text": parsed.full_text,
        "new_text": parsed.new_text,
        "report": parsed.report,
        "attachments": [
            (a.filename, a.kind, a.inline, a.refused)
            + (() if a.content_type == "message/rfc822" else (a.size, a.sha256))
            for a in parsed.attachments
        ],
    }


def _equivalence_cases() -> list[Path]:
    cases = sorted(FIXTURES.glob("*.eml"))
    if CORPUS.is_dir():
        corpus = sorted(
            p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".eml", ".msg", ".txt")
        )
        cases += corpus[::4]
    return cases


@pytest.mark.parametrize("path", _equivalence_cases(), ids=lambda p: p.name)
def test_streamed_parse_equals_in_memory_parse(path, monkeypatch):
    expected = _summary(
        parse_message(path.read_bytes(), MemorySink(), max_attachment_bytes=50 * MB)
    )
    monkeypatch.setattr(streaming, "PART_IN_MEMORY", 16)
    sink = MemorySink()
    streamed = parse_message(_as_large(path), sink, max_attachment_bytes=50 * MB)
    assert _summary(streamed) == expected


def test_corpus_is_there_or_the_skip_says_why():
    if not CORPUS.is_dir():
        pytest.skip(f"../shared/corpus is absent ({CORPUS}); equivalence ran on fixtures only")
    assert len(_equivalence_cases()) > 50


def _big_mail(
    path: Path, parts: list[tuple[str, str, bytes, str]], text: str = "См. вложения."
) -> Path:
    """Write a multipart/mixed message part by part, never holding it whole."""
    boundary = "----=_NextPart_000_0001_01DB8C3A.5F2E1B40"
    with path.open("wb") as out:
        out.write(
            (
                "From: =?utf-8?B?0JjQstCw0L0=?= <ivan@roga-kopyta.ru>\r\n"
                "To: info@sis.ru\r\nSubject: =?utf-8?B?0JTQsNC80L8g0L/QsNC80Y/RgtC4?=\r\n"
                "Message-ID: <big-1@roga-kopyta.ru>\r\nDate: Mon, 3 Mar 2025 10:00:00 +0300\r\n"
                f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
                "This is a multi-part message in MIME format.\r\n\r\n"
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
            ).encode()
            + text.encode()
            + b"\r\n"
        )
        for name, content_type, data, encoding in parts:
            out.write(
                (
                    f'--{boundary}\r\nContent-Type: {content_type}; name="{name}"\r\n'
                    f"Content-Transfer-Encoding: {encoding}\r\n"
                    f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'
                ).encode()
            )
            if encoding == "base64":
                for start in range(0, len(data), 57 * 20_000):
                    out.write(
                        base64.encodebytes(data[start : start + 57 * 20_000]).replace(
                            b"\n", b"\r\n"
                        )
                    )
            elif encoding == "quoted-printable":
                out.write(quopri.encodestring(data).replace(b"\n", b"\r\n") + b"\r\n")
            else:
                out.write(data + b"\r\n")
        out.write(f"--{boundary}--\r\n".encode())
    return path


def test_large_message_streams_its_dump_into_the_store(tmp_path):
    dump = os.urandom(24 * MB)
    log = ("2025-03-03 10:00:00 ERROR Ошибка расчёта = себестоимость\n" * 200_000).encode()
    path = _big_mail(
        tmp_path / "big.eml",
        [
            ("cubisio.dmp", "application/octet-stream", dump, "base64"),
            ("server.log", "text/plain", log, "quoted-printable"),
        ],
    )
    raw = RawMail.from_file(path)
    assert raw.is_large
    assert raw.size > LARGE_MESSAGE_BYTES
    sink = MemorySink()
    parsed = parse_message(raw, sink, max_attachment_bytes=100 * MB)
    assert parsed.subject == "Дамп памяти"
    assert parsed.new_text == "См. вложения."
    by_name = {a.filename: a for a in parsed.attachments}
    assert by_name["cubisio.dmp"].sha256 == hashlib.sha256(dump).hexdigest()
    assert by_name["cubisio.dmp"].kind == "dump"
    # Quoted-printable text travels with CRLF line ends, which decoding keeps (as the stdlib does).
    assert by_name["server.log"].sha256 == hashlib.sha256(log.replace(b"\n", b"\r\n")).hexdigest()
    assert by_name["server.log"].kind == "log"
    assert sink.blobs[by_name["cubisio.dmp"].sha256] == dump
    in_memory = parse_message(path.read_bytes(), MemorySink(), max_attachment_bytes=100 * MB)
    assert _summary(in_memory) == _summary(parsed)


def test_slim_copy_is_small_and_keeps_the_structure(tmp_path):
    path = _big_mail(
        tmp_path / "big.eml", [("a.bin", "application/octet-stream", os.urandom(12 * MB), "base64")]
    )
    with path.open("rb") as stream:
        slim = slim_message(stream, MemorySink(), SizeBudget(100 * MB, 100 * MB))
    assert len(slim.data) < 4096
    assert slim.data.count(PLACEHOLDER_HEADER.encode()) == 1
    assert slim.data.rstrip().endswith(b"--")


def test_over_limit_attachment_is_refused_and_the_rest_kept(tmp_path):
    big = os.urandom(20 * MB)
    path = _big_mail(
        tmp_path / "big.eml",
        [
            ("huge.hprof", "application/octet-stream", big, "base64"),
            ("screen.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "base64"),
        ],
    )
    sink = MemorySink()
    parsed = parse_message(RawMail.from_file(path), sink, max_attachment_bytes=10 * MB)
    huge, screen = parsed.attachments
    assert huge.refused == "attachment_too_large"
    assert huge.sha256 == ""
    assert huge.size == len(big)  # counted to the end, for the note to the client
    assert hashlib.sha256(big).hexdigest() not in sink.blobs
    assert sink.aborted == 1
    assert screen.refused is None
    assert screen.sha256 in sink.blobs
    assert parsed.new_text == "См. вложения."
    assert any(defect.startswith("attachment_too_large:huge.hprof") for defect in parsed.defects)


def test_message_budget_refuses_what_comes_after_it_is_spent(tmp_path):
    first, second = os.urandom(6 * MB), os.urandom(6 * MB)
    path = _big_mail(
        tmp_path / "big.eml",
        [("one.dmp", "application/octet-stream", first, "base64"),
         ("two.dmp", "application/octet-stream", second, "base64")],
    )  # fmt: skip
    parsed = parse_message(
        RawMail.from_file(path),
        MemorySink(),
        max_attachment_bytes=8 * MB,
        max_message_bytes=10 * MB,
    )
    assert [a.refused for a in parsed.attachments] == [None, "message_too_large"]


def test_in_memory_path_applies_the_same_limits():
    from tests.mailbuilder import build_mail

    raw = build_mail(
        attachments=[("a.log", b"x" * 3000, "text/plain"), ("b.log", b"y" * 3000, "text/plain")]
    )
    parsed = parse_message(raw, MemorySink(), max_attachment_bytes=4000, max_message_bytes=5000)
    assert [a.refused for a in parsed.attachments] == [None, "message_too_large"]
    parsed = parse_message(raw, MemorySink(), max_attachment_bytes=2000)
    assert [a.refused for a in parsed.attachments] == ["attachment_too_large"] * 2


def test_a_forged_placeholder_header_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "PART_IN_MEMORY", 16)
    path = tmp_path / "forged.eml"
    path.write_bytes(
        b"From: a@b.ru\r\nTo: info@sis.ru\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\n--b1\r\n"
        b'Content-Type: application/octet-stream; name="x.bin"\r\n'
        b"X-Maild-Extracted: 000000000000000000000000-0\r\n\r\n"
        b"tiny\r\n--b1--\r\n"
    )
    sink = MemorySink()
    parsed = parse_message(_as_large(path), sink, max_attachment_bytes=MB)
    (attachment,) = parsed.attachments
    assert sink.blobs[attachment.sha256] == b"tiny"


def test_truncated_large_message_keeps_what_arrived(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "PART_IN_MEMORY", 16)
    data = os.urandom(300_000)
    path = _big_mail(tmp_path / "t.eml", [("cut.dmp", "application/octet-stream", data, "base64")])
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    parsed = parse_message(_as_large(path), MemorySink(), max_attachment_bytes=MB)
    (attachment,) = parsed.attachments
    assert 0 < attachment.size < len(data)
    assert parsed.new_text == "См. вложения."


def test_line_without_newline_longer_than_the_line_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "PART_IN_MEMORY", 16)
    data = bytes(range(256)).replace(b"\n", b"").replace(b"\r", b"") * 2000  # 8bit, no line breaks
    path = _big_mail(tmp_path / "b.eml", [("blob.bin", "application/octet-stream", data, "binary")])
    parsed = parse_message(_as_large(path), MemorySink(), max_attachment_bytes=MB)
    (attachment,) = parsed.attachments
    assert attachment.sha256 == hashlib.sha256(data).hexdigest()
