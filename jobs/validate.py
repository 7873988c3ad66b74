"""Events as read -> valid events with a parsed event_ts, and quarantined rows with their reject_reason."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, TimestampType

from jobs.read import SOURCE_ROW
from jobs.dates import local_date

# Reason codes stored in quarantine.reject_reason; a row gets the first one it breaks, in this order.
MISSING_USER_ID = "missing_user_id"
MISSING_EVENT_ID = "missing_event_id"
MISSING_EVENT_TS = "missing_event_ts"
UNPARSEABLE_EVENT_TS = "unparseable_event_ts"
MISSING_EVENT_DATE = "missing_event_date"
EVENT_DATE_MISMATCH = "event_date_mismatch"

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


def with_reject_reason(events: DataFrame) -> DataFrame:
    """Parse event_ts into an instant and add reject_reason: null for a usable event, else the first rule broken.

    A row needs a user id, an event id, an event_ts that is a timestamp or parseable ISO-8601 text, and a
    partition date (event_date) that is the UTC date of that event_ts: a run reads partitions by date, so an
    event filed under another date would be missed by the run its session belongs to.
    """
    raw_ts = F.col("event_ts")
    is_typed_ts = isinstance(events.schema["event_ts"].dataType, TimestampType)
    parsed_ts = raw_ts if is_typed_ts else instant_from_text(raw_ts.cast(StringType()))
    reason = (
        F.when(_is_blank("user_id"), F.lit(MISSING_USER_ID))
        .when(_is_blank("event_id"), F.lit(MISSING_EVENT_ID))
        .when(_is_blank("event_ts"), F.lit(MISSING_EVENT_TS))
        .when(parsed_ts.isNull(), F.lit(UNPARSEABLE_EVENT_TS))
        .when(F.col("event_date").isNull(), F.lit(MISSING_EVENT_DATE))
        .when(local_date(parsed_ts, "UTC") != F.col("event_date"), F.lit(EVENT_DATE_MISMATCH))
    )
    return events.withColumn("reject_reason", reason).withColumn("event_ts", parsed_ts)


def valid_events(checked: DataFrame) -> DataFrame:
    """Rows of `with_reject_reason` output that passed, without the bookkeeping columns."""
    return checked.where(F.col("reject_reason").isNull()).drop("reject_reason", SOURCE_ROW)


def to_quarantine(checked: DataFrame, run_id: str) -> DataFrame:
    """Rows of `with_reject_reason` output that failed: partition date, reason, the row as read (JSON), run."""
    return checked.where(F.col("reject_reason").isNotNull()).select(
        "event_date",
        "reject_reason",
        F.to_json(F.col(SOURCE_ROW), {"ignoreNullFields": "false"}).alias("raw_row"),
        F.lit(run_id).alias("run_id"),
    )
