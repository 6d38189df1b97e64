"""Pure parser pieces, no database: charsets, reply stripping, attachments, checklist, guard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.guard import GuardAction, decide_acknowledgement, decide_guard
from parsers.attachments import classify_attachment, sanitize_filename
from parsers.charsets import decode_bytes
from parsers.checklist import ChecklistItem, find_checklist_facts, missing_items
from parsers.classify import MessageFacts
from parsers.html_text import html_to_text
from parsers.message import decode_header_value
from parsers.quotes import split_reply
from parsers.types import ArtifactKind

RUSSIAN = "Добрый день, не открывается отчёт по складу"


@pytest.mark.parametrize(
    ("data", "label", "defect"),
    [
        (RUSSIAN.encode("cp1251"), "windows-1251", None),
        (RUSSIAN.encode("koi8-r"), "koi8-r", None),
        (RUSSIAN.encode("cp1251"), None, "charset_guessed"),
        (RUSSIAN.encode("koi8-r"), None, "charset_guessed"),
        (RUSSIAN.encode("cp866"), None, "charset_guessed"),
        (RUSSIAN.encode("cp1251"), "us-ascii", "charset_mislabeled"),
        (RUSSIAN.encode("koi8-r"), "iso-8859-1", "charset_mislabeled"),
        (RUSSIAN.encode("utf-8"), "windows-1252", "charset_mislabeled"),
        (RUSSIAN.encode("utf-8"), "x-unknown", None),
        (RUSSIAN.encode("cp1251"), "cp-1251", None),
        (RUSSIAN.encode("koi8-r"), "koi8r", None),
    ],
)
def test_decode_bytes_recovers_russian(data, label, defect):
    assert decode_bytes(data, label) == (RUSSIAN, defect)


def test_latin1_text_stays_latin1():
    assert decode_bytes("Grüße aus München".encode("latin-1"), "iso-8859-1") == (
        "Grüße aus München",
        None,
    )


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("=?utf-8?B?0J/RgNC40LLQtdGC?=", "Привет"),
        ("=?koi8-r?Q?=F0=D2=C9=D7=C5=D4?= =?koi8-r?Q?_=CD=C9=D2?=", "Привет мир"),
        ("Re: =?windows-1251?B?zvLi5fI=?= [SIS #5]", "Re: Ответ [SIS #5]"),
        ("=?utf-8?B?0J/RgNC4?=\r\n =?utf-8?B?0LLQtdGC?=", "Привет"),  # folded, split word
        ("=?utf-8?B?0J/R?= =?utf-8?B?gNC40LLQtdGC?=", "Привет"),  # character split across words
        ("=?unknown-charset?B?0J/RgNC40LLQtdGC?=", "Привет"),
        ("=?utf-8?B?broken base64?=", "=?utf-8?B?broken base64?="),
        ("Plain subject", "Plain subject"),
    ],
)
def test_decode_header_value(raw, text):
    assert decode_header_value(raw) == text


def test_raw_8bit_header_is_decoded():
    raw = RUSSIAN.encode("cp1251").decode("ascii", "surrogateescape")
    assert decode_header_value(raw) == RUSSIAN


QUOTE_CASES = [
    ("outlook_ru", "Спасибо, всё работает.\n\n________________________________\nОт: SIS Support <info@sis.ru>\nОтправлено: 3 марта 2025 г. 12:40\nКому: Пётр\nТема: [SIS #1]\n\nстарое", "Спасибо, всё работает."),
    ("outlook_en", "Done.\n\n-----Original Message-----\nFrom: SIS\nSent: Monday\nTo: me\nSubject: x\n\nold", "Done."),
    ("outlook_ru_no_separator", "Готово.\n\nОт: SIS Support <info@sis.ru>\nДата: 3 марта 2025\nТема: x\n\nстарое", "Готово."),
    ("gmail_ru", "Ок.\n\nпн, 3 мар. 2025 г. в 10:15, SIS Support <info@sis.ru>:\n> старое", "Ок."),
    ("gmail_en_wrapped", "Thanks\n\nOn Mon, Mar 3, 2025 at 10:15 AM Ivan Petrov <\nivan@example.com> wrote:\n> old", "Thanks"),
    ("thunderbird_ru", "Да.\n\n03.03.2025 10:15, SIS Support пишет:\n> старое", "Да."),
    ("apple_ru", "Спасибо\n\n3 мар. 2025 г., в 10:15, SIS <info@sis.ru> написал(а):\n\n> старое", "Спасибо"),
    ("yandex", "Принято.\n\n03.03.2025, 10:15, \"SIS Support\" <info@sis.ru>:\n> старое", "Принято."),
    ("mailru", "Понял\n\nПонедельник, 3 марта 2025, 10:15 +03:00 от SIS Support <info@sis.ru>:\n> old", "Понял"),
    ("signature_dash", "Текст\n-- \nИван\n+7 900", "Текст"),
    ("sign_off_ru", "Проблема решена.\n\nС уважением,\nИван Петров\nООО Ромашка", "Проблема решена.\n\nС уважением,\nИван Петров"),
    ("iphone_footer", "Текст\n\nОтправлено с iPhone", "Текст"),
    ("prose_from", "From: the log I see a timeout.\nPlease check.", "From: the log I see a timeout.\nPlease check."),
    ("only_quote", "> старое письмо\n> целиком", "> старое письмо\n> целиком"),
    ("inline", "> q1\na1\n> q2\na2", "a1\na2"),
    ("no_quote", "Просто текст.", "Просто текст."),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "new"), QUOTE_CASES, ids=[c[0] for c in QUOTE_CASES])
def test_split_reply(name, body, new):
    assert split_reply(body).new_text == new


@given(st.text(max_size=2000))
def test_split_reply_never_loses_words(text):
    parts = split_reply(text)
    if text.strip():
        assert parts.new_text.strip()


def test_html_to_text_keeps_quotes_as_marks():
    html = "<div>Ответ</div><blockquote><p>вопрос</p></blockquote><script>x()</script>"
    assert html_to_text(html) == "Ответ\n> вопрос"


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\evil.exe", "evil.exe"),
        ("\u202eexe.txt", "exe.txt"),
        ("CON.txt", "_CON.txt"),
        ("Журнал ошибок.log", "Журнал ошибок.log"),
        ("a\x00b\x07c.log", "abc.log"),
        ("...", "attachment"),
        ("", "attachment"),
        (None, "attachment"),
        ("x" * 300 + ".log", "x" * 196 + ".log"),
    ],
)
def test_sanitize_filename(raw, safe):
    assert sanitize_filename(raw) == safe


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
ZIP = b"PK\x03\x04" + b"\x00" * 20


@pytest.mark.parametrize(
    ("name", "content_type", "head", "kind"),
    [
        ("crash.dmp", "application/octet-stream", b"MDMP\x93\xa7", ArtifactKind.DUMP),
        ("java_pid1.hprof", "application/octet-stream", b"JAVA PROFILE 1.0.2\x00", ArtifactKind.DUMP),
        ("core.1234", "application/octet-stream", b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x04\x00", ArtifactKind.DUMP),
        ("error.txt", "text/plain", PNG, ArtifactKind.SCREENSHOT),
        ("image001.png", "image/png", PNG, ArtifactKind.SCREENSHOT),
        ("pasted", "image/jpeg", b"\xff\xd8\xff\xe0", ArtifactKind.SCREENSHOT),
        ("workspace.zip", "application/zip", ZIP, ArtifactKind.ARCHIVE),
        ("report.docx", "application/vnd.openxmlformats", ZIP, ArtifactKind.DOCUMENT),
        ("server.log", "text/plain", b"anything", ArtifactKind.LOG),
        ("output.txt", "text/plain", b"2025-03-03 10:00:00 a\n2025-03-03 10:00:01 b\n2025-03-03 10:00:02 c\n", ArtifactKind.LOG),
        ("notes.txt", "text/plain", b"just some notes", ArtifactKind.DOCUMENT),
        ("settings.xml", "application/xml", b"<config/>", ArtifactKind.CONFIG),
        ("spec.pdf", "application/pdf", b"%PDF-1.7", ArtifactKind.DOCUMENT),
        ("data.bin", "application/octet-stream", b"\x01\x02", ArtifactKind.OTHER),
    ],
)  # fmt: skip
def test_classify_attachment(name, content_type, head, kind):
    assert classify_attachment(name, content_type, head) == kind


@pytest.mark.parametrize(
    ("text", "kinds", "missing"),
    [
        ("Не работает.", [], ["version", "environment", "scenario", "error_text", "screenshots", "logs"]),
        ("Cubisio 3.2.1 на Windows 10. При нажатии «Печать» ошибка: \"Access denied\".",
         [ArtifactKind.SCREENSHOT, ArtifactKind.LOG], []),
        ("Version 4.0, Chrome. Steps to reproduce: 1. open 2. save. Error: timeout", [], ["screenshots", "logs"]),
        ("версия 3.1, PostgreSQL 14", [ArtifactKind.DUMP], ["scenario", "error_text", "screenshots"]),
        ("Traceback (most recent call last): boom", [ArtifactKind.ARCHIVE], ["version", "environment", "scenario", "screenshots"]),
    ],
)  # fmt: skip
def test_checklist_missing_items(text, kinds, missing):
    assert [str(item) for item in missing_items(find_checklist_facts(text, kinds))] == missing


def test_checklist_reports_version_found():
    assert find_checklist_facts("Cubisio 3.2.1 падает", []).product_version == "3.2.1"
    assert ChecklistItem.VERSION in find_checklist_facts("сборка 1234", []).present


def facts(**changes) -> MessageFacts:
    base = {
        "sender_email": "a@b.ru", "auto_submitted": None, "is_dsn": False,
        "daemon_address": None, "autoreply_header": None, "precedence": None,
        "list_header": None, "unsubscribe_header": None, "suppresses_autoreply": False, "has_empty_return_path": False,
        "autoreply_subject": None, "bounce_subject": None, "loop_markers": (),
    }  # fmt: skip
    return MessageFacts(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, "from_person"),
        ({"loop_markers": ("info@sis.ru",), "auto_submitted": "auto-replied"}, "loop_own_message"),
        ({"loop_markers": ("robot@other.example",)}, "from_person"),
        (
            {
                "is_dsn": True,
                "auto_submitted": "auto-replied",
                "daemon_address": "MAILER-DAEMON@mx.example",
            },
            "dsn_bounce",
        ),
        ({"daemon_address": "postmaster@mx.example"}, "mailer_daemon"),
        ({"auto_submitted": "auto-generated"}, "auto_submitted"),
        ({"autoreply_header": "X-Autoreply: yes"}, "x_autoreply"),
        ({"precedence": "list", "list_header": "List-Id: <u.lists.example>"}, "list_message"),
        ({"precedence": "list"}, "list_message"),
        ({"precedence": "bulk"}, "precedence_bulk"),
        ({"precedence": "junk"}, "precedence_bulk"),
        ({"unsubscribe_header": "List-Unsubscribe: <mailto:u@x>"}, "list_message"),
        (
            {"unsubscribe_header": "List-Unsubscribe: <mailto:u@x>", "precedence": "bulk"},
            "precedence_bulk",
        ),
        ({"has_empty_return_path": True}, "empty_return_path"),
        ({"bounce_subject": "Undeliverable"}, "bounce_subject"),
        ({"autoreply_subject": "Автоматический ответ"}, "autoreply_subject"),
        ({"suppresses_autoreply": True}, "from_person"),
    ],
)
def test_guard_rules_in_order(changes, reason):
    decision = decide_guard(facts(**changes), frozenset({"info@sis.ru"}))
    assert decision.reason == reason
    assert decision.explanation.startswith("accepted" if reason == "from_person" else "ignored: ")
    assert decision.action is (
        GuardAction.ACCEPT if reason == "from_person" else GuardAction.IGNORE
    )


@pytest.mark.parametrize(
    ("changes", "today", "bouncing", "expected"),
    [
        ({}, 0, False, (True, "ack_sent")),
        ({}, 5, False, (False, "ack_rate_limited")),
        ({}, 0, True, (False, "sender_bouncing")),
        ({"suppresses_autoreply": True}, 0, False, (False, "sender_suppresses_autoreply")),
    ],
)
def test_acknowledgement_decision(changes, today, bouncing, expected):
    decision = decide_acknowledgement(
        facts(**changes), acks_today=today, limit=5, sender_bouncing=bouncing
    )
    assert (decision.send, decision.reason) == expected


def test_charset_label_with_nul_byte_is_unknown_not_an_error():
    """Found by tests/test_parser_fuzz.py: codecs.lookup raises ValueError on a NUL."""
    assert decode_bytes(RUSSIAN.encode("cp1251"), "windows-\x001251") == (
        RUSSIAN,
        "charset_guessed",
    )
