"""Charset decisions on the byte shapes that Russian (and Japanese) mail really has (issue 14).

The whole-message cases are golden fixtures in tests/fixtures/mail (utf8_one_invalid_byte,
no_charset_*, iso2022jp_vendor_chars, cp1251_labelled_koi8r, koi8r_labelled_cp1251); here
are the decisions one by one, and the properties that must hold for any text.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.charsets import decode_bytes, decode_declared, decode_iso2022_jp_ms, guess_codec
from parsers.message import decode_header_value, parse_message
from tests.sinks import MemorySink

REQUEST = "Добрый день! Программа Cubisio не запускается после обновления, ошибка в журнале."
UKRAINIAN = "Доброго дня! Програма не запускається після оновлення, їх журнал є у вкладенні."
SUBJECTS = ("Ошибка при запуске", "Не печатается накладная", "Счёт на продление лицензии")


@pytest.mark.parametrize("position", [0, 13, 40, len(REQUEST.encode()) - 1])
def test_one_invalid_byte_keeps_utf8_with_one_replacement(position):
    data = REQUEST.encode()
    # Insert at a character boundary: the byte itself is the only damage.
    while position and (data[position] & 0xC0) == 0x80:
        position -= 1
    damaged = data[:position] + b"\xff" + data[position:]
    text, defect = decode_bytes(damaged, "utf-8")
    assert text == REQUEST.encode()[:position].decode() + "\ufffd" + data[position:].decode()
    assert defect == "utf8_invalid_bytes"
    assert decode_bytes(damaged, None)[0] == text  # unlabelled: the same reading


def test_utf8_label_over_cp1251_text_is_still_overruled():
    """Many invalid bytes mean the label lies, not that a byte was damaged."""
    assert decode_bytes(REQUEST.encode("cp1251"), "utf-8") == (REQUEST, "charset_mislabeled")


@pytest.mark.parametrize(("actual", "label"), [("cp1251", "koi8-r"), ("koi8-r", "windows-1251")])
@pytest.mark.parametrize("text", [REQUEST, *SUBJECTS])
def test_windows1251_and_koi8r_swapped_labels_are_overruled(actual, label, text):
    assert decode_bytes(text.encode(actual), label) == (text, "charset_mislabeled")


@pytest.mark.parametrize(("actual", "label"), [("cp1251", "windows-1251"), ("koi8-r", "koi8-r")])
@pytest.mark.parametrize("text", [REQUEST, *SUBJECTS, "ОШИБКА ПРИ ЗАПУСКЕ СЕРВЕРА"])
def test_a_true_cyrillic_label_is_kept(actual, label, text):
    assert decode_bytes(text.encode(actual), label) == (text, None)


def test_ukrainian_letters_read_in_their_own_tables():
    assert decode_bytes(UKRAINIAN.encode("koi8-u"), "koi8-u") == (UKRAINIAN, None)
    assert decode_bytes(UKRAINIAN.encode("cp1251"), "windows-1251") == (UKRAINIAN, None)
    assert decode_bytes(UKRAINIAN.encode("cp1251"), None) == (UKRAINIAN, "charset_guessed")


@pytest.mark.parametrize("codec", ["cp1251", "koi8-r", "cp866"])
def test_undeclared_text_is_guessed_once_for_subject_and_body(codec):
    raw = (
        b"From: sklad@kombinat.ru\r\nTo: support@sis.ru\r\nSubject: "
        + "Ошибка печати".encode(codec)
        + b"\r\nMessage-ID: <x@kombinat.ru>\r\n\r\n"
        + REQUEST.encode(codec)
        + b"\r\n"
    )
    parsed = parse_message(raw, MemorySink(), max_attachment_bytes=2**20)
    assert (parsed.subject, parsed.full_text) == ("Ошибка печати", REQUEST)


def test_undeclared_latin1_is_not_read_as_cyrillic():
    assert guess_codec("Grüße aus München, die Lizenz läuft ab".encode("latin-1")) == "cp1252"
    assert guess_codec(REQUEST.encode("cp1251")) == "cp1251"


@pytest.mark.parametrize(
    "text", ["①サーバー停止", "㈱テスト ②番", "Ⅲ期 ローマ数字 №", "ｶﾀｶﾅ半角", "普通の件名"]
)
def test_iso2022jp_with_vendor_characters_decodes(text):
    sjis = text.encode("cp932")
    jis = _to_jis(sjis)
    assert decode_iso2022_jp_ms(jis) == text
    assert decode_declared(jis, "iso2022_jp") == text
    word = f"=?ISO-2022-JP?B?{base64.b64encode(jis).decode()}?="
    assert decode_header_value(f"Subject {word}") == f"Subject {text}"


def test_damaged_iso2022jp_word_is_shown_as_it_came():
    word = "=?ISO-2022-JP?B?" + base64.b64encode(b"\x1b$B%5\x1b(Z").decode() + "?="
    assert decode_header_value(word) == word


def test_shift_jis_label_over_cp932_text_reads_the_vendor_characters():
    assert decode_bytes("①番 ㈱".encode("cp932"), "shift_jis") == ("①番 ㈱", None)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x4FF), max_size=200))
def test_valid_utf8_is_never_reinterpreted(text):
    for label in ("utf-8", None, "us-ascii"):
        decoded, _ = decode_bytes(text.encode(), label)
        assert decoded == text


def _to_jis(sjis: bytes) -> bytes:
    """Shift_JIS (cp932) bytes to ISO-2022-JP as Windows writes it (CP50221)."""
    out, mode, index = bytearray(), "ascii", 0
    while index < len(sjis):
        lead = sjis[index]
        if lead < 0x80:
            want, chunk, index = "ascii", bytes([lead]), index + 1
        elif 0xA1 <= lead <= 0xDF:
            want, chunk, index = "kana", bytes([lead - 0x80]), index + 1
        else:
            trail = sjis[index + 1]
            first = (lead - (0x81 if lead < 0xA0 else 0xC1)) * 2 + 0x21
            if trail >= 0x9F:
                first, second = first + 1, trail - 0x7E
            else:
                second = trail - (0x20 if trail >= 0x80 else 0x1F)
            want, chunk, index = "jis", bytes((first, second)), index + 2
        if want != mode:
            out += {"ascii": b"\x1b(B", "kana": b"\x1b(I", "jis": b"\x1b$B"}[want]
            mode = want
        out += chunk
    return bytes(out + (b"\x1b(B" if mode != "ascii" else b""))
