"""Time as a seam: SLA and rate-limit code asks a Clock, tests pass a fixed one.

`MAILD_NOW` (ISO-8601 with an offset) fixes the time of every command, `maild run` included
(SPEC), so any deadline, reminder or report can be tried at any moment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from maild.errors import ConfigError

ENV_NOW = "MAILD_NOW"


def utc_now() -> datetime:
    return datetime.now(UTC)


_NOW: ContextVar[datetime | None] = ContextVar("maild_now", default=None)


def current_time() -> datetime:
    """The moment of the work in hand (`at_moment`), for rows written without an explicit
    time (their model defaults); the system clock only outside any such work."""
    return _NOW.get() or utc_now()


@contextmanager
def at_moment(moment: datetime) -> Iterator[None]:
    """Every row written inside takes `moment` as its default time: a message processed at
    MAILD_NOW (or a test's fixed clock) leaves events stamped with that time, not the wall's."""
    token = _NOW.set(moment)
    try:
        yield
    finally:
        _NOW.reset(token)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utc_now()


@dataclass(slots=True)
class FixedClock:
    """A clock the tests move by hand."""

    current: datetime

    def now(self) -> datetime:
        return self.current


def parse_now(value: str) -> datetime:
    """An ISO-8601 moment with its offset ("2026-03-06T17:30:00+03:00" or "...Z")."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        example = "2026-03-06T17:30:00+03:00"
        raise ConfigError(f"{ENV_NOW}={value!r}: expected ISO-8601, e.g. {example}") from None
    if moment.tzinfo is None:
        raise ConfigError(f"{ENV_NOW}={value!r}: give the offset (+03:00 or Z)")
    return moment.astimezone(UTC)


def clock_from_environment(environ: Mapping[str, str] = os.environ) -> Clock:
    """The one clock of a command: fixed at MAILD_NOW when set, else the system's."""
    value = environ.get(ENV_NOW, "").strip()
    return FixedClock(parse_now(value)) if value else SystemClock()
