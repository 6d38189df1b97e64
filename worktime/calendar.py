"""The official Russian production calendar: which days are worked, and for how long.

The facts are data (`worktime/data/ru.toml`), not rules: the Government moves days off by a
decree each year, and the art. 95 short days follow those moves in ways no simple rule
predicts (1 November 2025, a working Saturday, is short; 7 May 2025 is not). The Labour
Code's rules answer only for a year nobody has entered yet, and then with a warning.
"""

from __future__ import annotations

import enum
import re
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SHORTENING_MINUTES = 60
"""Art. 95: the day before a non-working holiday is one hour shorter."""

HOLIDAYS: Mapping[tuple[int, int], str] = {
    (1, 1): "Новогодние каникулы",
    (1, 2): "Новогодние каникулы",
    (1, 3): "Новогодние каникулы",
    (1, 4): "Новогодние каникулы",
    (1, 5): "Новогодние каникулы",
    (1, 6): "Новогодние каникулы",
    (1, 7): "Рождество Христово",
    (1, 8): "Новогодние каникулы",
    (2, 23): "День защитника Отечества",
    (3, 8): "Международный женский день",
    (5, 1): "Праздник Весны и Труда",
    (5, 9): "День Победы",
    (6, 12): "День России",
    (11, 4): "День народного единства",
}
"""Art. 112 part 1 of the Labour Code: the non-working holidays, (month, day) -> name."""

WEEKEND_REASON = "выходной"
SHORT_REASON = "предпраздничный день"
RULES_SOURCE = "ТК РФ ст. 112, 95 без постановления о переносе выходных (приблизительно)"

_MONTHS_GENITIVE = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)
_BUILTIN = "data/ru.toml"
_TIME_RANGE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")
_YEAR_KEYS = frozenset(
    {"year", "source", "provisional", "days_off", "working_weekends", "short_days"}
)
_ENTRY_KEYS = frozenset({"date", "reason"})
_SATURDAY = 5


class DayKind(enum.StrEnum):
    WORKING = "working"
    SHORT = "short"
    DAY_OFF = "day_off"


@dataclass(frozen=True, slots=True)
class CalendarDay:
    day: date
    kind: DayKind
    working_minutes: int
    """480 on a working day, 420 on a short one, 0 off (with the default hours)."""
    reason: str
    """Why the day is what it is, in Russian; "" for a plain working day."""


class CalendarDataMissing(UserWarning):
    """A year has no decreed data, so its days come from the Labour Code's rules alone.

    Those miss the Government's transfers, so deadlines in that year may be off by days.
    """


@dataclass(frozen=True, slots=True)
class CalendarYear:
    """One year of decreed facts, as in `worktime/data/ru.toml`."""

    year: int
    source: str
    provisional: bool
    days_off: Mapping[date, str]
    working_weekends: Mapping[date, str]
    short_days: Mapping[date, str]


@dataclass(frozen=True, slots=True)
class ProductionCalendar:
    """Working days and hours: the decreed years, and the rules for any other year.

    Compared and hashed by its settings only: the years are fixed when it is loaded.
    """

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Moscow"))
    working_hours: tuple[time, time] = (time(9), time(18))
    lunch: tuple[time, time] | None = (time(13), time(14))
    years: Mapping[int, CalendarYear] = field(default_factory=dict, repr=False, compare=False)
    _computed: dict[int, CalendarYear] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _day_intervals: dict[date, tuple[tuple[datetime, datetime], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        start, end = (_minute_of_day(moment) for moment in self.working_hours)
        if start >= end:
            raise ValueError(f"working_hours {_show(self.working_hours)}: start must be before end")
        if self.lunch is not None:
            lunch_start, lunch_end = (_minute_of_day(moment) for moment in self.lunch)
            if not start < lunch_start < lunch_end < end:
                raise ValueError(
                    f"lunch {_show(self.lunch)}: must lie inside working_hours "
                    f"{_show(self.working_hours)}"
                )
        if self.full_day_minutes <= SHORTENING_MINUTES:
            raise ValueError(
                f"working_hours {_show(self.working_hours)}: a day of "
                f"{self.full_day_minutes} minutes leaves nothing of a short day"
            )

    @property
    def full_day_minutes(self) -> int:
        return sum(end - start for start, end in self._pieces())

    def day(self, day: date) -> CalendarDay:
        if isinstance(day, datetime):
            raise TypeError(f"{day!r}: expected a date; convert a datetime in the calendar's zone")
        data = self._year(day.year)
        if day in data.days_off:
            return CalendarDay(day, DayKind.DAY_OFF, 0, data.days_off[day])
        if day in data.short_days:
            reason = data.short_days[day]
            if day in data.working_weekends:
                reason = f"{data.working_weekends[day]}; {reason}"
            minutes = self.full_day_minutes - SHORTENING_MINUTES
            return CalendarDay(day, DayKind.SHORT, minutes, reason)
        if day in data.working_weekends:
            return CalendarDay(
                day, DayKind.WORKING, self.full_day_minutes, data.working_weekends[day]
            )
        if day.weekday() >= _SATURDAY:
            reason = HOLIDAYS.get((day.month, day.day), WEEKEND_REASON)
            return CalendarDay(day, DayKind.DAY_OFF, 0, reason)
        return CalendarDay(day, DayKind.WORKING, self.full_day_minutes, "")

    def has_data(self, year: int) -> bool:
        """Whether decreed (or an admin's) data covers the year."""
        return year in self.years

    def is_provisional(self, year: int) -> bool:
        """Whether the year's answers may still change: marked so, or computed by rules."""
        data = self.years.get(year)
        return data is None or data.provisional

    def source(self, year: int) -> str:
        """Where the year's facts come from (decree and articles), for `maild calendar show`."""
        data = self.years.get(year)
        return RULES_SOURCE if data is None else data.source

    def days(self, start: date, end: date) -> list[CalendarDay]:
        """Every day from start to end inclusive; [] when end is before start."""
        count = (end - start).days + 1
        return [self.day(start + timedelta(days=offset)) for offset in range(max(count, 0))]

    def intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's working time as aware datetimes in the calendar's zone; [] on a day off.
        Remembered per day: every SLA clock of every message walks the same days."""
        known = self._day_intervals.get(day)
        if known is None:
            known = self._day_intervals[day] = tuple(self._intervals(day))
        return list(known)

    def _intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        info = self.day(day)
        if info.kind is DayKind.DAY_OFF:
            return []
        pieces = self._pieces()
        if info.kind is DayKind.SHORT:
            pieces = _cut_tail(pieces, SHORTENING_MINUTES)
        return [
            (
                datetime.combine(day, _time_of(start), tzinfo=self.timezone),
                datetime.combine(day, _time_of(end), tzinfo=self.timezone),
            )
            for start, end in pieces
        ]

    def year_totals(self, year: int) -> tuple[int, int]:
        """(working days, working hours): the official norm of a 40-hour week by default hours."""
        worked = [
            info
            for info in self.days(date(year, 1, 1), date(year, 12, 31))
            if info.kind is not DayKind.DAY_OFF
        ]
        return len(worked), sum(info.working_minutes for info in worked) // 60

    def _pieces(self) -> list[tuple[int, int]]:
        """The configured day in minutes since midnight, lunch taken out."""
        start, end = (_minute_of_day(moment) for moment in self.working_hours)
        if self.lunch is None:
            return [(start, end)]
        lunch_start, lunch_end = (_minute_of_day(moment) for moment in self.lunch)
        return [(start, lunch_start), (lunch_end, end)]

    def _year(self, year: int) -> CalendarYear:
        data = self.years.get(year)
        if data is not None:
            return data
        computed = self._computed.get(year)
        if computed is None:
            warnings.warn(
                CalendarDataMissing(
                    f"no production calendar data for {year}: counting weekends and the "
                    "Labour Code's holidays only (art. 112, 95); add the Government's decree "
                    "for the year to [calendar] extra_file"
                ),
                stacklevel=3,
            )
            computed = rules_year(year)
            self._computed[year] = computed
        return computed


def rules_year(year: int) -> CalendarYear:
    """A year by the Labour Code alone: what is known before the Government's decree.

    Art. 112 holidays; a holiday outside 1-8 January that falls on a weekend moves the day
    off to the next working day (part 2); art. 95 shortens a working day whose next day is a
    holiday. The decree's moves of the January weekend days cannot be guessed.
    """
    holidays = {date(year, month, day): name for (month, day), name in HOLIDAYS.items()}
    days_off = {day: name for day, name in holidays.items() if day.weekday() < _SATURDAY}
    for day in sorted(holidays):
        if day.month == 1 or day.weekday() < _SATURDAY:
            continue
        moved = day + timedelta(days=1)
        while moved.weekday() >= _SATURDAY or moved in days_off:
            moved += timedelta(days=1)
        if moved.year == year:
            days_off[moved] = (
                f"перенос с {day.day} {_MONTHS_GENITIVE[day.month - 1]} (ст. 112 ТК РФ)"
            )
    short_days = {}
    for holiday in [*holidays, date(year + 1, 1, 1)]:
        eve = holiday - timedelta(days=1)
        if eve.year == year and eve.weekday() < _SATURDAY and eve not in days_off:
            short_days[eve] = SHORT_REASON
    return CalendarYear(year, RULES_SOURCE, True, days_off, {}, short_days)


def load_calendar(
    *,
    timezone: str = "Europe/Moscow",
    working_hours: str = "09:00-18:00",
    lunch: str | None = "13:00-14:00",
    extra_file: Path | None = None,
) -> ProductionCalendar:
    """The shipped calendar, with an admin's extra_file years replacing ours whole."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone {timezone!r}: not a time zone name such as Europe/Moscow"
        ) from None
    hours = _time_range("working_hours", working_hours)
    lunch_range = None if lunch is None else _time_range("lunch", lunch)
    builtin = resources.files("worktime").joinpath(_BUILTIN).read_text(encoding="utf-8")
    years = parse_years(builtin, f"worktime/{_BUILTIN}")
    if extra_file is not None:
        try:
            text = Path(extra_file).read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(
                f"calendar extra_file {str(extra_file)!r}: {error.strerror}"
            ) from error
        years.update(parse_years(text, str(extra_file)))
    return ProductionCalendar(zone, hours, lunch_range, years)


def parse_years(text: str, origin: str) -> dict[int, CalendarYear]:
    """The [[year]] tables of a data file; a bad value is a ValueError naming it."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{origin}: {error}") from error
    for key in document:
        if key != "year":
            raise ValueError(f"{origin}: unknown key {key!r} (expected [[year]] tables)")
    tables = document.get("year", [])
    if not isinstance(tables, list):
        raise _bad(f"{origin}: year", tables, "[[year]] tables")
    years: dict[int, CalendarYear] = {}
    for index, table in enumerate(tables):
        data = _parse_year(table, f"{origin}: year[{index}]")
        if data.year in years:
            raise ValueError(f"{origin}: year {data.year} appears twice")
        years[data.year] = data
    return years


def _parse_year(table: Any, where: str) -> CalendarYear:
    if not isinstance(table, dict):
        raise _bad(where, table, "a [[year]] table")
    for key in table:
        if key not in _YEAR_KEYS:
            raise ValueError(f"{where}.{key}: unknown key")
    year = table.get("year")
    if isinstance(year, bool) or not isinstance(year, int) or not 1900 <= year <= 9999:
        raise _bad(f"{where}.year", year, "a year such as 2027")
    where = f"{where} ({year})"
    source = table.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _bad(f"{where}.source", source, "the decree and articles the facts come from")
    provisional = table.get("provisional", False)
    if not isinstance(provisional, bool):
        raise _bad(f"{where}.provisional", provisional, "true or false")
    lists = {
        name: _parse_entries(table.get(name, []), year, f"{where}.{name}")
        for name in ("days_off", "working_weekends", "short_days")
    }
    data = CalendarYear(
        year,
        source,
        provisional,
        lists["days_off"],
        lists["working_weekends"],
        lists["short_days"],
    )
    _check_year(data, where)
    return data


def _parse_entries(entries: Any, year: int, where: str) -> dict[date, str]:
    if not isinstance(entries, list):
        raise _bad(where, entries, 'a list of { date = "YYYY-MM-DD", reason = "..." }')
    found: dict[date, str] = {}
    for index, entry in enumerate(entries):
        place = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise _bad(place, entry, '{ date = "YYYY-MM-DD", reason = "..." }')
        for key in entry:
            if key not in _ENTRY_KEYS:
                raise ValueError(f"{place}.{key}: unknown key")
        day = _parse_date(entry.get("date"), f"{place}.date")
        if day.year != year:
            raise ValueError(f"{place}.date: {day.isoformat()} is not in {year}")
        if day in found:
            raise ValueError(f"{place}.date: {day.isoformat()} is listed twice")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise _bad(f"{place}.reason", reason, "why, in words")
        found[day] = reason
    return found


def _parse_date(value: Any, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _bad(where, value, "a date YYYY-MM-DD")


def _check_year(data: CalendarYear, where: str) -> None:
    """Refuse a year whose lists contradict each other or the week."""
    for day in data.days_off:
        if day.weekday() >= _SATURDAY:
            raise ValueError(
                f"{where}.days_off: {day.isoformat()} is a weekend day, off already "
                "(list only weekdays)"
            )
        if day in data.working_weekends or day in data.short_days:
            raise ValueError(f"{where}.days_off: {day.isoformat()} is also listed as worked")
    for day in data.working_weekends:
        if day.weekday() < _SATURDAY:
            raise ValueError(f"{where}.working_weekends: {day.isoformat()} is not a weekend day")
    for day in data.short_days:
        if day.weekday() >= _SATURDAY and day not in data.working_weekends:
            raise ValueError(
                f"{where}.short_days: {day.isoformat()} is a weekend day that is not worked "
                "(list it in working_weekends too)"
            )


def _bad(where: str, value: object, expected: str) -> ValueError:
    return ValueError(f"{where}: {value!r}, expected {expected}")


def _time_range(name: str, text: str) -> tuple[time, time]:
    found = _TIME_RANGE.fullmatch(text)
    if found is None:
        raise ValueError(f"{name} {text!r}: expected HH:MM-HH:MM")
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in found.groups())
    return time(start_hour, start_minute), time(end_hour, end_minute)


def _minute_of_day(moment: time) -> int:
    return moment.hour * 60 + moment.minute


def _time_of(minute: int) -> time:
    return time(minute // 60, minute % 60)


def _show(pair: tuple[time, time]) -> str:
    return f"{pair[0]:%H:%M}-{pair[1]:%H:%M}"


def _cut_tail(pieces: list[tuple[int, int]], minutes: int) -> list[tuple[int, int]]:
    """The pieces less their last `minutes`: a short day ends early, lunch stays."""
    kept = list(pieces)
    while minutes > 0:
        start, end = kept.pop()
        if end - start > minutes:
            kept.append((start, end - minutes))
        minutes -= end - start
    return kept
