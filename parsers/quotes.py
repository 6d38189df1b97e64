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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from parsers import reply_markers as markers

__all__ = ["ReplyParts", "cut_own_mail", "shared_passage", "split_reply"]

# Attribution and header lines are short; longer lines are prose and skip the regexes.
_MAX_MARKER_CHARS = 300
# An attribution wrapped by the client spans at most this many lines.
_MAX_ATTRIBUTION_LINES = 3
# Outlook header lines that may follow "From:" (a split "From:" value takes one more line).
_HEADER_LOOKAHEAD = 6
# Lines searched for the attribution that makes a repeated "SQL> " prefix a quote.
_MAX_ATTRIBUTION_SCAN = 2000
# Blank lines allowed between an attribution line and the '>' block it introduces.
_ATTRIBUTION_GAP = 2
# Non-blank lines a bare "--" may be followed by (grep output also has "--" lines).
_MAX_BARE_DASH_BLOCK = 8
# Lines of a signature block are short; a long line is a sentence the sender wrote.
_MAX_SIGNATURE_LINE = 100
# Under a weak sign-off ("Thanks,") only a name and contacts: shorter, no sentence ending.
_MAX_WEAK_LINE = 60


def _words(phrases: Iterable[str]) -> str:
    """One alternation of phrases, longest first, spaces matching any run of spaces."""
    ordered = sorted(set(phrases), key=len, reverse=True)
    return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in ordered)


_SPACE = r"[\s\u00a0\u202f]"
# "-----Original Message-----", "---------- Forwarded message ---------", and the forward
# openers of Apple Mail ("Begin forwarded message:") in every language of the desk.
_SEPARATOR = re.compile(
    rf"^\s*(?:[-_=*]{{2,}}{_SPACE}*(?:{_words(markers.BANNER_WORDS)}){_SPACE}*[-_=*]*|"
    rf"(?:{_words(markers.FORWARD_OPENERS)}){_SPACE}*:)\s*$",
    re.IGNORECASE,
)
_RULE_LINE = re.compile(r"^\s*(?:_{10,}|-{10,}|={10,})\s*$")
# Any line of dashes, underscores or the like: above a paste of our mail it separates.
_SHORT_RULE = re.compile(r"^\s*[-_=*~]{3,}\s*$")
# A header line of Outlook's block: "From:", "*Von:*", "De :" (French space, often NBSP).
_HEADER_LABEL = re.compile(
    rf"^\s*\*{{0,2}}(?P<label>{_words(w for ws in markers.HEADER_LABELS.values() for w in ws)})"
    rf"\*{{0,2}}{_SPACE}*\*{{0,2}}:\*{{0,2}}(?:{_SPACE}|$)",
    re.IGNORECASE,
)
_LABEL_ROLE = {label: role for role, labels in markers.HEADER_LABELS.items() for label in labels}
_WROTE = re.compile(rf"(?<!\w)(?:{_words(markers.WROTE)})(?!\w)", re.IGNORECASE)
_WROTE_END = re.compile(rf"(?<!\w)(?:{_words(markers.WROTE)}){_SPACE}*:$", re.IGNORECASE)
_ON_START = re.compile(rf"^(?:{_words(markers.ATTRIBUTION_OPENERS)})\s", re.IGNORECASE)
# The Bat!: "Вы писали 3 марта 2025 г., 10:00:01:" or "Monday, March 3, 2025, 10:00:01 AM,
# you wrote:".
_BAT_ATTRIBUTION = re.compile(
    r"^(?:(?:вы\s+писали|you\s+wrote|vous\s+avez\s+écrit)\s.*|"
    r".*,\s*(?:you\s+wrote|vous\s+avez\s+écrit|вы\s+писали))\s*:$",
    re.IGNORECASE,
)
# The Bat! may quote with the author's initials or name: "ИП> ", "Архаров Виталий М.> ".
_NAMED_QUOTE = re.compile(r"^\s*[A-ZА-ЯЁ][^\W\d_]{0,20}(?:[ .'-]{1,2}[^\W\d_]{1,20}){0,3}\.?>")
# Initials quoting anywhere ("JD> ", "C> "); the prefix must repeat (see _quote_marks).
_INITIALS_QUOTE = re.compile(r"^\s*([A-ZА-ЯЁІЇЄҐ][A-Za-zА-Яа-яЁёІіЇїЄєҐґ]{0,2})>")
# How an attribution begins: an opener word ("On", "Am", "Le", "W dniu"), a weekday with
# its comma or dot (Gmail RU "пн,", PL "pt.,"), a date or a time.
_ATTRIBUTION_START = re.compile(
    rf"^(?:{_words(markers.ATTRIBUTION_OPENERS)})\s|"
    rf"^(?:{_words(markers.WEEKDAYS)})[.,]|"
    r"^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|^\d{1,2}:\d{2}|^\d{1,2}\.?\s+[^\W\d_]{3,}",
    re.IGNORECASE,
)
_DATE_START = re.compile(r"^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
_DIGIT = re.compile(r"\d")
_TIME = re.compile(r"(?<!\d)\d{1,2}:\d{2}(?!\d)")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
_ADDRESS_TOKEN = re.compile(r"[(<\[]?(?:mailto:)?[\w.+-]+@[\w-]+(?:\.[\w-]+)+[)>\]]?")
# A name written after a sign-off on its line: "Cheers, John", "Gruß Klaus Becker".
_NAME_AFTER = r"[,.!]?\s+[A-ZÀ-ÞА-ЯЁІЇЄҐ][^\s,]*(?:\s+[A-ZÀ-ÞА-ЯЁІЇЄҐ][^\s,]*){0,3}[.!]?"
_THANKS_WORDS = tuple(
    p for p in markers.SIGN_OFFS
    if re.match(
        r"(?:спасибо|заранее|благодарю|дякую|заздалегідь|thank|many|danke|vielen|merci|"
        r"gracias|muchas|obrigad|muito|grazie|dziękuję|dzięki|z góry|bedankt|dank|alvast)", p
    )
)  # fmt: skip
_REGARDS_WORDS = tuple(p for p in markers.SIGN_OFFS if p not in _THANKS_WORDS)
# "Best regards," / "С уважением, Иван Петров, ООО «Ромашка»" / "Gruß Klaus Becker".
_STRONG_SIGN_OFF = re.compile(
    rf"^\s*(?i:{_words(_REGARDS_WORDS)})(?:\s*[,.!]?\s*|{_NAME_AFTER}|"
    r"\s*[,.!]\s*[^\W\d_][\w .,«»\"'-]{0,60})$"
)
# "Thanks," / "Спасибо!" / "Danke, Markus": a thanks followed by prose is a sentence. The
# phrase in any case, the name after it capitalised: no IGNORECASE on the whole pattern.
_WEAK_SIGN_OFF = re.compile(rf"^\s*(?i:{_words(_THANKS_WORDS)})(?:\s*[,.!]?\s*|{_NAME_AFTER})$")
_SIGN_OFF_PHRASE = re.compile(rf"^\s*(?:{_words(markers.SIGN_OFFS)})(?!\w)", re.IGNORECASE)
_MOBILE_FOOTER = re.compile(
    rf"^\s*(?:(?:{_words(markers.FOOTER_OPENERS)})(?:\s+[^\s,;]+){{1,6}}|"
    rf"(?:von\s+meinem|vanaf\s+mijn|da\s+mio|z\s+mojego)\s+\S+(?:\s+\S+)?\s+"
    rf"(?:{_words(markers.FOOTER_CLOSERS)}))"
    r"\s*(?:<[^\s>]*>)?\s*[.!]?\s*$",
    re.IGNORECASE,
)
_FOOTER_DEVICE = re.compile(rf"(?:{_words(markers.FOOTER_DEVICES)})", re.IGNORECASE)
_DISCLAIMER = re.compile(rf"(?:{_words(markers.DISCLAIMER_WORDS)})", re.IGNORECASE)
_POSTSCRIPT = re.compile(r"^\s*(?:p\.?\s?s\b|п\.?\s?с\b|зы\b)", re.IGNORECASE)
_NAME_LINE_BAN = re.compile(r"[\d@:/]|www\.|https?:", re.IGNORECASE)


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
_WEAK = _SignOff(min_lines=1, max_lines=4, weak=True)
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


def cut_own_mail(text: str, sources: Iterable[str], *, words: int = 8) -> str:
    """`text` above the first line that begins a passage of `sources` (our own earlier mail
    to this ticket, pasted back without '>' by a client that quotes that way), without the
    attribution, header or rule lines right above that line.

    The text is returned unchanged when no line begins such a passage, or when nothing of
    the sender's own would remain (a client may answer with our words only).
    """
    known = {run for source in sources for run in _runs(source, words)}
    if not known:
        return text
    lines = text.split("\n")
    found = [_WORD.findall(line.casefold()) for line in lines]
    flat = [word for line_words in found for word in line_words]
    position = 0
    for index, line_words in enumerate(found):
        if line_words and tuple(flat[position : position + words]) in known:
            return _above_own_mail(lines, index) or text
        position += len(line_words)
    return text


def _above_own_mail(lines: list[str], index: int) -> str:
    """The lines above `index`, less the blank, attribution and header lines that introduce
    the pasted mail."""
    while index > 0:
        line = lines[index - 1].strip()
        introduces = (
            not line
            or _header_role(line) is not None
            or _SEPARATOR.match(line) is not None
            or _SHORT_RULE.match(line) is not None
            or (line.endswith(":") and _is_attribution(line))
            or _WROTE_END.search(line) is not None
        )
        if not introduces:
            break
        index -= 1
    return _clean(lines[:index])


_WORD = re.compile(r"\w+")


def _runs(text: str, words: int) -> list[tuple[str, ...]]:
    found = _WORD.findall(text.casefold())
    return [tuple(found[start : start + words]) for start in range(len(found) - words + 1)]


def _clean(lines: list[str]) -> str:
    return "\n".join(line.rstrip() for line in lines).strip("\n")


# --- quote markers -------------------------------------------------------------------------


def _quote_marks(lines: list[str]) -> list[bool]:
    """Which lines are quoted: '>' lines; "| " bars; initials ("JD> ") that repeat; below a
    The Bat! attribution also its "ИП> " and "Архаров Виталий М.> " lines (only there:
    "Mysql> ..." in a bug report is the sender's own)."""
    bat = next((index for index, line in enumerate(lines) if _is_bat_attribution(line)), len(lines))
    bars = [_is_bar(line) for line in lines]
    has_bars = sum(bars) >= 2
    initials = [_initials(line) for line in lines]
    repeated = {prefix for prefix, count in Counter(initials).items() if prefix and count >= 2}
    below_attribution = _first_attribution(lines)
    marks = []
    for index, line in enumerate(lines):
        prefix = initials[index]
        marks.append(
            line.lstrip().startswith(">")
            or (has_bars and bars[index])
            or (index > bat and _NAMED_QUOTE.match(line) is not None)
            or (prefix in repeated and (len(prefix) <= 2 or index > below_attribution))
        )
    return marks


def _is_bar(line: str) -> bool:
    """ "| text" from old clients and gateways; a "| a | b |" table row is not a quote."""
    stripped = line.strip()
    return stripped == "|" or (stripped.startswith("| ") and not stripped.endswith("|"))


def _initials(line: str) -> str | None:
    if len(line) > _MAX_MARKER_CHARS * 4:
        return None
    found = _INITIALS_QUOTE.match(line)
    return found.group(1) if found else None


def _first_attribution(lines: list[str]) -> int:
    for index, line in enumerate(lines[:_MAX_ATTRIBUTION_SCAN]):
        stripped = line.strip()
        is_marker = stripped.endswith(":") and len(stripped) <= _MAX_MARKER_CHARS
        if is_marker and (_is_attribution(stripped) or _WROTE_END.search(stripped)):
            return index
    return len(lines)


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
    if _ATTRIBUTION_START.match(line) and _DIGIT.search(line):
        return _wrapped_span(lines, index, quoted)
    return 0


def _wrapped_span(lines: list[str], index: int, quoted: list[bool]) -> int:
    """Gmail wraps a long attribution (inside the date, inside the <address>, or before
    "schrieb:"), Apple Mail over 3 lines.

    Lines are joined until one ends with ':'; if a later line starts an attribution of its
    own, the lines above it are the sender's prose, not its beginning.
    """
    joined = lines[index].strip()
    for below in range(index + 1, min(index + _MAX_ATTRIBUTION_LINES, len(lines))):
        line = lines[below].strip()
        if quoted[below] or not line or _starts_alone(lines, below):
            return 0
        joined = f"{joined} {line}"
        if len(joined) > _MAX_MARKER_CHARS:
            return 0
        if line.endswith(":"):
            return below - index + 1 if _is_attribution(joined) else 0
    return 0


def _starts_alone(lines: list[str], index: int) -> bool:
    """An attribution (one line, or wrapped from here) begins on this line by itself."""
    line = lines[index].strip()
    if not _ATTRIBUTION_START.match(line):
        return False
    if line.endswith(":"):
        return _is_attribution(line)
    joined = line
    for below in lines[index + 1 : index + _MAX_ATTRIBUTION_LINES]:
        joined = f"{joined} {below.strip()}"
        if below.strip().endswith(":"):
            return _is_attribution(joined)
    return False


def _is_attribution(line: str) -> bool:
    """A line that names who wrote the quote below, in any client's wording.

    A verb ("wrote", "schrieb", "a écrit", "napisał(a)", "пишет") also needs "On ... <digit>",
    a time or an address, so "My colleague wrote:" in prose stays; Gmail RU/UK, Yandex and
    Mail.ru have no verb and end in an address plus ':' after a date and time; Thunderbird
    UK writes only "03.03.25 10:15, Name:"; The Bat! starts "Вы писали" and ends in a time.
    """
    if not line.endswith(":"):
        return False
    has_time = _TIME.search(line) is not None
    if _BAT_ATTRIBUTION.match(line):
        return _is_bat_attribution(line)
    if _WROTE.search(line):
        is_on_date = _ON_START.match(line) is not None and _DIGIT.search(line) is not None
        return is_on_date or has_time or "@" in line
    if has_time and _ends_with_address(line):
        return True
    return has_time and _DATE_START.match(line) is not None and _ends_with_name(line)


def _ends_with_address(line: str) -> bool:
    words = line[:-1].split()
    return bool(words) and _ADDRESS_TOKEN.fullmatch(words[-1]) is not None


def _ends_with_name(line: str) -> bool:
    """ "03.03.25 10:15, Іван Петренко:": after the last comma a short name, no digits."""
    _, comma, name = line[:-1].rpartition(",")
    words = name.split()
    return bool(comma) and 0 < len(words) <= 5 and not _DIGIT.search(name)


def _header_role(line: str) -> str | None:
    if len(line) > _MAX_MARKER_CHARS * 4:
        return None
    found = _HEADER_LABEL.match(line[:_MAX_MARKER_CHARS])
    return _LABEL_ROLE.get(" ".join(found.group("label").lower().split())) if found else None


def _is_header_block(lines: list[str], index: int) -> bool:
    """Outlook's header block in any language: a From (or, on GMX, a Sent) line with at
    least two more header roles right under it, From among them and a date or a subject.

    A lone "Тема:" under "От: отдела продаж пришёл запрос" is still prose.
    """
    role = _header_role(lines[index])
    if role not in ("from", "date"):
        return False
    roles = {role}
    unlabelled = 0
    for below in lines[index + 1 : index + 1 + _HEADER_LOOKAHEAD]:
        found = _header_role(below)
        if found:
            roles.add(found)
            unlabelled = 0
        elif below.strip():
            unlabelled += 1  # a wrapped value ("From: Name\n<address>")
            if unlabelled > 1:
                break
        else:
            break
    return "from" in roles and len(roles) >= 3 and bool(roles & {"date", "subject"})


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
        span = int(len(line) <= _MAX_MARKER_CHARS and _WROTE_END.search(line) is not None)
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
    """Where the closing block's signature begins: under a sign-off and the name below it
    (the sign-off is the sender's words, issue 14), or at a mobile footer.

    Never from the first line of the text: "Спасибо\n\nОтправлено с iPhone" is a thanks,
    then a footer.
    """
    first = next((index for index, line in enumerate(lines) if line.strip()), len(lines))
    from_bottom = (index for index in range(len(lines) - 1, first, -1) if lines[index].strip())
    for index in reversed(list(islice(from_bottom, _TAIL_WINDOW))):
        sign_off = _sign_off_kind(lines[index])
        if sign_off is None:
            continue
        if sign_off is _FOOTER:
            if _is_closing_block(lines[index:], sign_off):
                return index
            continue
        after = _after_name(lines, index)
        if sign_off.weak and after == index + 1 and not _names_someone(lines[index]):
            continue  # "Thanks!" then a sentence: a thanks, not a sign-off with a name
        if _is_closing_block(lines[after - 1 :], _STRONG):
            return after if any(line.strip() for line in lines[after:]) else len(lines)
    return len(lines)


def _after_name(lines: list[str], index: int) -> int:
    """The line after a sign-off and the name that belongs to it ("Cheers,\nJohn", or
    "Gruß Klaus Becker" on one line)."""
    after = index + 1
    if not _names_someone(lines[index]):
        below = next((i for i in range(after, len(lines)) if lines[i].strip()), None)
        if below is not None and _is_name_line(lines[below]):
            after = below + 1
    return after


def _names_someone(line: str) -> bool:
    """Words after the sign-off phrase on its line ("Cheers, John")."""
    found = _SIGN_OFF_PHRASE.match(line)
    return found is not None and any(char.isalpha() for char in line[found.end() :])


def _is_name_line(line: str) -> bool:
    text = line.strip()
    short = len(text) <= _MAX_WEAK_LINE and len(text.split()) <= 5
    return short and not _NAME_LINE_BAN.search(text)


def _sign_off_kind(line: str) -> _SignOff | None:
    if len(line) > _MAX_SIGNATURE_LINE:
        return None
    if _MOBILE_FOOTER.match(line) and _FOOTER_DEVICE.search(line):
        return _FOOTER
    if _WEAK_SIGN_OFF.match(line):
        return _WEAK
    if _STRONG_SIGN_OFF.match(line):
        return _STRONG
    return None


def _is_closing_block(block: list[str], sign_off: _SignOff) -> bool:
    """Only names and contacts under a sign-off: "Спасибо!" before a question is content."""
    below = [line.strip() for line in block[1:] if line.strip()]
    if not sign_off.min_lines <= 1 + len(below) <= sign_off.max_lines:
        return False
    return all(_is_signature_line(line, weak=sign_off.weak) for line in below)


def _is_signature_line(line: str, *, weak: bool) -> bool:
    if _DISCLAIMER.search(line[: _MAX_MARKER_CHARS * 2]) and not weak:
        return True
    if len(line) > _MAX_SIGNATURE_LINE or line.endswith("?") or _POSTSCRIPT.match(line):
        return False
    return not weak or (len(line) <= _MAX_WEAK_LINE and not line.endswith((".", "!")))
