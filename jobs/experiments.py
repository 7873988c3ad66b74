"""Experiments: assignments -> each user's variant -> per-variant moments for each analysis day (pure frames).

The statistics (intervals, lifts, p-values) are computed on the driver from these moments by jobs/inference.py;
only one row per experiment, variant and day leaves Spark.

Rules:
- A user's variant in an experiment is the one they were assigned; a user assigned two different variants of one
  experiment is excluded from it (counted by `excluded_users`, never kept in both).
- A session counts for the experiment when it starts at or after the user's assignment (the earliest
  `assigned_at` of their rows for that experiment). Earlier sessions are outside the experiment.
- The analysis window ending on day D (a reporting day in the job's time zone) holds every user assigned on or
  before D, with their sessions that start on or before D: users, sessions and actions to date, cumulatively.
  A user assigned with no session since counts as a user with 0 sessions and 0 actions (intention to treat: the
  users randomized, not only those who came back).
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.dates import local_date

ASSIGNMENTS_SCHEMA = "user_id string, experiment_id string, variant string, assigned_at timestamp"

# The sums over users that jobs.inference.Moments takes, in its order.
MOMENTS = ("users", "sessions", "actions", "sessions_squared", "actions_squared", "actions_times_sessions")


def assignments_from_events(events: DataFrame, experiment_column: str, variant_column: str) -> DataFrame:
    """Assignments read off the events: one row per user, experiment and variant their events carry, assigned at the
    first such event (events without an experiment or a variant assign nothing)."""
    tagged = F.col(experiment_column).isNotNull() & F.col(variant_column).isNotNull()
    return (
        events.where(tagged)
        .groupBy("user_id", F.col(experiment_column).alias("experiment_id"), F.col(variant_column).alias("variant"))
        .agg(F.min("event_ts").alias("assigned_at"))
    )


def resolved_assignments(assignments: DataFrame) -> DataFrame:
    """One row per experiment and user: `variant` and `assigned_at` (the earliest), and `is_excluded`, true (with
    a null variant) for a user assigned more than one variant of the experiment."""
    per_user = assignments.groupBy("experiment_id", "user_id").agg(
        F.count_distinct("variant").alias("variants"),
        F.min("variant").alias("variant"),
        F.min("assigned_at").alias("assigned_at"),
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


def _squared_change(current: str, previous: str) -> Column:
    return F.col(current) * F.col(current) - F.col(previous) * F.col(previous)


def variant_moments(sessions: DataFrame, resolved: DataFrame, timezone: str, last_day: date) -> DataFrame:
    """experiment_id, variant, window_end and the MOMENTS of the window ending that day, for every day from the
    experiment's first assignment to `last_day` (module rules). `sessions`: user_id, session_start, session_date,
    actions; `resolved`: resolved_assignments' rows."""
    assigned = resolved.where(~F.col("is_excluded")).select(
        "experiment_id", "user_id", "variant", "assigned_at",
        local_date(F.col("assigned_at"), timezone).alias("assigned_day"),
    ).where(F.col("assigned_day") <= F.lit(last_day))
    in_experiment = (
        sessions.where(F.col("session_date") <= F.lit(last_day))
        .select("user_id", "session_start", "session_date", "actions")
        .join(assigned, on="user_id", how="inner")
        .where(F.col("session_start") >= F.col("assigned_at"))
    )
    # A user's cumulative sums change on their assignment day (they join the window) and on each day they have
    # sessions; the moments of a day's window are the previous day's plus each change of x^2 (and x y).
    changes = (
        assigned.select("experiment_id", "variant", "user_id", F.col("assigned_day").alias("day"),
                        F.lit(1).alias("joined"), F.lit(0).alias("day_sessions"), F.lit(0).alias("day_actions"))
        .unionByName(in_experiment.select("experiment_id", "variant", "user_id", F.col("session_date").alias("day"),
                                          F.lit(0).alias("joined"), F.lit(1).alias("day_sessions"),
                                          F.col("actions").alias("day_actions")))
        .groupBy("experiment_id", "variant", "user_id", "day")
        .agg(F.sum("joined").alias("joined"), F.sum("day_sessions").alias("day_sessions"),
             F.sum("day_actions").alias("day_actions"))
    )
    to_date = Window.partitionBy("experiment_id", "user_id").orderBy("day")
    per_user = (
        changes
        .withColumn("user_sessions", F.sum("day_sessions").over(to_date))
        .withColumn("user_actions", F.sum("day_actions").over(to_date))
        .withColumn("before_sessions", F.coalesce(F.lag("user_sessions").over(to_date), F.lit(0)))
        .withColumn("before_actions", F.coalesce(F.lag("user_actions").over(to_date), F.lit(0)))
    )
    day_changes = per_user.groupBy("experiment_id", "variant", "day").agg(
        F.sum("joined").alias("users"),
        F.sum("day_sessions").alias("sessions"),
        F.sum("day_actions").alias("actions"),
        F.sum(_squared_change("user_sessions", "before_sessions")).alias("sessions_squared"),
        F.sum(_squared_change("user_actions", "before_actions")).alias("actions_squared"),
        F.sum(F.col("user_actions") * F.col("user_sessions") - F.col("before_actions") * F.col("before_sessions"))
        .alias("actions_times_sessions"),
    )
    return _cumulated_by_day(day_changes, last_day)


def _cumulated_by_day(day_changes: DataFrame, last_day: date) -> DataFrame:
    """The day changes summed up to each day, with a row for every day from the experiment's first to last_day
    (a day without changes repeats the day before)."""
    first_day = Window.partitionBy("experiment_id")
    grid = (
        day_changes
        .select("experiment_id", "variant", F.min("day").over(first_day).alias("first_day"))
        .distinct()
        .select("experiment_id", "variant",
                F.explode(F.sequence(F.col("first_day"), F.lit(last_day))).alias("day"))
    )
    running = Window.partitionBy("experiment_id", "variant").orderBy("window_end")
    return (
        grid.join(day_changes, on=["experiment_id", "variant", "day"], how="left")
        .select("experiment_id", "variant", F.col("day").alias("window_end"),
                *[F.coalesce(F.col(name), F.lit(0)).cast("long").alias(name) for name in MOMENTS])
        .select("experiment_id", "variant", "window_end",
                *[F.sum(name).over(running).alias(name) for name in MOMENTS])
    )
