"""Events as read -> valid events with a parsed event_ts, and quarantined rows with their reject_reason."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, TimestampType

from jobs.read import MALFORMED_ROW, READ_PROBLEM, SOURCE_ROW, WRONG_TYPE

# Reason codes stored in quarantine.reject_reason; a row gets the first one it breaks, in this order.
MISSING_USER_ID = "missing_user_id"
MISSING_EVENT_ID = "missing_event_id"
MISSING_EVENT_NAME = "missing_event_name"
MISSING_EVENT_TS = "missing_event_ts"
UNPARSEABLE_EVENT_TS = "unparseable_event_ts"
MISSING_EVENT_DATE = "missing_event_date"
EVENT_DATE_MISMATCH = "event_date_mismatch"
BOT_USER_DAY = "bot_user_day"  # checked last, over the rows that break no other rule
REASONS = (
    MALFORMED_ROW,
    WRONG_TYPE,
    MISSING_USER_ID,
    MISSING_EVENT_ID,
    MISSING_EVENT_NAME,
    MISSING_EVENT_TS,
    UNPARSEABLE_EVENT_TS,
    MISSING_EVENT_DATE,
    EVENT_DATE_MISMATCH,
    BOT_USER_DAY,
)

_DAY_US = 86_400_000_000

# An ISO-8601 text timestamp's time of day may end in Z, UTC or a numeric offset; without one it is read as UTC.
_ENDS_WITH_OFFSET = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|UTC|[+-]\d{2}(:?\d{2})?)$"


def instant_from_text(text: Column) -> Column:
    """ISO-8601 text -> timestamp (an instant), null when unparseable; text without an offset is UTC.

    The session time zone plays no part, so a run reads the same instants on every cluster.
    """
    normalized = F.upper(F.trim(text))
    with_offset = F.when(normalized.rlike(_ENDS_WITH_OFFSET), normalized).otherwise(F.concat(normalized, F.lit("Z")))
    return F.try_to_timestamp(with_offset)


def _is_blank(column: str) -> Column:
    return F.col(column).isNull() | (F.trim(F.col(column).cast(StringType())) == "")


def with_reject_reason(events: DataFrame, partition_tolerance: timedelta = timedelta(0)) -> DataFrame:
    """Parse event_ts into an instant and add reject_reason: null for a usable event, else the first rule broken.

    A row needs to have been read whole with the right types (read_problem), a user id, an event id, an event
    name (the action it counts as), an event_ts
    that is a timestamp or parseable ISO-8601 text, and a partition date (event_date) whose UTC day holds that
    event_ts, give or take `partition_tolerance`: a run reads partitions by date, so an event filed under a date
    far from its time would be missed by the run its session belongs to (and epoch-zero or far-future times are
    clock errors).
    """
    raw_ts = F.col("event_ts")
    is_typed_ts = isinstance(events.schema["event_ts"].dataType, TimestampType)
    parsed_ts = raw_ts if is_typed_ts else instant_from_text(raw_ts.cast(StringType()))
    # Microseconds from the partition's UTC midnight; both sides are counted from the epoch, so no zone applies.
    into_partition_us = F.unix_micros(parsed_ts) - F.unix_date("event_date").cast("long") * _DAY_US
    tolerance_us = round(partition_tolerance.total_seconds() * 1_000_000)
    outside_partition = (into_partition_us < -tolerance_us) | (into_partition_us >= _DAY_US + tolerance_us)
    reason = (
        F.when(F.col(READ_PROBLEM).isNotNull(), F.col(READ_PROBLEM))
        .when(_is_blank("user_id"), F.lit(MISSING_USER_ID))
        .when(_is_blank("event_id"), F.lit(MISSING_EVENT_ID))
        .when(_is_blank("event_name"), F.lit(MISSING_EVENT_NAME))
        .when(_is_blank("event_ts"), F.lit(MISSING_EVENT_TS))
        .when(parsed_ts.isNull(), F.lit(UNPARSEABLE_EVENT_TS))
        .when(F.col("event_date").isNull(), F.lit(MISSING_EVENT_DATE))
        .when(outside_partition, F.lit(EVENT_DATE_MISMATCH))
    )
    return events.withColumn("reject_reason", reason).withColumn("event_ts", parsed_ts).drop(READ_PROBLEM)


def is_named(names: tuple[str, ...]) -> Column:
    """True for an event whose event_name is one of `names` (exact match, as written in the config)."""
    return F.col("event_name").isin(*names) if names else F.lit(False)


def with_bot_user_days(
    checked: DataFrame, max_events_per_day: int | None, non_interactive_events: tuple[str, ...] = ()
) -> DataFrame:
    """Give reject_reason BOT_USER_DAY to every otherwise valid row of a user with more than `max_events_per_day`
    distinct event ids in one input partition; None turns the rule off. Events named in `non_interactive_events`
    do not count towards the limit (a heartbeat every 30 s is not a bot), but a bot's are quarantined with the rest.

    The count is per partition (a UTC day) because a run reads whole partitions: every run that reads a partition
    sees the same count, so a user-day is flagged the same way whichever run reads it.
    """
    if max_events_per_day is None:
        return checked
    is_valid_action = F.col("reject_reason").isNull() & ~is_named(non_interactive_events)
    bot_days = (
        checked.where(is_valid_action)
        .groupBy("user_id", "event_date")
        .agg(F.count_distinct("event_id").alias("events"))
        .where(F.col("events") > max_events_per_day)
        .select("user_id", "event_date", F.lit(True).alias("is_bot_day"))
    )
    # Counting shuffles one row per distinct event of each user-day. Bots are few by definition, so their
    # user-days are broadcast to the events, which are not shuffled for the join: a limit so low that it flags
    # millions of user-days is not a bot rule.
    return (
        checked.join(F.broadcast(bot_days), on=["user_id", "event_date"], how="left")
        .withColumn("reject_reason", F.coalesce("reject_reason", F.when(F.col("is_bot_day"), F.lit(BOT_USER_DAY))))
        .drop("is_bot_day")
    )


def valid_events(checked: DataFrame) -> DataFrame:
    """Rows of `with_reject_reason` output that passed, without the bookkeeping columns."""
    return checked.where(F.col("reject_reason").isNull()).drop("reject_reason", SOURCE_ROW)


def without_non_interactive(valid: DataFrame, non_interactive_events: tuple[str, ...]) -> DataFrame:
    """Valid events that are user actions: all but those named in `non_interactive_events`, which never open,
    extend or count in a session."""
    return valid.where(~is_named(non_interactive_events))


def to_quarantine(checked: DataFrame, run_id: str) -> DataFrame:
    """Rows of `with_reject_reason` output that failed: partition date, reason, the row as read (JSON), run."""
    return checked.where(F.col("reject_reason").isNotNull()).select(
        "event_date",
        "reject_reason",
        F.to_json(F.col(SOURCE_ROW), {"ignoreNullFields": "false"}).alias("raw_row"),
        F.lit(run_id).alias("run_id"),
    )


def checked_assignments(assignments: DataFrame) -> DataFrame:
    """read_assignments' rows with assigned_at as an instant (a timestamp, or ISO-8601 text as for event_ts) and
    reject_reason: null for a usable row, else the first of missing_user_id, missing_experiment_id,
    missing_variant, bad_assigned_at (missing or unparseable)."""
    stored = F.col("assigned_at")
    if isinstance(assignments.schema["assigned_at"].dataType, StringType):
        stored = instant_from_text(stored)
    parsed = assignments.withColumn("assigned_at", stored.cast("timestamp"))
    reason = (
        F.when(_is_blank("user_id"), F.lit("missing_user_id"))
        .when(_is_blank("experiment_id"), F.lit("missing_experiment_id"))
        .when(_is_blank("variant"), F.lit("missing_variant"))
        .when(F.col("assigned_at").isNull(), F.lit("bad_assigned_at"))
    )
    return parsed.withColumn("reject_reason", reason)
