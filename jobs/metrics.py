"""Sessions + users' first_seen -> APS and SPU by period (day, week, month) and segment (KPI_COLUMNS)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from enum import StrEnum

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.dates import local_date

ALL = "all"
USER_TYPE = "user_type"
NEW_USER = "new"
RETURNING_USER = "returning"

# The kpis table's columns; is_complete is added by with_completeness, from the runs ledger.
KPI_COLUMNS = ("period", "period_start", "dimension", "dimension_value", "sessions", "users", "actions", "aps", "spu")


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO week: Monday to Sunday
    MONTH = "month"


def period_start(day: Column, period: Period) -> Column:
    """The first day of the period that contains `day` (a date column)."""
    if period is Period.DAY:
        return day
    return F.trunc(day, period.value)


def _python_period_start(day: date, period: Period) -> date:
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    if period is Period.MONTH:
        return day.replace(day=1)
    return day


def _next_period_start(start: date, period: Period) -> date:
    if period is Period.DAY:
        return start + timedelta(days=1)
    if period is Period.WEEK:
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


# The kpis rows a run rewrites: for each period kind, the set of period starts.
Periods = dict[Period, frozenset[date]]


def periods_of(days: Iterable[date]) -> Periods:
    """Every day, week and month that contains one of `days`."""
    days = list(days)
    return {period: frozenset(_python_period_start(day, period) for day in days) for period in Period}


def days_of(period: Period, start: date) -> list[date]:
    """The calendar days of the period that starts on `start`."""
    end = _next_period_start(start, period)
    return [start + timedelta(days=n) for n in range((end - start).days)]


def complete_periods(periods: Periods, processed_days: set[date]) -> Periods:
    """The periods in `periods` whose every day has been processed."""
    return {
        period: frozenset(start for start in starts if processed_days.issuperset(days_of(period, start)))
        for period, starts in periods.items()
    }


def in_periods(periods: Periods) -> Column:
    """True for a kpis row that belongs to one of `periods`."""
    condition = F.lit(False)
    for period, starts in periods.items():
        if starts:
            is_one = (F.col("period") == period.value) & F.col("period_start").isin([F.lit(s) for s in sorted(starts)])
            condition = condition | is_one
    return condition


def with_completeness(kpis: DataFrame, complete: Periods) -> DataFrame:
    """Add is_complete: true when every day of the row's period has been processed."""
    return kpis.withColumn("is_complete", in_periods(complete))


def _period_rows(first_seen_day: Column) -> Column:
    # One entry per period kind: the session's period and the period of the user's first-ever session.
    return F.array(
        *[
            F.struct(
                F.lit(period.value).alias("period"),
                period_start(F.col("session_date"), period).alias("period_start"),
                (period_start(first_seen_day, period) == period_start(F.col("session_date"), period)).alias("is_new"),
            )
            for period in Period
        ]
    )


def _dimension_rows(segments: tuple[str, ...]) -> Column:
    # A user is new in a period when their first-ever session starts in it, else returning.
    user_type = F.when(F.col("is_new"), F.lit(NEW_USER)).otherwise(F.lit(RETURNING_USER))
    return F.array(
        F.struct(F.lit(ALL).alias("dimension"), F.lit(ALL).alias("dimension_value")),
        *[F.struct(F.lit(s).alias("dimension"), F.col(s).alias("dimension_value")) for s in segments],
        F.struct(F.lit(USER_TYPE).alias("dimension"), user_type.alias("dimension_value")),
    )


def kpis_by_period(sessions: DataFrame, users: DataFrame, segments: tuple[str, ...], timezone: str) -> DataFrame:
    """One row per period, period_start, dimension and value with sessions, users, actions, aps and spu.

    Each session counts in the day, ISO week and month of its session_date. `users` is distinct users over the
    whole period and segment value (counted, never summed from days); aps = actions / sessions and
    spu = sessions / users. `users` (user_id, first_seen) decides new versus returning. is_complete is left to
    `with_completeness`.
    """
    first_seen = users.select("user_id", local_date(F.col("first_seen"), timezone).alias("first_seen_day"))
    return (
        sessions
        # Summing per user, day and segment values first changes no total, and shrinks the rows that the
        # period x dimension expansion below multiplies.
        .groupBy("user_id", "session_date", *segments)
        .agg(F.count(F.lit(1)).alias("sessions"), F.sum("actions").alias("actions"))
        .join(first_seen, on="user_id", how="left")
        .select("user_id", "sessions", "actions", *segments, F.inline(_period_rows(F.col("first_seen_day"))))
        .select("user_id", "sessions", "actions", "period", "period_start", F.inline(_dimension_rows(segments)))
        .groupBy("period", "period_start", "dimension", "dimension_value")
        .agg(
            F.sum("sessions").alias("sessions"),
            F.countDistinct("user_id").alias("users"),
            F.sum("actions").alias("actions"),
        )
        .withColumn("aps", F.col("actions") / F.col("sessions"))
        .withColumn("spu", F.col("sessions") / F.col("users"))
        .select(*KPI_COLUMNS)
    )
