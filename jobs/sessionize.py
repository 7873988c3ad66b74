"""Valid events -> one row per session (SESSION_COLUMNS), by window functions over each user's timeline."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import Column, DataFrame, Observation, Window, WindowSpec
from pyspark.sql import functions as F

from jobs.dates import local_date

# A segment value that is null or blank on a session's first event.
UNKNOWN_SEGMENT = "unknown"

# The sessions table's columns and types, in order; one string column per segment follows them.
_SESSION_TYPES = {
    "session_id": "string",
    "user_id": "string",
    "session_start": "timestamp",
    "session_end": "timestamp",
    "duration_seconds": "double",
    "actions": "long",
    "session_number": "long",
    "session_date": "date",
}
SESSION_COLUMNS = tuple(_SESSION_TYPES)


def session_schema(segments: tuple[str, ...]) -> str:
    """DDL of the sessions table: SESSION_COLUMNS, then the segments."""
    return ", ".join([*(f"{name} {kind}" for name, kind in _SESSION_TYPES.items()), *(f"{s} string" for s in segments)])


# Stands for "no next cut" in microsecond comparisons.
_NO_CUT = 2**63 - 1


def _micros(duration: timedelta) -> int:
    return round(duration.total_seconds() * 1_000_000)


def _user_timeline() -> WindowSpec:
    # event_id breaks timestamp ties, so the same events are always ordered, and sessionized, the same way.
    return Window.partitionBy("user_id").orderBy("event_ts", "event_id")


def with_copy_number(events: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    """Add copy_number: 1 for the earliest copy of each (user_id, event_id) (ties broken by its other values),
    2, 3, ... for the copies after it."""
    copies = Window.partitionBy("user_id", "event_id").orderBy("event_ts", "event_name", *segments)
    return events.withColumn("copy_number", F.row_number().over(copies))


def drop_duplicate_events(events: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    """Keep one row per (user_id, event_id): the earliest copy (see with_copy_number)."""
    return _first_copies(events.transform(with_copy_number, segments))


def _first_copies(numbered_copies: DataFrame) -> DataFrame:
    return numbered_copies.where(F.col("copy_number") == 1).drop("copy_number")


def with_bursts(events: DataFrame, inactivity_timeout: timedelta, max_session_duration: timedelta) -> DataFrame:
    """Add, running along each user's timeline: event_us, event_index (1, 2, ...), burst_number, burst_start_us,
    is_new_burst, is_late and is_near_end.

    A burst is a run of events with no gap over the timeout: a user's first event opens one, and a gap strictly
    longer than `inactivity_timeout` opens the next. An event is late when it comes `max_session_duration` or
    more after its burst's start (only late events can belong to a later, capped session); is_near_end marks a
    burst's last event that is not late.
    """
    timeline = _user_timeline()
    so_far = timeline.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    timeout_us, cap_us = _micros(inactivity_timeout), _micros(max_session_duration)
    event_us, prev_us, next_us = F.col("event_us"), F.col("prev_us"), F.col("next_us")
    is_burst_end = next_us.isNull() | (next_us - event_us > timeout_us)
    is_late = event_us - F.col("burst_start_us") >= cap_us
    next_is_late = ~is_burst_end & (next_us - F.col("burst_start_us") >= cap_us)
    return (
        events
        .withColumn("event_us", F.unix_micros("event_ts"))
        .withColumns(
            {
                "event_index": F.row_number().over(timeline),
                "prev_us": F.lag("event_us").over(timeline),
                "next_us": F.lead("event_us").over(timeline),
            }
        )
        .withColumn("is_new_burst", prev_us.isNull() | (event_us - prev_us > timeout_us))
        .withColumns(
            {
                "burst_number": F.sum(F.col("is_new_burst").cast("long")).over(so_far),
                # Timestamps only grow along the timeline, so the latest burst opening is this event's burst start.
                "burst_start_us": F.max(F.when(F.col("is_new_burst"), event_us)).over(so_far),
            }
        )
        .withColumns({"is_late": is_late, "is_near_end": ~is_late & (is_burst_end | next_is_late)})
        .drop("prev_us", "next_us")
    )


def _with_burst_heads(marks: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    # Runs over the few marked rows only (burst openings, near ends, late events), still in timeline order: each
    # row gets its burst's first event and, from the near end, the end and size of the burst's first session.
    so_far = _user_timeline().rowsBetween(Window.unboundedPreceding, Window.currentRow)

    def latest(is_mark: str, value: Column) -> Column:
        return F.last(F.when(F.col(is_mark), value), ignorenulls=True).over(so_far)

    return marks.withColumns(
        {
            "first_event": latest(
                "is_new_burst",
                F.struct(F.col("event_us"), F.col("event_id"), *[_segment_value(F.col(s)).alias(s) for s in segments]),
            ),
            "first_index": latest("is_new_burst", F.col("event_index")),
            "last_us": latest("is_near_end", F.col("event_us")),
            "last_index": latest("is_near_end", F.col("event_index")),
        }
    )


def _late_session(late_events: Column, cut_us: Column, index: Column) -> Column:
    # The late events from this cut up to the next one (the list is sorted by time, then event_id).
    next_cut = F.coalesce(F.try_element_at(cut_us, index + 2), F.lit(_NO_CUT))
    cut = F.element_at(cut_us, index + 1)
    members = F.filter(late_events, lambda e: (e["event_us"] >= cut) & (e["event_us"] < next_cut))
    return F.struct(
        F.element_at(members, 1).alias("first_event"),
        F.element_at(members, -1)["event_us"].alias("last_us"),
        F.size(members).cast("long").alias("actions"),
    )


def to_sessions(
    bursts: DataFrame, max_session_duration: timedelta, segments: tuple[str, ...], timezone: str
) -> DataFrame:
    """Events with burst columns -> one row per session; session_number is left for later.

    A burst is one session unless it lasts `max_session_duration` or longer: a session that starts at s ends
    before the first event at or after s + max_session_duration, which opens the next session. The events before
    the first cut are summed up from their first and last rows; only late events (bots, mostly) are collected per
    burst, and the cut points found by a fold over their sorted times.

    session_id is a hash of the user and the session's first event id, so the same events give the same id.
    Segment values come from the first event; null or blank is "unknown". session_date is the reporting-zone
    date of session_start.
    """
    cap_us = _micros(max_session_duration)
    # Field order makes struct comparison follow the timeline: time first, then event_id.
    late_event = F.struct(
        F.col("event_us"), F.col("event_id"), *[_segment_value(F.col(s)).alias(s) for s in segments]
    )
    # Every column but the late events is the same on all rows of a burst, so it is a grouping key.
    per_burst = (
        bursts
        .where(F.col("is_new_burst") | F.col("is_near_end") | F.col("is_late"))
        .transform(_with_burst_heads, segments)
        .where(F.col("is_near_end") | F.col("is_late"))
        .groupBy(
            "user_id",
            "burst_number",
            "first_event",
            "last_us",
            (F.col("last_index") - F.col("first_index") + 1).alias("actions"),
        )
        .agg(F.array_sort(F.collect_list(F.when(F.col("is_late"), late_event))).alias("late_events"))
    )
    cut_us = F.aggregate(
        F.transform("late_events", lambda e: e["event_us"]),
        F.struct(F.col("first_event.event_us").alias("start_us"), F.array().cast("array<bigint>").alias("cuts")),
        lambda acc, t: F.when(
            t >= acc["start_us"] + cap_us, F.struct(t.alias("start_us"), F.array_append(acc["cuts"], t).alias("cuts"))
        ).otherwise(acc),
        lambda acc: acc["cuts"],
    )
    first_session = F.struct("first_event", "last_us", "actions")
    late_sessions = F.transform(
        F.sequence(F.lit(0), F.size("cut_us") - 1),
        lambda index: _late_session(F.col("late_events"), F.col("cut_us"), index),
    )
    all_sessions = F.when(F.size("cut_us") == 0, F.array(first_session)).otherwise(
        F.concat(F.array(first_session), late_sessions)
    )
    session_start = F.timestamp_micros(F.col("first_event.event_us"))
    return (
        per_burst
        .withColumn("cut_us", cut_us)
        .select("user_id", F.inline(all_sessions))
        .select(
            F.md5(F.to_json(F.struct("user_id", F.col("first_event.event_id").alias("event_id")))).alias("session_id"),
            "user_id",
            session_start.alias("session_start"),
            F.timestamp_micros("last_us").alias("session_end"),
            ((F.col("last_us") - F.col("first_event.event_us")) / 1_000_000).alias("duration_seconds"),
            "actions",
            local_date(session_start, timezone).alias("session_date"),
            *[F.col(f"first_event.{segment}").alias(segment) for segment in segments],
        )
    )


def _segment_value(value: Column) -> Column:
    return F.when(F.trim(value) != "", value).otherwise(F.lit(UNKNOWN_SEGMENT))


def resume_at(events: DataFrame, resume_points: DataFrame) -> DataFrame:
    """Drop each user's events before their resume point (resume_points: user_id, resume_from); users without
    one keep every event.

    A resume point is a known session start (or an instant that must open a session): sessionizing the events from
    there gives the same sessions after it as sessionizing the user's whole history.
    """
    return (
        events
        .join(resume_points, on="user_id", how="left")
        .where(F.col("resume_from").isNull() | (F.col("event_ts") >= F.col("resume_from")))
        .drop("resume_from")
    )


def sessionize(
    valid_events: DataFrame,
    inactivity_timeout: timedelta,
    max_session_duration: timedelta,
    segments: tuple[str, ...],
    timezone: str,
    resume_points: DataFrame | None = None,
    deduplication: Observation | None = None,
    counted: Column | None = None,
) -> DataFrame:
    """Valid events in, one row per session out (SESSION_COLUMNS but session_number, then the segments).

    With `resume_points`, each user's events before their resume point are dropped after dedup (see resume_at).
    `deduplication`, if given, observes `kept` (events left after dedup) and `copies` (copies dropped) among the
    rows where `counted` holds (all rows without it), as the job runs.
    """
    by_user = valid_events.repartition("user_id")  # the one shuffle of events: every later step is keyed by user_id
    numbered_copies = by_user.transform(with_copy_number, segments)
    if deduplication is not None:
        is_counted = F.lit(True) if counted is None else counted
        numbered_copies = numbered_copies.observe(
            deduplication,
            F.count_if(is_counted & (F.col("copy_number") == 1)).alias("kept"),
            F.count_if(is_counted & (F.col("copy_number") > 1)).alias("copies"),
        )
    deduplicated = _first_copies(numbered_copies)
    if resume_points is not None:
        # Joined after the shuffle, so only the small resume_points frame moves; dedup first, so a copy before
        # the resume point still hides a later copy, as it does when the whole history is sessionized.
        deduplicated = deduplicated.transform(resume_at, resume_points)
    return (
        deduplicated
        .transform(with_bursts, inactivity_timeout, max_session_duration)
        .transform(to_sessions, max_session_duration, segments, timezone)
    )
