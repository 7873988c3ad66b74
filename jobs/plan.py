"""Reporting days -> the UTC instants and input partitions they need, and which processed days are stale.

Pure Python over a few small facts (dates, fingerprints): no Spark here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_UTC = ZoneInfo("UTC")


def utc_span(first_day: date, last_day: date, timezone: str) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of reporting days [first_day, last_day]; DST days have 23 or 25 hours.

    Returned as aware UTC datetimes: Spark reads a naive datetime literal in the Python process's time zone.
    """
    zone = ZoneInfo(timezone)
    start = datetime.combine(first_day, time(), zone).astimezone(_UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(), zone).astimezone(_UTC)
    return start, end


def local_day(instant: datetime, timezone: str) -> date:
    """The reporting day of an aware instant."""
    return instant.astimezone(ZoneInfo(timezone)).date()


def input_days(
    first_day: date, last_day: date, timezone: str, max_session_duration: timedelta, tolerance: timedelta = timedelta(0)
) -> tuple[date, date]:
    """The UTC input partitions a run of reporting days [first_day, last_day] reads.

    They cover the run's days in the reporting zone, widened on both sides by max_session_duration: before, to
    continue the sessions stored before the run (or, without them, to see that an event after the first midnight
    continues a session of the day before); after, so a session starting on last_day is complete. An event may
    sit in a partition up to `tolerance` (validation.partition_tolerance) away from its time, so that is added too.
    """
    start, end = utc_span(first_day, last_day, timezone)
    reach = max_session_duration + tolerance
    return (start - reach).date(), (end + reach).date()


def required_partitions(first_day: date, last_day: date, timezone: str) -> list[date]:
    """The UTC partition dates that reporting days [first_day, last_day] overlap: each must exist for a run."""
    start, end = utc_span(first_day, last_day, timezone)
    last = (end - timedelta(microseconds=1)).date()
    return days_between(start.date(), last)


def input_dependencies(
    day: date, timezone: str, max_session_duration: timedelta, tolerance: timedelta = timedelta(0)
) -> list[date]:
    """The UTC partitions whose events decide the sessions that start on `day`.

    From max_session_duration before the day (events of sessions it continues) to its end, each side widened by
    `tolerance` (an event may sit in a partition that far from its time). Partitions after that only extend the
    day's last sessions, and the next day's run does that.
    """
    start, end = utc_span(day, day, timezone)
    first = (start - max_session_duration - tolerance).date()
    last = (end + tolerance - timedelta(microseconds=1)).date()
    return days_between(first, last)


def input_fingerprint(partitions: Iterable[date], fingerprints: Mapping[date, str]) -> str:
    """One fingerprint for a set of partitions; a missing partition counts too, so its arrival changes it."""
    text = ";".join(f"{p.isoformat()}={fingerprints.get(p, 'absent')}" for p in sorted(partitions))
    return hashlib.sha256(text.encode()).hexdigest()


def days_between(first_day: date, last_day: date) -> list[date]:
    """Every day from first_day to last_day, both included."""
    return [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]


@dataclass(frozen=True)
class DayState:
    """What a processed day's sessions were computed from: its input partitions and the stored sessions before it."""

    day: date
    input_fingerprint: str
    anchor_fingerprint: str


def blocks(days: Iterable[date]) -> list[tuple[date, date]]:
    """Sorted days -> runs of consecutive days, as (first, last) pairs."""
    result: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if result and result[-1][1] + timedelta(days=1) == day:
            result[-1] = (result[-1][0], day)
        else:
            result.append((day, day))
    return result


def changed_inputs(
    processed: Mapping[date, DayState],
    current: Mapping[date, str],
    timezone: str,
    max_session_duration: timedelta,
    tolerance: timedelta = timedelta(0),
) -> list[date]:
    """Processed days whose input partitions changed (files added, replaced or removed) since they were processed."""
    def fingerprint_now(day: date) -> str:
        return input_fingerprint(input_dependencies(day, timezone, max_session_duration, tolerance), current)

    return sorted(day for day, state in processed.items() if fingerprint_now(day) != state.input_fingerprint)


def days_after(last_day: date, timezone: str, max_session_duration: timedelta) -> list[date]:
    """The days after `last_day` whose sessions may continue from sessions of `last_day` or before.

    A day's run continues from stored sessions up to twice max_session_duration before it (see jobs.incremental).
    """
    _, end = utc_span(last_day, last_day, timezone)
    horizon = local_day(end + 2 * max_session_duration, timezone)
    return days_between(last_day + timedelta(days=1), horizon)
