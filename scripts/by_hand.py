"""Events -> sessionlake's tables, written by hand in one plain PySpark script: scripts/benchmark.py's by_hand
contender, the work of sessionlake's full run as a data engineer would write it without the job.

    .venv/bin/python scripts/by_hand.py EVENTS_DIR OUT_DIR

EVENTS_DIR holds parquet partitioned by event_date=YYYY-MM-DD folders, with user_id, event_id, event_name,
event_ts (a timestamp with or without time zone; one without is read as UTC), platform, country and any other
columns. Every column is read. Delta tables are written under OUT_DIR as a full recompute (no 24-hour session cap,
no runs ledger, no folding of rare event names into "(other)"):
  quarantine   the rows missing user_id, event_id, event_name or event_ts (null or blank), as JSON, by event_date;
  sessions     sessionlake's sessions columns: 30-minute inactivity sessions of the earliest copy of each event id;
  users        user_id, first_seen, sessions;
  kpis         sessionlake's KPI columns but is_complete, by day / ISO week / month and dimension (all, platform,
               country, user_type new or returning), with exact distinct users and exact percentiles;
  action_kpis  the action mix, in the same groups.
Prints one JSON line: the seconds of the work (the JVM's start excluded) and the sessions written.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from delta import DeltaTable, configure_spark_with_delta_pip
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

INACTIVITY_TIMEOUT_US = 30 * 60 * 1_000_000
CONVERSION_EVENT = "purchase"
ENGAGED_DURATION_US = 10 * 1_000_000
ENGAGED_ACTIONS = 2
SEGMENTS = ("platform", "country")
UNKNOWN_SEGMENT = "unknown"  # a segment that is null or blank on a session's first event
REQUIRED_TEXT = ("user_id", "event_id", "event_name")  # and event_ts
QUANTILES = {"median_duration_seconds": 0.5, "p90_duration_seconds": 0.9}
GROUP = ["period", "period_start", "dimension", "dimension_value"]
KPI_COLUMNS = (
    *GROUP, "sessions", "users", "actions", "aps", "spu",
    "total_duration_seconds", "avg_duration_seconds", *QUANTILES,
    "bounces", "bounce_rate", "engaged_sessions", "engagement_rate",
    "converting_sessions", "conversion_rate", "converting_users", "user_conversion_rate",
)
ACTION_KPI_COLUMNS = (
    *GROUP, "event_name", "actions", "sessions_with_action", "users_with_action", "sessions", "total_actions",
    "actions_per_session", "share_of_actions",
)


def spark_session() -> SparkSession:
    builder = (
        SparkSession.builder.master("local[*]").appName("by-hand")
        .config("spark.driver.memory", "4g")
        # Two tasks per core after a shuffle; Spark's 200 cost more than the work on one machine.
        .config("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 1)))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.databricks.delta.snapshotPartitions", "4")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
    )
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def with_reject_reason(events: DataFrame) -> DataFrame:
    """Add reject_reason: null for a usable row, else missing_<the first of the required fields it lacks>."""
    missing = {
        **{name: F.col(name).isNull() | (F.trim(name) == "") for name in REQUIRED_TEXT},
        "event_ts": F.col("event_ts").cast("timestamp").isNull(),  # text that is no timestamp is missing too
    }
    reason = F.coalesce(*[F.when(is_missing, F.lit(f"missing_{name}")) for name, is_missing in missing.items()])
    return events.withColumn("reject_reason", reason)


def valid_events(checked: DataFrame) -> DataFrame:
    """The rows without a reject_reason, event_ts an instant: one without time zone (TIMESTAMP_NTZ) is taken as
    UTC, the session's time zone."""
    return (
        checked
        .where(F.col("reject_reason").isNull())
        .withColumn("event_ts", F.col("event_ts").cast("timestamp"))
        .drop("reject_reason")
    )


def to_quarantine(checked: DataFrame, columns: list[str]) -> DataFrame:
    return checked.where(F.col("reject_reason").isNotNull()).select(
        "event_date", "reject_reason", F.to_json(F.struct(*columns), {"ignoreNullFields": "false"}).alias("raw_row")
    )


def first_copies(valid: DataFrame) -> DataFrame:
    """The earliest copy of each (user_id, event_id); ties broken by the copy's other values."""
    copies = Window.partitionBy("user_id", "event_id").orderBy("event_ts", "event_name", *SEGMENTS)
    return (
        valid
        .withColumn("copy_number", F.row_number().over(copies))
        .where(F.col("copy_number") == 1)
        .drop("copy_number")
    )


def with_session_marks(events: DataFrame) -> DataFrame:
    """Add along each user's timeline: event_index (1, 2, ...), session_number (a gap over the timeout opens the
    next), first_seen (the user's first event) and the session's first event's id and segments (on every row)."""
    # event_id breaks timestamp ties, so the same events are always sessionized the same way.
    timeline = Window.partitionBy("user_id").orderBy("event_ts", "event_id")
    so_far = timeline.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    gap_us = F.unix_micros("event_ts") - F.unix_micros(F.lag("event_ts").over(timeline))
    opening = F.col("is_new_session")

    def of_opening_event(value: Column) -> Column:
        return F.last(F.when(opening, value), ignorenulls=True).over(so_far)

    return (
        events
        .withColumns({
            "is_new_session": gap_us.isNull() | (gap_us > INACTIVITY_TIMEOUT_US),
            "event_index": F.row_number().over(timeline),
            "first_seen": F.first("event_ts").over(so_far),
        })
        .withColumns({
            "session_number": F.sum(opening.cast("long")).over(so_far),
            "first_event_id": of_opening_event(F.col("event_id")),
            **{s: of_opening_event(F.when(F.trim(s) != "", F.col(s)).otherwise(F.lit(UNKNOWN_SEGMENT)))
               for s in SEGMENTS},
        })
    )


def to_sessions(marked: DataFrame) -> DataFrame:
    """Marked events -> one row per session, sessionlake's sessions columns and first_seen: summed by session and
    event name first (a hash aggregate), then by session."""
    session = ["user_id", "session_number", "first_event_id", *SEGMENTS]
    is_conversion = F.col("event_name") == CONVERSION_EVENT
    by_name = marked.groupBy(*session, "event_name").agg(
        F.count(F.lit(1)).alias("name_actions"),
        F.min("event_ts").alias("name_first_ts"),
        F.max("event_ts").alias("name_last_ts"),
        F.min("event_index").alias("name_first_index"),
        F.min("first_seen").alias("first_seen"),
    )
    summed = by_name.groupBy(*session).agg(
        F.min("name_first_ts").alias("session_start"),
        F.max("name_last_ts").alias("session_end"),
        F.sum("name_actions").alias("actions"),
        F.min("name_first_index").alias("first_index"),
        F.coalesce(F.sum(F.when(is_conversion, F.col("name_actions"))), F.lit(0).cast("long")).alias("conversions"),
        F.min(F.when(is_conversion, F.col("name_first_ts"))).alias("first_conversion_ts"),
        F.min(F.when(is_conversion, F.col("name_first_index"))).alias("conversion_index"),
        # Sorted by name, so the same events always give the same map.
        F.map_from_entries(F.array_sort(F.collect_list(F.struct("event_name", "name_actions")))).alias("action_counts"),
        F.min("first_seen").alias("first_seen"),
    )
    duration_us = F.unix_micros("session_end") - F.unix_micros("session_start")
    is_long = duration_us >= ENGAGED_DURATION_US
    is_engaged = is_long | (F.col("actions") >= ENGAGED_ACTIONS) | (F.col("conversions") > 0)
    return summed.select(
        F.md5(F.to_json(F.struct("user_id", F.col("first_event_id").alias("event_id")))).alias("session_id"),
        "user_id", "session_start", "session_end",
        (duration_us / 1_000_000).alias("duration_seconds"),
        "actions", "session_number",
        F.to_date("session_start").alias("session_date"),
        (F.col("actions") == 1).alias("is_bounce"),
        is_engaged.alias("is_engaged"),
        "conversions",
        (F.col("conversions") > 0).alias("converted"),
        "first_conversion_ts",
        (F.col("conversion_index") - F.col("first_index") + 1).cast("long").alias("actions_to_conversion"),
        "action_counts", *SEGMENTS, "first_seen",
    )


def to_users(sessions: DataFrame) -> DataFrame:
    return sessions.groupBy("user_id").agg(F.min("first_seen").alias("first_seen"), F.count(F.lit(1)).alias("sessions"))


def _starts(day: Column) -> dict[str, Column]:
    # Each period kind's first day for a date: the day, its ISO week's Monday, its month's first day.
    return {"day": day, "week": F.trunc(day, "week"), "month": F.trunc(day, "month")}


def in_groups(sessions: DataFrame, *columns: str | Column) -> DataFrame:
    """Each session once per period kind and dimension (GROUP's columns), with `columns`. A user is new in the
    periods that contain their first_seen day, else returning."""
    starts, first_seen_starts = _starts(F.col("session_date")), _starts(F.to_date("first_seen"))
    groups = []
    for period, start in starts.items():
        user_type = F.when(first_seen_starts[period] == start, F.lit("new")).otherwise(F.lit("returning"))
        dimensions = {"all": F.lit("all"), **{s: F.col(s) for s in SEGMENTS}, "user_type": user_type}
        groups += [
            F.struct(F.lit(period).alias("period"), start.alias("period_start"), F.lit(dimension).alias("dimension"),
                     value.alias("dimension_value"))
            for dimension, value in dimensions.items()
        ]
    return sessions.select(*columns, F.inline(F.array(*groups)))


def kpis_by_group(sessions: DataFrame) -> DataFrame:
    """KPI_COLUMNS per group. Distinct users come from one row per group and user (the sessions are partitioned
    by user, so that step needs no shuffle); the percentiles are Spark's exact `percentile`."""
    def count_of(flag: str) -> Column:
        return F.count_if(F.col(flag))

    def ratio(numerator: str, denominator: str) -> Column:
        return F.col(numerator) / F.col(denominator)

    duration_us = F.unix_micros("session_end") - F.unix_micros("session_start")  # sums exactly, in any order
    rows = in_groups(sessions, "user_id", "actions", "duration_seconds", "is_bounce", "is_engaged", "converted",
                     duration_us.alias("duration_us"))
    user_groups = rows.groupBy(*GROUP, "user_id").agg(
        F.count(F.lit(1)).alias("sessions"),
        F.sum("actions").alias("actions"),
        F.sum("duration_us").alias("duration_us"),
        count_of("is_bounce").alias("bounces"),
        count_of("is_engaged").alias("engaged_sessions"),
        count_of("converted").alias("converting_sessions"),
        F.max(F.col("converted").cast("long")).alias("converting"),
    )
    summed = ["sessions", "actions", "duration_us", "bounces", "engaged_sessions", "converting_sessions"]
    counts = user_groups.groupBy(*GROUP).agg(
        *[F.sum(c).alias(c) for c in summed],
        F.count(F.lit(1)).alias("users"),
        F.sum("converting").alias("converting_users"),
    )
    percentiles = rows.groupBy(*GROUP).agg(
        F.percentile("duration_seconds", list(QUANTILES.values())).alias("duration_percentiles")
    )
    return (
        counts
        .join(percentiles, on=GROUP, how="inner")
        .withColumns({
            **{name: F.col("duration_percentiles")[i] for i, name in enumerate(QUANTILES)},
            "aps": ratio("actions", "sessions"),
            "spu": ratio("sessions", "users"),
            "total_duration_seconds": F.col("duration_us") / 1_000_000,
            "avg_duration_seconds": F.col("duration_us") / 1_000_000 / F.col("sessions"),
            "bounce_rate": ratio("bounces", "sessions"),
            "engagement_rate": ratio("engaged_sessions", "sessions"),
            "conversion_rate": ratio("converting_sessions", "sessions"),
            "user_conversion_rate": ratio("converting_users", "users"),
        })
        .select(*KPI_COLUMNS)
    )


def action_kpis_by_group(sessions: DataFrame, kpis: DataFrame) -> DataFrame:
    """ACTION_KPI_COLUMNS per group and event name, from the sessions' action_counts and the groups' sessions and
    actions in `kpis`."""
    names = in_groups(sessions, "user_id", F.explode("action_counts").alias("event_name", "name_actions"))
    by_user = names.groupBy(*GROUP, "event_name", "user_id").agg(
        F.sum("name_actions").alias("actions"), F.count(F.lit(1)).alias("sessions_with_action")
    )
    mix = by_user.groupBy(*GROUP, "event_name").agg(
        F.sum("actions").alias("actions"), F.sum("sessions_with_action").alias("sessions_with_action"),
        F.count(F.lit(1)).alias("users_with_action"),
    )
    totals = kpis.select(*GROUP, "sessions", F.col("actions").alias("total_actions"))
    return (
        mix
        .join(F.broadcast(totals), on=GROUP, how="inner")
        .withColumns({
            "actions_per_session": F.col("actions") / F.col("sessions"),
            "share_of_actions": F.col("actions") / F.col("total_actions"),
        })
        .select(*ACTION_KPI_COLUMNS)
    )


def write_delta(frame: DataFrame, path: str, partition_column: str | None = None) -> None:
    writer = frame.write.format("delta").mode("overwrite")
    (writer.partitionBy(partition_column) if partition_column else writer).save(path)


def written_rows(spark: SparkSession, path: str) -> int:
    """The rows the table's last commit wrote, from Delta's commit metrics."""
    metrics = DeltaTable.forPath(spark, path).history(1).select("operationMetrics").first()[0]
    return int(metrics["numOutputRows"])


def run(spark: SparkSession, events_path: str, out: str) -> int:
    """Write the five tables under `out`; the sessions written."""
    events = spark.read.parquet(events_path)
    checked = with_reject_reason(events)
    write_delta(to_quarantine(checked, events.columns), f"{out}/quarantine", "event_date")

    # The one shuffle of the events: dedup, timeline and both sums are keyed by user_id.
    marked = valid_events(checked).repartition("user_id").transform(first_copies).transform(with_session_marks)
    # Persisted once: read by the sessions, users, KPI and action mix steps.
    sessions = to_sessions(marked).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        write_delta(sessions.drop("first_seen"), f"{out}/sessions", "session_date")
        write_delta(to_users(sessions), f"{out}/users")
        # A few hundred rows: one file per period.
        write_delta(kpis_by_group(sessions).coalesce(1), f"{out}/kpis", "period")
        kpis = spark.read.format("delta").load(f"{out}/kpis")
        write_delta(action_kpis_by_group(sessions, kpis).coalesce(1), f"{out}/action_kpis", "period")
    finally:
        sessions.unpersist()
    return written_rows(spark, f"{out}/sessions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="the events' folder (parquet, event_date=YYYY-MM-DD partitions)")
    parser.add_argument("out", help="the folder of the Delta tables, replaced")
    args = parser.parse_args()
    spark = spark_session()
    started = time.perf_counter()
    sessions = run(spark, args.events, args.out.rstrip("/"))
    print(json.dumps({"seconds": time.perf_counter() - started, "sessions": sessions}), flush=True)


if __name__ == "__main__":
    main()
