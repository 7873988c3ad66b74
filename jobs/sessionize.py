"""Valid events -> one row per session (SESSION_COLUMNS): window functions over each user's timeline find the
bursts, the events are summed up by piece and event name, and a fold over the few possible cut times finds where
the cap cuts long bursts."""

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
    "is_bounce": "boolean",
    "is_engaged": "boolean",
    "conversions": "long",
    "converted": "boolean",
    "first_conversion_ts": "timestamp",
    "actions_to_conversion": "long",
    "action_counts": "map<string, bigint>",
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
    event_us, null for the user's first), burst_number, burst_start_us, is_new_burst, longest_gap_us (the longest
    gap between two events of the burst so far) and is_late.

    A burst is a run of events with no gap over the timeout: a user's first event opens one, and a gap strictly
    longer than `inactivity_timeout` opens the next. An event is late when it comes `max_session_duration` or
    more after its burst's start: a burst's events before that form its first session, and only late events (bots,
    mostly) can belong to a later, capped one.
    """
    timeline = _user_timeline()
    so_far = timeline.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    timeout_us, cap_us = _micros(inactivity_timeout), _micros(max_session_duration)
    event_us, prev_us = F.col("event_us"), F.col("prev_us")
    return (
        events
        .withColumn("event_us", F.unix_micros("event_ts"))
        .withColumns({"event_index": F.row_number().over(timeline), "prev_us": F.lag("event_us").over(timeline)})
        .withColumn("is_new_burst", prev_us.isNull() | (event_us - prev_us > timeout_us))
        .withColumns(
            {
                "burst_number": F.sum(F.col("is_new_burst").cast("long")).over(so_far),
                # Timestamps only grow along the timeline, so the latest burst opening is this event's burst start.
                "burst_start_us": F.max(F.when(F.col("is_new_burst"), event_us)).over(so_far),
            }
        )
        .withColumns(
            {
                # burst_number first: the running max is always of the current burst's gaps (its first event: 0).
                "longest_gap_us": F.max(F.struct(
                    F.col("burst_number"),
                    F.when(F.col("is_new_burst"), F.lit(0)).otherwise(event_us - prev_us).alias("gap_us"),
                )).over(so_far).getField("gap_us"),
                "is_late": event_us - F.col("burst_start_us") >= cap_us,
            }
        )
    )


def _piece_index(cap_us: int) -> Column:
    # Which piece an event is summed into: 0, the burst's events before the cap (its first session); -k, late events
    # known to belong to the burst's k-th capped session; or, for a late event that may be the k-th cut or before
    # it, its own event_index (a piece of one event, sorted out by the cuts).
    # The k-th cut c(k) is the first event at or after c(k-1) + cap (c(0): the burst start s), and the gap before
    # it is at most g, the longest gap of the burst up to this event, so s + k x cap <= c(k) < s + k x (cap + g).
    # An event at t with s + k x (cap + g) <= t < s + (k + 1) x cap therefore comes after c(k) and before c(k+1):
    # it is in the k-th capped session. For a bot that sends at a steady pace, g is tiny and nearly all its late
    # events fall in such runs, so they are summed here rather than cut one by one.
    after_start_us = F.col("event_us") - F.col("burst_start_us")
    # A rounding error in the division only makes the checks below fail: the event then stays a piece of its own.
    k = F.floor(after_start_us / cap_us).cast("long")
    is_known = (after_start_us >= k * (cap_us + F.col("longest_gap_us"))) & (after_start_us < (k + 1) * cap_us)
    return F.when(~F.col("is_late"), F.lit(0).cast("long")).when(is_known, -k).otherwise(F.col("event_index"))


def _named(bursts: DataFrame, segments: tuple[str, ...], cap_us: int) -> DataFrame:
    # Sums the events up by piece (see _piece_index) and event name: user_id, burst_number, burst_start_us,
    # piece_index, first_event, event_name, and over the piece's events of that name name_actions (how many),
    # name_first_us and name_first_index (the first one's time and event_index) and last_us (the last one's time).
    # Grouping keeps the events' partitioning by user_id, so it adds no shuffle. The key stays narrow
    # (ids, longs, the name) so that Spark hashes it rather than sorting the events: a first session's first event
    # (its id and segments, strings) rides along on one extra row, its "head" row, whose event_name is null and
    # which counts no action. A late event that is a piece of its own carries both on its one row; the runs of
    # known late events need no first event (a capped session opens at its cut, a piece of its own).
    # Field order makes struct comparison follow the timeline: time first, then event_id.
    event = F.struct(F.col("event_us"), F.col("event_id"), *[_segment_value(F.col(s)).alias(s) for s in segments])
    no_event = F.lit(None).cast(_event_type(segments))

    def row(event_name: Column, first_event: Column) -> Column:
        return F.struct(event_name.alias("event_name"), first_event.alias("first_event"))

    name, piece_index = F.col("event_name"), F.col("piece_index")
    rows = (
        F.when(piece_index > 0, F.array(row(name, event)))
        .when(F.col("is_new_burst"), F.array(row(name, no_event), row(F.lit(None).cast("string"), event)))
        .otherwise(F.array(row(name, no_event)))
    )
    return (
        bursts
        .withColumn("piece_index", _piece_index(cap_us))
        .select("user_id", "burst_number", "burst_start_us", "piece_index", "event_us", "event_index", F.inline(rows))
        .groupBy("user_id", "burst_number", "burst_start_us", "piece_index", "first_event", "event_name")
        .agg(
            F.count("event_name").alias("name_actions"),  # a head row counts no action
            F.min("event_us").alias("name_first_us"),
            F.min("event_index").alias("name_first_index"),
            F.max("event_us").alias("last_us"),
        )
    )


def _event_type(segments: tuple[str, ...]) -> str:
    # The type of a piece's first_event: the event's time, id and segment values.
    return f"struct<event_us: bigint, event_id: string{''.join(f', {s}: string' for s in segments)}>"


def _summed(named: DataFrame, keys: list[str], conversion_events: tuple[str, ...]) -> DataFrame:
    # Rows per piece and event name (see _named) -> one row per `keys`: first_event, first_us, last_us, actions,
    # first_index, conversions, first_conversion (event_us, event_index) and action_counts.
    is_conversion = F.col("event_name").isin(*conversion_events) if conversion_events else F.lit(False)
    first_of_name = F.struct(F.col("name_first_us").alias("event_us"), F.col("name_first_index").alias("event_index"))
    name_count = F.struct("event_name", "name_actions")  # head rows (no event_name) hold no action
    return named.groupBy(*keys).agg(
        F.min("first_event").alias("first_event"),
        F.min("name_first_us").alias("first_us"),
        F.max("last_us").alias("last_us"),
        F.sum("name_actions").alias("actions"),
        F.min("name_first_index").alias("first_index"),
        F.coalesce(F.sum(F.when(is_conversion, F.col("name_actions"))), F.lit(0)).alias("conversions"),
        F.min(F.when(is_conversion, first_of_name)).alias("first_conversion"),
        # Sorted by name, so the same events always give the same map.
        F.map_from_entries(F.array_sort(F.collect_list(F.when(F.col("event_name").isNotNull(), name_count))))
        .alias("action_counts"),
    )


def _cuts(late_pieces: DataFrame, cap_us: int) -> DataFrame:
    # One row per cut of a burst (user_id, burst_number, cut_us: the cut's time), from the late events that may be
    # cuts, the pieces of one event (see _piece_index): every cut is one of them. The rule is sequential, each cut
    # deciding where the next may be, so it is a fold over their sorted times, gathered per burst in one task; the
    # fold's state changes only at cuts, so leaving the other late events out changes nothing.
    times = (
        late_pieces
        .where(F.col("piece_index") > 0)
        .groupBy("user_id", "burst_number", "burst_start_us")
        .agg(F.sort_array(F.collect_list("first_us")).alias("late_us"))
    )
    cuts = F.aggregate(
        "late_us",
        F.struct(F.col("burst_start_us").alias("start_us"), F.array().cast("array<bigint>").alias("cuts")),
        lambda acc, t: F.when(
            t >= acc["start_us"] + cap_us, F.struct(t.alias("start_us"), F.array_append(acc["cuts"], t).alias("cuts"))
        ).otherwise(acc),
        lambda acc: acc["cuts"],
    )
    return times.select("user_id", "burst_number", F.explode(cuts).alias("cut_us"))


def _capped_sessions(late_pieces: DataFrame, cap_us: int, conversion_events: tuple[str, ...]) -> DataFrame:
    # Late pieces -> one row per capped session (user_id, burst_number, session_key: its cut's time), with the
    # columns of a first piece. A capped session opens at its cut and holds every late event of the burst from
    # there to the next cut; events at the cut's instant belong to it, the first by the timeline (the least
    # first_event) opening it. Each piece lies in one session: the one of the latest cut at or before its first
    # event (a cut sorts before the events at its instant: its piece_index is null).
    cut_rows = _cuts(late_pieces, cap_us).withColumn("first_us", F.col("cut_us"))
    timeline = Window.partitionBy("user_id", "burst_number").orderBy(
        "first_us", F.col("piece_index").asc_nulls_first()
    ).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    session = ["user_id", "burst_number", "session_key"]
    is_conversion = F.col("event_name").isin(*conversion_events) if conversion_events else F.lit(False)
    return (
        late_pieces
        .unionByName(cut_rows, allowMissingColumns=True)
        .withColumn("session_key", F.last("cut_us", ignorenulls=True).over(timeline))
        .where(F.col("piece_index").isNotNull())
        # Action counts add up per name across a session's pieces, the rest per session.
        .select(*session, "first_event", "first_us", "last_us", "first_index", "first_conversion",
                F.explode("action_counts").alias("event_name", "name_actions"))
        .groupBy(*session, "event_name")
        .agg(
            F.min("first_event").alias("first_event"),
            F.min("first_us").alias("first_us"),
            F.max("last_us").alias("last_us"),
            F.sum("name_actions").alias("name_actions"),
            F.min("first_index").alias("first_index"),
            F.min("first_conversion").alias("first_conversion"),
        )
        .groupBy(*session)
        .agg(
            F.min("first_event").alias("first_event"),
            F.min("first_us").alias("first_us"),
            F.max("last_us").alias("last_us"),
            F.sum("name_actions").alias("actions"),
            F.min("first_index").alias("first_index"),
            F.coalesce(F.sum(F.when(is_conversion, F.col("name_actions"))), F.lit(0)).alias("conversions"),
            F.min("first_conversion").alias("first_conversion"),
            F.map_from_entries(F.array_sort(F.collect_list(F.struct("event_name", "name_actions"))))
            .alias("action_counts"),
        )
    )


def to_sessions(
    marks: DataFrame,
    max_session_duration: timedelta,
    segments: tuple[str, ...],
    timezone: str,
    conversion_events: tuple[str, ...] = (),
    engaged_duration: timedelta = timedelta(seconds=10),
    engaged_actions: int = 2,
) -> DataFrame:
    """Session marks (see session_marks) -> one row per session; session_number is left for later.

    A burst is one session unless it lasts `max_session_duration` or longer: a session that starts at s ends
    before the first event at or after s + max_session_duration, which opens the next session. A burst's first
    session is its piece 0; only late events (bots, mostly) go on to find the cuts and the capped sessions
    between them. `marks` is read twice: persist it where it is costly. `conversion_events` must be those the
    marks were summed with.

    session_id is a hash of the user and the session's first event id, so the same events give the same id.
    Segment values come from the first event; null or blank is "unknown". session_date is the reporting-zone
    date of session_start. Engagement columns: is_bounce (one action), conversions (events named in
    `conversion_events`), first_conversion_ts and actions_to_conversion (actions up to and including the first
    conversion), is_engaged (lasts `engaged_duration`, or has `engaged_actions` actions, or converts),
    action_counts.
    """
    first_sessions = marks.where(F.col("piece_index") == 0)
    capped_sessions = marks.where(F.col("piece_index") != 0).transform(
        _capped_sessions, _micros(max_session_duration), conversion_events
    )
    first_us = F.col("first_event.event_us")
    duration_us = F.col("last_us") - first_us
    session_start = F.timestamp_micros(first_us)
    is_engaged = (
        (duration_us >= _micros(engaged_duration))
        | (F.col("actions") >= engaged_actions)
        | (F.col("conversions") > 0)
    )
    return (
        first_sessions
        .unionByName(capped_sessions, allowMissingColumns=True)
        .select(
            F.md5(F.to_json(F.struct("user_id", F.col("first_event.event_id").alias("event_id")))).alias("session_id"),
            "user_id",
            session_start.alias("session_start"),
            F.timestamp_micros("last_us").alias("session_end"),
            (duration_us / 1_000_000).alias("duration_seconds"),
            "actions",
            local_date(session_start, timezone).alias("session_date"),
            (F.col("actions") == 1).alias("is_bounce"),
            is_engaged.alias("is_engaged"),
            "conversions",
            (F.col("conversions") > 0).alias("converted"),
            F.timestamp_micros("first_conversion.event_us").alias("first_conversion_ts"),
            (F.col("first_conversion.event_index") - F.col("first_index") + 1).alias("actions_to_conversion"),
            "action_counts",
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
    conversion_events: tuple[str, ...] = (),
) -> DataFrame:
    """Valid events in, the events summed up by piece out, which to_sessions turns into sessions.

    A piece is a burst's events before the cap (piece_index 0, its first session), a run of late events known to
    belong to the burst's k-th capped session (piece_index -k), or one late event that may be a cut (piece_index:
    its event_index); late events are few but for bots past the cap (see with_bursts and _piece_index). Columns:
    user_id, burst_number, burst_start_us, piece_index, first_event (a first session's or a one-event piece's
    first event: event_us, event_id, segments; null for a run of late events), first_us and last_us (its first
    and last event's time), actions, first_index (its first event's event_index), conversions (its events named
    in `conversion_events`), first_conversion (event_us, event_index of the first) and action_counts (event name
    -> events). About one row per session.

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
    piece = ["user_id", "burst_number", "burst_start_us", "piece_index"]
    named = (
        deduplicated
        .transform(with_bursts, inactivity_timeout, max_session_duration)
        .transform(_named, segments, _micros(max_session_duration))
    )
    # Summed on the events' partitioning, in the same stage: no shuffle.
    return _summed(named, piece, conversion_events)


def sessionize(
    valid_events: DataFrame,
    inactivity_timeout: timedelta,
    max_session_duration: timedelta,
    segments: tuple[str, ...],
    timezone: str,
    resume_points: DataFrame | None = None,
    conversion_events: tuple[str, ...] = (),
    engaged_duration: timedelta = timedelta(seconds=10),
    engaged_actions: int = 2,
) -> DataFrame:
    """Valid events in, one row per session out (SESSION_COLUMNS but session_number, then the segments).

    session_marks then to_sessions, with nothing persisted: fine for small frames. The job persists the marks, which
    to_sessions reads twice.
    """
    marks = session_marks(
        valid_events, inactivity_timeout, max_session_duration, segments, resume_points,
        conversion_events=conversion_events,
    )
    return to_sessions(
        marks, max_session_duration, segments, timezone, conversion_events, engaged_duration, engaged_actions
    )
