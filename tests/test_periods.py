"""Day, ISO week and month: the calendar rules the KPIs and the report share (plain Python)."""

from __future__ import annotations

from datetime import date

import pytest

from jobs.periods import Period, complete_periods, days_of, next_start, periods_of, start_of


@pytest.mark.parametrize("day, period, start", [
    (date(2026, 11, 1), Period.WEEK, date(2026, 10, 26)),   # a Sunday ends the ISO week that began on Monday
    (date(2026, 11, 2), Period.WEEK, date(2026, 11, 2)),    # a Monday starts one
    (date(2027, 1, 1), Period.WEEK, date(2026, 12, 28)),    # a week across the new year starts in the old one
    (date(2026, 11, 30), Period.MONTH, date(2026, 11, 1)),
    (date(2026, 11, 30), Period.DAY, date(2026, 11, 30)),
])
def test_a_day_belongs_to_the_period_starting_on(day, period, start):
    assert start_of(day, period) == start


@pytest.mark.parametrize("start, period, following", [
    (date(2026, 12, 31), Period.DAY, date(2027, 1, 1)),
    (date(2026, 12, 28), Period.WEEK, date(2027, 1, 4)),
    (date(2026, 12, 1), Period.MONTH, date(2027, 1, 1)),
    (date(2028, 2, 1), Period.MONTH, date(2028, 3, 1)),
])
def test_the_next_period_starts_the_day_after_the_last_day_of_this_one(start, period, following):
    assert next_start(start, period) == following


def test_a_period_holds_its_calendar_days_a_leap_february_29():
    assert len(days_of(Period.MONTH, date(2028, 2, 1))) == 29
    assert days_of(Period.WEEK, date(2026, 11, 30))[-1] == date(2026, 12, 6)


def test_a_week_is_complete_only_when_each_of_its_seven_days_has_run():
    periods = periods_of([date(2026, 11, 30), date(2026, 12, 1)])
    six_days = {date(2026, 11, 30), *(date(2026, 12, n) for n in range(1, 6))}  # Monday to Saturday

    assert complete_periods(periods, six_days)[Period.WEEK] == frozenset()
    assert complete_periods(periods, six_days | {date(2026, 12, 6)})[Period.WEEK] == {date(2026, 11, 30)}
