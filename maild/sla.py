"""SLA clocks: pure functions of a ticket's terms and its status history.

A ticket carries the terms it was opened under (`Ticket.sla_terms`: mode, contract, target
minutes per criticality). Two clocks run from its creation: first response (until the first
public answer by an engineer) and resolution (until it is resolved or closed). Both stop
while the ticket waits for the client (`#status waiting`, `#request`) and go on when the
client replies; resolution also stops while the ticket is resolved or closed (a reopened
ticket goes on where it stopped). Minutes are working minutes of the production calendar in
business mode, plain minutes in 24x7 mode (`worktime`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from maild.config import CalendarConfig, Config
from maild.contracts import sla_terms
from worktime import ProductionCalendar, load_calendar
from worktime.arithmetic import add_excluding, working_minutes_excluding

WAITING = "waiting"
DONE = ("resolved", "closed")


@dataclass(frozen=True, slots=True)
class StatusChange:
    at: datetime
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class ClockState:
    target_minutes: int
    elapsed_minutes: int
    due: datetime | None
    """When the target is reached; None once the clock is done or while it is paused."""
    breached: bool
    done: bool

    @property
    def fraction(self) -> float:
        return self.elapsed_minutes / self.target_minutes if self.target_minutes else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "target_minutes": self.target_minutes,
            "elapsed_minutes": self.elapsed_minutes,
            "due": self.due.isoformat() if self.due else None,
            "breached": self.breached,
        }


@dataclass(frozen=True, slots=True)
class SlaStatus:
    mode: str
    contract: str | None
    paused: bool
    first_response: ClockState
    resolution: ClockState

    def as_json(self, zone: Any = None) -> dict[str, Any]:
        def clock(state: ClockState) -> dict[str, Any]:
            data = state.as_json()
            if state.due and zone is not None:
                data["due"] = state.due.astimezone(zone).isoformat()
            return data

        return {
            "mode": self.mode,
            "contract": self.contract,
            "paused": self.paused,
            "first_response": clock(self.first_response),
            "resolution": clock(self.resolution),
        }

    def due_times(self) -> DueTimes:
        """The notice templates' view: due moments and whether they are past."""
        first, resolution = self.first_response, self.resolution
        return DueTimes(
            first_response=None if first.done else first.due,
            resolution=None if resolution.done else resolution.due,
            first_response_overdue=not first.done and first.breached,
            resolution_overdue=not resolution.done and resolution.breached,
        )


@dataclass(frozen=True, slots=True)
class DueTimes:
    first_response: datetime | None
    resolution: datetime | None
    first_response_overdue: bool
    resolution_overdue: bool


@cache
def calendar_for(settings: CalendarConfig) -> ProductionCalendar:
    return load_calendar(
        timezone=settings.timezone, working_hours=settings.working_hours,
        lunch=settings.lunch, extra_file=settings.extra_file,
    )  # fmt: skip


def ticket_terms(config: Config, stored: dict[str, Any] | None) -> dict[str, Any]:
    """The ticket's own terms; a ticket older than contracts gets the public offer's."""
    return stored if stored else sla_terms(config, None)


def intervals(
    changes: Iterable[StatusChange], statuses: tuple[str, ...], now: datetime
) -> list[tuple[datetime, datetime | None]]:
    """Periods spent in one of `statuses` (the last one open: end None)."""
    periods: list[tuple[datetime, datetime | None]] = []
    start: datetime | None = None
    for change in sorted(changes, key=lambda change: change.at):
        if change.new in statuses and start is None:
            start = change.at
        elif change.new not in statuses and start is not None:
            periods.append((start, change.at))
            start = None
    if start is not None:
        periods.append((start, None if start <= now else now))
    return periods


def sla_status(
    terms: dict[str, Any],
    *,
    criticality: str,
    created_at: datetime,
    first_response_at: datetime | None,
    status: str,
    changes: Sequence[StatusChange],
    now: datetime,
    calendar: ProductionCalendar,
) -> SlaStatus:
    mode = terms["mode"]
    waiting = intervals(changes, (WAITING,), now)
    paused = status == WAITING

    def clock(target: int, end: datetime | None, pauses: list[Any], done: bool) -> ClockState:
        stop = end if end is not None else now
        elapsed = working_minutes_excluding(calendar, created_at, stop, pauses, mode=mode)
        due = None
        if not done and not paused:
            due = add_excluding(calendar, created_at, target, pauses, mode=mode)
        return ClockState(target, elapsed, due, elapsed > target, done)

    first_target = int(terms["first_response_minutes"][criticality])
    first_pauses = [
        (s, e) for s, e in waiting if first_response_at is None or s < first_response_at
    ]
    first = clock(first_target, first_response_at, first_pauses, first_response_at is not None)
    resolution_pauses = intervals(changes, (WAITING, *DONE), now)
    resolution_target = int(terms["resolution_minutes"][criticality])
    resolution = clock(resolution_target, None, resolution_pauses, status in DONE)
    return SlaStatus(mode, terms.get("contract"), paused, first, resolution)
