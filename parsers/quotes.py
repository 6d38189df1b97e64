"""Reply stripping: the new text a sender wrote, apart from quoted history and signature.

A pure function over lines, in the spirit of talon's marker lines rather than a model. The
first line that starts the quoted history (an Outlook separator or header block, or a
Gmail/Thunderbird/Apple/Yandex/Mail.ru/The Bat! attribution line) ends the new text; `>`
lines above it (and The Bat!'s "ИП>" lines) are an inline reply and are dropped one by one;
a signature delimiter, mobile footer or short sign-off block at the end of what is left is
the signature.

Forward markers ("Forwarded message", "Пересылаемое сообщение") start the history too: a
bare forward falls back to the whole text, and a forward under a comment lands in `quoted`
(the caller keeps the full text as well).

Every test is a cheap look at one line and at most a few neighbours, and regexes run only on
short lines, so a 100 KB body costs one pass. When in doubt the text is kept: a support
engineer can skip a stray quote, but cannot read words that were thrown away.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

__all__ = ["ReplyParts", "shared_passage", "split_reply"]

# Attribution and header lines are short; longer lines are prose and skip the regexes.
_MAX_MARKER_CHARS = 300
# An attribution wrapped by the client spans at most this many lines.
_MAX_ATTRIBUTION_LINES = 3
# Outlook header lines that may follow "From:" (a split "From:" value takes one more line).
_HEADER_LOOKAHEAD = 5
# Blank lines allowed between an attribution line and the '>' block it introduces.
_ATTRIBUTION_GAP = 2
# Non-blank lines a bare "--" may be followed by (grep output also has "--" lines).
_MAX_BARE_DASH_BLOCK = 8
# Lines of a signature block are short; a long line is a sentence the sender wrote.
_MAX_SIGNATURE_LINE = 100
# Under a weak sign-off ("Thanks,") only a name and contacts: shorter, no sentence ending.
_MAX_WEAK_LINE = 60

_SEPARATOR = re.compile(
    r"^\s*(?:[-_=*]{2,}\s*(?:original message|исходное сообщение|forwarded message|"
    r"пересылаемое сообщение|перенаправленное сообщение)\s*[-_=*]{2,}|"
    r"begin forwarded message:|начало переадресованного сообщения:)\s*$",
    re.IGNORECASE,
)
_RULE_LINE = re.compile(r"^\s*(?:_{10,}|-{10,}|={10,})\s*$")
_FROM_LINE = re.compile(r"^\s*\*?(?:from|от)\s*:\*?\s*\S", re.IGNORECASE)
_HEADER_LINE = re.compile(
    r"^\s*\*?(?:sent|date|to|subject|cc|отправлено|дата|кому|тема|копия)\s*:", re.IGNORECASE
)
_DATE_HEADER = re.compile(r"^\s*\*?(?:sent|date|отправлено|дата)\s*:", re.IGNORECASE)
_VERB_END = re.compile(
    r"\b(?:wrote|writes|пишет|написала?|написал\s?\(-?а\))\s*:$",
    re.IGNORECASE,
)
_ON_START = re.compile(r"^on\s", re.IGNORECASE)
# The Bat!: "Вы писали 3 марта 2025 г., 10:00:01:" or "Monday, March 3, 2025, 10:00:01 AM,
# you wrote:".
_BAT_ATTRIBUTION = re.compile(
    r"^(?:(?:вы\s+писали|you\s+wrote)\s.*|.*,\s*you\s+wrote)\s*:$", re.IGNORECASE
)
# The Bat! may quote with the author's initials or name: "ИП> ", "Архаров Виталий М.> ".
_NAMED_QUOTE = re.compile(r"^\s*[A-ZА-ЯЁ][^\W\d_]{0,20}(?:[ .'-]{1,2}[^\W\d_]{1,20}){0,3}\.?>")
# How an attribution begins: "On", a weekday (Gmail RU, Mail.ru), a date or a time.
_ATTRIBUTION_START = re.compile(
    r"^(?:on\s|(?:пн|вт|ср|чт|пт|сб|вс)\b|(?:понедельник|вторник|среда|четверг|пятница|суббота|"
    r"воскресенье)\b|\d{1,2}[./]\d{1,2}[./]\d{2,4}|\d{1,2}:\d{2}|\d{1,2}\s+(?:янв|фев|мар|апр|"
    r"ма[йя]|июн|июл|авг|сен|окт|ноя|дек|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")
_TIME = re.compile(r"(?<!\d)\d{1,2}:\d{2}(?!\d)")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
_ADDRESS_TOKEN = re.compile(r"<?[\w.+-]+@[\w-]+(?:\.[\w-]+)+>?")
_STRONG_SIGN_OFF = re.compile(
    r"^\s*(?:с\s+уважением|з\s+повагою|с\s+наилучшими\s+пожеланиями|всего\s+(?:доброго|хорошего)|"
    r"(?:best|kind|warm)\s+regards|regards|best\s+wishes|(?:yours\s+)?sincerely|cheers)"
    r"\s*(?:[,.!]\s*(?:[^\W\d_][\w .,«»\"'-]{0,60})?)?$",
    re.IGNORECASE,
)
_WEAK_SIGN_OFF = re.compile(
    r"^\s*(?:спасибо|заранее\s+спасибо|спасибо\s+заранее|благодарю|thanks|many\s+thanks|"
    r"thank\s+you)\s*[,.!]?\s*$",
    re.IGNORECASE,
)
# "Sent from ..." plus a few words, one of them naming a device or a mail app; a comma
# means a sentence ("Sent from my desk, is easier than my phone."). A link may follow.
_MOBILE_FOOTER = re.compile(
    r"^\s*(?:(?:get|получить|скачать)\s+outlook\s+(?:for|для)\s+\w+|"
    r"(?:sent\s+(?:from|with|via)|отправлено\s+(?:с|со|из|через))"
    r"(?=.*(?:iphone|ipad|android|mobile|phone|galaxy|samsung|outlook|yahoo|mail|windows|"
    r"blackberry|device|tablet|мобильн|яндекс|почт|приложени|устройств|huawei|xiaomi|смартфон|"
    r"телефон|планшет))(?:\s+[^\s,;]+){1,5})"
    r"\s*(?:<[^\s>]*>)?\s*[.!]?\s*$",
    re.IGNORECASE,
)
_POSTSCRIPT = re.compile(r"^\s*(?:p\.?\s?s\b|п\.?\s?с\b|зы\b)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ReplyParts:
    """A body split three ways; the parts never repeat each other's lines."""

    new_text: str  # what the sender wrote now, trailing spaces and outer blank lines removed
    quoted: str  # the quoted history ('' if none)
    signature: str  # the signature block ('' if none)


@dataclass(frozen=True, slots=True)
class _SignOff:
    """How many non-blank lines a closing block starting with this kind of line may have."""

    min_lines: int
    max_lines: int
    weak: bool


_STRONG = _SignOff(min_lines=1, max_lines=10, weak=False)
_FOOTER = _SignOff(min_lines=1, max_lines=4, weak=False)
_WEAK = _SignOff(min_lines=2, max_lines=4, weak=True)
# A closing block never has more lines than the strongest sign-off allows.
_TAIL_WINDOW = _STRONG.max_lines


def split_reply(text: str) -> ReplyParts:
    """Split a plain-text body. Never raises; new_text is empty only for a blank body.

    If stripping leaves nothing (the body is all quote, or starts with a signature), the text
    outside the quotes is the new text, or failing that the whole body, so the client's
    words always reach the ticket.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    quoted = _quote_marks(lines)
    spans = [_attribution_span(lines, index, quoted) for index in range(len(lines))]
    cut = _find_cut(lines, quoted, spans)
    kept, inline = _drop_inline_quotes(lines[:cut], quoted, spans)
    start = _signature_start(kept)
    new_text = _clean(kept[:start])
    history = _clean([*inline, "", *lines[cut:]])
    if new_text:
        return ReplyParts(new_text, history, _clean(kept[start:]))
    own = _clean(kept)
    if own:
        return ReplyParts(own, history, "")
    head = _clean(lines[:cut])
    if head:
        return ReplyParts(head, _clean(lines[cut:]), "")
    return ReplyParts(_clean(lines), "", "")


def shared_passage(
    text: str, sources: Iterable[str], elsewhere: Iterable[str], *, words: int = 8
) -> str | None:
    """The first run of `words` words of `text` that occurs in `sources` and in none of
    `elsewhere`, or None.

    Words, not lines: a quoting mail program re-wraps lines and adds `>` marks, but keeps the
    words in order. maild uses it to catch its own notices to engineers (`sources`) left in an
    answer that quote stripping did not recognise; what the client's side has already seen
    (`elsewhere`: the client's own words, earlier answers) is no secret and never counts.
    """
    in_sources = {run for source in sources for run in _runs(source, words)}
    candidates = [run for run in _runs(text, words) if run in in_sources]
    if not candidates:  # the usual case: the other messages need no look
        return None
    known = {run for other in elsewhere for run in _runs(other, words)}
    return next((" ".join(run) for run in candidates if run not in known), None)


_WORD = re.compile(r"\w+")


def _runs(text: str, words: int) -> list[tuple[str, ...]]:
    found = _WORD.findall(text.casefold())
    return [tuple(found[start : start + words]) for start in range(len(found) - words + 1)]


def _clean(lines: list[str]) -> str:
    return "\n".join(line.rstrip() for line in lines).strip("\n")


# --- quote markers -------------------------------------------------------------------------


def _quote_marks(lines: list[str]) -> list[bool]:
    """'>' lines; below a The Bat! attribution also its "ИП> " lines (only there: "Mysql> ...")."""
    bat = next((index for index, line in enumerate(lines) if _is_bat_attribution(line)), len(lines))
    return [
        line.lstrip().startswith(">") or (index > bat and _NAMED_QUOTE.match(line) is not None)
        for index, line in enumerate(lines)
    ]


def _is_bat_attribution(line: str) -> bool:
    """The Bat! always writes a full date and a time: "Вы писали мне в 10:00:" is prose."""
    line = line.strip()
    return (
        len(line) <= _MAX_MARKER_CHARS
        and line.endswith(":")
        and _BAT_ATTRIBUTION.match(line) is not None
        and _TIME.search(line) is not None
        and _YEAR.search(line) is not None
    )


def _attribution_span(lines: list[str], index: int, quoted: list[bool]) -> int:
    """Lines taken by an attribution ("On ... wrote:") starting here; 0 if there is none."""
    line = lines[index].strip()
    if quoted[index] or not line or len(line) > _MAX_MARKER_CHARS:
        return 0
    if line.endswith(":"):
        return 1 if _is_attribution(line) else 0
    return _wrapped_span(lines, index, quoted) if _ATTRIBUTION_START.match(line) else 0


def _wrapped_span(lines: list[str], index: int, quoted: list[bool]) -> int:
    """Gmail wraps a long attribution (often inside the <address>), Apple Mail over 3 lines.

    Lines are joined until one ends with ':'; if that line is a whole attribution by itself,
    the lines above it are the sender's prose, not its beginning.
    """
    joined = lines[index].strip()
    for below in range(index + 1, min(index + _MAX_ATTRIBUTION_LINES, len(lines))):
        line = lines[below].strip()
        if quoted[below] or not line:
            return 0
        joined = f"{joined} {line}"
        if len(joined) > _MAX_MARKER_CHARS:
            return 0
        if line.endswith(":"):
            return below - index + 1 if _is_wrapped(joined, line) else 0
    return 0


def _is_wrapped(joined: str, last: str) -> bool:
    starts_alone = _ATTRIBUTION_START.match(last) is not None and _is_attribution(last)
    return not starts_alone and _is_attribution(joined)


def _is_attribution(line: str) -> bool:
    """A line that names who wrote the quote below, in any client's wording, RU or EN.

    A verb ending ("wrote:", "пишет:", "написал(а):") also needs "On ... <digit>", a time or an
    address, so "My colleague wrote:" in prose stays; Gmail RU, Yandex and Mail.ru have no verb
    and end in an address plus ':' after a date and time; The Bat! starts "Вы писали" and
    ends in a time.
    """
    has_time = _TIME.search(line) is not None
    if _BAT_ATTRIBUTION.match(line):
        return _is_bat_attribution(line)
    if _VERB_END.search(line):
        is_on_date = _ON_START.match(line) is not None and _DIGIT.search(line) is not None
        return is_on_date or has_time or "@" in line
    return has_time and _ends_with_address(line)


def _ends_with_address(line: str) -> bool:
    words = line[:-1].split()
    return bool(words) and _ADDRESS_TOKEN.fullmatch(words[-1]) is not None


def _is_header_block(lines: list[str], index: int) -> bool:
    """Outlook's "From:/От:" starts the quote only above a date and one more header line.

    Outlook always writes "Sent:" (or "Дата:"); a lone "Тема:" under "От: отдела продаж
    пришёл запрос" is still prose.
    """
    line = lines[index]
    if len(line) > _MAX_MARKER_CHARS or not _FROM_LINE.match(line):
        return False
    window = lines[index + 1 : index + 1 + _HEADER_LOOKAHEAD]
    # A header's name is at the start; a long "To:" list need not be read to the end.
    headers = [below for below in window if _HEADER_LINE.match(below, 0, _MAX_MARKER_CHARS)]
    return len(headers) >= 2 and any(_DATE_HEADER.match(below) for below in headers)


def _find_cut(lines: list[str], quoted: list[bool], spans: list[int]) -> int:
    """Index where the trailing quoted history starts (len(lines) if there is none)."""
    inline_below = _inline_below(lines, quoted)
    for index, line in enumerate(lines):
        if quoted[index]:
            continue
        if _SEPARATOR.match(line):
            return index
        if _is_header_block(lines, index):
            return _include_rule_above(lines, index)
        span = spans[index]
        if span and not inline_below[index + span]:
            return index
    return len(lines)


def _include_rule_above(lines: list[str], index: int) -> int:
    """Outlook draws a line of underscores above its header block; it belongs to the quote."""
    above = index - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    return above if above >= 0 and _RULE_LINE.match(lines[above]) else index


def _inline_below(lines: list[str], quoted: list[bool]) -> list[bool]:
    """For each line: does the sender's own text come back after a '>' block further down?

    Then an attribution above is the start of an inline reply, not of the history. One pass
    from the bottom; a signature delimiter or another quote marker resets the answer.
    """
    result = [False] * (len(lines) + 1)
    own_text_below = inline = False
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if quoted[index]:
            inline = inline or own_text_below
        elif _is_barrier(lines, index):
            own_text_below = inline = False
        elif line.strip():
            own_text_below = True
        result[index] = inline
    return result


def _is_barrier(lines: list[str], index: int) -> bool:
    line = lines[index]
    if line.strip() == "--":
        return True
    is_separator = len(line) <= _MAX_MARKER_CHARS and _SEPARATOR.match(line) is not None
    return is_separator or _is_header_block(lines, index)


def _drop_inline_quotes(
    head: list[str], quoted: list[bool], spans: list[int]
) -> tuple[list[str], list[str]]:
    """Keep the sender's lines in order; '>' lines and their attribution go to the history.

    Blank lines right after a dropped block are dropped when the kept text already ends in a
    blank line, so removing a block leaves one paragraph break, not three.
    """
    kept: list[str] = []
    dropped: list[str] = []
    after_drop = False
    index = 0
    while index < len(head):
        take = 1 if quoted[index] else _intro_span(head, quoted, spans, index)
        if take:
            if dropped and not after_drop:
                dropped.append("")
            dropped.extend(head[index : index + take])
            after_drop = True
            index += take
            continue
        line = head[index]
        if line.strip():
            after_drop = False
        if not (after_drop and (not kept or not kept[-1].strip())):
            kept.append(line)
        index += 1
    return kept, dropped


def _intro_span(head: list[str], quoted: list[bool], spans: list[int], index: int) -> int:
    """Lines of an attribution right above a '>' block, dropped with the block.

    Above a '>' line a bare "Ivan wrote:" is an attribution too (old clients write no date).
    """
    span = spans[index]
    if not span:
        line = head[index].strip()
        span = int(len(line) <= _MAX_MARKER_CHARS and _VERB_END.search(line) is not None)
    return span if span and _quote_follows(head, quoted, index + span) else 0


def _quote_follows(head: list[str], quoted: list[bool], start: int) -> bool:
    """A '>' line next, or after a blank line or two (Apple Mail leaves one after "wrote:")."""
    for index in range(start, min(start + _ATTRIBUTION_GAP + 1, len(head))):
        if quoted[index]:
            return True
        if head[index].strip():
            return False
    return False


# --- signature -----------------------------------------------------------------------------


def _signature_start(lines: list[str]) -> int:
    """Index where the signature begins (len(lines) if there is none)."""
    return min(_delimiter_start(lines), _closing_start(lines))


def _delimiter_start(lines: list[str]) -> int:
    """The RFC 3676 "-- " line, or a lone bare "--" above a short block that reads like one.

    Bug reports paste grep output, whose group separator is a bare "--" line.
    """
    dashes = [index for index, line in enumerate(lines) if line.strip() == "--"]
    for index in dashes:
        if lines[index].rstrip() != lines[index]:
            return index
    if len(dashes) == 1 and _is_short_block(lines[dashes[0] + 1 :]):
        return dashes[0]
    return len(lines)


def _is_short_block(block: list[str]) -> bool:
    below = [line.strip() for line in block if line.strip()]
    return len(below) <= _MAX_BARE_DASH_BLOCK and all(
        _is_signature_line(line, weak=False) for line in below
    )


def _closing_start(lines: list[str]) -> int:
    """First line among the last few that opens a closing block (sign-off, mobile footer).

    Never the first line of the text: "Спасибо\n\nОтправлено с iPhone" is a thanks, then a
    footer.
    """
    first = next((index for index, line in enumerate(lines) if line.strip()), len(lines))
    from_bottom = (index for index in range(len(lines) - 1, first, -1) if lines[index].strip())
    for index in reversed(list(islice(from_bottom, _TAIL_WINDOW))):
        sign_off = _sign_off_kind(lines[index])
        if sign_off is not None and _is_closing_block(lines[index:], sign_off):
            return index
    return len(lines)


def _sign_off_kind(line: str) -> _SignOff | None:
    if len(line) > _MAX_SIGNATURE_LINE:
        return None
    if _STRONG_SIGN_OFF.match(line):
        return _STRONG
    if _MOBILE_FOOTER.match(line):
        return _FOOTER
    if _WEAK_SIGN_OFF.match(line):
        return _WEAK
    return None


def _is_closing_block(block: list[str], sign_off: _SignOff) -> bool:
    """Only names and contacts under a sign-off: "Спасибо!" before a question is content."""
    below = [line.strip() for line in block[1:] if line.strip()]
    if not sign_off.min_lines <= 1 + len(below) <= sign_off.max_lines:
        return False
    return all(_is_signature_line(line, weak=sign_off.weak) for line in below)


def _is_signature_line(line: str, *, weak: bool) -> bool:
    if len(line) > _MAX_SIGNATURE_LINE or line.endswith("?") or _POSTSCRIPT.match(line):
        return False
    return not weak or (len(line) <= _MAX_WEAK_LINE and not line.endswith((".", "!")))
