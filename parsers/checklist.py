"""Which items of the regulation's pre-contact checklist a request already carries.

Before writing to support a client should state the problem, describe the environment, copy the
error text, make screenshots and prepare logs. The acknowledgement names what is still missing, so
the engineer does not have to ask for it in a second round trip. Facts come from the client's new
text (Russian or English) and from the kinds of the attachments.

Table-driven: each row is one family of phrases for one item, so adding a phrase is a one-line
change. Every pattern starts at a keyword and its gaps are bounded, so a 100 KB body is scanned in
linear time whatever it contains.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from parsers.types import ArtifactKind


class ChecklistItem(enum.StrEnum):
    """One thing the regulation asks a client to send; the value names it in templates and JSON."""

    VERSION = "version"
    ENVIRONMENT = "environment"
    SCENARIO = "scenario"
    ERROR_TEXT = "error_text"
    SCREENSHOTS = "screenshots"
    LOGS = "logs"


@dataclass(frozen=True, slots=True)
class ChecklistFacts:
    """What one request carries; `missing_items` turns it into what the acknowledgement asks for."""

    present: frozenset[ChecklistItem]
    product_version: str | None
    """The Cubisio version the client named, as written ("3.2.1"; "1234" for a build)."""


_MAX_CHARS = 200_000  # beyond this a body is a pasted log; what the client says comes first


def _rule(item: ChecklistItem, *phrases: str) -> tuple[ChecklistItem, re.Pattern[str]]:
    """One pattern for the item's phrases. Those that begin at a word (`\\b` and a letter) sit
    behind one guard, so the engine tries them only where a word begins instead of trying
    each at every character: a third of the time on a one-page request."""
    at_word = [phrase for phrase in phrases if _WORD_START.match(phrase)]
    others = [phrase for phrase in phrases if not _WORD_START.match(phrase)]
    alternatives = [f"(?:{phrase})" for phrase in others]
    if at_word:
        alternatives.insert(0, "(?=\\w)(?<!\\w)(?:" + "|".join(f"(?:{p})" for p in at_word) + ")")
    PLAIN_ALTERNATIONS[item] = "|".join(f"(?:{phrase})" for phrase in phrases)
    return item, re.compile("|".join(alternatives), re.IGNORECASE | re.MULTILINE)


PLAIN_ALTERNATIONS: dict[ChecklistItem, str] = {}
"""Each item's phrases as one plain alternation: what the guarded pattern must agree with."""


# A phrase that can only match where a word begins: \b, then a letter, a digit, or a group
# whose every branch starts with one (checked by the tests against the plain alternation).
_WORD_START = re.compile(r"\\b(?:\w|\(\?(?::|-i:)\w)")


# Patterns see the text with "ё" folded to "е", so they spell every word with "е".
_QUOTE = r"[:«\"“„]"
_SAYS = r"пишет|выдает|выводит(?:ся)?|показывает|появляется|вылетает|выскакивает|всплывает"
_TEXT_RULES: tuple[tuple[ChecklistItem, re.Pattern[str]], ...] = (
    _rule(
        ChecklistItem.ENVIRONMENT,
        # Operating systems, the Russian ones included; "Windows", not the English noun "windows".
        r"\b(?-i:Windows|WINDOWS)\b",
        r"\bwindows\s?(?:\d|server|xp|vista)",
        r"\b(?:на|под|ос|os|ms|microsoft)\s+windows\b",
        r"\bwin\s?(?:xp|7|8|8\.1|10|11)\b",
        r"\bвинд(?:а|ы|е|у|овс\w*)\b",
        r"\b(?:linux|линукс\w*)\b",
        r"\b(?:astra|астр[аеуы])\b",
        r"\b(?:ред|red)\s?(?:ос|os)\b",
        r"\b(?:альт|alt)\s?(?:linux|линукс\w*|рабочая|сервер|server|workstation)",
        r"\b(?:rosa|роса)\s?(?:linux|линукс\w*|хром|fresh|cobalt|кобальт)",
        r"\bэльбрус\w*",
        r"\b(?:ubuntu|убунт\w*|debian|дебиан\w*|centos|rhel|red\s?hat|fedora|suse|opensuse)\b",
        r"\b(?:macos|mac\s?os|osx|os\s?x|ios|android|андроид\w*)\b",
        # Browsers; "edge" only where it cannot be the English noun.
        r"\b(?:chrome|chromium|хромиум\w*|хром(?:е|а|ом)?|firefox|mozilla|фаерфокс\w*)\b",
        r"\b(?:яндекс|yandex)\W?(?:браузер\w*|browser)",
        r"\b(?:microsoft|ms)\s?edge\b",
        r"\bedge\s?(?:\d|browser|браузер)",
        r"\b(?:в|in|on|через|using)\s+edge\b",
        r"\b(?:safari|сафари|opera|internet\s+explorer)\b",
        r"\bie\s?(?:9|10|11)\b",
        # DBMS and runtimes.
        r"\b(?:postgre\w*|постгре\w*|postgres\s?pro|mssql|ms\s?sql|sql\s?server)",
        r"\b(?:oracle|оракл\w*|mysql|maria\s?db|clickhouse|sqlite)\b",
        r"\bред\s?база\s?данных",
        r"\b(?:java|openjdk|jdk|jre)\s?\d",
        r"\.net\s?(?:framework|core|\d)",
    ),
    _rule(
        ChecklistItem.SCENARIO,
        r"\bшаг(?:и|ов|ам|ами|ах)?\b",
        r"\bвоспроизв\w*",
        r"\breproduc\w*",
        r"\bsteps\s?:",
        r"\bсценари\w*",
        r"\bпри\s+(?:нажатии|открытии|попытке|запуске|сохранении|выборе|загрузке|выгрузке"
        r"|экспорте|импорте|входе|переходе|вводе|клике|щелчке|формировании|построении|печати"
        r"|создании|удалении|редактировании|изменении|обновлении|подключении|публикации"
        r"|фильтрации|авторизации)\b",
        r"\bпосле\s+того\s?,?\s+как\b",
        r"\bпосле\s+(?:нажатия|открытия|запуска|сохранения|обновления|входа|перехода|выбора"
        r"|загрузки|установки|ввода|клика|импорта|экспорта|публикации|авторизации|перезапуска"
        r"|перезагрузки)\b",
        r"\bкогда\s+(?:я\s+|мы\s+|пользовател\w+\s+)?(?:нажима|открыва|пыта|запуска|выбира"
        r"|сохраня|ввожу|вводи|захож|заход|перехож|переход|клика|щелка|загружа|выгружа|созда"
        r"|формиру|строю|печата)",
        r"\b(?:when|whenever|after|if|once)\s+(?:i|we|the\s+users?|users?)\s+(?:try|click|open"
        r"|press|select|save|run|start|log|upload|export|import|enter|go|navigate|choose|type"
        r"|create|delete|edit|change|apply|refresh|load|print|build|publish)",
        r"\b(?:when|after|on|upon)\s+(?:clicking|opening|pressing|selecting|saving|running"
        r"|starting|logging|uploading|exporting|importing|trying|loading|printing|creating"
        r"|publishing)\b",
        r"\b(?:сначала|сперва)\b[^\n]{0,200}?\b(?:затем|потом|после\s+чего|далее)\b",
        # A numbered list of at least two steps, on one line or on several.
        r"(?<![\w.,])1\s?[.)]\s+[^\W\d][\s\S]{0,300}?(?<![\w.,])2\s?[.)]\s+[^\W\d]",
        # A menu path: "Отчеты → Продажи".
        r"[^\W\d]\s?(?:→|->|⇒)\s?[^\W\d]",
    ),
    _rule(
        ChecklistItem.ERROR_TEXT,
        # A message in quotes or after a colon: "ошибка: ...", "сообщение «...»", "пишет «...»".
        rf"\b(?:ошибк|сообщени|исключени|надпис|уведомлени|текст)\w*[^\n.!?:«\"“„]{{0,40}}{_QUOTE}",
        rf"\b(?:{_SAYS})\s*{_QUOTE}",
        r"error\s?[:\"“«]",  # also TypeError:, ERROR:
        r"\b(?:says|saying|reads|displays|shows|message)\s?[:\"“]",
        r"(?<!the\s)exception\b",  # NullPointerException, not "with the exception of"
        r"\btraceback\b",
        r"\bora-\d{4,5}\b",
        r"\bsqlstate\b",
        r"\berrno\b",
        r"\b0x[0-9a-f]{8}\b",
        r"\bhttp(?:/\d(?:\.\d)?)?\s?[45]\d\d\b",
        r"\b(?:код|code|status|статус)\s?(?:ошибки\s|ответа\s|of\s)?[:=]?\s?[45]\d\d\b",
        r"\b[45]\d\d\s(?:internal\s+server|bad\s+(?:request|gateway)|not\s+found|forbidden"
        r"|unauthorized|service\s+unavailable|gateway\s+time-?out)",
        r"^[ \t]*at[ \t]+[\w.$<>`]+\(",  # a Java or .NET stack frame
        r"^[ \t]*File[ \t]+\"[^\"\n]{1,300}\",[ \t]+line[ \t]+\d+",  # a Python stack frame
        r"\bstack\s?trace\b|\bстек\s?трейс\w*|\bстектрейс\w*",
        r"\bfail(?:s|ed|ing)?\s+with\b",
    ),
)

_DOTTED = r"\d+(?:\.\d+){1,3}(?:-[0-9a-z]+)?"
_VERSION = re.compile(
    # "Cubisio 3.2.1", "Cubisio Server 3.2", "версия 3.2", "v3.2.1"; a bare number only for a build.
    r"\b(?:(?P<product>cubisio|кубисио|кубизио)(?:\s+[a-z]{1,20}){0,2}"
    r"|верси\w*|version|ver|вер|v)"
    rf"\.?\s?(?:[:№#(-]\s?)?(?P<number>{_DOTTED})\b"
    r"|\b(?:сборк\w*|build|релиз\w*|release)"
    rf"\.?\s?(?:[:№#(-]\s?)?(?P<build>{_DOTTED}|\d{{3,}})\b",
    re.IGNORECASE,
)
# "Chrome version 120.0", "PostgreSQL версии 14.2", "Windows 10 build 19045": someone else's.
_FOREIGN_BEFORE = re.compile(
    r"\b(?:windows|win|chrome|хром\w*|firefox|браузер\w*|browser|edge|safari|opera|postgre\w*"
    r"|постгре\w*|pro|oracle|mysql|sql|server|сервер\w*|java|jdk|jre|linux|ubuntu|debian|centos"
    r"|astra|астр\w*|ос|os|office|excel|word|net|node|python|субд|dbms)"
    r"(?:[\s,:]+\d[\w.]*)?[\s,:(]*\Z",
    re.IGNORECASE,
)
_FOREIGN_WINDOW = 40

_KIND_RULES: tuple[tuple[ChecklistItem, frozenset[ArtifactKind]], ...] = (
    (ChecklistItem.SCREENSHOTS, frozenset({ArtifactKind.SCREENSHOT})),
    # Clients zip their logs, and a memory dump is the log of a crash.
    (ChecklistItem.LOGS, frozenset({ArtifactKind.LOG, ArtifactKind.DUMP, ArtifactKind.ARCHIVE})),
)


def _normalise(text: str) -> str:
    """NFC, then "ё" as "е", because clients type either."""
    sample = unicodedata.normalize("NFC", text[:_MAX_CHARS])
    return sample.replace("ё", "е").replace("Ё", "Е")


def _find_version(text: str) -> str | None:
    """The first version named after Cubisio, else the first one not named after other software."""
    generic: str | None = None
    for match in _VERSION.finditer(text):
        number = str(match.group("number") or match.group("build"))
        if match.group("product"):
            return number
        before = text[max(0, match.start() - _FOREIGN_WINDOW) : match.start()]
        if generic is None and not _FOREIGN_BEFORE.search(before):
            generic = number
    return generic


def find_checklist_facts(text: str, attachment_kinds: Iterable[ArtifactKind]) -> ChecklistFacts:
    """Which checklist items this request carries, from its new text and its attachments."""
    sample = _normalise(text)
    present = {item for item, pattern in _TEXT_RULES if pattern.search(sample)}
    version = _find_version(sample)
    if version is not None:
        present.add(ChecklistItem.VERSION)
    kinds = frozenset(attachment_kinds)
    present.update(item for item, wanted in _KIND_RULES if not kinds.isdisjoint(wanted))
    return ChecklistFacts(frozenset(present), version)


def missing_items(facts: ChecklistFacts) -> tuple[ChecklistItem, ...]:
    """What the acknowledgement should ask for, in the checklist's own order."""
    return tuple(item for item in ChecklistItem if item not in facts.present)


def merge_present(stored: str, facts: ChecklistFacts) -> str:
    """The ticket's record of items sent so far, with this message's added (stable order)."""
    present = {item for item in stored.split(",") if item} | {str(i) for i in facts.present}
    return ",".join(str(item) for item in ChecklistItem if str(item) in present)


def stored_facts(stored: str) -> ChecklistFacts:
    """A ticket's stored record of items sent, as facts (for merging two tickets)."""
    return ChecklistFacts(
        frozenset(ChecklistItem(item) for item in stored.split(",") if item), None
    )


def missing_from(stored: str) -> tuple[ChecklistItem, ...]:
    """What a ticket still lacks, from its stored record of items sent."""
    return missing_items(stored_facts(stored))
