"""Criticality on arrival: the SLA level of a new request, read from its subject and new text.

A pure decision over two strings: the caller passes the subject and the client's new text
(quoted history already stripped by `parsers.quotes`, so an old "сервер упал" never counts
again), and gets a frozen `CriticalityDecision` with a stable reason code. One ordered table
decides, first hit wins:

1. config rules (`extra_rules`, as written by the operator) -> "config_rule"
2. built-in critical phrases -> "phrase_critical"
3. subject markers -> "subject_marker"
4. built-in high phrases -> "phrase_high"
5. built-in low phrases -> "phrase_low"
6. the contract's default level -> "contract_default"
7. "normal" -> "no_signal"

The phrases live in `parsers/data/criticality_rules.toml`. Russian inflects, and the
morphology is written into those patterns by hand ("упал[аои]?") instead of a stemmer. Measured
on this machine: snowballstemmer (light, kept) takes about 10 ms just to stem a 4000-character
text, while the whole decision over precompiled patterns takes about 1.5 ms; and it conflates
the very words that matter here: "простоя" (downtime) becomes "просто" (the adverb "just"),
"простой" shares its stem with "простая" (simple), and "остановлено"/"остановилось" get
different stems. pymorphy3 would be right but is heavy. Operators' config rules are plain
phrases, so for them `_phrase_pattern` strips one inflectional ending per word and allows up
to three letters back.

Which markers are real: a bracketed tag in the subject ("[CRITICAL]", "[КРИТИЧНО]", "[P1]") is
set by a client's service desk or monitoring against its own criteria, so it counts as
critical. A bare "P1" is not (a plant, a printer, a parameter). A line of its own
"Priority: high" / "Приоритет: высокий" is a form field, so it counts, but only as high
("Priority: critical" too): critical needs evidence in words or a tag. "Срочно", "urgent",
"ASAP" and "!!!" are written by everyone and never change the level; they are only named in
the explanation. Negation or avoidance within 3 words before a phrase cancels it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "LEVELS",
    "RULES_FILE",
    "TEXT_WINDOW",
    "CriticalityDecision",
    "CriticalityRule",
    "builtin_rules",
    "decide_criticality",
]

LEVELS = ("critical", "high", "normal", "low")
RULES_FILE = Path(__file__).with_name("data") / "criticality_rules.toml"
# A request says what is wrong at the top; the rest is logs and pasted output.
TEXT_WINDOW = 4000
SUBJECT_WINDOW = 1000
NEGATION_WORDS = 3
# How far a `with` companion may stand from its phrase ("не работает ... у всех").
COMPANION_WINDOW = 120

_TOKEN = re.compile(r"[\w']+")
_WORD_CHAR = re.compile(r"\w")
_SEPARATOR = "\n\x00\n"
_CLAUSE_END = re.compile(r"[.,;:!?\n\r()«»\"“”„—–]|\s-\s")
_SUBJECT_MARKER = re.compile(r"\[\s*(?:critical|критично|критический|p1)\s*\]")
_PRIORITY_LINE = re.compile(
    r"^[ \t]*(?:priority|приоритет)[ \t]*:[ \t]*(?:high|highest|critical|высокий|критический)"
    r"[ \t.]*$",
    re.MULTILINE,
)
# One Russian inflectional ending per word, longest first; a stem keeps at least 4 letters.
_RU_ENDINGS = (
    *("ого", "его", "ому", "ему", "ыми", "ими", "ами", "ями"),
    *("ая", "яя", "ое", "ее", "ые", "ие", "ый", "ий", "ой", "ом", "ем", "ам", "ям", "ах", "ях"),
    *("ов", "ев", "ей", "ия", "ию", "ии", "ть", "ет", "ит", "ут", "ют", "ат", "ят"),
    *("а", "я", "о", "е", "ы", "и", "у", "ю", "ь", "й"),
)
_MIN_STEM = 4


@dataclass(frozen=True, slots=True)
class CriticalityRule:
    """An operator's rule from the config: its phrases set its level before any built-in."""

    level: str  # critical|high|normal|low
    phrases: tuple[str, ...]  # as in config: plain phrases, matched with morphology
    name: str = ""  # for the reason ("config rule 2" if none)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown criticality {self.level!r}")
        if not self.phrases or not all(_TOKEN.search(phrase) for phrase in self.phrases):
            raise ValueError("a criticality rule needs phrases with words")


@dataclass(frozen=True, slots=True)
class CriticalityDecision:
    """What the ticket's event log and `ingest --json` show, so an engineer sees why."""

    level: str
    reason: str  # stable code: phrase_critical, subject_marker, config_rule, no_signal, ...
    explanation: str  # one sentence naming what matched


@dataclass(frozen=True, slots=True)
class _Phrases:
    """One rule's patterns; with companions it counts only near one of them."""

    name: str
    patterns: tuple[re.Pattern[str], ...]
    companions: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Rules:
    cancel: re.Pattern[str]
    adjacent: re.Pattern[str]
    keeps: tuple[re.Pattern[str], ...]  # negations that belong to their own verb
    urgency: tuple[re.Pattern[str], ...]
    critical: tuple[_Phrases, ...]
    high: tuple[_Phrases, ...]
    low: tuple[_Phrases, ...]
    failure: _Phrases


@dataclass(frozen=True, slots=True)
class _Scan:
    """Subject and text as one string, lowercased with positions kept, for every pattern."""

    original: str
    folded: str
    subject_end: int

    def words(self, match: re.Match[str]) -> str:
        return " ".join(self.original[match.start() : match.end()].lower().split())

    def where(self, match: re.Match[str]) -> str:
        return "subject" if match.start() < self.subject_end else "text"


@dataclass(frozen=True, slots=True)
class _Found:
    start: int
    words: str
    where: str
    companion: str = ""

    def describe(self) -> str:
        near = f' with "{self.companion}"' if self.companion else ""
        return f'"{self.words}"{near} in the {self.where}'


def decide_criticality(
    subject: str,
    text: str,
    *,
    contract_default: str | None = None,
    extra_rules: tuple[CriticalityRule, ...] = (),
) -> CriticalityDecision:
    """The level of a new request; `text` is the new text only, of which 4000 chars are read."""
    if contract_default is not None and contract_default not in LEVELS:
        raise ValueError(f"unknown criticality {contract_default!r}")
    rules = builtin_rules()
    scan = _scan(subject[:SUBJECT_WINDOW], text[:TEXT_WINDOW])
    decision = (
        _config_decision(rules, scan, extra_rules)
        or _phrase_decision(rules, scan, "critical", rules.critical)
        or _marker_decision(scan)
        or _phrase_decision(rules, scan, "high", rules.high)
    )
    if decision is not None:
        return decision
    low = _find(rules, scan, rules.low)
    failure = _find(rules, scan, (rules.failure,)) if low else None
    if low and not failure:
        return _decision(rules, scan, "low", low)
    if low and failure:
        note = f' ("{low.words}" does not lower a report of "{failure.words}")'
    else:
        urgent = _urgency(rules, scan)
        note = f' ("{urgent}" alone does not raise the level)' if urgent else ""
    if contract_default is not None:
        return CriticalityDecision(
            contract_default,
            "contract_default",
            f"{contract_default}: no phrase decided, so the contract's default{note}",
        )
    return CriticalityDecision("normal", "no_signal", f"normal: no phrase decided{note}")


def _config_decision(
    rules: _Rules, scan: _Scan, extra_rules: tuple[CriticalityRule, ...]
) -> CriticalityDecision | None:
    for number, rule in enumerate(extra_rules, start=1):
        found = _find(rules, scan, (_config_phrases(rule),))
        if found:
            name = rule.name or f"config rule {number}"
            return CriticalityDecision(
                rule.level, "config_rule", f"{rule.level}: {name} matched {found.describe()}"
            )
    return None


def _phrase_decision(
    rules: _Rules, scan: _Scan, level: str, phrases: tuple[_Phrases, ...]
) -> CriticalityDecision | None:
    found = _find(rules, scan, phrases)
    return None if found is None else _decision(rules, scan, level, found)


def _decision(rules: _Rules, scan: _Scan, level: str, found: _Found) -> CriticalityDecision:
    urgent = _urgency(rules, scan)
    also = f' (also "{urgent}", which never decides alone)' if urgent else ""
    return CriticalityDecision(level, f"phrase_{level}", f"{level}: {found.describe()}{also}")


def _marker_decision(scan: _Scan) -> CriticalityDecision | None:
    tag = _SUBJECT_MARKER.search(scan.folded, 0, scan.subject_end)
    if tag:
        return CriticalityDecision(
            "critical", "subject_marker", f'critical: marker "{scan.words(tag)}" in the subject'
        )
    line = _PRIORITY_LINE.search(scan.folded, scan.subject_end)
    if line:
        return CriticalityDecision(
            "high", "subject_marker", f'high: line "{scan.words(line)}" in the text'
        )
    return None


def _urgency(rules: _Rules, scan: _Scan) -> str:
    for pattern in rules.urgency:
        match = pattern.search(scan.folded)
        if match:
            return scan.words(match)
    return ""


# --- matching -------------------------------------------------------------------------


def _scan(subject: str, text: str) -> _Scan:
    # A separator no pattern can step over: "сервер лег" + "сервер..." is not "лег сервер".
    original = f"{subject}{_SEPARATOR}{text}"
    return _Scan(original, _fold(original), len(subject))


def _fold(text: str) -> str:
    """Lowercase with "ё" as "е", one character for one, so match positions stay valid."""
    lowered = "".join(char if len(low := char.lower()) != 1 else low for char in text)
    return lowered.translate(_FOLD)


_FOLD = str.maketrans({"ё": "е", "’": "'", "‘": "'", "\xa0": " "})


def _find(rules: _Rules, scan: _Scan, phrases: tuple[_Phrases, ...]) -> _Found | None:
    """The live match that comes first in reading order (subject, then text)."""
    found = (_first(rules, scan, rule, pattern) for rule in phrases for pattern in rule.patterns)
    return min((each for each in found if each), key=lambda each: each.start, default=None)


def _first(rules: _Rules, scan: _Scan, rule: _Phrases, pattern: re.Pattern[str]) -> _Found | None:
    for match in _live(rules, scan, (pattern,)):
        if not rule.companions:
            return _Found(match.start(), scan.words(match), scan.where(match))
        near = _near(rules, scan, rule.companions, match)
        if near is not None:
            return _Found(match.start(), scan.words(match), scan.where(match), scan.words(near))
    return None


def _live(
    rules: _Rules, scan: _Scan, patterns: tuple[re.Pattern[str], ...], start: int = 0, end: int = -1
) -> Iterator[re.Match[str]]:
    """Matches that start a word and are not cancelled.

    The left word boundary is checked here rather than as a leading lookbehind: a pattern
    that starts with a literal lets `re` jump to candidates, ten times faster on 4000 chars.
    """
    folded = scan.folded
    stop = len(folded) if end < 0 else end
    for pattern in patterns:
        position = start
        while match := pattern.search(folded, position, stop):
            position = match.start() + 1
            if match.start() and _WORD_CHAR.match(folded, match.start() - 1):
                continue
            if not _is_cancelled(rules, folded, match):
                yield match


def _near(
    rules: _Rules, scan: _Scan, companions: tuple[re.Pattern[str], ...], match: re.Match[str]
) -> re.Match[str] | None:
    start = max(0, match.start() - COMPANION_WINDOW)
    end = min(len(scan.folded), match.end() + COMPANION_WINDOW)
    return next(_live(rules, scan, companions, start, end), None)


def _is_cancelled(rules: _Rules, folded: str, match: re.Match[str]) -> bool:
    """A negation, avoidance or "planned" word just before the phrase, in its clause.

    A negation that starts a failure ("не работает линия", "не могу понять, почему") or a
    figure of speech ("не знаю") negates its own verb, not the phrase after it.
    """
    first = _TOKEN.match(folded, match.start())
    if first and rules.cancel.fullmatch(first.group()):
        return False  # "не запускается", "cannot start": the phrase is the negation
    clause = _CLAUSE_END.split(folded[max(0, match.start() - 80) : match.start()])[-1]
    before = list(_TOKEN.finditer(clause))[-NEGATION_WORDS:]
    if before and rules.adjacent.fullmatch(before[-1].group()):
        return True
    return any(
        rules.cancel.fullmatch(word.group())
        and not any(keep.match(clause, word.start()) for keep in rules.keeps)
        for word in before
    )


# --- rules ------------------------------------------------------------------------------


@cache
def builtin_rules(path: Path = RULES_FILE) -> _Rules:
    """The phrase rules from the data file, compiled once per process."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    cancel = _alternation(data["cancel"]["words"])
    gap = rf"(?:(?!(?:{cancel})(?![\w']))[\w'-]+\s+)?"
    failure = _phrases({"name": "failure", **data["failure"]}, gap)
    return _Rules(
        cancel=re.compile(cancel),
        adjacent=re.compile(_alternation(data["cancel"]["adjacent"])),
        keeps=tuple(_word_bounded(p) for p in data["cancel"]["keeps"]) + failure.patterns,
        urgency=tuple(re.compile(p) for p in data["urgency"]["patterns"]),
        critical=tuple(_phrases(entry, gap) for entry in data["critical"]),
        high=tuple(_phrases(entry, gap) for entry in data["high"]),
        low=tuple(_phrases(entry, gap) for entry in data["low"]),
        failure=failure,
    )


def _alternation(patterns: list[str]) -> str:
    return "|".join(f"(?:{pattern})" for pattern in patterns)


def _phrases(entry: dict[str, Any], gap: str) -> _Phrases:
    unknown = set(entry) - {"name", "patterns", "with"}
    if unknown:
        raise ValueError(f"criticality rule {entry.get('name')!r}: unknown keys {sorted(unknown)}")
    return _Phrases(
        name=entry["name"],
        patterns=tuple(_word_bounded(p.replace("<gap>", gap)) for p in entry["patterns"]),
        companions=tuple(_word_bounded(p.replace("<gap>", gap)) for p in entry.get("with", ())),
    )


def _word_bounded(pattern: str) -> re.Pattern[str]:
    """The pattern ending at a word boundary; `_live` checks where it starts."""
    return re.compile(rf"(?:{pattern})(?!\w)")


@lru_cache(maxsize=256)
def _config_phrases(rule: CriticalityRule) -> _Phrases:
    patterns = tuple(_word_bounded(_phrase_pattern(phrase)) for phrase in rule.phrases)
    return _Phrases(rule.name, patterns)


def _phrase_pattern(phrase: str) -> str:
    """A plain phrase as a pattern that lets each word inflect: "линия розлива" matches
    "линии розлива" and "линию розлива". Only its words count; any spaces or punctuation on
    one line may stand between them, as operators do not write regexes."""
    return r"[^\w\n]+".join(_word_pattern(word) for word in _TOKEN.findall(_fold(phrase)))


def _word_pattern(word: str) -> str:
    if len(word) < _MIN_STEM:
        return re.escape(word)
    if re.fullmatch(r"[а-я]+", word):
        stem = word.removesuffix("ся").removesuffix("сь")
        ending = next(
            (e for e in _RU_ENDINGS if stem.endswith(e) and len(stem) - len(e) >= _MIN_STEM), ""
        )
        return rf"{stem.removesuffix(ending)}[а-я]{{0,3}}(?:ся|сь)?"
    if len(word) > _MIN_STEM and word.endswith("e"):
        word = word[:-1]
    return rf"{re.escape(word)}[a-z]{{0,3}}"
