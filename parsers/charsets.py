"""Turning bytes into text when the label may lie: Russian mail's windows-1251/koi8-r reality.

Decisions here are made by scoring candidate decodings with a small model of what real text
looks like (`_plausibility`), not by a general-purpose detector: on short Russian texts
(subjects, one-line requests) charset-normalizer answers shift_jis for koi8-r and big5 for
Latin-1 (measured in bench/charsets.py), while a letter-frequency and letter-case model of
Russian and Ukrainian needs a handful of letters.
"""

from __future__ import annotations

import codecs
import functools
import math
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
_LATIN_LABELS = frozenset({"latin-1", "iso8859-1", "cp1252"})
# koi8-u reads koi8-r text the same and Ukrainian letters besides (in koi8-r box-drawing places).
_CYRILLIC_GUESSES = ("cp1251", "koi8-u", "cp866")
SINGLE_BYTE_CYRILLIC = frozenset(
    {"cp1251", "koi8-r", "koi8-u", "cp866", "iso8859-5", "mac-cyrillic"}
)
# The declared codec's vendor superset: Windows and Japanese mail programs write the
# vendor characters (① and the NEC/IBM rows) under the standard labels.
_VENDOR_SUPERSETS = {
    "shift_jis": "cp932", "euc_jp": "euc_jis_2004", "gb2312": "gb18030", "euc_kr": "cp949",
    "big5": "big5hkscs",
}  # fmt: skip
# Codecs whose text is 7-bit bytes with escapes: ASCII bytes say nothing about them.
_SEVEN_BIT_CODECS = ("iso2022", "utf-7", "hz")
_ISO2022_JP = frozenset({"iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_ext"})

# Russian and Ukrainian letter frequencies, per cent of letters (case-folded).
_LETTER_PERCENT = {
    "о": 10.97, "е": 8.45, "а": 8.01, "и": 7.35, "н": 6.70, "т": 6.26, "с": 5.47, "р": 4.73,
    "в": 4.54, "л": 4.40, "к": 3.49, "м": 3.21, "д": 2.98, "п": 2.81, "у": 2.62, "я": 2.01,
    "ы": 1.90, "ь": 1.74, "г": 1.70, "з": 1.65, "б": 1.59, "ч": 1.44, "й": 1.21, "х": 0.97,
    "ж": 0.94, "ш": 0.73, "ю": 0.64, "ц": 0.48, "щ": 0.36, "э": 0.32, "ф": 0.26, "ъ": 0.04,
    "ё": 0.20, "і": 3.0, "ї": 0.6, "є": 0.4, "ґ": 0.05, "ў": 0.05,
}  # fmt: skip
_LETTER_WEIGHT = {letter: math.log(percent) for letter, percent in _LETTER_PERCENT.items()}
_RARE_LETTER = math.log(0.01)
# Per letter of a word in mixed case ("дНАПШИ"): what a wrong table gives.
_CASE_FLIP = -4.0
# Box drawing, currency signs, controls: what a wrong table gives in place of letters.
_JUNK = -4.0
# Punctuation that the 8-bit tables and UTF-8 carry in real text.
_TYPOGRAPHY = frozenset("«»—–‘’‚“”„…№\xa0•·©®°±§¶†‰€™")
# A word with at least one letter outside ASCII (words of ASCII letters score nothing).
_HIGH_WORD = re.compile(r"[^\W\d_]*[^\W\d_\x00-\x7f][^\W\d_]*")
# Characters that may be neither a letter nor a space: outside ASCII and outside the
# Cyrillic letters (the block's signs and combining marks stay in).
_MAYBE_SYMBOL = re.compile(r"[^\x00-\x7f\u0400-\u0481\u048a-\u04ff]")
_ENOUGH = 2000
# How much better (per character outside ASCII) another table must read before a declared
# single-byte label is overruled.
_OVERRULE_MARGIN = 0.6
_HIGH_BYTES = bytes(range(0x80, 0x100))
_ASCII_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))
_MIN_EVIDENCE = 4


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


def decode_declared(data: bytes, codec: str) -> str:
    """Strict decoding in the declared codec or its vendor superset; UnicodeDecodeError if
    neither reads it."""
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        if codec in _ISO2022_JP:
            return decode_iso2022_jp_ms(data)
        superset = _VENDOR_SUPERSETS.get(codec)
        if superset is None:
            raise
        return data.decode(superset)


def decode_iso2022_jp_ms(data: bytes) -> str:
    """ISO-2022-JP as Windows writes it (CP50220/CP50221): the JIS X 0208 rows plus the NEC
    and IBM extensions (①, Ⅰ, ㈱), which Python's iso2022_jp codecs refuse.

    Each two-byte JIS code is moved to its Shift_JIS place and read as cp932, which holds
    the extensions at the same places. Raises UnicodeDecodeError on damage.
    """
    out: list[str] = []
    mode = "ascii"
    index, size = 0, len(data)
    while index < size:
        byte = data[index]
        if byte == 0x1B:
            escape = data[index + 1 : index + 3]
            mode = _ISO2022_MODES.get(escape, "")
            if not mode:
                raise UnicodeDecodeError("iso2022_jp", data, index, index + 3, "bad escape")
            index += 3
            continue
        if byte in (0x0E, 0x0F):  # SO/SI: half-width katakana in and out (CP50222)
            mode = "katakana" if byte == 0x0E else "ascii"
            index += 1
            continue
        if mode == "jis" and byte > 0x20 and byte != 0x7F:
            if index + 1 >= size:
                raise UnicodeDecodeError("iso2022_jp", data, index, size, "truncated")
            out.append(_jis_to_sjis(byte, data[index + 1]).decode("cp932"))
            index += 2
            continue
        if mode == "katakana" and 0x21 <= byte <= 0x5F:
            out.append(bytes([byte + 0x80]).decode("cp932"))
        elif byte < 0x80:
            out.append(chr(byte))
        else:
            raise UnicodeDecodeError("iso2022_jp", data, index, index + 1, "8-bit byte")
        index += 1
    return "".join(out)


_ISO2022_MODES = {
    b"(B": "ascii", b"(J": "ascii", b"$@": "jis", b"$B": "jis", b"(I": "katakana",
}  # fmt: skip


def _jis_to_sjis(first: int, second: int) -> bytes:
    lead = ((first - 0x21) >> 1) + (0x81 if first <= 0x5E else 0xC1)
    # Odd rows fill the lower half of a Shift_JIS lead byte's cell (skipping 0x7F).
    trail = second + 0x1F + (second >= 0x60) if first % 2 else second + 0x7E
    return bytes((lead, trail))


def _utf8_counts(data: bytes) -> tuple[int, int]:
    """(characters outside ASCII that decode as UTF-8, bytes that do not)."""
    text = data.decode("utf-8", "replace")
    replaced = text.count("\ufffd")
    invalid = replaced - data.count(b"\xef\xbf\xbd")  # a real U+FFFD is valid UTF-8
    outside_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return outside_ascii - replaced, invalid


def _reads_as_utf8(data: bytes, *, labelled: bool) -> bool:
    """Valid UTF-8 but for a stray byte or two: a cut character, a byte pasted from a
    log. Labelled UTF-8 keeps its label with a few such bytes; unlabelled text needs three
    real multi-byte characters first (one could be chance)."""
    valid, invalid = _utf8_counts(data)
    if not labelled and valid < 3:
        return False
    return invalid <= max(1, valid // 10)


def _plausibility(text: str) -> float:
    """How much `text` looks like real writing, per character outside ASCII.

    Cyrillic letters score by their frequency in Russian and Ukrainian, and lose heavily
    for a capital inside a lower-case word or for sharing a word with Latin letters; Latin
    letters with diacritics score when they sit inside Latin words (Grüße), and lose when a
    whole word is made of them (a Cyrillic text read as Latin-1: "Äîáðûé"); other symbols
    from the upper half are junk. The first _ENOUGH such characters decide: a wrong table
    shows on every line, and a 5 MB log must not cost seconds.
    """
    score, count, end = 0.0, 0, len(text)
    for match in _HIGH_WORD.finditer(text):
        word_score, high = _word_score(match.group())
        score += word_score
        count += high
        if count >= _ENOUGH:
            end = match.end()
            break
    for char in _MAYBE_SYMBOL.findall(text, 0, end):
        if not char.isalpha() and not char.isspace():
            count += 1
            score += 0.0 if char in _TYPOGRAPHY else _JUNK
    return score / count if count else 0.0


@functools.lru_cache(maxsize=1 << 16)
def _word_score(word: str) -> tuple[float, int]:
    """(score, characters outside ASCII) of one word; words repeat, so they are cached."""
    high = [char for char in word if char > "\x7f"]
    ascii_letters = len(word) - len(high)
    cyrillic = sum(1 for char in high if "\u0400" <= char <= "\u04ff")
    if cyrillic and ascii_letters:
        return _JUNK * len(high), len(high)
    if cyrillic:
        return _cyrillic_word(word) + _JUNK * (len(high) - cyrillic), len(high)
    if ascii_letters >= len(high):
        return 1.0 * len(high), len(high)
    return -1.0 * len(high), len(high)


def _cyrillic_word(word: str) -> float:
    score = sum(_LETTER_WEIGHT.get(char.lower(), _RARE_LETTER) for char in word)
    # Real words are lower-case, capitalised or all capitals; "дНАПШИ" is a wrong table.
    if not (word.islower() or word.isupper() or word[1:].islower()):
        score += _CASE_FLIP * len(word)
    return score


def _evidence(data: bytes) -> int:
    return len(data) - len(data.translate(None, _HIGH_BYTES))


def guess_cyrillic(data: bytes) -> str:
    """The best-reading decoding among the 8-bit Cyrillic tables."""
    return max((data.decode(codec, "replace") for codec in _CYRILLIC_GUESSES), key=_plausibility)


def _high_byte_share(data: bytes) -> float:
    high = _evidence(data)
    letters = high + len(data) - len(data.translate(None, _ASCII_LETTERS))
    return high / letters if letters else 0.0


def guess_codec(data: bytes) -> str:
    """The codec that reads undeclared bytes best: UTF-8, an 8-bit Cyrillic table, or
    windows-1252 for Latin text with a few accents. One decision per message, so that an
    undeclared subject and body read the same way (see parsers.message)."""
    if data.isascii() or _reads_as_utf8(data, labelled=False):
        return "utf-8"
    cyrillic = max(_CYRILLIC_GUESSES, key=lambda codec: _reads(data, codec))
    if _high_byte_share(data) < 0.5:
        latin = data.decode("cp1252", "replace")
        if _plausibility(latin) > _reads(data, cyrillic):
            return "cp1252"
    return cyrillic


def _reads(data: bytes, codec: str) -> float:
    return _plausibility(data.decode(codec, "replace"))


def _overruled(data: bytes, codec: str, text: str) -> str | None:
    """Another 8-bit Cyrillic table's text when it reads clearly better than the declared
    one's (windows-1251 sent as koi8-r, and the reverse); None to keep the label."""
    if _evidence(data) < _MIN_EVIDENCE:
        return None
    declared = _plausibility(text)
    other = max((c for c in _CYRILLIC_GUESSES if c != codec), key=lambda c: _reads(data, c))
    better = data.decode(other, "replace")
    return better if _plausibility(better) - declared > _OVERRULE_MARGIN else None


def decode_bytes(data: bytes, label: str | None, *, undeclared: str = "") -> tuple[str, str | None]:
    """Decode text bytes; returns the text and a defect code when the label was not trusted.

    `undeclared` is the codec the message's other undeclared text was read with
    (`guess_codec`), used when there is no usable label.
    """
    codec = canonical_codec(label)
    if data.isascii() and not codec.startswith(_SEVEN_BIT_CODECS):
        return data.decode("ascii"), None
    labelled = _decode_labelled(data, codec)
    if labelled is not None:
        return labelled
    if _utf8_counts(data)[1] == 0 or _reads_as_utf8(data, labelled=False):
        text = data.decode("utf-8", "replace")
        return text, None if codec in ("utf-8", "") else "charset_mislabeled"
    if codec in _LATIN_LABELS and _high_byte_share(data) < 0.5:
        return data.decode(codec, "replace"), None
    guessed = undeclared if not codec and undeclared else guess_codec(data)
    return data.decode(guessed, "replace"), "charset_mislabeled" if codec else "charset_guessed"


def _decode_labelled(data: bytes, codec: str) -> tuple[str, str | None] | None:
    """The text under a label that holds (or a sibling table's when it clearly reads better);
    None when the label is absent, weak or wrong."""
    if codec == "utf-8" and _reads_as_utf8(data, labelled=True):
        # One bad byte (a cut character, a byte pasted from a log) must not turn a whole
        # UTF-8 body into koi8-r: it becomes one U+FFFD and the rest stays as written.
        invalid = _utf8_counts(data)[1]
        return data.decode("utf-8", "replace"), "utf8_invalid_bytes" if invalid else None
    if codec in SINGLE_BYTE_CYRILLIC and _reads_as_utf8(data, labelled=False):
        # Every byte string "decodes" in an 8-bit table, so the label cannot be tested that
        # way; but Cyrillic text in cp1251/koi8-r is practically never valid multi-byte UTF-8
        # (its letters are lead bytes without continuation bytes), while mail re-labelled by a
        # gateway or a 1C template often is.
        return data.decode("utf-8", "replace"), "charset_mislabeled"
    if not codec or codec in _WEAK_LABELS or codec == "utf-8":
        return None
    try:
        text = decode_declared(data, codec)
    except UnicodeDecodeError:
        return None
    other = _overruled(data, codec, text) if codec in SINGLE_BYTE_CYRILLIC else None
    return (text, None) if other is None else (other, "charset_mislabeled")
