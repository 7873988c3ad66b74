"""Valid events -> one row per session (SESSION_COLUMNS): window functions over each user's timeline mark the rows
that decide sessions, and a fold over the few possible cut times finds where the cap cuts long bursts."""

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
    """Add, running along each user's timeline: event_us, event_index (1, 2, ...), prev_us (the previous event's
    event_us, null for the user's first), burst_number, burst_start_us, is_new_burst, is_late and is_near_end.

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
        .drop("next_us")
    )


def _with_burst_heads(marks: DataFrame) -> DataFrame:
    # Runs over the marked rows only (burst openings, near ends, late events), still in timeline order: each row
    # gets its burst's first event (the session_head column its caller built, on the opening row) and its index.
    so_far = _user_timeline().rowsBetween(Window.unboundedPreceding, Window.currentRow)

    def latest(value: Column) -> Column:
        return F.last(F.when(F.col("is_new_burst"), value), ignorenulls=True).over(so_far)

    return marks.withColumns({"first_event": latest(F.col("session_head")), "first_index": latest(F.col("event_index"))})


def _first_sessions(marks: DataFrame) -> DataFrame:
    # A burst's first session runs from its first event to its near end: the event before the first cut, if any.
    return marks.where(F.col("is_near_end")).select(
        "user_id",
        "first_event",
        F.col("event_us").alias("last_us"),
        (F.col("event_index") - F.col("first_index") + 1).alias("actions"),
    )


def _cuts(late_events: DataFrame, cap_us: int) -> DataFrame:
    # One row per cut of a burst (user_id, burst_number, event_us: the cut's time), with the burst's last event.
    # The rule is sequential, each cut deciding where the next may be, so it is a fold over sorted times, gathered
    # per burst in one task. Only the times of possible cuts are gathered. With g the longest gap before any of the
    # burst's late events, each cut comes less than g after its session's start + cap, so the k-th cut lies in
    # [start + k x cap, start + k x (cap + g)); a late event in none of these spans cannot be a cut, and the
    # fold's state changes only at cuts, so leaving such events out changes nothing. For a bot that sends at a
    # steady pace, g is tiny and so are the spans. The filter keeps the spans' upper ends too: harmless.
    burst = Window.partitionBy("user_id", "burst_number")
    after_start_us = F.col("event_us") - F.col("burst_start_us")
    # A rounding error in the division could only make this larger and keep more times (none below 2^53 us).
    most_cuts_before = F.floor(after_start_us / cap_us)
    times = (
        late_events
        # Over all the burst's late events, before the filter: its last event need not be a possible cut.
        .withColumns(
            {
                "longest_gap_us": F.max(F.col("event_us") - F.col("prev_us")).over(burst),
                "burst_last_us": F.max("event_us").over(burst),
                "burst_last_index": F.max("event_index").over(burst),
            }
        )
        .where(most_cuts_before * (cap_us + F.col("longest_gap_us")) >= after_start_us)
        .groupBy("user_id", "burst_number", "burst_start_us", "burst_last_us", "burst_last_index")
        .agg(F.sort_array(F.collect_list("event_us")).alias("late_us"))
    )
    cuts = F.aggregate(
        "late_us",
        F.struct(F.col("burst_start_us").alias("start_us"), F.array().cast("array<bigint>").alias("cuts")),
        lambda acc, t: F.when(
            t >= acc["start_us"] + cap_us, F.struct(t.alias("start_us"), F.array_append(acc["cuts"], t).alias("cuts"))
        ).otherwise(acc),
        lambda acc: acc["cuts"],
    )
    return times.select(
        "user_id", "burst_number", "burst_last_us", "burst_last_index", F.explode(cuts).alias("event_us")
    )


def _capped_sessions(late_events: DataFrame, cap_us: int) -> DataFrame:
    # A capped session opens at its cut: the first late event at the cut's time (prev_us < event_us picks the
    # first of several events at one instant), and ends with the event before the burst's next cut, or its last.
    heads = late_events.where(F.col("prev_us") < F.col("event_us")).join(
        _cuts(late_events, cap_us), on=["user_id", "burst_number", "event_us"], how="inner"
    )
    next_head = Window.partitionBy("user_id", "burst_number").orderBy("event_us")
    return heads.select(
        "user_id",
        F.col("session_head").alias("first_event"),
        F.coalesce(F.lead("prev_us").over(next_head), F.col("burst_last_us")).alias("last_us"),
        (F.coalesce(F.lead("event_index").over(next_head), F.col("burst_last_index") + 1) - F.col("event_index"))
        .alias("actions"),
    )


def _marked(bursts: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    # Keeps each burst's near end and its late events: all that decides sessions (columns: see session_marks).
    # Field order makes struct comparison follow the timeline: time first, then event_id.
    session_head = F.struct(
        F.col("event_us"), F.col("event_id"), *[_segment_value(F.col(s)).alias(s) for s in segments]
    )
    return (
        bursts
        .where(F.col("is_new_burst") | F.col("is_near_end") | F.col("is_late"))
        .withColumn("session_head", session_head)
        .transform(_with_burst_heads)
        .where(F.col("is_near_end") | F.col("is_late"))
        .select(
            "user_id", "burst_number", "burst_start_us", "event_us", "event_index", "prev_us", "is_near_end",
            "is_late",
            # Each row keeps only what its kind needs, so the job stores less.
            F.when(F.col("is_near_end"), F.col("first_event")).alias("first_event"),
            F.when(F.col("is_near_end"), F.col("first_index")).alias("first_index"),
            F.when(F.col("is_late"), F.col("session_head")).alias("session_head"),
        )
    )


def to_sessions(
    marks: DataFrame, max_session_duration: timedelta, segments: tuple[str, ...], timezone: str
) -> DataFrame:
    """Session marks (see session_marks) -> one row per session; session_number is left for later.

    A burst is one session unless it lasts `max_session_duration` or longer: a session that starts at s ends
    before the first event at or after s + max_session_duration, which opens the next session. A burst's first
    session is summed up from its first event and its near end; only late events (bots, mostly) go on to find the
    cuts and the capped sessions between them. `marks` is read three times: persist it where it is costly.

    session_id is a hash of the user and the session's first event id, so the same events give the same id.
    Segment values come from the first event; null or blank is "unknown". session_date is the reporting-zone
    date of session_start.
    """
    late_events = marks.where(F.col("is_late"))
    session_start = F.timestamp_micros(F.col("first_event.event_us"))
    return (
        marks
        .transform(_first_sessions)
        .unionByName(late_events.transform(_capped_sessions, _micros(max_session_duration)))
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


def session_marks(
    valid_events: DataFrame,
    inactivity_timeout: timedelta,
    max_session_duration: timedelta,
    segments: tuple[str, ...],
    resume_points: DataFrame | None = None,
    deduplication: Observation | None = None,
    counted: Column | None = None,
) -> DataFrame:
    """Valid events in, the rows that decide the sessions out, which to_sessions turns into sessions: each burst's
    near end (about one row per session) and its late events (few, but every event of a bot past the cap; see
    with_bursts). Columns: user_id, burst_number, burst_start_us, event_us, event_index, prev_us, is_near_end,
    is_late; on near ends, first_event (the burst's first event: event_us, event_id, segments) and first_index; on
    late events, session_head (the event itself, in the same struct).

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
        .transform(_marked, segments)
    )


def sessionize(
    valid_events: DataFrame,
    inactivity_timeout: timedelta,
    max_session_duration: timedelta,
    segments: tuple[str, ...],
    timezone: str,
    resume_points: DataFrame | None = None,
) -> DataFrame:
    """Valid events in, one row per session out (SESSION_COLUMNS but session_number, then the segments).

    session_marks then to_sessions, with nothing persisted: fine for small frames. The job persists the marks, which
    to_sessions reads three times.
    """
    marks = session_marks(valid_events, inactivity_timeout, max_session_duration, segments, resume_points)
    return to_sessions(marks, max_session_duration, segments, timezone)
