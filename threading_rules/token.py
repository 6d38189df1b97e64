"""The subject token `[SIS #123]`, also as clients mangle it (spaces, full-width #, №)."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=8)
def _token_pattern(prefix: str) -> re.Pattern[str]:
    # Brackets and number signs also in their full-width forms (Asian input methods, iOS).
    opening, number_sign, closing = r"[\[［【]", r"[#＃№]?", r"[\]］】]"
    return re.compile(
        rf"{opening}\s*{re.escape(prefix)}\s*{number_sign}\s*(\d{{1,9}})\s*{closing}", re.IGNORECASE
    )


def format_token(prefix: str, ticket_id: int) -> str:
    return f"[{prefix} #{ticket_id}]"


def find_ticket_numbers(subject: str, prefix: str) -> tuple[int, ...]:
    """Every ticket number in the subject, in order, without repeats."""
    numbers = (int(match) for match in _token_pattern(prefix).findall(subject))
    return tuple(dict.fromkeys(numbers))


def strip_tokens(subject: str, prefix: str) -> str:
    return " ".join(_token_pattern(prefix).sub(" ", subject).split())


_REPLY_CHAIN = re.compile(
    r"^\s*(?:re|fwd?|aw|tr|sv|vs|wg|ответ|отв|пересл)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*",
    re.IGNORECASE,
)


def clean_subject(subject: str, prefix: str) -> str:
    """The subject without our tokens and without the Re:/Fwd:/Ответ: chain in front."""
    text = strip_tokens(subject, prefix)
    previous = None
    while previous != text:
        previous, text = text, _REPLY_CHAIN.sub("", text, count=1)
    return text.strip()
