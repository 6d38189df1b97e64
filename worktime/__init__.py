"""Working time by the official Russian production calendar, for SLA clocks.

A pure package that imports nothing of maild, so every layer may use it: `calendar` says
which days are worked and for how long (decreed data in `data/ru.toml`), `arithmetic`
adds and measures minutes of a business or 24x7 clock, with pauses.
"""

from worktime.arithmetic import (
    MODES,
    add_excluding,
    add_minutes_24x7,
    add_working_minutes,
    minutes_between_24x7,
    working_minutes_between,
    working_minutes_excluding,
)
from worktime.calendar import (
    CalendarDataMissing,
    CalendarDay,
    CalendarYear,
    DayKind,
    ProductionCalendar,
    load_calendar,
)

__all__ = [
    "MODES",
    "CalendarDataMissing",
    "CalendarDay",
    "CalendarYear",
    "DayKind",
    "ProductionCalendar",
    "add_excluding",
    "add_minutes_24x7",
    "add_working_minutes",
    "load_calendar",
    "minutes_between_24x7",
    "working_minutes_between",
    "working_minutes_excluding",
]
