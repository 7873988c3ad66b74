"""Stored sessions + a run's new sessions -> what the run must write so the tables equal a full recompute.

A run of reporting days [D1, D2] owns the sessions that start in them. It continues from the stored state
before D1 (the anchors: each user's latest stored session before D1), numbers its sessions after the stored
ones, renumbers the stored sessions after D2, and keeps each user's first_seen and session count. All functions
here are pure: stored tables come in as frames read by the pipeline.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from jobs.sessionize import session_schema

def _keep_latest(sessions: DataFrame, *per: str) -> DataFrame:
    # Per key, the session with the latest start; session_id breaks ties, so the same rows give the same pick.
    latest_first = Window.partitionBy(*per).orderBy(F.col("session_start").desc(), F.col("session_id").desc())
    return (
        sessions
        .withColumn("recency", F.row_number().over(latest_first))
        .where(F.col("recency") == 1)
        .drop("recency")
    )


def latest_sessions_before(stored: DataFrame, since: datetime, until: datetime) -> DataFrame:
    """Per user, the stored session with the latest start in [since, until): the anchors of a run starting at
    `until`. Rows keep every stored column."""
    return (
        stored
        .where((F.col("session_start") >= F.lit(since)) & (F.col("session_start") < F.lit(until)))
        .transform(_keep_latest, "user_id")
    )


def resume_points(anchors: DataFrame, context_start: datetime, first_instant: datetime) -> DataFrame:
    """user_id, resume_from: where each anchored user's events are sessionized from.

    An anchor that starts at or after `context_start` (first_instant - max_session_duration) may still be open at
    `first_instant`: its user's events are sessionized from its start, so it is extended, not duplicated. An older
    anchor ended before `first_instant`, and every event between it and `first_instant` belongs to stored sessions:
    the user's first event at or after `first_instant` opens a session.
    """
    start = F.col("session_start")
    return anchors.select(
        "user_id",
        F.when(start >= F.lit(context_start), start).otherwise(F.lit(first_instant)).alias("resume_from"),
    )


def extended_anchors(new_sessions: DataFrame, anchors: DataFrame, context_start: datetime) -> DataFrame:
    """The anchors as recomputed by this run (with the events after them), keeping their stored session_number.

    Only anchors that start at or after `context_start` are recomputed (see resume_points).
    """
    continued = anchors.where(F.col("session_start") >= F.lit(context_start)).select(
        "user_id", "session_start", "session_number"
    )
    return new_sessions.join(continued, on=["user_id", "session_start"], how="inner")


def counts_before(users: DataFrame, stored_from_first_day: DataFrame) -> DataFrame:
    """user_id, sessions_before: each user's stored sessions starting before the run's first day.

    users.sessions counts all of a user's stored sessions; those on or after the first day are subtracted, so
    the count needs only the stored days from the run on, never the whole history.
    """
    from_first_day = stored_from_first_day.groupBy("user_id").agg(F.count(F.lit(1)).alias("sessions_since"))
    return (
        users
        .join(from_first_day, on="user_id", how="left")
        .select("user_id", (F.col("sessions") - F.coalesce(F.col("sessions_since"), F.lit(0))).alias("sessions_before"))
    )


def _by_start() -> WindowSpec:
    return Window.partitionBy("user_id").orderBy("session_start", "session_id")


def numbered(run_sessions: DataFrame, sessions_before: DataFrame) -> DataFrame:
    """Add session_number to the run's own sessions: the user's sessions before the run, plus 1, 2, ..."""
    number = F.coalesce(F.col("sessions_before"), F.lit(0)) + F.row_number().over(_by_start())
    return (
        run_sessions
        .join(sessions_before, on="user_id", how="left")
        .withColumn("session_number", number)
        .drop("sessions_before")
    )


def renumbered_later(
    later: DataFrame, sessions_before: DataFrame, run_sessions: DataFrame
) -> DataFrame:
    """Stored sessions after the run's last day whose session_number changes: the user's sessions before the run,
    plus the run's sessions, plus their rank among the later ones. Only changed rows are returned."""
    run_counts = run_sessions.groupBy("user_id").agg(F.count(F.lit(1)).alias("run_sessions"))
    expected = (
        F.coalesce(F.col("sessions_before"), F.lit(0))
        + F.coalesce(F.col("run_sessions"), F.lit(0))
        + F.row_number().over(_by_start())
    )
    return (
        later
        .join(sessions_before, on="user_id", how="left")
        .join(run_counts, on="user_id", how="left")
        .withColumn("expected_number", expected)
        .where(F.col("expected_number") != F.col("session_number"))
        .withColumn("session_number", F.col("expected_number"))
        .drop("sessions_before", "run_sessions", "expected_number")
    )


def user_updates(
    users: DataFrame,
    old_run_sessions: DataFrame,
    run_sessions: DataFrame,
    later: DataFrame,
    first_instant: datetime,
) -> DataFrame:
    """user_id, first_seen, sessions for every user with stored or new sessions on the run's days: first_seen is
    the start of their earliest session, sessions their count, over the stored history with the run's days replaced.

    A user whose sessions all went away gets sessions = 0 (the writer deletes the row).
    """
    affected = old_run_sessions.select("user_id").union(run_sessions.select("user_id")).distinct()
    old_run = old_run_sessions.groupBy("user_id").agg(F.count(F.lit(1)).alias("old_run"))
    new_run = run_sessions.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("new_run"), F.min("session_start").alias("new_first")
    )
    after = later.groupBy("user_id").agg(F.count(F.lit(1)).alias("later"), F.min("session_start").alias("later_first"))
    stored_first = F.col("first_seen")
    # Stored sessions before the run are untouched; if the stored first_seen is one of them, it stays the earliest.
    first_before = F.when(stored_first < F.lit(first_instant), stored_first)

    def zero_if_null(column: str) -> Column:
        return F.coalesce(F.col(column), F.lit(0))

    return (
        affected
        .join(users, on="user_id", how="left")
        .join(old_run, on="user_id", how="left")
        .join(new_run, on="user_id", how="left")
        .join(after, on="user_id", how="left")
        .select(
            "user_id",
            F.least(first_before, F.col("new_first"), F.col("later_first")).alias("first_seen"),
            (zero_if_null("sessions") - zero_if_null("old_run") + zero_if_null("new_run"))
            .cast("long").alias("sessions"),
        )
    )


# The anchor_fingerprint of no anchors.
NO_ANCHORS = "0:0"


def anchor_fingerprint() -> Column:
    """An aggregate over anchor rows that changes when any anchor's identity, extent or size changes."""
    row_hash = F.xxhash64("user_id", "session_id", "session_start", "session_end", "actions")
    # XOR, not a sum: order-free like a sum, and it cannot overflow.
    combined = F.coalesce(F.bit_xor(row_hash), F.lit(0))
    return F.concat_ws(":", F.count(F.lit(1)).cast("string"), combined.cast("string"))


def anchor_fingerprints(stored: DataFrame, windows: DataFrame) -> DataFrame:
    """day, fingerprint: for each window (window_day, window_since, window_until), the anchor_fingerprint of the
    stored sessions that latest_sessions_before(stored, window_since, window_until) picks, all days in one query.
    A day without anchors has no row (its fingerprint is NO_ANCHORS)."""
    start = F.col("session_start")
    in_window = (start >= F.col("window_since")) & (start < F.col("window_until"))
    return (
        stored
        .join(F.broadcast(windows), in_window, how="inner")  # windows: a row per day
        .transform(_keep_latest, "window_day", "user_id")
        .groupBy(F.col("window_day").alias("day"))
        .agg(anchor_fingerprint().alias("fingerprint"))
    )


USER_SCHEMA = "user_id string, first_seen timestamp, sessions long"


def as_stored(sessions: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    """Sessions with exactly the sessions table's columns and types, whichever step made them."""
    schema = StructType.fromDDL(session_schema(segments))
    return sessions.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])
