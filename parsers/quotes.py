"""Reply stripping: the new text a sender wrote, apart from quoted history and signature.

A pure function over lines (talon's approach, by marker lines rather than a model): the
first line that starts quoted history ends the new text; a signature delimiter or a short
sign-off block at the end of what is left is the signature. When in doubt, keep the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEPARATORS = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|исходное сообщение|forwarded message|"
    r"пересылаемое сообщение|"
    r"переслано|message d'origine)\s*-{2,}|_{20,}|-{20,})\s*$",
    re.IGNORECASE,
)
_FROM_LINE = re.compile(r"^\s*\*?(?:from|от|de|von)\s*:\*?\s*\S", re.IGNORECASE)
_HEADER_LINE = re.compile(
    r"^\s*\*?(?:sent|date|to|subject|cc|отправлено|дата|кому|тема|копия)\s*:", re.IGNORECASE
)
_ADDRESS = r"(?:<?[\w.+-]+@[\w.-]+>?)"
_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"on\b.{0,200}\bwrote\s*:|"  # Gmail/Thunderbird/Apple EN
    r".{0,200}\b(?:пишет|написал(?:\(а\))?|написала|wrote)\s*:|"  # Thunderbird RU, Apple RU
    r".{0,120}\d{1,2}:\d{2}.{0,120}" + _ADDRESS + r"\s*:|"  # Gmail RU, Yandex, Mail.ru
    r".{0,120}\bот\s+.{0,120}" + _ADDRESS + r"\s*:"  # Mail.ru "... от Имя <x>:"
    r")\s*$",
    re.IGNORECASE,
)
_SIGNATURE_DELIMITER = re.compile(r"^--\s*$")
_SIGN_OFF = re.compile(
    r"^\s*(?:с\s+уважением|с\s+наилучшими\s+пожеланиями|всего\s+(?:доброго|хорошего)|"
    r"best\s+regards|kind\s+regards|regards|best\s+wishes|sincerely|cheers)\b[,.!]?\s*$",
    re.IGNORECASE,
)
_MOBILE_FOOTER = re.compile(
    r"^\s*(?:sent from my \w+|отправлено (?:с|из) .{0,60}|get outlook for \w+|"
    r"отправлено из (?:мобильной почты mail\.ru|яндекс\.почты.*|приложения .*))\s*$",
    re.IGNORECASE,
)
_BLANK_RUNS = re.compile(r"\n{3,}")
_MAX_SIGN_OFF_LINES = 6
_ATTRIBUTION_LOOKAHEAD = 2


@dataclass(frozen=True, slots=True)
class ReplyParts:
    new_text: str
    quoted: str
    signature: str


def _is_header_block(lines: list[str], index: int) -> bool:
    """'From:' starts quoted history only with more header lines right after it."""
    window = lines[index + 1 : index + 6]
    return sum(1 for line in window if _HEADER_LINE.match(line)) >= 1


def _is_attribution(lines: list[str], index: int) -> bool:
    line = lines[index]
    if len(line) > 400:
        return False
    if _ATTRIBUTION.match(line):
        return True
    # Gmail wraps long attributions over two lines.
    joined = " ".join(part.strip() for part in lines[index : index + _ATTRIBUTION_LOOKAHEAD])
    return (
        line.strip().lower().startswith("on ")
        and len(joined) < 400
        and bool(re.match(r"^on\b.*\bwrote\s*:\s*$", joined, re.IGNORECASE))
    )


def _quote_start(lines: list[str]) -> int | None:
    """Index of the first line of quoted history at the end of the message, if any."""
    for index, line in enumerate(lines):
        if _SEPARATORS.match(line):
            return index
        if _FROM_LINE.match(line) and _is_header_block(lines, index):
            return index
        if _is_attribution(lines, index) and not _is_interleaved(lines, index + 1):
            return index
    return None


def _is_interleaved(lines: list[str], start: int) -> bool:
    """An inline reply: the sender's own lines come back after a '>' block (until a signature)."""
    seen_quote = False
    for line in lines[start:]:
        stripped = line.strip()
        if _SIGNATURE_DELIMITER.match(line):
            return False
        if stripped.startswith(">"):
            seen_quote = True
        elif stripped and seen_quote:
            return True
    return False


def _strip_inline_quotes(lines: list[str]) -> tuple[list[str], list[str]]:
    """Drop '>' lines (and the attribution above the first block), keep the rest in order."""
    kept: list[str] = []
    quoted: list[str] = []
    for index, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            quoted.append(line)
            continue
        next_quoted = index + 1 < len(lines) and lines[index + 1].lstrip().startswith(">")
        if next_quoted and _is_attribution(lines, index):
            quoted.append(line)
            continue
        kept.append(line)
    return kept, quoted


def _split_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    for index, line in enumerate(lines):
        if _SIGNATURE_DELIMITER.match(line) or _MOBILE_FOOTER.match(line):
            return lines[:index], lines[index:]
    content = [i for i, line in enumerate(lines) if line.strip()]
    for index in content[-_MAX_SIGN_OFF_LINES:]:
        if _SIGN_OFF.match(lines[index]) and index != content[0]:
            return lines[:index], lines[index:]
    return lines, []


def _clean(lines: list[str]) -> str:
    """Trailing spaces off, blank runs (left where quotes were cut) down to one blank line."""
    text = "\n".join(line.rstrip() for line in lines)
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def split_reply(text: str) -> ReplyParts:
    """Split a plain-text body; never loses the sender's words (falls back to the whole text)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = _quote_start(lines)
    head, tail = (lines, []) if start is None else (lines[:start], lines[start:])
    head, inline_quoted = _strip_inline_quotes(head)
    body, signature = _split_signature(head)
    new_text = _clean(body)
    if not new_text:
        new_text = _clean(head) or _clean(lines)
        signature = [] if new_text == _clean(head) else signature
    return ReplyParts(new_text, _clean(inline_quoted + tail), _clean(signature))
