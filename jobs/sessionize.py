"""Valid events -> one row per session (SESSION_COLUMNS), by window functions over each user's timeline."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

# A segment value that is null or blank on a session's first event.
UNKNOWN_SEGMENT = "unknown"

SESSION_COLUMNS = (
    "session_id",
    "user_id",
    "session_start",
    "session_end",
    "duration_seconds",
    "actions",
    "session_number",
    "session_date",
)


def _micros(duration: timedelta) -> int:
    return round(duration.total_seconds() * 1_000_000)


def local_date(instant: Column, timezone: str) -> Column:
    """The calendar date of `instant` in `timezone`, whatever the Spark session's time zone is."""
    return F.to_date(F.convert_timezone(None, F.lit(timezone), instant))


def _user_timeline() -> WindowSpec:
    # event_id breaks timestamp ties, so the same events are always ordered, and sessionized, the same way.
    return Window.partitionBy("user_id").orderBy("event_ts", "event_id")


def drop_duplicate_events(events: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    """Keep one row per (user_id, event_id): the earliest copy (ties broken by its other values)."""
    copies = Window.partitionBy("user_id", "event_id").orderBy("event_ts", "event_name", *segments)
    return (
        events
        .withColumn("copy_number", F.row_number().over(copies))
        .where(F.col("copy_number") == 1)
        .drop("copy_number")
    )


def with_bursts(events: DataFrame, inactivity_timeout: timedelta) -> DataFrame:
    """Add event_us, burst_number and burst_start_us: a burst is a run of events with no gap over the timeout.

    A user's first event opens a burst; a gap strictly longer than `inactivity_timeout` opens the next one.
    """
    timeline = _user_timeline()
    so_far = timeline.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    gap_us = F.col("event_us") - F.lag("event_us").over(timeline)
    is_new_burst = F.col("gap_us").isNull() | (F.col("gap_us") > _micros(inactivity_timeout))
    return (
        events
        .withColumn("event_us", F.unix_micros("event_ts"))
        .withColumn("gap_us", gap_us)
        .withColumn("is_new_burst", is_new_burst)
        .withColumn("burst_number", F.sum(F.col("is_new_burst").cast("long")).over(so_far))
        # Timestamps only grow along the timeline, so the latest burst opening is this event's burst start.
        .withColumn("burst_start_us", F.max(F.when(F.col("is_new_burst"), F.col("event_us"))).over(so_far))
        .drop("gap_us", "is_new_burst")
    )


def with_cap_numbers(bursts: DataFrame, max_session_duration: timedelta) -> DataFrame:
    """Add cap_number: 0, 1, ... for the sessions `max_session_duration` cuts a burst into.

    A session that starts at s ends before the first event at or after s + max_session_duration, which opens
    the next session. Only events at least the cap after their burst's start can be cut off, so only those
    (bots, mostly) are collected per burst, and the cut points found by a fold over their sorted times.
    """
    cap_us = _micros(max_session_duration)
    past_first_cap = F.col("event_us") - F.col("burst_start_us") >= cap_us
    cut_points = (
        bursts
        .where(past_first_cap)
        .groupBy("user_id", "burst_number")
        .agg(F.min("burst_start_us").alias("burst_start_us"), F.sort_array(F.collect_list("event_us")).alias("late_us"))
        .select(
            "user_id",
            "burst_number",
            F.aggregate(
                "late_us",
                F.struct(F.col("burst_start_us").alias("start_us"), F.array().cast("array<bigint>").alias("cuts")),
                lambda acc, t: F.when(
                    t >= acc["start_us"] + cap_us,
                    F.struct(t.alias("start_us"), F.array_append(acc["cuts"], t).alias("cuts")),
                ).otherwise(acc),
                lambda acc: acc["cuts"],
            ).alias("cut_us"),
        )
    )
    cuts_before = F.size(F.filter("cut_us", lambda cut: cut <= F.col("event_us")))
    return (
        # Bursts longer than the cap are rare, so their cut points are broadcast and the events keep their
        # partitioning by user_id: no second shuffle.
        bursts.join(F.broadcast(cut_points), on=["user_id", "burst_number"], how="left")
        .withColumn("cap_number", F.coalesce(cuts_before, F.lit(0)))
        .drop("cut_us")
    )


def to_sessions(events: DataFrame, segments: tuple[str, ...], timezone: str) -> DataFrame:
    """Events with burst_number and cap_number -> one row per session; session_number is left for later.

    session_id is a hash of the user and the session's first event id, so the same events give the same id.
    Segment values come from the first event; null or blank is "unknown". session_date is the reporting-zone
    date of session_start.
    """
    first_event_order = F.struct("event_ts", "event_id")
    first_event = F.struct("event_id", *segments)
    aggregated = events.groupBy("user_id", "burst_number", "cap_number").agg(
        F.min("event_ts").alias("session_start"),
        F.max("event_ts").alias("session_end"),
        F.count(F.lit(1)).alias("actions"),
        F.min_by(first_event, first_event_order).alias("first_event"),
    )
    return aggregated.select(
        F.md5(F.to_json(F.struct("user_id", F.col("first_event.event_id").alias("event_id")))).alias("session_id"),
        "user_id",
        "session_start",
        "session_end",
        ((F.unix_micros("session_end") - F.unix_micros("session_start")) / 1_000_000).alias("duration_seconds"),
        "actions",
        local_date(F.col("session_start"), timezone).alias("session_date"),
        *[_segment_value(F.col(f"first_event.{segment}")).alias(segment) for segment in segments],
    )


def _segment_value(value: Column) -> Column:
    return F.when(F.trim(value) != "", value).otherwise(F.lit(UNKNOWN_SEGMENT))


def sessionize(
    valid_events: DataFrame,
    inactivity_timeout: timedelta,
    max_session_duration: timedelta,
    segments: tuple[str, ...],
    timezone: str,
) -> DataFrame:
    """Valid events in, one row per session out (SESSION_COLUMNS but session_number, then the segments)."""
    return (
        valid_events
        .repartition("user_id")  # the one shuffle: every later step is keyed by user_id
        .transform(drop_duplicate_events, segments)
        .transform(with_bursts, inactivity_timeout)
        .transform(with_cap_numbers, max_session_duration)
        .transform(to_sessions, segments, timezone)
    )


def session_counts_before(sessions: DataFrame, first_day) -> DataFrame:
    """Per user, how many stored sessions start on a reporting day before `first_day`: user_id, sessions_before."""
    return (
        sessions
        .where(F.col("session_date") < F.lit(first_day))
        .groupBy("user_id")
        .agg(F.count(F.lit(1)).alias("sessions_before"))
    )


def with_session_numbers(sessions: DataFrame, counts_before: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    """Add session_number: 1 for a user's first-ever session, counting on from the sessions stored before."""
    by_start = Window.partitionBy("user_id").orderBy("session_start", "session_id")
    return (
        sessions
        .join(counts_before, on="user_id", how="left")
        .withColumn(
            "session_number",
            F.coalesce(F.col("sessions_before"), F.lit(0)) + F.row_number().over(by_start),
        )
        .select(*SESSION_COLUMNS, *segments)
    )


def first_seen_by_user(sessions: DataFrame) -> DataFrame:
    """user_id, first_seen: the start of each user's earliest session in `sessions`."""
    return sessions.groupBy("user_id").agg(F.min("session_start").alias("first_seen"))
