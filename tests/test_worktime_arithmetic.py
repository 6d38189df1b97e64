"""Working-time arithmetic: adding and measuring minutes of a business or 24x7 clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worktime import (
    ProductionCalendar,
    add_excluding,
    add_minutes_24x7,
    add_working_minutes,
    load_calendar,
    minutes_between_24x7,
    working_minutes_between,
    working_minutes_excluding,
)

MOSCOW = ZoneInfo("Europe/Moscow")
ZONES = [
    UTC,
    MOSCOW,
    ZoneInfo("Asia/Vladivostok"),
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("America/New_York"),
]
CALENDAR = load_calendar()
WORKING_DAY = 480


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MOSCOW)


# --- examples ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "minutes", "due"),
    [
        (msk(2025, 3, 3, 10, 0), 30, msk(2025, 3, 3, 10, 30)),
        (msk(2025, 3, 3, 12, 30), 60, msk(2025, 3, 3, 14, 30)),  # lunch does not count
        (msk(2025, 3, 3, 13, 20), 10, msk(2025, 3, 3, 14, 10)),  # start during lunch
        (msk(2025, 3, 3, 7, 0), 0, msk(2025, 3, 3, 9, 0)),  # 0: next working moment
        (msk(2025, 3, 3, 10, 0), 0, msk(2025, 3, 3, 10, 0)),
        (msk(2025, 3, 3, 18, 0), 0, msk(2025, 3, 4, 9, 0)),
        (msk(2025, 3, 3, 17, 0), 60, msk(2025, 3, 3, 18, 0)),  # due at the close, not tomorrow
        (msk(2025, 3, 7, 16, 30), 30, msk(2025, 3, 7, 17, 0)),  # short day ends at 17:00
        (msk(2025, 3, 7, 16, 30), 31, msk(2025, 3, 10, 9, 1)),  # then 8-9 March are off
        (msk(2025, 12, 30, 17, 0), 120, msk(2026, 1, 12, 10, 0)),  # 31 Dec to 11 Jan off
        (msk(2025, 10, 31, 17, 30), 60, msk(2025, 11, 1, 9, 30)),  # working Saturday
        (msk(2025, 3, 3, 10, 0, 30), 1, msk(2025, 3, 3, 10, 1, 30)),  # seconds are kept
    ],
    ids=str,
)
def test_add_working_minutes(start, minutes, due):
    result = add_working_minutes(CALENDAR, start, minutes)
    assert result == due
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        (msk(2025, 3, 3, 9, 0), msk(2025, 3, 3, 18, 0), 480),
        (msk(2025, 3, 7, 0, 0), msk(2025, 3, 8, 0, 0), 420),
        (msk(2025, 3, 8, 0, 0), msk(2025, 3, 10, 0, 0), 0),
        (msk(2025, 3, 3, 12, 59, 59), msk(2025, 3, 3, 14, 0, 58), 0),  # 59 s + 58 s: round down
        (msk(2025, 3, 3, 12, 59, 0), msk(2025, 3, 3, 14, 1, 0), 2),
        (msk(2025, 3, 3, 18, 0), msk(2025, 3, 3, 9, 0), 0),  # end before start
        (msk(2025, 1, 1), msk(2026, 1, 1), 1972 * 60),  # the year's norm
    ],
    ids=str,
)
def test_working_minutes_between(start, end, minutes):
    assert working_minutes_between(CALENDAR, start, end) == minutes


def test_thirty_working_days_step_by_day_not_by_minute(monkeypatch):
    """A month-long target asks the calendar about each day once, not about each minute."""
    calls = []
    original = ProductionCalendar.intervals

    def counting(self, day):
        calls.append(day)
        return original(self, day)

    monkeypatch.setattr(ProductionCalendar, "intervals", counting)
    start = msk(2025, 3, 3, 9, 0)
    due = add_working_minutes(CALENDAR, start, 30 * WORKING_DAY)
    # 30 working days from Monday 3 March: 8 March is off, 7 March is short (60 min spill).
    assert due == msk(2025, 4, 14, 10, 0)
    assert len(calls) <= 45


def test_24x7_counts_real_minutes_across_a_dst_change():
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2025, 3, 29, 12, 0, tzinfo=berlin)  # clocks go forward on 30 March
    due = add_minutes_24x7(start, 24 * 60)
    assert due == datetime(2025, 3, 30, 13, 0, tzinfo=berlin)
    assert due.tzinfo is UTC
    assert minutes_between_24x7(start, due) == 24 * 60
    assert minutes_between_24x7(due, start) == 0
    assert minutes_between_24x7(start, start + timedelta(seconds=119)) == 1


def test_business_mode_in_a_dst_zone_counts_real_hours():
    calendar = load_calendar(timezone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    # Monday 31 March 2025, the first working day after the change: still 8 hours.
    start = datetime(2025, 3, 31, 9, 0, tzinfo=berlin)
    assert add_working_minutes(calendar, start, 480) == datetime(2025, 3, 31, 18, 0, tzinfo=berlin)


# --- pauses -----------------------------------------------------------------------------


def test_a_closed_pause_stops_the_clock():
    pauses = [(msk(2025, 3, 3, 10, 0), msk(2025, 3, 3, 11, 0))]
    start = msk(2025, 3, 3, 9, 0)
    assert add_excluding(CALENDAR, start, 120, pauses, mode="business") == msk(2025, 3, 3, 12, 0)
    assert (
        working_minutes_excluding(CALENDAR, start, msk(2025, 3, 3, 12, 0), pauses, mode="business")
        == 120
    )
    assert add_excluding(None, start, 120, pauses, mode="24x7") == msk(2025, 3, 3, 12, 0)


def test_an_open_pause_leaves_the_due_time_unknown():
    start = msk(2025, 3, 3, 9, 0)
    pauses = [(msk(2025, 3, 3, 10, 0), None)]
    assert add_excluding(CALENDAR, start, 30, pauses, mode="business") == msk(2025, 3, 3, 9, 30)
    assert add_excluding(CALENDAR, start, 60, pauses, mode="business") == msk(2025, 3, 3, 10, 0)
    assert add_excluding(CALENDAR, start, 61, pauses, mode="business") is None
    end = msk(2025, 3, 5, 9, 0)
    assert working_minutes_excluding(CALENDAR, start, end, pauses, mode="business") == 60
    assert working_minutes_excluding(CALENDAR, start, end, pauses, mode="24x7") == 60


def test_overlapping_pauses_count_once_and_old_ones_are_ignored():
    start = msk(2025, 3, 3, 9, 0)
    end = msk(2025, 3, 3, 18, 0)
    pauses = [
        (msk(2025, 3, 3, 10, 0), msk(2025, 3, 3, 11, 0)),
        (msk(2025, 3, 3, 10, 30), msk(2025, 3, 3, 11, 30)),
        (msk(2025, 3, 1, 10, 0), msk(2025, 3, 2, 11, 0)),  # before start
        (msk(2025, 3, 3, 8, 0), msk(2025, 3, 3, 9, 15)),  # straddles start
    ]
    assert working_minutes_excluding(CALENDAR, start, end, pauses, mode="business") == 480 - 105
    assert working_minutes_excluding(CALENDAR, start, end, pauses, mode="24x7") == 540 - 105


def test_zero_minutes_skips_a_pause_at_the_first_working_moment():
    pauses = [(msk(2025, 3, 3, 9, 0), msk(2025, 3, 3, 9, 20))]
    start = msk(2025, 3, 3, 7, 0)
    assert add_excluding(CALENDAR, start, 0, pauses, mode="business") == msk(2025, 3, 3, 9, 20)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: add_working_minutes(CALENDAR, datetime(2025, 3, 3, 9), 1), "naive"),  # noqa: DTZ001
        (lambda: add_working_minutes(CALENDAR, msk(2025, 3, 3, 9), -1), "-1"),
        (lambda: add_excluding(CALENDAR, msk(2025, 3, 3, 9), 1, [], mode="weekly"), "weekly"),
        (lambda: add_excluding(None, msk(2025, 3, 3, 9), 1, [], mode="business"), "calendar"),
        (
            lambda: working_minutes_excluding(
                CALENDAR,
                msk(2025, 3, 3, 9),
                msk(2025, 3, 4, 9),
                [(msk(2025, 3, 3, 12), msk(2025, 3, 3, 11))],
                mode="business",
            ),
            "pauses[0]",
        ),
    ],
)
def test_bad_arguments_are_refused_by_name(call, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        call()


# --- properties -------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2024, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2027, 9, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
minutes = st.integers(min_value=0, max_value=30 * WORKING_DAY)
zones = st.sampled_from(ZONES)
pause_specs = st.lists(
    st.tuples(
        st.integers(min_value=-3 * 24 * 60, max_value=40 * 24 * 60),
        st.one_of(st.none(), st.integers(min_value=0, max_value=5 * 24 * 60)),
    ),
    max_size=4,
)
modes = st.sampled_from(["business", "24x7"])


def make_pauses(start, specs, *, closed=False):
    pauses = []
    for offset, length in specs:
        begin = start + timedelta(minutes=offset)
        if length is None and closed:
            length = 60
        pauses.append((begin, None if length is None else begin + timedelta(minutes=length)))
    return pauses


@settings(max_examples=300, deadline=None)
@given(start=instants, minutes=minutes, zone=zones)
def test_adding_then_measuring_gives_back_the_minutes(start, minutes, zone):
    due = add_working_minutes(CALENDAR, start.astimezone(zone), minutes)
    assert due >= start
    assert working_minutes_between(CALENDAR, start, due) == minutes


@settings(max_examples=200, deadline=None)
@given(start=instants, length=st.integers(min_value=0, max_value=90 * 24 * 60))
def test_business_minutes_never_exceed_calendar_minutes(start, length):
    end = start + timedelta(minutes=length)
    business = working_minutes_between(CALENDAR, start, end)
    assert 0 <= business <= minutes_between_24x7(start, end)
    assert business <= (length // (24 * 60) + 1) * WORKING_DAY


@settings(max_examples=200, deadline=None)
@given(start=instants, minutes=st.integers(min_value=0, max_value=10**6), zone=zones)
def test_24x7_is_plain_addition(start, minutes, zone):
    local = start.astimezone(zone)
    assert add_minutes_24x7(local, minutes) == start + timedelta(minutes=minutes)
    assert add_excluding(None, local, minutes, [], mode="24x7") == start + timedelta(
        minutes=minutes
    )
    assert minutes_between_24x7(local, start + timedelta(minutes=minutes)) == minutes


@settings(max_examples=200, deadline=None)
@given(start=instants, specs=pause_specs, minutes=minutes, mode=modes)
def test_pauses_never_count(start, specs, minutes, mode):
    pauses = make_pauses(start, specs, closed=True)
    for pause_start, pause_end in pauses:
        if pause_start < start:
            continue
        # Moving the end of the measurement through a pause changes nothing.
        at_start = working_minutes_excluding(CALENDAR, start, pause_start, pauses, mode=mode)
        at_end = working_minutes_excluding(CALENDAR, start, pause_end, pauses, mode=mode)
        assert at_start == at_end
    due = add_excluding(CALENDAR, start, minutes, pauses, mode=mode)
    assert due is not None
    assert working_minutes_excluding(CALENDAR, start, due, pauses, mode=mode) == minutes
    assert not any(begin < due < end for begin, end in pauses)
    plain = add_excluding(CALENDAR, start, minutes, [], mode=mode)
    assert plain is not None
    assert due >= plain


@settings(max_examples=200, deadline=None)
@given(start=instants, specs=pause_specs, minutes=minutes, mode=modes)
def test_an_open_pause_before_the_target_gives_none(start, specs, minutes, mode):
    pauses = make_pauses(start, specs)
    due = add_excluding(CALENDAR, start, minutes, pauses, mode=mode)
    open_starts = [begin for begin, end in pauses if end is None]
    if due is None:
        assert open_starts
    else:
        assert all(begin >= due for begin in open_starts)
        assert working_minutes_excluding(CALENDAR, start, due, pauses, mode=mode) == minutes


@settings(max_examples=200, deadline=None)
@given(
    span=st.tuples(instants, st.integers(min_value=0, max_value=20 * 24 * 60)),
    specs=pause_specs,
    minutes=minutes,
    mode=modes,
    zone=zones,
)
def test_results_do_not_depend_on_the_input_zone(span, specs, minutes, mode, zone):
    start, length = span
    end = start + timedelta(minutes=length)
    pauses = make_pauses(start, specs)
    moved = [(a.astimezone(zone), None if b is None else b.astimezone(zone)) for a, b in pauses]
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    assert add_working_minutes(CALENDAR, local_start, minutes) == add_working_minutes(
        CALENDAR, start, minutes
    )
    assert working_minutes_between(CALENDAR, local_start, local_end) == working_minutes_between(
        CALENDAR, start, end
    )
    assert working_minutes_excluding(
        CALENDAR, local_start, local_end, moved, mode=mode
    ) == working_minutes_excluding(CALENDAR, start, end, pauses, mode=mode)
    assert add_excluding(CALENDAR, local_start, minutes, moved, mode=mode) == add_excluding(
        CALENDAR, start, minutes, pauses, mode=mode
    )
