"""The reply-stripping table: tests/fixtures/replies/<lang>.toml, one case per real client shape.

Shared by tests/test_reply_languages.py (which holds the line) and bench/reply_stripping.py
(which prints the share kept right, per language, client and kind, for maild and for the
libraries it was measured against).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

TABLE = Path(__file__).parent / "fixtures" / "replies"
LANGUAGES = ("ru", "en", "de", "fr", "es", "pt", "it", "pl", "nl", "uk")
SIGNATURE_KINDS = frozenset({"sign-off", "signature", "mobile-footer"})
_BLANK_RUN = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class ReplyCase:
    language: str
    id: str
    client: str
    kind: str
    note: str
    body: str
    new_text: str


def normalise(text: str) -> str:
    """Trailing spaces, outer blank lines and runs of blank lines do not count."""
    lines = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))
    return _BLANK_RUN.sub("\n\n", lines).strip("\n")


def load_cases(languages: tuple[str, ...] = LANGUAGES) -> list[ReplyCase]:
    cases = []
    for language in languages:
        data = tomllib.loads((TABLE / f"{language}.toml").read_text(encoding="utf-8"))
        for entry in data["case"]:
            cases.append(_case(language, entry))
    return cases


def _case(language: str, entry: dict[str, str]) -> ReplyCase:
    return ReplyCase(
        language=entry.get("language", language),
        id=entry["id"],
        client=entry["client"],
        kind=entry["kind"],
        note=entry.get("note", ""),
        body=entry["body"].removeprefix("\n"),
        new_text=entry["new_text"],
    )


def load_file(path: Path) -> list[ReplyCase]:
    """A table file whose cases name their language (bench/data/replies_holdout.toml)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [_case(data.get("language", ""), entry) for entry in data["case"]]


def kept_right(found: str, case: ReplyCase) -> bool:
    return normalise(found) == normalise(case.new_text)
