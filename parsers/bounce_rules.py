"""Bounces and list-manager notices that are not RFC 3464 reports, recognised by data.

The facts per mail-server family (sender local parts, subject and body phrases, header
names) live in `parsers/data/bounce_families.toml`, learned from Sisimai's per-family
modules; adding a family is an edit of that file, not of this code. One fact alone never
decides: a client who writes "550 user unknown" to support is asking a question, a cron job
named `it-admin` is not a list manager. A family matches on two kinds of evidence (sender,
subject, body, header).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["BounceFamily", "BounceShape", "bounce_families", "match_bounce_shape"]

FAMILIES_FILE = Path(__file__).with_name("data") / "bounce_families.toml"
# Bounce wording is at the top of the text; a long message is mostly the returned original.
BODY_WINDOW = 32 * 1024
# A person forwarding or answering a bounce keeps its subject after the prefix: such a
# subject is the person's, not the mail server's.
_PERSON_PREFIX = re.compile(
    r"^\s*(?:re|fwd?|fw|aw|wg|tr|rv|enc|sv|vs|odp|pd|ответ|отв|пересл|переслать)\s*(?:\[\d+\])?\s*:",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class BounceFamily:
    name: str
    mta: str
    source: str
    senders: frozenset[str]
    sender_patterns: tuple[re.Pattern[str], ...]
    subjects: tuple[str, ...]
    body: tuple[str, ...]
    headers: frozenset[str]


@dataclass(frozen=True, slots=True)
class BounceShape:
    """Which family's notice a message is, and the evidence, as found."""

    family: str
    mta: str
    evidence: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.mta} notice: {'; '.join(self.evidence)}"


@cache
def bounce_families(path: Path = FAMILIES_FILE) -> tuple[BounceFamily, ...]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    return tuple(_family(entry) for entry in data["family"])


def _family(entry: dict[str, Any]) -> BounceFamily:
    return BounceFamily(
        name=entry["name"],
        mta=entry.get("mta", entry["name"]),
        source=entry["source"],
        senders=frozenset(s.lower() for s in entry.get("senders", ())),
        sender_patterns=tuple(re.compile(p) for p in entry.get("sender_patterns", ())),
        subjects=tuple(s.lower() for s in entry.get("subjects", ())),
        body=tuple(_SPACES.sub(" ", s.lower()) for s in entry.get("body", ())),
        headers=frozenset(h.lower() for h in entry.get("headers", ())),
    )


def match_bounce_shape(
    sender: str | None,
    subject: str,
    body: str,
    header_names: frozenset[str],
    families: tuple[BounceFamily, ...] | None = None,
) -> BounceShape | None:
    """The family with the most evidence among those with two kinds of it, or None.

    The body is read only when a family has one other kind of evidence already, so an
    ordinary message costs a few set lookups. Families share their generic facts
    ("mailer-daemon", "mail delivery failed"); the body phrases tell Exim from Mail.ru.
    """
    local = sender.rpartition("@")[0].lower() if sender and "@" in sender else ""
    subject = "" if _PERSON_PREFIX.match(subject) else subject.lower()
    text: str | None = None
    best: tuple[tuple[int, int, int], BounceShape] | None = None
    for family in families if families is not None else bounce_families():
        kinds = [
            found
            for found in (
                _sender(family, local), _subject(family, subject), _headers(family, header_names)
            )
            if found
        ]  # fmt: skip
        if not kinds:
            continue
        if text is None:
            text = _SPACES.sub(" ", body[:BODY_WINDOW].lower())
        phrases = [phrase for phrase in family.body if phrase in text]
        if phrases:
            kinds.append([f"body {phrase!r}" for phrase in phrases])
        # Two kinds decide; among families that qualify, the body phrases (the wording
        # each server prints) say whose notice it is, the longest phrase breaking ties.
        weight = (len(kinds), len(phrases), max(map(len, phrases), default=0))
        if len(kinds) >= 2 and (best is None or weight > best[0]):
            evidence = tuple(found[0] for found in kinds)
            best = (weight, BounceShape(family.name, family.mta, evidence))
    return best[1] if best else None


def _sender(family: BounceFamily, local: str) -> list[str]:
    if not local:
        return []
    if local in family.senders or any(p.search(local) for p in family.sender_patterns):
        return [f"sender {local}@"]
    return []


def _subject(family: BounceFamily, subject: str) -> list[str]:
    return [f"subject {phrase!r}" for phrase in family.subjects if subject and phrase in subject]


def _headers(family: BounceFamily, names: frozenset[str]) -> list[str]:
    return [f"header {name}" for name in sorted(family.headers & names)]
