"""Sessions + users' first_seen -> KPIs by period (day, week, month) and segment (KPI_COLUMNS: APS, SPU,
duration, bounces, engagement, conversions) and the action mix (ACTION_KPI_COLUMNS)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from enum import StrEnum

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.dates import local_date

ALL = "all"
USER_TYPE = "user_type"
NEW_USER = "new"
RETURNING_USER = "returning"

# The kpis table's columns; is_complete is added by with_completeness, from the runs ledger. Every rate sits
# beside its numerator and denominator, so a BI tool can add counts up and divide, never average rates.
KPI_COLUMNS = (
    "period", "period_start", "dimension", "dimension_value",
    "sessions", "users", "actions", "aps", "spu",
    "total_duration_seconds", "avg_duration_seconds", "median_duration_seconds", "p90_duration_seconds",
    "bounces", "bounce_rate", "engaged_sessions", "engagement_rate",
    "converting_sessions", "conversion_rate", "converting_users", "user_conversion_rate",
)
GROUP = ("period", "period_start", "dimension", "dimension_value")


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


def _with_first_seen_day(frame: DataFrame, users: DataFrame, timezone: str) -> DataFrame:
    first_seen = users.select("user_id", local_date(F.col("first_seen"), timezone).alias("first_seen_day"))
    return frame.join(first_seen, on="user_id", how="left")


def _in_groups(frame: DataFrame, segments: tuple[str, ...], *measures: str) -> DataFrame:
    # Each row once per period kind and once per dimension: the session's day, week and month, and all, each
    # segment and user_type.
    return (
        frame
        .select(*measures, *segments, F.inline(_period_rows(F.col("first_seen_day"))))
        .select(*measures, "period", "period_start", F.inline(_dimension_rows(segments)))
    )


def _duration_percentiles(dated_sessions: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    # Exact percentiles need every duration of a group. Sessions of one day, first-seen day and segment values
    # with the same duration count once, with their number as its frequency (bounces, all 0 s, mostly).
    durations = (
        dated_sessions
        .groupBy("session_date", "first_seen_day", *segments, "duration_seconds")
        .agg(F.count(F.lit(1)).alias("frequency"))
    )
    quantiles = F.percentile("duration_seconds", [0.5, 0.9], F.col("frequency"))
    return (
        _in_groups(durations, segments, "duration_seconds", "frequency")
        .groupBy(*GROUP)
        .agg(quantiles.alias("quantiles"))
        .select(
            *GROUP,
            F.col("quantiles")[0].alias("median_duration_seconds"),
            F.col("quantiles")[1].alias("p90_duration_seconds"),
        )
    )


# Counts summed per user, day and segment values, then per group.
_SUMMED = ("sessions", "actions", "duration_us", "bounces", "engaged_sessions", "converting_sessions")


def kpis_by_period(sessions: DataFrame, users: DataFrame, segments: tuple[str, ...], timezone: str) -> DataFrame:
    """One row per period, period_start, dimension and value with KPI_COLUMNS (is_complete is left to
    `with_completeness`).

    Each session counts in the day, ISO week and month of its session_date. `users` (distinct users) and
    `converting_users` (distinct users with a converting session) are counted over the whole period and segment
    value, never summed from days; aps = actions / sessions and spu = sessions / users. Durations: their total and
    mean, and the exact median and 90th percentile interpolated between ranks (Spark's percentile). Rates are
    bounces, engaged sessions and converting sessions over sessions, and converting users over users. `users`
    (user_id, first_seen) decides new versus returning.
    """
    def count_of(flag: str) -> Column:
        return F.count_if(F.col(flag))

    def ratio(numerator: str, denominator: str) -> Column:
        return F.col(numerator) / F.col(denominator)

    dated = sessions.transform(_with_first_seen_day, users, timezone)
    duration_us = F.round(F.col("duration_seconds") * 1_000_000).cast("long")
    # Counts of sessions add up: summed per day, first-seen day and segment values (a few rows per day) before the
    # period x dimension expansion multiplies them. Durations add up as whole microseconds: exact, in any order.
    session_counts = (
        dated
        .groupBy("session_date", "first_seen_day", *segments)
        .agg(
            F.count(F.lit(1)).alias("sessions"),
            F.sum("actions").alias("actions"),
            F.sum(duration_us).alias("duration_us"),
            count_of("is_bounce").alias("bounces"),
            count_of("is_engaged").alias("engaged_sessions"),
            count_of("converted").alias("converting_sessions"),
        )
        .transform(_in_groups, segments, *_SUMMED)
        .groupBy(*GROUP)
        .agg(*[F.sum(c).alias(c) for c in _SUMMED])
    )
    # Users do not add up: each is counted once per group, whatever days and values they span.
    user_counts = (
        dated
        .groupBy("user_id", "session_date", "first_seen_day", *segments)
        .agg(F.max("converted").alias("converted"))
        .transform(_in_groups, segments, "user_id", "converted")
        .groupBy(*GROUP, "user_id")
        .agg(F.max("converted").alias("converted"))
        .groupBy(*GROUP)
        .agg(F.count(F.lit(1)).alias("users"), count_of("converted").alias("converting_users"))
    )
    return (
        session_counts
        .join(user_counts, on=list(GROUP), how="inner")
        .join(_duration_percentiles(dated, segments), on=list(GROUP), how="left")
        .withColumns(
            {
                "aps": ratio("actions", "sessions"),
                "spu": ratio("sessions", "users"),
                "total_duration_seconds": F.col("duration_us") / 1_000_000,
                "avg_duration_seconds": F.col("duration_us") / 1_000_000 / F.col("sessions"),
                "bounce_rate": ratio("bounces", "sessions"),
                "engagement_rate": ratio("engaged_sessions", "sessions"),
                "conversion_rate": ratio("converting_sessions", "sessions"),
                "user_conversion_rate": ratio("converting_users", "users"),
            }
        )
        .select(*KPI_COLUMNS)
    )


OTHER_ACTIONS = "(other)"

# The action_kpis table's columns; is_complete is added by with_completeness.
ACTION_KPI_COLUMNS = (
    "period", "period_start", "dimension", "dimension_value", "event_name",
    "actions", "sessions_with_action", "users_with_action", "sessions", "total_actions",
    "actions_per_session", "share_of_actions",
)


def _named(sessions: DataFrame, users: DataFrame, segments: tuple[str, ...], timezone: str) -> DataFrame:
    # One row per session and event name in it, with the session's actions of that name and first_seen_day.
    return (
        sessions
        .select("user_id", "session_date", *segments, F.explode("action_counts").alias("event_name", "count"))
        .transform(_with_first_seen_day, users, timezone)
    )


def ranked_actions(sessions: DataFrame, users: DataFrame, segments: tuple[str, ...], timezone: str) -> DataFrame:
    """One row per group (period, period_start, dimension, value) and event name, with actions,
    sessions_with_action, users_with_action and name_rank: 1 for the name with the most actions in the group
    (ties: the name first in alphabetical order), 2, ... An event really named OTHER_ACTIONS ranks last, so it is
    folded into the OTHER_ACTIONS row whenever there is one."""
    named = _named(sessions, users, segments, timezone)
    # A session holds each name once in action_counts, so sessions with a name add up: summed per day first.
    name_counts = (
        named
        .groupBy("session_date", "first_seen_day", *segments, "event_name")
        .agg(F.sum("count").alias("actions"), F.count(F.lit(1)).alias("sessions_with_action"))
        .transform(_in_groups, segments, "event_name", "actions", "sessions_with_action")
        .groupBy(*GROUP, "event_name")
        .agg(F.sum("actions").alias("actions"), F.sum("sessions_with_action").alias("sessions_with_action"))
    )
    name_users = (
        named
        .select("user_id", "session_date", "first_seen_day", *segments, "event_name")
        .distinct()
        .transform(_in_groups, segments, "user_id", "event_name")
        .select(*GROUP, "event_name", "user_id")
        .distinct()
        .groupBy(*GROUP, "event_name")
        .agg(F.count(F.lit(1)).alias("users_with_action"))
    )
    by_rank = Window.partitionBy(*GROUP).orderBy(
        F.col("event_name") == OTHER_ACTIONS, F.col("actions").desc(), F.col("event_name")
    )
    return (
        name_counts
        .join(name_users, on=[*GROUP, "event_name"], how="inner")
        .withColumn("name_rank", F.row_number().over(by_rank))
    )


def has_folded_names(ranked: DataFrame, max_names: int) -> bool:
    """Whether any group of `ranked` (see ranked_actions) has more than `max_names` names."""
    return not ranked.where(F.col("name_rank") > max_names).isEmpty()


def folded_name_count(ranked: DataFrame, max_names: int) -> int:
    """How many distinct event names are past `max_names` in some group of `ranked`."""
    return ranked.where(F.col("name_rank") > max_names).select("event_name").distinct().count()


def action_kpis_by_period(
    sessions: DataFrame,
    users: DataFrame,
    segments: tuple[str, ...],
    timezone: str,
    ranked: DataFrame,
    max_names: int,
    fold: bool = True,
) -> DataFrame:
    """One row per group and event name (ACTION_KPI_COLUMNS): the action mix, from sessions' action_counts.

    `ranked` is ranked_actions of the same sessions. In each group the `max_names` names with the most actions
    keep their own row; the rest are summed into one row named OTHER_ACTIONS, whose sessions and users are those
    with any of the folded names, each counted once. `fold=False` says no group has more than `max_names` names
    (has_folded_names is false), so the sessions need not be read again to find them. actions_per_session =
    actions / all sessions of the group, share_of_actions = actions / all actions of the group.
    """
    kept = ranked.where(F.col("name_rank") <= max_names).drop("name_rank")
    if fold:
        folding = ranked.where(F.col("name_rank") > max_names).select(*GROUP).distinct()  # a row per group
        kept = kept.unionByName(
            _other_actions(sessions, users, segments, timezone, kept.select(*GROUP, "event_name"), folding)
        )
    totals = (
        sessions
        .transform(_with_first_seen_day, users, timezone)
        .groupBy("session_date", "first_seen_day", *segments)
        .agg(F.count(F.lit(1)).alias("sessions"), F.sum("actions").alias("total_actions"))
        .transform(_in_groups, segments, "sessions", "total_actions")
        .groupBy(*GROUP)
        .agg(F.sum("sessions").alias("sessions"), F.sum("total_actions").alias("total_actions"))
    )
    return (
        kept
        .join(totals, on=list(GROUP), how="inner")
        .withColumns(
            {
                "actions_per_session": F.col("actions") / F.col("sessions"),
                "share_of_actions": F.col("actions") / F.col("total_actions"),
            }
        )
        .select(*ACTION_KPI_COLUMNS)
    )


def _other_actions(
    sessions: DataFrame, users: DataFrame, segments: tuple[str, ...], timezone: str, kept: DataFrame,
    folding: DataFrame,
) -> DataFrame:
    # Sessions and users with several folded names count once in (other): this needs each session, not sums. In
    # each group of `folding` (those with names past the cap), every name not kept is folded; the kept names are at
    # most max_names per group, the folded ones may be millions of free-text names.
    per_session = (
        sessions
        .select("user_id", "session_id", "session_date", *segments,
                F.explode("action_counts").alias("event_name", "count"))
        .transform(_with_first_seen_day, users, timezone)
        .transform(_in_groups, segments, "user_id", "session_id", "event_name", "count")
        .join(folding, on=list(GROUP), how="left_semi")
        .join(kept, on=[*GROUP, "event_name"], how="left_anti")
        .groupBy(*GROUP, "user_id", "session_id")
        .agg(F.sum("count").alias("actions"))
    )
    return (
        per_session
        .groupBy(*GROUP)
        .agg(
            F.sum("actions").alias("actions"),
            F.count(F.lit(1)).alias("sessions_with_action"),
            F.countDistinct("user_id").alias("users_with_action"),
        )
        .withColumn("event_name", F.lit(OTHER_ACTIONS))
    )
