"""What the regulation's pre-contact checklist asks for, and which of it a request carries.

Facts come from the client's new text and the kinds of the attachments; the acknowledgement
names what is missing. Table-driven: one compiled pattern per item, so adding a phrase is a
one-line change and the text is scanned in linear time.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from parsers.types import ArtifactKind


class ChecklistItem(enum.StrEnum):
    VERSION = "version"
    ENVIRONMENT = "environment"
    SCENARIO = "scenario"
    ERROR_TEXT = "error_text"
    SCREENSHOTS = "screenshots"
    LOGS = "logs"


_VERSION = re.compile(
    r"(?:(?:cubisio|кубисио|верси[яиюей]|version|ver\.?|v\.?|релиз|release|сборк[аиуе]|build)"
    r"\s*[:№#]?\s*(\d+(?:\.\d+){1,3}(?:[-.]\w+)?|\d{3,}))",
    re.IGNORECASE,
)
_TEXT_RULES: tuple[tuple[ChecklistItem, re.Pattern[str]], ...] = (
    (ChecklistItem.ENVIRONMENT, re.compile(
        r"\b(?:windows|win\s?(?:7|8|10|11)|linux|astra|астра|ред\s?ос|red\s?os|альт\s?линукс|alt\s?linux|"
        r"ubuntu|debian|centos|rhel|red\s?hat|macos|mac\s?os|os\s?x|chrome|хром|firefox|яндекс[.\s]?браузер|"
        r"yandex\s?browser|edge|safari|opera|postgres(?:ql)?|postgres\s?pro|ms\s?sql|sql\s?server|oracle|"
        r"mysql|mariadb|операционн\w+\s+систем\w+|браузер\w*|субд)\b",
        re.IGNORECASE,
    )),
    (ChecklistItem.SCENARIO, re.compile(
        r"(?:\bшаг\w*|воспроизв\w+|steps?\s+to\s+reproduce|\bпри\s+(?:нажатии|открытии|попытке|запуске|сохранении)|"
        r"после\s+того,?\s+как|\bwhen\s+i\s+\w+|\bafter\s+i\s+\w+|\bсценари\w+|"
        r"(?:^|\n)\s*1[.)]\s+\S.*\n\s*2[.)]\s+\S)",
        re.IGNORECASE,
    )),
    (ChecklistItem.ERROR_TEXT, re.compile(
        r"(?:\bошибк\w*\s*[:«\"]|\berror\s*[:\"]|exception\b|traceback|\bora-\d{4,5}|"
        r"\bhttp\s*[45]\d\d\b|\b[45]\d\d\s+(?:internal|bad|not\s+found|service)|"
        r"^\s*at\s+[\w.$]+\(|сообщени\w+\s*[:«\"]|\bfailed\s+with\b|\bstack\s?trace)",
        re.IGNORECASE | re.MULTILINE,
    )),
)  # fmt: skip
_KIND_ITEMS: tuple[tuple[ChecklistItem, frozenset[ArtifactKind]], ...] = (
    (ChecklistItem.SCREENSHOTS, frozenset({ArtifactKind.SCREENSHOT})),
    (ChecklistItem.LOGS, frozenset({ArtifactKind.LOG, ArtifactKind.DUMP, ArtifactKind.ARCHIVE})),
)


@dataclass(frozen=True, slots=True)
class ChecklistFacts:
    present: frozenset[ChecklistItem]
    product_version: str | None


def find_checklist_facts(text: str, attachment_kinds: Iterable[ArtifactKind]) -> ChecklistFacts:
    """Which checklist items this request already carries."""
    sample = text[:200_000].replace("ё", "е").replace("Ё", "Е")
    present = {item for item, pattern in _TEXT_RULES if pattern.search(sample)}
    version = _VERSION.search(sample)
    if version:
        present.add(ChecklistItem.VERSION)
    kinds = frozenset(attachment_kinds)
    present.update(item for item, wanted in _KIND_ITEMS if kinds & wanted)
    return ChecklistFacts(frozenset(present), version.group(1) if version else None)


def missing_items(facts: ChecklistFacts) -> tuple[ChecklistItem, ...]:
    return tuple(item for item in ChecklistItem if item not in facts.present)
