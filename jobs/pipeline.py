"""Runs the stages in order: read -> validate -> sessionize -> write sessions/quarantine/users -> KPIs."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.config import JobConfig
from jobs.metrics import in_periods, kpis_by_period, periods_touched
from jobs.read import read_events, read_table
from jobs.sessionize import first_seen_by_user, session_counts_before, sessionize, with_session_numbers
from jobs.validate import to_quarantine, valid_events, with_reject_reason
from jobs.write import merge_first_seen, replace_days, replace_kpis

log = logging.getLogger(__name__)


class Table(StrEnum):
    SESSIONS = "sessions"
    KPIS = "kpis"
    USERS = "users"
    QUARANTINE = "quarantine"


def table_path(config: JobConfig, table: Table) -> str:
    """Where `table` lives: a path-based Delta table under output.path."""
    return f"{config.output.path.rstrip('/')}/{table.value}"


def input_days(first_day: date, last_day: date, timezone: str, max_session_duration: timedelta) -> tuple[date, date]:
    """The UTC input partitions a run of reporting days [first_day, last_day] reads.

    They cover the run's days in the reporting zone, widened on both sides by max_session_duration: before,
    so an event just after the first midnight is seen to continue a session begun the day before (that session
    belongs to the earlier day, not to this run); after, so a session starting on last_day is complete.
    """
    zone = ZoneInfo(timezone)
    start = datetime.combine(first_day, time(), zone).astimezone(ZoneInfo("UTC"))
    end = datetime.combine(last_day + timedelta(days=1), time(), zone).astimezone(ZoneInfo("UTC"))
    return (start - max_session_duration).date(), (end + max_session_duration).date()


@dataclass(frozen=True)
class RunResult:
    run_id: str
    first_day: date
    last_day: date


def run(spark: SparkSession, config: JobConfig, first_day: date, last_day: date) -> RunResult:
    """Sessionize reporting days [first_day, last_day] and replace their rows in every output table."""
    run_id = uuid.uuid4().hex
    rules = config.sessionization
    segments = config.reporting.segments
    timezone = config.reporting.timezone
    first_input, last_input = input_days(first_day, last_day, timezone, rules.max_session_duration)
    log.info(
        "run %s: days %s..%s (%s), reading input partitions %s..%s from %s",
        run_id, first_day, last_day, timezone, first_input, last_input, config.input.path,
    )

    checked = read_events(spark, config.input, segments, first_input, last_input).transform(with_reject_reason)
    sessions_path = table_path(config, Table.SESSIONS)
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
    replace_days(sessions, sessions_path, "session_date", first_day, last_day, Table.SESSIONS.value)

    # Rejected rows belong to the run that owns their input partition, so reruns replace them exactly.
    quarantine = to_quarantine(checked.where(F.col("event_date").between(F.lit(first_day), F.lit(last_day))), run_id)
    replace_days(quarantine, table_path(config, Table.QUARANTINE), "event_date", first_day, last_day, "quarantine")

    # Later stages read the sessions back from Delta instead of recomputing them from the events.
    stored_sessions = spark.read.format("delta").load(sessions_path)
    run_sessions = stored_sessions.where(F.col("session_date").between(F.lit(first_day), F.lit(last_day)))
    users_path = table_path(config, Table.USERS)
    merge_first_seen(first_seen_by_user(run_sessions), users_path)

    periods = periods_touched(first_day, last_day)
    kpi_first_day = min(span.first_start for span in periods)
    kpi_last_day = max(span.last_day for span in periods)
    period_sessions = stored_sessions.where(F.col("session_date").between(F.lit(kpi_first_day), F.lit(kpi_last_day)))
    users = spark.read.format("delta").load(users_path)
    kpis = kpis_by_period(period_sessions, users, segments, timezone).where(in_periods(periods))
    replace_kpis(kpis, table_path(config, Table.KPIS), periods)
    log.info("run %s: done", run_id)
    return RunResult(run_id, first_day, last_day)


def summary(spark: SparkSession, config: JobConfig, first_day: date, last_day: date) -> str:
    """A short text report of the run's KPI rows (dimension `all`) and quarantined rows by reason."""
    periods = periods_touched(first_day, last_day)
    kpi_rows = (
        spark.read.format("delta").load(table_path(config, Table.KPIS))
        .where(in_periods(periods) & (F.col("dimension") == "all"))
        .orderBy(F.col("period").desc(), "period_start")  # week, month, day
        .collect()  # a handful of rows: one per period
    )
    lines = [
        f"sessionlake: {first_day}..{last_day} ({config.reporting.timezone}) -> {config.output.path}",
        f"{'period':<6} {'start':<10} {'sessions':>10} {'users':>8} {'actions':>11} {'APS':>7} {'SPU':>6}",
    ]
    for row in kpi_rows:
        lines.append(
            f"{row['period']:<6} {row['period_start'].isoformat():<10} {row['sessions']:>10,} {row['users']:>8,}"
            f" {row['actions']:>11,} {row['aps']:>7.2f} {row['spu']:>6.2f}"
        )
    quarantine = read_table(spark, table_path(config, Table.QUARANTINE))
    if quarantine is not None:
        reasons = (
            quarantine.where(F.col("event_date").between(F.lit(first_day), F.lit(last_day)))
            .groupBy("reject_reason").count().orderBy("reject_reason").collect()  # one row per reason
        )
        quarantined = ", ".join(f"{r['reject_reason']}: {r['count']:,}" for r in reasons) or "none"
        lines.append(f"quarantined rows: {quarantined}")
    return "\n".join(lines)
