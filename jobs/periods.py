"""The period kinds KPIs are reported by and their calendar rules (plain Python: the report uses them too)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from enum import StrEnum


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO week: Monday to Sunday
    MONTH = "month"


# The kpis rows a run rewrites: for each period kind, the set of period starts.
Periods = dict[Period, frozenset[date]]


def start_of(day: date, period: Period) -> date:
    """The first day of the period that contains `day`."""
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    if period is Period.MONTH:
        return day.replace(day=1)
    return day


def next_start(start: date, period: Period) -> date:
    """The first day of the period after the one that starts on `start`."""
    if period is Period.DAY:
        return start + timedelta(days=1)
    if period is Period.WEEK:
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def periods_of(days: Iterable[date]) -> Periods:
    """Every day, week and month that contains one of `days`."""
    days = list(days)
    return {period: frozenset(start_of(day, period) for day in days) for period in Period}


def days_of(period: Period, start: date) -> list[date]:
    """The calendar days of the period that starts on `start`."""
    end = next_start(start, period)
    return [start + timedelta(days=n) for n in range((end - start).days)]


def complete_periods(periods: Periods, processed_days: set[date]) -> Periods:
    """The periods in `periods` whose every day has been processed."""
    return {
        period: frozenset(start for start in starts if processed_days.issuperset(days_of(period, start)))
        for period, starts in periods.items()
    }
