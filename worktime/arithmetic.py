"""Working-time arithmetic for SLA clocks: adding and measuring minutes of a clock.

Pure functions over a `ProductionCalendar`. Inputs are aware datetimes in any zone and
results are UTC, so the zone a caller happens to hold never changes an answer. A clock
counts whole minutes: elapsed time is rounded down, since a minute not yet over has not
been served. Adding steps a day at a time, so a target of months costs a few hundred steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from worktime.calendar import ProductionCalendar

MODES = ("business", "24x7")
"""business: working hours of the production calendar; 24x7: every minute counts."""

_MINUTE = timedelta(minutes=1)
_ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)
_MAX_IDLE_DAYS = 731
"""Days without any working time after which adding gives up: the data must be wrong."""

Pause = tuple[datetime, datetime | None]


def add_working_minutes(calendar: ProductionCalendar, start: datetime, minutes: int) -> datetime:
    """The moment `minutes` working minutes after start; 0 gives the next working moment."""
    return _add_working(calendar, _utc(start, "start"), _duration(minutes))


def working_minutes_between(calendar: ProductionCalendar, start: datetime, end: datetime) -> int:
    """Working minutes in [start, end), rounded down; 0 if end is not after start."""
    return _working_time(calendar, _utc(start, "start"), _utc(end, "end")) // _MINUTE


def add_minutes_24x7(start: datetime, minutes: int) -> datetime:
    """Start plus minutes of real time (in UTC, so a DST change costs no hour)."""
    return _utc(start, "start") + _duration(minutes)


def minutes_between_24x7(start: datetime, end: datetime) -> int:
    """Real minutes in [start, end), rounded down; 0 if end is not after start."""
    return max(_utc(end, "end") - _utc(start, "start"), _ZERO) // _MINUTE


def working_minutes_excluding(
    calendar: ProductionCalendar | None,
    start: datetime,
    end: datetime,
    pauses: Iterable[Pause],
    *,
    mode: str,
) -> int:
    """Minutes of the mode's clock in [start, end) outside every pause, rounded down.

    A pause whose end is None is still open: it runs to `end`. Overlapping pauses count once.
    """
    clock = _Clock(calendar, mode)
    begin, finish = _utc(start, "start"), _utc(end, "end")
    total = _ZERO
    cursor = begin
    for pause_start, pause_end in _merge(pauses, begin):
        if pause_start >= finish:
            break
        total += clock.elapsed(cursor, pause_start)
        if pause_end is None:
            return total // _MINUTE
        cursor = max(cursor, pause_end)
    total += clock.elapsed(cursor, finish)
    return total // _MINUTE


def add_excluding(
    calendar: ProductionCalendar | None,
    start: datetime,
    minutes: int,
    pauses: Iterable[Pause],
    *,
    mode: str,
) -> datetime | None:
    """When `minutes` of the mode's clock have run from start, pauses not counted.

    None when an open pause (end None) begins before the clock reaches its target: the due
    time is unknown until the pause ends.
    """
    clock = _Clock(calendar, mode)
    cursor = _utc(start, "start")
    remaining = _duration(minutes)
    for pause_start, pause_end in _merge(pauses, cursor):
        if pause_start > cursor:
            target = clock.advance(cursor, remaining)
            # With time left, a target at the pause's start is reached; with none, the clock
            # would first run at the pause's start, which the pause takes.
            if target < pause_start or (remaining > _ZERO and target == pause_start):
                return target
            remaining -= clock.elapsed(cursor, pause_start)
        if pause_end is None:
            return None
        cursor = max(cursor, pause_end)
    return clock.advance(cursor, remaining)


class _Clock:
    """The mode's way of adding and measuring, chosen once per call."""

    __slots__ = ("calendar", "mode")

    def __init__(self, calendar: ProductionCalendar | None, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if mode == "business" and calendar is None:
            raise ValueError("mode 'business' needs a production calendar")
        self.calendar = calendar
        self.mode = mode

    def advance(self, start: datetime, amount: timedelta) -> datetime:
        if self.calendar is None or self.mode == "24x7":
            return start + amount
        return _add_working(self.calendar, start, amount)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        if self.calendar is None or self.mode == "24x7":
            return max(end - start, _ZERO)
        return _working_time(self.calendar, start, end)


def _add_working(calendar: ProductionCalendar, start: datetime, amount: timedelta) -> datetime:
    """Start (UTC) plus `amount` of working time, stepping day by day."""
    remaining = amount
    day = start.astimezone(calendar.timezone).date()
    idle = 0
    while True:
        pieces = _utc_intervals(calendar, day)
        idle = idle + 1 if not pieces else 0
        if idle > _MAX_IDLE_DAYS:
            raise ValueError(f"no working time in the {_MAX_IDLE_DAYS} days before {day}")
        for piece_start, piece_end in pieces:
            if piece_end <= start:
                continue
            begin = max(piece_start, start)
            available = piece_end - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        day += _ONE_DAY


def _working_time(calendar: ProductionCalendar, start: datetime, end: datetime) -> timedelta:
    """Working time in [start, end) of UTC datetimes."""
    total = _ZERO
    if end <= start:
        return total
    day = start.astimezone(calendar.timezone).date()
    last = end.astimezone(calendar.timezone).date()
    while day <= last:
        for piece_start, piece_end in _utc_intervals(calendar, day):
            overlap = min(piece_end, end) - max(piece_start, start)
            total += max(overlap, _ZERO)
        day += _ONE_DAY
    return total


def _utc_intervals(calendar: ProductionCalendar, day: date) -> list[tuple[datetime, datetime]]:
    """The day's working intervals in UTC, so that their lengths are real across DST."""
    pieces = []
    for local_start, local_end in calendar.intervals(day):
        piece = (local_start.astimezone(UTC), local_end.astimezone(UTC))
        if piece[1] > piece[0]:
            pieces.append(piece)
    return pieces


def _merge(pauses: Iterable[Pause], start: datetime) -> list[Pause]:
    """The pauses from start on, in UTC, sorted, overlaps joined; an open one ends the list."""
    spans: list[Pause] = []
    for index, (pause_start, pause_end) in enumerate(pauses):
        begin = _utc(pause_start, f"pauses[{index}] start")
        finish = None if pause_end is None else _utc(pause_end, f"pauses[{index}] end")
        if finish is not None and finish < begin:
            raise ValueError(f"pauses[{index}]: ends {finish.isoformat()} before it starts")
        if finish is None or finish > start:
            spans.append((max(begin, start), finish))
    spans.sort(key=lambda span: span[0])
    merged: list[Pause] = []
    for begin, finish in spans:
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None:
                break
            if begin <= last_end:
                merged[-1] = (last_start, None if finish is None else max(last_end, finish))
                continue
        merged.append((begin, finish))
    return merged


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} {moment.isoformat()}: naive datetime, expected an aware one")
    return moment.astimezone(UTC)


def _duration(minutes: int) -> timedelta:
    if minutes < 0:
        raise ValueError(f"minutes {minutes}: expected zero or more")
    return timedelta(minutes=minutes)
