"""Runs the stages in order: read -> validate -> sessionize -> write sessions/quarantine/users -> KPIs."""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.config import JobConfig, Table
from jobs.metrics import ALL, Period, in_periods, kpis_by_period, periods_touched
from jobs.read import InputError, partition_days, read_events, read_table
from jobs.sessionize import first_seen_by_user, session_counts_before, sessionize, with_session_numbers
from jobs.validate import to_quarantine, valid_events, with_reject_reason
from jobs.write import merge_first_seen, replace_kpis, replace_quarantine, replace_sessions

log = logging.getLogger(__name__)


def _utc_span(first_day: date, last_day: date, timezone: str) -> tuple[datetime, datetime]:
    # The UTC instants [start, end) of reporting days [first_day, last_day]; DST days have 23 or 25 hours.
    zone, utc = ZoneInfo(timezone), ZoneInfo("UTC")
    start = datetime.combine(first_day, time(), zone).astimezone(utc)
    end = datetime.combine(last_day + timedelta(days=1), time(), zone).astimezone(utc)
    return start, end


def input_days(first_day: date, last_day: date, timezone: str, max_session_duration: timedelta) -> tuple[date, date]:
    """The UTC input partitions a run of reporting days [first_day, last_day] reads.

    They cover the run's days in the reporting zone, widened on both sides by max_session_duration: before,
    so an event just after the first midnight is seen to continue a session begun the day before (that session
    belongs to the earlier day, not to this run); after, so a session starting on last_day is complete.
    """
    start, end = _utc_span(first_day, last_day, timezone)
    return (start - max_session_duration).date(), (end + max_session_duration).date()


def required_partitions(first_day: date, last_day: date, timezone: str) -> list[date]:
    """The UTC partition dates that reporting days [first_day, last_day] overlap: each must exist for a run."""
    start, end = _utc_span(first_day, last_day, timezone)
    last = (end - timedelta(microseconds=1)).date()
    return [start.date() + timedelta(days=n) for n in range((last - start.date()).days + 1)]


def _require_every_day(events: DataFrame, config: JobConfig, first_day: date, last_day: date) -> None:
    # A run replaces its days in every table, so a day without input would silently erase what was stored.
    present = partition_days(events, config.input.columns.event_date)
    required = required_partitions(first_day, last_day, config.reporting.timezone)
    missing = [day.isoformat() for day in required if day not in present]
    if missing:
        raise InputError(
            f"input {config.input.path!r} has no partition for {', '.join(missing)}; nothing was written "
            "(a run replaces its days, so running a day without input would erase it)"
        )


def _is_owned_by_run(first_day: date, last_day: date) -> Column:
    # A rejected row belongs to the run of its input partition, so reruns replace it exactly; undated rows
    # belong to every run, and each run replaces them.
    return F.col("event_date").between(F.lit(first_day), F.lit(last_day)) | F.col("event_date").isNull()


def run(spark: SparkSession, config: JobConfig, first_day: date, last_day: date) -> str:
    """Sessionize reporting days [first_day, last_day], replace their rows in every output table; the run id."""
    run_id = uuid.uuid4().hex
    rules = config.sessionization
    segments = config.reporting.segments
    timezone = config.reporting.timezone
    first_input, last_input = input_days(first_day, last_day, timezone, rules.max_session_duration)
    log.info(
        "run %s: days %s..%s (%s), reading input partitions %s..%s from %s",
        run_id, first_day, last_day, timezone, first_input, last_input, config.input.path,
    )

    events = read_events(spark, config.input, segments, first_input, last_input)
    _require_every_day(events, config, first_day, last_day)
    checked = events.transform(with_reject_reason)
    sessions_path = config.output.table_path(Table.SESSIONS)
    stored_sessions = read_table(spark, sessions_path)
    counts_before = (
        session_counts_before(stored_sessions, first_day)
        if stored_sessions is not None
        else spark.createDataFrame([], "user_id string, sessions_before long")
    )
    sessions = (
        sessionize(valid_events(checked), rules.inactivity_timeout, rules.max_session_duration, segments, timezone)
        .where(F.col("session_date").between(F.lit(first_day), F.lit(last_day)))
        .transform(with_session_numbers, counts_before, segments)
    )
    replace_sessions(sessions, sessions_path, first_day, last_day)

    quarantine = (
        to_quarantine(checked.where(_is_owned_by_run(first_day, last_day)), run_id)
        .repartition("event_date")  # few rows: one file per day instead of one per input task and day
    )
    replace_quarantine(quarantine, config.output.table_path(Table.QUARANTINE), first_day, last_day)

    # Later stages read the sessions back from Delta instead of recomputing them from the events.
    stored_sessions = read_table(spark, sessions_path)
    run_sessions = stored_sessions.where(F.col("session_date").between(F.lit(first_day), F.lit(last_day)))
    users_path = config.output.table_path(Table.USERS)
    merge_first_seen(first_seen_by_user(run_sessions), users_path)

    periods = periods_touched(first_day, last_day)
    kpi_first_day = min(span.first_start for span in periods)
    kpi_last_day = max(span.last_day for span in periods)
    period_sessions = stored_sessions.where(F.col("session_date").between(F.lit(kpi_first_day), F.lit(kpi_last_day)))
    users = read_table(spark, users_path)
    kpis = kpis_by_period(period_sessions, users, segments, timezone).where(in_periods(periods))
    replace_kpis(kpis, config.output.table_path(Table.KPIS), periods)
    log.info("run %s: done", run_id)
    return run_id


def summary(spark: SparkSession, config: JobConfig, first_day: date, last_day: date) -> str:
    """A short text report of the run's KPI rows (dimension `all`) and quarantined rows by reason."""
    periods = periods_touched(first_day, last_day)
    kpi_rows = (
        read_table(spark, config.output.table_path(Table.KPIS))
        .where(in_periods(periods) & (F.col("dimension") == ALL))
        .collect()  # a handful of rows: one per period
    )
    period_order = [p.value for p in Period]
    kpi_rows.sort(key=lambda row: (period_order.index(row["period"]), row["period_start"]))
    lines = [
        f"sessionlake: {first_day}..{last_day} ({config.reporting.timezone}) -> {config.output.path}",
        f"{'period':<6} {'start':<10} {'sessions':>10} {'users':>8} {'actions':>11} {'APS':>7} {'SPU':>6}",
    ]
    for row in kpi_rows:
        lines.append(
            f"{row['period']:<6} {row['period_start'].isoformat():<10} {row['sessions']:>10,} {row['users']:>8,}"
            f" {row['actions']:>11,} {row['aps']:>7.2f} {row['spu']:>6.2f}"
        )
    quarantine = read_table(spark, config.output.table_path(Table.QUARANTINE))
    if quarantine is not None:
        reasons = (
            quarantine.where(_is_owned_by_run(first_day, last_day))
            .groupBy("reject_reason").count().orderBy("reject_reason").collect()  # one row per reason
        )
        quarantined = ", ".join(f"{r['reject_reason']}: {r['count']:,}" for r in reasons) or "none"
        lines.append(f"quarantined rows: {quarantined}")
    return "\n".join(lines)
