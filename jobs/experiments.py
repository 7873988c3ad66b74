"""Experiments: assignments -> each user's variant -> per-variant moments of each analysis day (pure frames); the
rules are README rules 28-31, the statistics jobs/inference.py."""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.config import ALL, USER_TYPE
from jobs.dates import local_date
from jobs.metrics import NEW_USER, RETURNING_USER
from jobs.read import ASSIGNMENT_COLUMNS
from jobs.sessionize import UNKNOWN_SEGMENT

ASSIGNMENTS_SCHEMA = "user_id string, experiment_id string, variant string, assigned_at timestamp"

# The breakdowns of the experiments table: per-user columns fixed at assignment (see with_user_type).
EXPERIMENT_SEGMENTS = (USER_TYPE,)
# A moment row's breakdown: `all` and `all` for every user of the variant, else a segment and its value.
_GROUP = ("dimension", "dimension_value")

# The sums over users that jobs.inference.Moments takes, in its order.
MOMENTS = ("users", "sessions", "actions", "sessions_squared", "actions_squared", "actions_times_sessions")


def assignments_from_events(events: DataFrame, experiment_column: str, variant_column: str) -> DataFrame:
    """Assignments read off valid events (user_id, event_ts, event_date and the two columns): one row per user,
    experiment, variant and input partition (event_date) their events carry, assigned at the first such event.
    Both values are trimmed ("B " is B); an event without an experiment or a variant (null or blank) assigns
    nothing; see is_half_tagged."""
    return (
        events.where(_is_tagged(experiment_column) & _is_tagged(variant_column))
        .groupBy("user_id", F.trim(F.col(experiment_column)).alias("experiment_id"),
                 F.trim(F.col(variant_column)).alias("variant"), "event_date")
        .agg(F.min("event_ts").alias("assigned_at"))
        .select(*ASSIGNMENT_COLUMNS, "event_date")
    )


def is_half_tagged(experiment_column: str, variant_column: str) -> Column:
    """True for an event with an experiment but no variant, or a variant but no experiment: it assigns nothing, and
    the job counts such events so that a broken tagging shows."""
    return _is_tagged(experiment_column) != _is_tagged(variant_column)


def _is_tagged(column: str) -> Column:
    return F.coalesce(F.trim(F.col(column)) != F.lit(""), F.lit(False))


def resolved_assignments(assignments: DataFrame, timezone: str, last_day: date) -> DataFrame:
    """One row per experiment and user assigned on or before `last_day` (in `timezone`): `variant`, `assigned_at`
    (their earliest) and `is_excluded`, true (with a null variant) for a user assigned more than one variant of
    the experiment by then, who is left out of every window. `assignments` has no null key (the reader sees to
    that)."""
    per_user = (
        assignments
        .where(local_date(F.col("assigned_at"), timezone) <= F.lit(last_day))
        .groupBy("experiment_id", "user_id")
        .agg(F.count_distinct("variant").alias("variants"), F.min("variant").alias("variant"),
             F.min("assigned_at").alias("assigned_at"))
    )
    is_excluded = F.col("variants") > 1
    return per_user.select(
        "experiment_id",
        "user_id",
        F.when(~is_excluded, F.col("variant")).alias("variant"),
        "assigned_at",
        is_excluded.alias("is_excluded"),
    )


def excluded_users(resolved: DataFrame) -> DataFrame:
    """experiment_id, excluded_users: how many users each experiment leaves out for being in two variants."""
    return resolved.groupBy("experiment_id").agg(
        F.sum(F.col("is_excluded").cast("long")).alias("excluded_users")
    )


def _change_of_product(x: str, y: str) -> Column:
    """How much a user's x * y grew from their previous change (`before_x`, `before_y`) to this one."""
    return F.col(x) * F.col(y) - F.col(f"before_{x}") * F.col(f"before_{y}")


def with_user_type(resolved: DataFrame, users: DataFrame, timezone: str) -> DataFrame:
    """resolved_assignments' rows with user_type: `returning` for a user whose first-ever session (users'
    first_seen) began on a day before their assignment day (days in `timezone`), else `new`; a user without a
    session yet is new. Fixed at assignment, so the variant cannot change it: a fair breakdown."""
    first_seen_day = users.select("user_id", local_date(F.col("first_seen"), timezone).alias("first_seen_day"))
    assigned_day = local_date(F.col("assigned_at"), timezone)
    is_returning = F.col("first_seen_day") < assigned_day
    is_new = F.col("first_seen_day").isNull() | (F.col("first_seen_day") >= assigned_day)
    return (
        resolved.join(first_seen_day, on="user_id", how="left")
        .withColumn(USER_TYPE, F.when(is_returning, F.lit(RETURNING_USER)).when(is_new, F.lit(NEW_USER)))
        .drop("first_seen_day")
    )


def first_day_to_read(resolved: DataFrame, max_session_duration: timedelta, timezone: str) -> DataFrame:
    """One row, `day`: the first session_date whose sessions can count in any experiment of `resolved`, or null
    without assignments. A session counts if it ends at or after its user's assignment, and no session lasts
    longer than `max_session_duration`, so none that began before the first assignment minus that can count."""
    longest_us = max_session_duration // timedelta(microseconds=1)
    earliest_start = F.timestamp_micros(F.unix_micros(F.min("assigned_at")) - F.lit(longest_us))
    return resolved.agg(local_date(earliest_start, timezone).alias("day"))


def variant_moments(
    sessions: DataFrame, resolved: DataFrame, timezone: str, last_day: date, segments: tuple[str, ...] = ()
) -> DataFrame:
    """experiment_id, variant, dimension, dimension_value, window_end and the MOMENTS of the window ending that day,
    for every variant and every day from the experiment's first assignment to `last_day` (a variant without users
    yet has zeros): the experiment's users (dimension and value `all`), and those of each value of each per-user
    column of `resolved` named in `segments` (null: `unknown`).
    `sessions`: user_id, session_start, session_end, session_date (their day in `timezone`), actions;
    `resolved`: resolved_assignments' rows for the same `timezone` and `last_day`."""
    assigned = resolved.where(~F.col("is_excluded")).select(
        "experiment_id", "user_id", "variant", "assigned_at",
        local_date(F.col("assigned_at"), timezone).alias("assigned_day"), *segments,
    )
    return (
        _user_day_changes(_sessions_in_experiment(sessions, assigned, last_day, segments), assigned, segments)
        .transform(_with_running_sums)
        .transform(_by_dimension, segments)
        .transform(_moment_changes_by_day)
        .transform(_cumulated_by_day, last_day)
    )


def _sessions_in_experiment(
    sessions: DataFrame, assigned: DataFrame, last_day: date, segments: tuple[str, ...]
) -> DataFrame:
    # A session counts once it ends at or after the assignment: the session in which a user is first exposed
    # counts, whole. Its day is never before the user's assignment day (a session that began the day before).
    return (
        sessions.where(F.col("session_date") <= F.lit(last_day))
        .select("user_id", "session_end", "session_date", "actions")
        .join(assigned, on="user_id", how="inner")
        .where(F.col("session_end") >= F.col("assigned_at"))
        .select("experiment_id", "variant", "user_id", *segments,
                F.greatest(F.col("session_date"), F.col("assigned_day")).alias("day"), "actions")
    )


def _user_day_changes(in_experiment: DataFrame, assigned: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    """Per experiment, user and day on which the user's sums change: joined (1 on their assignment day),
    day_sessions, day_actions; and the user's `segments`."""
    user = ("experiment_id", "variant", "user_id", *segments)  # the segments are per user: they ride along
    joins = assigned.select(*user, F.col("assigned_day").alias("day"),
                            F.lit(1).alias("joined"), F.lit(0).alias("day_sessions"), F.lit(0).alias("day_actions"))
    visits = in_experiment.select(*user, "day", F.lit(0).alias("joined"),
                                  F.lit(1).alias("day_sessions"), F.col("actions").alias("day_actions"))
    return (
        joins.unionByName(visits)
        .groupBy(*user, "day")
        .agg(F.sum("joined").alias("joined"), F.sum("day_sessions").alias("day_sessions"),
             F.sum("day_actions").alias("day_actions"))
    )


def _with_running_sums(changes: DataFrame) -> DataFrame:
    """Each user's sessions and actions to date on each of their change days, and as they were before it."""
    to_date = Window.partitionBy("experiment_id", "user_id").orderBy("day")
    with_sums = changes.select(
        "*",
        F.sum("day_sessions").over(to_date).alias("sessions"),
        F.sum("day_actions").over(to_date).alias("actions"),
    )
    return with_sums.select(
        "*",
        F.coalesce(F.lag("sessions").over(to_date), F.lit(0)).alias("before_sessions"),
        F.coalesce(F.lag("actions").over(to_date), F.lit(0)).alias("before_actions"),
    )


def _by_dimension(per_user: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    """Each row once for dimension `all` and once for each segment, with its value (null: `unknown`)."""
    pairs = [F.struct(F.lit(ALL).alias("dimension"), F.lit(ALL).alias("dimension_value"))] + [
        F.struct(F.lit(segment).alias("dimension"),
                 F.coalesce(F.col(segment), F.lit(UNKNOWN_SEGMENT)).alias("dimension_value"))
        for segment in segments
    ]
    return (
        per_user.select("*", F.explode(F.array(*pairs)).alias("pair"))
        .select("*", "pair.dimension", "pair.dimension_value")
        .drop("pair", *segments)
    )


def _moment_changes_by_day(per_user: DataFrame) -> DataFrame:
    """How much each moment of a variant grows on each day: the sum of its users' changes (a window's sum of x^2
    is the previous window's plus each user's new x^2 minus their old one)."""
    return per_user.groupBy("experiment_id", "variant", *_GROUP, "day").agg(
        F.sum("joined").alias("users"),
        F.sum("day_sessions").alias("sessions"),
        F.sum("day_actions").alias("actions"),
        F.sum(_change_of_product("sessions", "sessions")).alias("sessions_squared"),
        F.sum(_change_of_product("actions", "actions")).alias("actions_squared"),
        F.sum(_change_of_product("actions", "sessions")).alias("actions_times_sessions"),
    )


def _cumulated_by_day(day_changes: DataFrame, last_day: date) -> DataFrame:
    """The day changes summed up to each day, with a row for every variant, dimension value and day from the
    experiment's first to last_day (a day without changes repeats the day before)."""
    experiment_start = day_changes.groupBy("experiment_id").agg(F.min("day").alias("first_day"))
    keys = ["experiment_id", "variant", *_GROUP]
    groups = (
        day_changes.select(*keys).distinct()  # each variant and dimension value of each experiment, once
        .join(experiment_start, on="experiment_id", how="inner")
    )
    grid = groups.select(*keys, F.explode(F.sequence(F.col("first_day"), F.lit(last_day))).alias("day"))
    running = Window.partitionBy(*keys).orderBy("window_end")
    return (
        grid.join(day_changes, on=[*keys, "day"], how="left")
        .select(*keys, F.col("day").alias("window_end"),
                *[F.coalesce(F.col(name), F.lit(0)).cast("long").alias(name) for name in MOMENTS])
        .select(*keys, "window_end", *[F.sum(name).over(running).alias(name) for name in MOMENTS])
    )
