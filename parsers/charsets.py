"""Turning bytes into text when the label may lie: Russian mail's windows-1251/koi8-r reality."""

from __future__ import annotations

import codecs
import re

# Labels real mail uses that Python does not know, or knows under another name.
_ALIASES = {
    "cp-1251": "cp1251", "win-1251": "cp1251", "windows1251": "cp1251", "x-cp1251": "cp1251",
    "koi8r": "koi8_r", "koi-8r": "koi8_r", "x-koi8-r": "koi8_r", "koi8u": "koi8_u",
    "ibm866": "cp866", "x-ibm866": "cp866", "dos-866": "cp866", "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8", "x-unknown": "", "unknown-8bit": "", "default": "",
    "us-ascii": "ascii", "ansi_x3.4-1968": "ascii", "iso-8859-8-i": "iso-8859-8",
    "ks_c_5601-1987": "cp949", "gb2312": "gb18030", "gbk": "gb18030",
}  # fmt: skip
# Labels that clients put on text they did not check: high bytes under them are suspect.
_WEAK_LABELS = frozenset({"", "ascii", "latin-1", "iso8859-1", "cp1252"})
_CYRILLIC_GUESSES = ("cp1251", "koi8_r", "cp866")
_SINGLE_BYTE_CYRILLIC = frozenset(
    {"cp1251", "koi8-r", "koi8-u", "cp866", "iso8859-5", "mac-cyrillic"}
)
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")
_LOWER_CYRILLIC = frozenset("абвгдеёжзийклмнопрстуфхцчшщъыьэюя")


def canonical_codec(label: str | None) -> str:
    """A Python codec name for a MIME charset label, or '' when unknown or absent."""
    if not label:
        return ""
    name = label.strip().strip('"').lower()
    name = _ALIASES.get(name, name)
    if not name:
        return ""
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):  # unknown, or a label with a NUL byte in it
        return ""


def _is_multibyte_utf8(data: bytes) -> bool:
    """Valid UTF-8 with at least a few multi-byte characters (one could be chance)."""
    if len(_UTF8_SEQUENCE.findall(data[:4096])) < 3:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _cyrillic_score(text: str) -> int:
    """Real Russian text is mostly lower-case; the wrong 8-bit table gives capitals and junk."""
    return sum(1 for char in text if char in _LOWER_CYRILLIC)


def guess_cyrillic(data: bytes) -> str:
    """The best-scoring decoding among the 8-bit Cyrillic tables."""
    best_text, best_score = "", -1
    for codec in _CYRILLIC_GUESSES:
        text = data.decode(codec, "replace")
        score = _cyrillic_score(text)
        if score > best_score:
            best_text, best_score = text, score
    return best_text


def _high_byte_share(data: bytes) -> float:
    high = sum(1 for byte in data if byte >= 0x80)
    letters = sum(1 for byte in data if byte >= 0x80 or 65 <= (byte | 0x20) <= 122)
    return high / letters if letters else 0.0


def decode_bytes(data: bytes, label: str | None) -> tuple[str, str | None]:
    """Decode text bytes; returns the text and a defect code when the label was not trusted."""
    codec = canonical_codec(label)
    if data.isascii():
        return data.decode("ascii"), None
    if codec in _SINGLE_BYTE_CYRILLIC and _is_multibyte_utf8(data):
        # Every byte string "decodes" in an 8-bit table, so the label cannot be tested that
        # way; but Cyrillic text in cp1251/koi8-r is practically never valid multi-byte UTF-8
        # (its letters are lead bytes without continuation bytes), while mail re-labelled by a
        # gateway or a 1C template often is.
        return data.decode("utf-8"), "charset_mislabeled"
    if codec and codec not in _WEAK_LABELS:
        try:
            return data.decode(codec), None
        except UnicodeDecodeError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return text, None if codec in ("utf-8", "") else "charset_mislabeled"
    if codec in ("latin-1", "iso8859-1", "cp1252") and _high_byte_share(data) < 0.5:
        return data.decode(codec, "replace"), None
    return guess_cyrillic(data), "charset_mislabeled" if codec else "charset_guessed"
