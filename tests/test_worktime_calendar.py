"""The production calendar against the Labour Code and the Government's decrees.

Sources (the same as in worktime/data/ru.toml):
- ТК РФ ст. 112 (non-working holidays; a weekend holiday moves the day off, part 2) and
  ст. 95 (the day before a holiday is one hour shorter).
- Постановление Правительства РФ от 10.08.2023 № 1314 «О переносе выходных дней в 2024 году».
- Постановление Правительства РФ от 04.10.2024 № 1335 «О переносе выходных дней в 2025 году».
- Постановление Правительства РФ от 24.09.2025 № 1466 «О переносе выходных дней в 2026 году».
- Постановление Правительства РФ от 17.09.2026 № 1187 «О переносе выходных дней в 2027 году».
"""

from __future__ import annotations

import re
import warnings
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from worktime import CalendarDataMissing, DayKind, ProductionCalendar, load_calendar
from worktime.calendar import HOLIDAYS

MOSCOW = ZoneInfo("Europe/Moscow")
DECREED_YEARS = (2024, 2025, 2026, 2027)
FAR_YEAR = 2037
"""A year no decree will reach while this code lives; its weekdays fall as in 2026."""


@pytest.fixture(scope="module")
def calendar() -> ProductionCalendar:
    return load_calendar()


def off_weekdays(calendar: ProductionCalendar, year: int) -> set[date]:
    days = calendar.days(date(year, 1, 1), date(year, 12, 31))
    return {d.day for d in days if d.kind is DayKind.DAY_OFF and d.day.weekday() < 5}


def kinds(calendar: ProductionCalendar, year: int, kind: DayKind) -> set[date]:
    return {d.day for d in calendar.days(date(year, 1, 1), date(year, 12, 31)) if d.kind is kind}


def worked_weekends(calendar: ProductionCalendar, year: int) -> set[date]:
    days = calendar.days(date(year, 1, 1), date(year, 12, 31))
    return {d.day for d in days if d.kind is not DayKind.DAY_OFF and d.day.weekday() >= 5}


# --- 2025 -------------------------------------------------------------------------------


def test_2025_days_off_follow_decree_1335(calendar):
    """Постановление № 1335 от 04.10.2024: 4 Jan -> 2 May, 5 Jan -> 31 Dec, 23 Feb -> 8 May,
    8 Mar -> 13 Jun, 1 Nov -> 3 Nov; with the weekday holidays of ст. 112."""
    assert off_weekdays(calendar, 2025) == {
        date(2025, 1, 1),
        date(2025, 1, 2),
        date(2025, 1, 3),
        date(2025, 1, 6),
        date(2025, 1, 7),
        date(2025, 1, 8),
        date(2025, 5, 1),
        date(2025, 5, 2),
        date(2025, 5, 8),
        date(2025, 5, 9),
        date(2025, 6, 12),
        date(2025, 6, 13),
        date(2025, 11, 3),
        date(2025, 11, 4),
        date(2025, 12, 31),
    }


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        (date(2025, 1, 1), "Новогодние каникулы"),
        (date(2025, 1, 7), "Рождество Христово"),
        (date(2025, 5, 2), "перенос с 4 января"),
        (date(2025, 5, 8), "перенос с 23 февраля"),
        (date(2025, 6, 13), "перенос с 8 марта"),
        (date(2025, 11, 3), "перенос с 1 ноября"),
        (date(2025, 12, 31), "перенос с 5 января"),
        (date(2025, 2, 23), "День защитника Отечества"),
        (date(2025, 3, 8), "Международный женский день"),
        (date(2025, 1, 4), "Новогодние каникулы"),
        (date(2025, 3, 15), "выходной"),
    ],
    ids=str,
)
def test_2025_days_off_name_their_reason(calendar, day, reason):
    """Постановление № 1335 от 04.10.2024 and ТК РФ ст. 112: a holiday on a weekend keeps its
    name; a plain weekend is "выходной"."""
    info = calendar.day(day)
    assert (info.kind, info.working_minutes, info.reason) == (DayKind.DAY_OFF, 0, reason)


def test_2025_working_saturday_is_1_november(calendar):
    """Постановление № 1335 от 04.10.2024: Saturday 1 November is worked (day off on 3 November)."""
    assert worked_weekends(calendar, 2025) == {date(2025, 11, 1)}
    assert calendar.day(date(2025, 11, 1)).reason.startswith("рабочая суббота")


def test_2025_short_days(calendar):
    """ТК РФ ст. 95 as the 2025 calendar applies it: 7 March, 30 April, 11 June, 1 November.
    Not 7 May (8 May is a transferred day off, not a holiday), not 30 December (likewise)."""
    assert kinds(calendar, 2025, DayKind.SHORT) == {
        date(2025, 3, 7),
        date(2025, 4, 30),
        date(2025, 6, 11),
        date(2025, 11, 1),
    }
    for day in (date(2025, 5, 7), date(2025, 12, 30)):
        assert (calendar.day(day).kind, calendar.day(day).reason) == (DayKind.WORKING, "")
    assert calendar.day(date(2025, 3, 7)).working_minutes == 420
    assert calendar.day(date(2025, 3, 7)).reason == "предпраздничный день"
    assert calendar.day(date(2025, 3, 6)).working_minutes == 480


# --- 2026 -------------------------------------------------------------------------------


def test_2026_days_off_follow_decree_1466(calendar):
    """Постановление № 1466 от 24.09.2025: 3 Jan -> 9 Jan, 4 Jan -> 31 Dec; ТК РФ ст. 112 ч. 2:
    8 March (Sunday) -> 9 March, 9 May (Saturday) -> 11 May."""
    assert off_weekdays(calendar, 2026) == {
        date(2026, 1, 1),
        date(2026, 1, 2),
        date(2026, 1, 5),
        date(2026, 1, 6),
        date(2026, 1, 7),
        date(2026, 1, 8),
        date(2026, 1, 9),
        date(2026, 2, 23),
        date(2026, 3, 9),
        date(2026, 5, 1),
        date(2026, 5, 11),
        date(2026, 6, 12),
        date(2026, 11, 4),
        date(2026, 12, 31),
    }
    assert calendar.day(date(2026, 1, 9)).reason == "перенос с 3 января"
    assert calendar.day(date(2026, 3, 9)).reason == "перенос с 8 марта (ст. 112 ТК РФ)"


def test_2026_has_no_working_weekend(calendar):
    """Постановление № 1466 от 24.09.2025 moves only the two January weekend days."""
    assert worked_weekends(calendar, 2026) == set()


def test_2026_short_days(calendar):
    """ТК РФ ст. 95 in 2026: 30 April, 8 May, 11 June, 3 November. Friday 20 February and
    Friday 6 March are not the eve of a holiday (a weekend lies between)."""
    assert kinds(calendar, 2026, DayKind.SHORT) == {
        date(2026, 4, 30),
        date(2026, 5, 8),
        date(2026, 6, 11),
        date(2026, 11, 3),
    }


# --- 2024 and 2027 ----------------------------------------------------------------------


def test_2024_transfers_follow_decree_1314(calendar):
    """Постановление № 1314 от 10.08.2023: 6 Jan -> 10 May, 7 Jan -> 31 Dec, 27 Apr -> 29 Apr,
    2 Nov -> 30 Apr, 28 Dec -> 30 Dec; short days 22 Feb, 7 Mar, 8 May, 11 Jun, 2 Nov."""
    off = off_weekdays(calendar, 2024)
    for day in (date(2024, 4, 29), date(2024, 4, 30), date(2024, 5, 10), date(2024, 12, 30)):
        assert day in off
    assert date(2024, 12, 31) in off
    assert worked_weekends(calendar, 2024) == {
        date(2024, 4, 27),
        date(2024, 11, 2),
        date(2024, 12, 28),
    }
    assert kinds(calendar, 2024, DayKind.SHORT) == {
        date(2024, 2, 22),
        date(2024, 3, 7),
        date(2024, 5, 8),
        date(2024, 6, 11),
        date(2024, 11, 2),
    }


def test_2027_transfers_follow_decree_1187(calendar):
    """Постановление № 1187 от 17.09.2026: 2 Jan -> 5 Nov, 3 Jan -> 31 Dec, 20 Feb -> 22 Feb;
    ТК РФ ст. 112 ч. 2: 1 May -> 3 May, 9 May -> 10 May, 12 June -> 14 June."""
    off = off_weekdays(calendar, 2027)
    for day in (
        date(2027, 2, 22),
        date(2027, 5, 3),
        date(2027, 5, 10),
        date(2027, 6, 14),
        date(2027, 11, 5),
        date(2027, 12, 31),
    ):
        assert day in off
    assert worked_weekends(calendar, 2027) == {date(2027, 2, 20)}
    assert kinds(calendar, 2027, DayKind.SHORT) == {
        date(2027, 2, 20),
        date(2027, 4, 30),
        date(2027, 6, 11),
        date(2027, 11, 3),
    }
    assert calendar.has_data(2027)
    assert not calendar.is_provisional(2027)
    assert "№ 1187" in calendar.source(2027)


@pytest.mark.parametrize(
    ("year", "totals"),
    [(2024, (248, 1979)), (2025, (247, 1972)), (2026, (247, 1972)), (2027, (247, 1972))],
)
def test_year_totals_match_the_published_norms(calendar, year, totals):
    """Working days and the 40-hour-week norm of the official production calendars, from the
    decrees above: 2024 248 d / 1979 h; 2025 247 / 1972; 2026 247 / 1972; 2027 247 / 1972."""
    assert calendar.year_totals(year) == totals


@pytest.mark.parametrize("year", DECREED_YEARS)
def test_every_article_112_holiday_is_off(calendar, year):
    """ТК РФ ст. 112 ч. 1: each non-working holiday is a day off, weekend or not."""
    for month, day in HOLIDAYS:
        assert calendar.day(date(year, month, day)).kind is DayKind.DAY_OFF


# --- cross-check with the holidays package ----------------------------------------------

DECREE_OVERRIDES: dict[date, str] = {}
"""Days where the `holidays` package disagrees with a decree: the decree wins. None known as
of holidays 0.109 for 2024-2027; list any future disagreement here with the decree's word."""


@pytest.mark.parametrize("year", DECREED_YEARS)
def test_days_off_agree_with_the_holidays_package(calendar, year):
    """The `holidays` package (country RU, which encodes the same decrees) lists the same
    non-working weekdays; working Saturdays and short days it does not model."""
    holidays = pytest.importorskip(
        "holidays", reason="the holidays package (a dev extra) is not installed"
    )
    theirs = {
        day
        for day in holidays.country_holidays("RU", years=year)
        if day.weekday() < 5 and day not in DECREE_OVERRIDES
    }
    ours = {day for day in off_weekdays(calendar, year) if day not in DECREE_OVERRIDES}
    assert ours == theirs
    assert not worked_weekends(calendar, year) & set(holidays.country_holidays("RU", years=year))


# --- the day's hours --------------------------------------------------------------------


def local(pairs):
    return [(start.time(), end.time()) for start, end in pairs]


def test_intervals_of_a_working_short_and_off_day(calendar):
    """Default hours 09:00-18:00 with lunch 13:00-14:00; a short day ends at 17:00."""
    monday = date(2025, 3, 3)
    assert local(calendar.intervals(monday)) == [(time(9), time(13)), (time(14), time(18))]
    assert local(calendar.intervals(date(2025, 3, 7))) == [
        (time(9), time(13)),
        (time(14), time(17)),
    ]
    assert calendar.intervals(date(2025, 3, 8)) == []
    assert all(
        start.tzinfo == MOSCOW and start.date() == monday for start, _ in calendar.intervals(monday)
    )


def test_custom_hours_shorten_the_last_piece():
    calendar = load_calendar(working_hours="10:00-19:30", lunch=None, timezone="Asia/Vladivostok")
    assert calendar.day(date(2025, 3, 3)).working_minutes == 570
    assert calendar.day(date(2025, 3, 7)).working_minutes == 510
    ((start, end),) = calendar.intervals(date(2025, 3, 7))
    assert (start.time(), end.time(), str(start.tzinfo)) == (
        time(10),
        time(18, 30),
        "Asia/Vladivostok",
    )


def test_a_short_day_ending_after_a_brief_afternoon_cuts_into_the_morning():
    calendar = load_calendar(working_hours="09:00-14:30", lunch="14:00-14:20")
    assert local(calendar.intervals(date(2025, 3, 7))) == [(time(9), time(13, 10))]


def test_days_is_inclusive_and_empty_when_reversed(calendar):
    assert [d.day for d in calendar.days(date(2025, 1, 8), date(2025, 1, 10))] == [
        date(2025, 1, 8),
        date(2025, 1, 9),
        date(2025, 1, 10),
    ]
    assert calendar.days(date(2025, 1, 10), date(2025, 1, 8)) == []


def test_day_refuses_a_datetime(calendar):
    with pytest.raises(TypeError, match="expected a date"):
        calendar.day(datetime(2025, 1, 1, tzinfo=MOSCOW))


# --- years without data, and an admin's extra_file --------------------------------------


def test_a_year_without_data_warns_once_and_still_answers():
    calendar = load_calendar()
    assert not calendar.has_data(FAR_YEAR)
    assert calendar.is_provisional(FAR_YEAR)
    with pytest.warns(CalendarDataMissing, match=str(FAR_YEAR)):
        assert calendar.day(date(FAR_YEAR, 1, 1)).kind is DayKind.DAY_OFF
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert calendar.day(date(FAR_YEAR, 1, 12)).kind is DayKind.WORKING
        calendar.year_totals(FAR_YEAR)


def test_rules_alone_reproduce_2026_but_for_the_january_decree():
    """ТК РФ ст. 112 ч. 2 and ст. 95 applied to 2037, whose weekdays fall as in 2026, give
    2026's calendar except what Постановление № 1466 decided: 9 January and 31 December off
    (and so 31 December is no longer the eve of a holiday)."""
    calendar = load_calendar()
    shift = date(FAR_YEAR, 1, 1) - date(2026, 1, 1)
    with pytest.warns(CalendarDataMissing):
        ruled_off = {day - shift for day in off_weekdays(calendar, FAR_YEAR)}
    assert ruled_off == off_weekdays(calendar, 2026) - {date(2026, 1, 9), date(2026, 12, 31)}
    ruled_short = {day - shift for day in kinds(calendar, FAR_YEAR, DayKind.SHORT)}
    assert ruled_short == kinds(calendar, 2026, DayKind.SHORT) | {date(2026, 12, 31)}
    assert calendar.day(date(FAR_YEAR, 3, 9)).reason == "перенос с 8 марта (ст. 112 ТК РФ)"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "extra.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_extra_file_replaces_a_year_and_adds_one(tmp_path):
    extra = write(
        tmp_path,
        """
[[year]]
year = 2025
source = "исправление администратора"
days_off = [ { date = "2025-01-01", reason = "Новогодние каникулы" } ]

[[year]]
year = 2031
source = "проект постановления"
provisional = true
days_off = [ { date = "2031-01-02", reason = "Новогодние каникулы" } ]
working_weekends = [ { date = "2031-01-04", reason = "рабочая суббота" } ]
short_days = [ { date = "2031-01-04", reason = "предпраздничный день" } ]
""",
    )
    calendar = load_calendar(extra_file=extra)
    assert calendar.day(date(2025, 1, 1)).kind is DayKind.DAY_OFF
    assert calendar.day(date(2025, 1, 2)).kind is DayKind.WORKING  # replaced whole
    assert calendar.day(date(2025, 3, 7)).kind is DayKind.WORKING
    assert calendar.source(2025) == "исправление администратора"
    assert calendar.year_totals(2026) == (247, 1972)  # other years untouched
    assert calendar.has_data(2031)
    assert calendar.is_provisional(2031)
    saturday = calendar.day(date(2031, 1, 4))
    assert saturday.kind is DayKind.SHORT
    assert saturday.reason == "рабочая суббота; предпраздничный день"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[year]]\nyear = 2025\nsource = "x"\nholidays = []\n', "holidays: unknown key"),
        ('[[year]]\nyear = "2025"\nsource = "x"\n', "'2025'"),
        (
            '[[year]]\nyear = 2025\nsource = "x"\ndays_off = [{ date = "2025-02-30", reason = "x" }]\n',
            "2025-02-30",
        ),
        (
            '[[year]]\nyear = 2025\nsource = "x"\ndays_off = [{ date = "2024-12-30", reason = "x" }]\n',
            "2024-12-30 is not in 2025",
        ),
        (
            '[[year]]\nyear = 2025\nsource = "x"\ndays_off = [{ date = "2025-03-08", reason = "x" }]\n',
            "2025-03-08 is a weekend day",
        ),
        (
            '[[year]]\nyear = 2025\nsource = "x"\nworking_weekends = [{ date = "2025-03-07", reason = "x" }]\n',
            "2025-03-07 is not a weekend day",
        ),
        (
            '[[year]]\nyear = 2025\nsource = "x"\nshort_days = [{ date = "2025-03-09", reason = "x" }]\n',
            "2025-03-09 is a weekend day that is not worked",
        ),
        ('[[year]]\nyear = 2025\nsource = "x"\nprovisional = "yes"\n', "'yes'"),
        (
            '[[year]]\nyear = 2025\nsource = "x"\n[[year]]\nyear = 2025\nsource = "y"\n',
            "year 2025 appears twice",
        ),
        ("[calendar]\nyear = 2025\n", "unknown key 'calendar'"),
        ("year = [", "extra.toml: "),
    ],
)
def test_bad_extra_file_values_are_refused_by_name(tmp_path, text, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        load_calendar(extra_file=write(tmp_path, text))


def test_missing_extra_file_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=re.escape("nowhere.toml")):
        load_calendar(extra_file=tmp_path / "nowhere.toml")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"working_hours": "9-18"}, "9-18"),
        ({"working_hours": "18:00-09:00"}, "18:00-09:00"),
        ({"lunch": "19:00-20:00"}, "19:00-20:00"),
        ({"working_hours": "09:00-10:00", "lunch": None}, "09:00-10:00"),
    ],
)
def test_bad_options_are_refused_by_name(options, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        load_calendar(**options)
