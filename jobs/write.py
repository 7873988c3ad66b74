"""Frames -> Delta tables under output.path (the only module that writes)."""

from __future__ import annotations

import logging
from datetime import date

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.config import Table
from jobs.metrics import PeriodRange

log = logging.getLogger(__name__)


def _between(column: str, first: date, last: date) -> str:
    return f"{column} >= '{first.isoformat()}' AND {column} <= '{last.isoformat()}'"


def _log_last_operation(spark: SparkSession, path: str, table: Table) -> None:
    # Row counts come from Delta's own commit metrics, never from an extra count() of the data.
    last = DeltaTable.forPath(spark, path).history(1).select("operation", "operationMetrics").first()
    metrics = last["operationMetrics"] or {}
    shown = {k: v for k, v in metrics.items() if k.startswith("num") and "Rows" in k or k == "numFiles"}
    log.info("%s: %s %s", table, last["operation"], shown)


def _replace_where(frame: DataFrame, path: str, predicate: str, partition_column: str, table: Table) -> None:
    # Overwrite exactly the rows matching `predicate`: Delta rejects written rows outside it, and a rerun replaces
    # rather than appends, so reruns are idempotent.
    (
        frame.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", predicate)
        .partitionBy(partition_column)
        .save(path)
    )
    _log_last_operation(frame.sparkSession, path, table)


def replace_sessions(sessions: DataFrame, path: str, first_day: date, last_day: date) -> None:
    """Overwrite exactly the sessions of session_date [first_day, last_day]; other days stay untouched."""
    _replace_where(sessions, path, _between("session_date", first_day, last_day), "session_date", Table.SESSIONS)


def replace_quarantine(quarantine: DataFrame, path: str, first_day: date, last_day: date) -> None:
    """Overwrite the quarantine rows of partitions [first_day, last_day] and the undated ones (event_date null).

    Every run reads the undated rows again, so each run replaces them: they are never duplicated.
    """
    predicate = f"({_between('event_date', first_day, last_day)}) OR event_date IS NULL"
    _replace_where(quarantine, path, predicate, "event_date", Table.QUARANTINE)


def replace_kpis(kpis: DataFrame, path: str, periods: tuple[PeriodRange, ...]) -> None:
    """Overwrite exactly the kpis rows of `periods` (each kind's range of period starts)."""
    predicate = " OR ".join(
        f"(period = '{span.period.value}' AND {_between('period_start', span.first_start, span.last_start)})"
        for span in periods
    )
    _replace_where(kpis, path, predicate, "period", Table.KPIS)


def merge_first_seen(first_seen: DataFrame, path: str) -> None:
    """Upsert users (user_id, first_seen), keeping each user's earliest first_seen across runs."""
    spark = first_seen.sparkSession
    if not DeltaTable.isDeltaTable(spark, path):
        first_seen.write.format("delta").mode("overwrite").save(path)
    else:
        same_user = F.col("stored.user_id") == F.col("run.user_id")
        earlier = F.col("run.first_seen") < F.col("stored.first_seen")
        (
            DeltaTable.forPath(spark, path).alias("stored")
            .merge(first_seen.alias("run"), same_user)
            .whenMatchedUpdate(condition=earlier, set={"first_seen": F.col("run.first_seen")})
            .whenNotMatchedInsertAll()
            .execute()
        )
    _log_last_operation(spark, path, Table.USERS)
