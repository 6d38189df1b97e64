"""Engineer replies as Thunderbird and Outlook build them (tests/engineer_mail.py): the parser
must find exactly what the engineer wrote, above the quote that the client put below it.

The notice being answered is built the way maild.compose builds one: compat32 headers with
RFC 2047 words, text/plain in UTF-8 quoted-printable, Reply-To the support address.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.policy import compat32
from pathlib import Path

import pytest

from parsers.message import parse_message
from parsers.rawmail import RawMail
from parsers.types import ParsedMessage
from tests.engineer_mail import outlook_reply, thunderbird_reply
from tests.sinks import MemorySink

MB = 2**20
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "engineer"
NOTICE_ID = "maild.1.abc@sis.ru"
SUBJECT = "[SIS #1] Новое обращение: Не открывается отчёт"
ENGINEER = "Иван Иванов <ivanov@sis.ru>"
MX_RESULTS = "mx.sis.ru; dkim=pass header.d=sis.ru header.s=mail; spf=pass smtp.mailfrom=sis.ru"

NOTICE_TEXT = """\
Новое обращение: [SIS #1] Не открывается отчёт

Клиент: Пётр Сидоров <sidorov@stroymontazh.ru> (ООО «СтройМонтаж»)

Критичность: normal · Статус: open · Исполнитель: не назначен
Первый ответ до: 03.03.2026 16:14

Добрый день!
После обновления Cubisio до 3.2.1 не открывается отчёт «Реестр договоров»: окно зависает на 100%, через минуту приложение закрывается.
Пробовали переустановить клиент — не помогло.
Скриншот ошибки прикладываю.

--
Ответ на это письмо уйдёт клиенту и участникам обращения (цитата будет удалена).
Внутренний комментарий: пишите на info+comment@sis.ru или начните письмо строкой #comment.
Команды в первых строках письма: #take, #assign ИМЯ, #priority critical|high|normal|low, #status open|waiting|resolved|closed, #help.
"""

BODIES = {
    "russian": (
        "Пётр, добрый день!\n"
        "Проверил на стенде: ошибка воспроизводится на версии 3.2.1, а в версии 3.2.2 она уже "
        "исправлена, обновление лежит в личном кабинете.\n"
        "Если после обновления отчёт всё равно не откроется, пришлите, пожалуйста, журнал сервера."
    ),
    "commands": "#take\n#priority high\n\nТекст ответа: беру в работу, посмотрю журнал сегодня до 18:00.",
}

FIXTURE_BODY = (
    "Пётр, добрый день!\n\n"
    "Обновите, пожалуйста, Cubisio до 3.2.2: в ней это исправлено.\n\n"
    "С уважением,\nИван Иванов\nСИС, техническая поддержка"
)


def notice(message_id: str = NOTICE_ID) -> bytes:
    """A maild notice to the engineer, as maild.compose puts it on the wire."""
    utf8_qp = Charset("utf-8")
    utf8_qp.body_encoding = QP
    mail = Message()
    mail.set_payload(NOTICE_TEXT, utf8_qp)
    mail["From"] = "SIS Support <info@sis.ru>"
    mail["To"] = f"{Header('Иван Иванов', 'utf-8').encode()} <ivanov@sis.ru>"
    mail["Reply-To"] = "info@sis.ru"
    mail["Subject"] = Header(SUBJECT, "utf-8").encode()
    mail["Date"] = "Tue, 03 Mar 2026 09:15:00 +0000"
    mail["Message-ID"] = f"<{message_id}>"
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Auto-Response-Suppress"] = "All"
    mail["X-Maild-Loop"] = "info@sis.ru"
    mail["X-Loop"] = "info@sis.ru"
    return mail.as_bytes(policy=compat32.clone(linesep="\r\n", max_line_length=78))


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 4, 3, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(3)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cubisio-server.log", "2026-03-03 12:10:01 ERROR ReportService\n" * 40)
    return buffer.getvalue()


LOG = "".join(
    f"2026-03-03 12:{minute:02d}:17,311 ERROR [ReportService] Отчёт не сформирован: таймаут\n"
    for minute in range(20)
).encode("utf-8")
ATTACHMENTS = [
    ("Журнал ошибок сервера 03.03.2026.log", LOG, "text/plain"),
    ("screenshot.png", png_bytes(), "image/png"),
    ("logs.zip", zip_bytes(), "application/zip"),
]

Builder = Callable[..., bytes]
BUILDERS: dict[str, tuple[Builder, str]] = {
    "thunderbird": (thunderbird_reply, "Re: "),
    "outlook": (outlook_reply, "RE: "),
}


def parse(raw: bytes) -> ParsedMessage:
    return parse_message(
        RawMail.of(raw), MemorySink(), max_attachment_bytes=10 * MB, max_message_bytes=25 * MB
    )


def notice_lines() -> set[str]:
    return {line.strip() for line in NOTICE_TEXT.splitlines() if line.strip()}


def assert_no_notice_line(new_text: str) -> None:
    leaked = [line for line in new_text.splitlines() if line.strip() in notice_lines()]
    assert leaked == []


@pytest.mark.parametrize("with_attachments", [False, True], ids=["text", "attachments"])
@pytest.mark.parametrize("body_name", sorted(BODIES))
@pytest.mark.parametrize("client", sorted(BUILDERS))
def test_parser_finds_the_engineers_text(client, body_name, with_attachments):
    build, prefix = BUILDERS[client]
    body = BODIES[body_name]
    attachments = ATTACHMENTS if with_attachments else None
    raw = build(
        notice(),
        sender=ENGINEER,
        body=body,
        attachments=attachments,
        extra_headers={"Authentication-Results": MX_RESULTS},
    )
    parsed = parse(raw)
    assert parsed.new_text == body
    assert_no_notice_line(parsed.new_text)
    assert parsed.subject == prefix + SUBJECT
    assert parsed.in_reply_to == (NOTICE_ID,)
    assert parsed.references == (NOTICE_ID,)
    assert parsed.sender is not None
    assert parsed.sender.email == "ivanov@sis.ru"
    assert parsed.sender.name == "Иван Иванов"
    assert [address.email for address in parsed.to] == ["info@sis.ru"]
    assert parsed.headers[0][0] == "authentication-results"
    names = [item.filename for item in parsed.attachments if not item.inline]
    assert names == [name for name, _, _ in attachments or []]


@pytest.mark.parametrize("client", sorted(BUILDERS))
def test_attachments_arrive_intact(client):
    build, _ = BUILDERS[client]
    raw = build(notice(), sender=ENGINEER, body=BODIES["russian"], attachments=ATTACHMENTS)
    parsed = parse(raw)
    digests = {item.filename: item.sha256 for item in parsed.attachments}
    for name, data, _ in ATTACHMENTS:
        assert digests[name] == hashlib.sha256(data).hexdigest(), name


def test_thunderbird_quotes_the_notice_below_a_russian_attribution():
    raw = thunderbird_reply(notice(), sender=ENGINEER, body=BODIES["russian"])
    parsed = parse(raw)
    text = parsed.full_text
    assert "03.03.2026 12:15, SIS Support пишет:" in text
    assert "> Клиент: Пётр Сидоров <sidorov@stroymontazh.ru> (ООО «СтройМонтаж»)" in text
    assert "\n>\n" in raw.decode("utf-8").replace("\r\n", "\n")
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"User-Agent: Mozilla Thunderbird\r\n" in header_block
    assert b"format=flowed" in header_block


def test_outlook_puts_the_notice_unquoted_below_its_header_block():
    raw = outlook_reply(notice(), sender=ENGINEER, body=BODIES["russian"])
    parsed = parse(raw)
    text = parsed.full_text
    assert "От: SIS Support <info@sis.ru>" in text
    assert "Отправлено: вторник, 3 марта 2026 г. 12:15" in text
    assert f"Тема: {SUBJECT}" in text
    assert "\nКлиент: Пётр Сидоров <sidorov@stroymontazh.ru> (ООО «СтройМонтаж»)" in text
    assert "\n> " not in text
    assert b"<div class=3DWordSection1>" in raw
    assert b"Thread-Index: " in raw


@pytest.mark.parametrize("client", sorted(BUILDERS))
def test_wire_format_is_ready_for_smtp(client):
    build, _ = BUILDERS[client]
    raw = build(
        notice(),
        sender=ENGINEER,
        body=BODIES["commands"],
        attachments=ATTACHMENTS,
        extra_headers={"Authentication-Results": MX_RESULTS},
    )
    assert raw.startswith(b"Authentication-Results: mx.sis.ru;")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert raw.split(b"\r\n\r\n", 1)[0].isascii()


@pytest.mark.parametrize("client", sorted(BUILDERS))
def test_to_and_cc_can_be_given(client):
    build, _ = BUILDERS[client]
    raw = build(
        notice(),
        sender=ENGINEER,
        body=BODIES["russian"],
        to="Пётр Сидоров <sidorov@stroymontazh.ru>",
        cc="Мария Петрова <petrova@sis.ru>, info@sis.ru",
    )
    parsed = parse(raw)
    assert [(a.name, a.email) for a in parsed.to] == [("Пётр Сидоров", "sidorov@stroymontazh.ru")]
    assert [a.email for a in parsed.cc] == ["petrova@sis.ru", "info@sis.ru"]
    assert parsed.new_text == BODIES["russian"]


# --- static fixtures -----------------------------------------------------------------------

FIXTURE_NOTICE_ID = "maild.1.notice@sis.ru"
FIXTURE_FILES = {"thunderbird": "thunderbird_reply.eml", "outlook": "outlook_reply.eml"}


def write_fixtures(folder: Path = FIXTURES) -> None:
    """Regenerate tests/fixtures/engineer/*.eml (ids and boundaries come out new each time)."""
    folder.mkdir(parents=True, exist_ok=True)
    for client, filename in FIXTURE_FILES.items():
        build, _ = BUILDERS[client]
        raw = build(
            notice(FIXTURE_NOTICE_ID),
            sender=ENGINEER,
            body=FIXTURE_BODY,
            extra_headers={"Authentication-Results": MX_RESULTS},
        )
        (folder / filename).write_bytes(raw)


@pytest.mark.parametrize("client", sorted(FIXTURE_FILES))
def test_static_fixture_parses(client):
    raw = (FIXTURES / FIXTURE_FILES[client]).read_bytes()
    parsed = parse(raw)
    assert parsed.new_text.startswith("Пётр, добрый день!")
    assert "Обновите, пожалуйста, Cubisio до 3.2.2: в ней это исправлено." in parsed.new_text
    assert_no_notice_line(parsed.new_text)
    assert parsed.in_reply_to == (FIXTURE_NOTICE_ID,)
    assert parsed.sender is not None
    assert parsed.sender.email == "ivanov@sis.ru"
    assert parsed.header("authentication-results") == MX_RESULTS
    assert parsed.subject == BUILDERS[client][1] + SUBJECT
