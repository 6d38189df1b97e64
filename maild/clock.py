"""Time as a seam: SLA and rate-limit code asks a Clock, tests pass a fixed one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


def utc_now() -> datetime:
    return datetime.now(UTC)


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
