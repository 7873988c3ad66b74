"""Frames -> Delta tables under output.path or in output.catalog (the only module that writes)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from functools import reduce
from operator import and_
from typing import NamedTuple

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import MapType, StructField

from jobs.config import Table, TableName
from jobs.errors import OutputError
from jobs.periods import Periods
from jobs.costs import DELTA_COMMITS, DELTA_READS, count
from jobs.read import delta_table, table_exists

log = logging.getLogger(__name__)

# Delta's commit conflicts: another writer committed something this transaction read or rewrote.
CONFLICTS = (
    DeltaConcurrentModificationException,
    ConcurrentWriteException,
    MetadataChangedException,
    ProtocolChangedException,
    ConcurrentAppendException,
    ConcurrentDeleteReadException,
    ConcurrentDeleteDeleteException,
    ConcurrentTransactionException,
)


_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


def require_schema(spark: SparkSession, schema: str | None) -> None:
    """Check that the catalog schema the tables go to exists (None: tables are paths). Creating schemas is left to
    whoever owns the catalog: on a shared platform it takes privileges a daily job should not hold."""
    if schema is not None and not spark.catalog.databaseExists(schema):
        raise OutputError(f"output.catalog {schema!r}: no such schema in the session's catalog; create it first "
                          f"(CREATE SCHEMA {schema})")


@contextmanager
def tagged_commits(spark: SparkSession, tag: str) -> Iterator[None]:
    """Tag every Delta commit made inside the block with `tag` (its commitInfo.userMetadata), so each table's own
    history says which run wrote what."""
    previous = spark.conf.get(_USER_METADATA, None)
    spark.conf.set(_USER_METADATA, tag)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(_USER_METADATA)
        else:
            spark.conf.set(_USER_METADATA, previous)


def _date(day: date) -> str:
    # A typed literal: compared with a date column, text would be cast one way or the other depending on ANSI mode,
    # and a catalog table's overwrite only takes a predicate Spark can pass to Delta as a plain filter.
    return f"DATE'{day.isoformat()}'"


def _between(column: str, first: date, last: date) -> str:
    return f"{column} >= {_date(first)} AND {column} <= {_date(last)}"


def _create_if_missing(frame: DataFrame, table: str, partition_column: str | None = None) -> None:
    # A catalog table is created empty before its first write: in Spark 4.2 a query that itself creates a table
    # (CREATE TABLE AS SELECT) loses the metrics observed on it, which the run's accounting reads.
    if not isinstance(table, TableName) or table_exists(frame.sparkSession, table):
        return
    writer = frame.sparkSession.createDataFrame([], frame.schema).writeTo(table).using("delta")
    if partition_column is not None:
        writer = writer.partitionedBy(F.col(partition_column))
    count(DELTA_COMMITS)
    writer.create()


def _append(frame: DataFrame, table: str) -> None:
    # New columns are added to the table (mergeSchema): a table written by an older version gains them.
    _create_if_missing(frame, table)
    writer = frame.write.format("delta").mode("append").option("mergeSchema", "true")
    count(DELTA_COMMITS)
    if isinstance(table, TableName):
        writer.saveAsTable(table)
    else:
        writer.save(table)


class _Commit(NamedTuple):
    """A table's latest commit: its version, operation and Delta's own metrics of it (rows, files)."""

    version: int
    operation: str
    metrics: dict[str, str]


def _last_commit(stored: DeltaTable | None) -> _Commit | None:
    """The latest commit of the `stored` table, or None when there is no table yet. A handle's history is read
    from the log as it is now, whatever commits came after the handle was made."""
    if stored is None:
        return None
    count(DELTA_READS)
    last = stored.history(1).select("version", "operation", "operationMetrics").first()
    return _Commit(last["version"], last["operation"], last["operationMetrics"] or {})


def _write_metrics(stored: DeltaTable, table: Table, before: _Commit | None) -> dict[str, str] | None:
    """Delta's metrics of the write that committed just after `before`, or None when it committed nothing (a write
    that changes nothing may commit nothing). The output's lock keeps other runs out, but a platform may commit
    after the write (Databricks' auto compaction): the metrics are those of the first commit after `before`."""
    after = _last_commit(stored)
    written_version = 0 if before is None else before.version + 1
    if after is None or after.version < written_version:
        return None
    written = after
    if after.version > written_version:
        count(DELTA_READS)
        row = (
            stored.history(after.version - written_version + 1)
            .where(F.col("version") == written_version)
            .select("operation", "operationMetrics")
            .first()
        )
        written = _Commit(written_version, row["operation"], row["operationMetrics"] or {})
    shown = {k: v for k, v in written.metrics.items() if k.startswith("num") and "Rows" in k or k == "numFiles"}
    log.debug("%s: %s %s", table, written.operation, shown)
    return written.metrics


class MergeCounts(NamedTuple):
    """Rows a MERGE inserted, updated and deleted."""

    inserted: int
    updated: int
    deleted: int


def _merge_counts(result: DataFrame) -> MergeCounts:
    """A MERGE's counts from the one-row frame Delta's `execute()` returns (its own metrics, whatever commits later)."""
    row = result.first()
    return MergeCounts(row["num_inserted_rows"], row["num_updated_rows"], row["num_deleted_rows"])


def _add_new_columns(frame: DataFrame, table: str, stored: DeltaTable) -> None:
    """Add to the `stored` table (at `table`) the columns of `frame` it lacks: a table written by an older version
    of the job gains the columns added since, null in its old rows until their days are run again."""
    names = set(stored.toDF().columns)
    new = [field for field in frame.schema.fields if field.name not in names]
    if not new:
        return
    target = table if isinstance(table, TableName) else f"delta.`{table}`"
    # Delta has no DataFrame call for this; names are quoted, so a segment named like a keyword (order) works.
    columns = ", ".join(f"`{field.name}` {field.dataType.simpleString()}" for field in new)
    count(DELTA_COMMITS)
    frame.sparkSession.sql(f"ALTER TABLE {target} ADD COLUMNS ({columns})")
    log.warning("%s: added the columns %s, which this version of the job writes; rows written before are null in "
                "them until their days are run again (--from/--to)", table, ", ".join(f.name for f in new))


def _stored(spark: SparkSession, table: str) -> DeltaTable | None:
    """A handle on the Delta table at `table`, or None when there is none yet."""
    return delta_table(spark, table) if table_exists(spark, table) else None


def _replace_where(frame: DataFrame, path: str, predicate: str, partition_column: str, table: Table) -> int:
    # Overwrite exactly the rows matching `predicate`: Delta rejects written rows outside it, and a rerun replaces
    # rather than appends, so reruns are idempotent.
    _create_if_missing(frame, path, partition_column)
    stored = _stored(frame.sparkSession, path)
    if stored is not None:
        _add_new_columns(frame, path, stored)
    before = _last_commit(stored)
    # Optimized write: Delta shuffles the rows by partition value first, so each day gets a few full files instead
    # of a small file from every task that holds some of its rows.
    count(DELTA_COMMITS)
    if isinstance(path, TableName):
        # Delta's replaceWhere, for a catalog table.
        frame.writeTo(path).option("optimizeWrite", "true").overwrite(F.expr(predicate))
    else:
        (
            frame.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", predicate)
            .option("optimizeWrite", "true")
            .partitionBy(partition_column)
            .save(path)
        )
    # One handle serves before and after: its history is read afresh (a first write has to make one).
    metrics = _write_metrics(stored or delta_table(frame.sparkSession, path), table, before)
    if metrics is None:
        log.info("%s: nothing to commit", table)
        return 0
    if not metrics:
        raise RuntimeError(f"{table}: Delta recorded no commit metrics; the job counts rows from them, so "
                           "spark.databricks.delta.history.metricsEnabled must stay true")
    # The rows this write put in: a rewritten file's rows outside the predicate are written again, as copies.
    return int(metrics.get("numOutputRows", 0)) - int(metrics.get("numCopiedRows", 0))  # absent: no file written


def replace_sessions(sessions: DataFrame, path: str, first_day: date, last_day: date) -> int:
    """Overwrite exactly the sessions of session_date [first_day, last_day]; other days stay untouched. Returns
    the rows written."""
    return _replace_where(sessions, path, _between("session_date", first_day, last_day), "session_date", Table.SESSIONS)


def replace_quarantine(quarantine: DataFrame, path: str, first_day: date, last_day: date) -> int:
    """Overwrite the quarantine rows of partitions [first_day, last_day] and the undated ones (event_date null).

    Every run reads the undated rows again, so each run replaces them: they are never duplicated. Returns the rows
    written.
    """
    predicate = f"({_between('event_date', first_day, last_day)}) OR event_date IS NULL"
    return _replace_where(quarantine, path, predicate, "event_date", Table.QUARANTINE)


def replace_assignments(assignments: DataFrame, path: str, first_day: date, last_day: date) -> int:
    """Overwrite the assignments read off the events of input partitions [first_day, last_day]; the rows written.
    A rerun of a partition replaces what it assigned, so a late event moves an assignment earlier, never twice."""
    return _replace_where(
        assignments, path, _between("event_date", first_day, last_day), "event_date", Table.ASSIGNMENTS
    )


def replace_kpis(kpis: DataFrame, path: str, periods: Periods, table: Table = Table.KPIS) -> int:
    """Overwrite exactly the rows of `periods` (for each kind, a set of period starts) in the kpis table, or in
    another table of periods (action_kpis); the rows written."""
    predicate = " OR ".join(
        f"(period = '{period.value}' AND period_start IN ({', '.join(_date(start) for start in sorted(starts))}))"
        for period, starts in periods.items()
        if starts
    )
    return _replace_where(kpis, path, predicate, "period", table)


def replace_experiments(experiments: DataFrame, path: str) -> None:
    """Overwrite the whole experiments table: each run recomputes it whole from the stored sessions and the
    assignments, so it is always what a full recompute gives."""
    count(DELTA_COMMITS)
    if isinstance(path, TableName):
        experiments.writeTo(path).using("delta").createOrReplace()
    else:
        experiments.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)


def _comparable(column: str, field: StructField) -> Column:
    # Spark cannot compare maps; their entries, in key order, compare the same way.
    if isinstance(field.dataType, MapType):
        return F.array_sort(F.map_entries(F.col(column)))
    return F.col(column)


def update_sessions(changed: DataFrame, path: str, first_day: date) -> int:
    """Update stored sessions (matched by session_id) to the rows of `changed`: extended anchors and renumbered
    later sessions; the rows updated. Rows already equal are left alone, so a rerun rewrites no file; `first_day`
    is the earliest session_date among `changed` (it prunes the partitions read)."""
    spark = changed.sparkSession
    stored = delta_table(spark, path)  # the sessions are written before they are updated
    _add_new_columns(changed, path, stored)
    differs = ~reduce(and_, [_comparable(f"stored.{c}", kind).eqNullSafe(_comparable(f"run.{c}", kind))
                             for c, kind in zip(changed.columns, changed.schema.fields)])
    count(DELTA_COMMITS)
    result = (
        stored.alias("stored")
        .merge(
            changed.alias("run"),
            (F.col("stored.session_date") >= F.lit(first_day))
            & (F.col("stored.session_id") == F.col("run.session_id")),
        )
        .whenMatchedUpdateAll(condition=differs)
        .execute()
    )
    return _merge_counts(result).updated


def merge_users(updates: DataFrame, path: str) -> MergeCounts:
    """Set each updated user's first_seen and sessions; a user left with no sessions is deleted."""
    spark = updates.sparkSession
    _create_if_missing(updates, path)
    count(DELTA_COMMITS)
    if not table_exists(spark, path):
        updates.where(F.col("sessions") > 0).write.format("delta").mode("overwrite").save(path)
        # The first write to a path is a plain WRITE: its rows are all new.
        written = _write_metrics(delta_table(spark, path), Table.USERS, None) or {}
        return MergeCounts(int(written.get("numOutputRows", 0)), 0, 0)
    gone = F.col("run.sessions") == 0
    changed = ~F.col("stored.first_seen").eqNullSafe(F.col("run.first_seen")) | (
        F.col("stored.sessions") != F.col("run.sessions")
    )
    result = (
        delta_table(spark, path).alias("stored")
        .merge(updates.alias("run"), F.col("stored.user_id") == F.col("run.user_id"))
        .whenMatchedDelete(condition=gone)
        .whenMatchedUpdate(
            condition=changed, set={"first_seen": F.col("run.first_seen"), "sessions": F.col("run.sessions")}
        )
        .whenNotMatchedInsertAll(condition=~gone)
        .execute()
    )
    return _merge_counts(result)


def restore_table(spark: SparkSession, path: str, version: int) -> None:
    """Restore the Delta table at `path` to `version` (a new commit; the history keeps what was undone)."""
    count(DELTA_COMMITS)
    delta_table(spark, path).restoreToVersion(version)
    log.info("%s: restored to version %d", path, version)


def append_run(record: DataFrame, path: str, run_id: str) -> None:
    """Add a runs row, tagging the commit with the run id. A blind append never conflicts with another's."""
    # The tag goes through the session setting: a catalog table's writer does not pass the userMetadata option on.
    with tagged_commits(record.sparkSession, run_id):
        _append(record, path)


def update_run(record: DataFrame, path: str, attempts: int = 5) -> None:
    """Replace the runs row of record's run_id with `record`.

    Another run's append can land while this MERGE reads the table; Delta then refuses the commit, and the MERGE is
    simply retried, since it sets absolute values.
    """
    spark = record.sparkSession
    for attempt in range(1, attempts + 1):
        count(DELTA_COMMITS)
        try:
            (
                delta_table(spark, path).alias("stored")
                .merge(record.alias("run"), F.col("stored.run_id") == F.col("run.run_id"))
                .whenMatchedUpdateAll()
                .execute()
            )
            return
        except CONFLICTS:
            if attempt == attempts:
                raise
            log.info("runs: a concurrent commit, retrying the update (attempt %d)", attempt)
