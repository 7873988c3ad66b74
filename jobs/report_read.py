"""The report's edge: the job's Delta tables -> pandas frames, with delta-rs (the `deltalake` package: no Spark, no
JVM) for tables in a folder, with Spark for catalog tables. Only the columns the page draws are read, and only the
rows of the periods asked for."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from jobs.config import ALL, OutputSpec, Table
from jobs.periods import Period, next_start
from jobs.report import PAGE_COLUMNS, ReportTables

if TYPE_CHECKING:  # Spark only for a catalog output: the report runs where only the report extra is installed
    from pyspark.sql import SparkSession

# How far before a range's first day the periods the page needs can start, pushed down to the reader as a bound
# on period_start before the exact test here: the period holding the first day (a month: at most 30 days before
# it), and the period just before that one, which the first tiles change from (at most 30 + 31 days before).
_REACH = timedelta(days=30)
_REACH_BEFORE = timedelta(days=61)


# One table's rows for the page: its columns that the page draws, the rows passing every (column, op, value)
# filter; None when the table does not exist.
Loader = Callable[[Table, list[tuple]], "pd.DataFrame | None"]


def read_report_tables(
    output: OutputSpec, first_day: date | None = None, last_day: date | None = None, spark: SparkSession | None = None
) -> ReportTables:
    """The rows the page draws: the kpis and action_kpis (dimension all) of every period with a day in [first_day,
    last_day] (either end open when None), the kpis of all users for the periods just before the range, each
    experiment's latest window (all users), and the runs; a table that does not exist is None. Tables in a folder
    are read with delta-rs; catalog tables (output.catalog), which delta-rs cannot find, with `spark`."""
    if output.catalog is not None and spark is None:
        raise ValueError("a catalog output is read with Spark: pass spark")
    load = _spark_loader(spark, output) if output.catalog is not None else _delta_rs_loader(output)
    kpis = load(Table.KPIS, _starts_between(first_day, _REACH_BEFORE, last_day))
    in_range = overlapping(kpis, first_day, last_day)
    action_kpis = load(Table.ACTION_KPIS, [*_starts_between(first_day, _REACH, last_day), ("dimension", "=", ALL)])
    experiments = load(Table.EXPERIMENTS, [("dimension", "=", ALL)])
    return ReportTables(
        kpis=in_range,
        kpis_before=None if kpis is None else kpis.drop(in_range.index)[lambda rows: rows["dimension"] == ALL],
        # Booleans are filtered here, not by delta-rs: Spark writes no min/max for a boolean column, and delta-rs
        # 1.6 then skips every file (0 rows for is_latest = true; delta-io/delta-rs#4490).
        experiments=None if experiments is None else experiments[experiments["is_latest"].astype(bool)],
        action_kpis=overlapping(action_kpis, first_day, last_day),
        runs=load(Table.RUNS, []),
    )


def overlapping(rows: pd.DataFrame | None, first_day: date | None, last_day: date | None) -> pd.DataFrame | None:
    """The rows of periods with at least one day in [first_day, last_day] (either end open when None): a range
    from a Wednesday keeps that week and its month, whole."""
    if rows is None or rows.empty or (first_day is None and last_day is None):
        return rows
    keep = pd.Series(True, index=rows.index)
    if first_day is not None:
        keep &= _period_ends(rows) >= first_day
    if last_day is not None:
        keep &= rows["period_start"] <= last_day
    return rows[keep]


def _period_ends(rows: pd.DataFrame) -> pd.Series:
    # Each row's last day, computed once per distinct period.
    starts = rows[["period", "period_start"]].drop_duplicates()
    starts["period_end"] = [next_start(start, Period(period)) - timedelta(days=1)
                            for period, start in starts.itertuples(index=False)]
    ends = rows[["period", "period_start"]].merge(starts, how="left", on=["period", "period_start"])["period_end"]
    return pd.Series(ends.to_numpy(), index=rows.index)


def _starts_between(first_day: date | None, reach: timedelta, latest: date | None) -> list[tuple]:
    # Period starts from `reach` before first_day to latest, as filters for the loaders.
    bounds = []
    if first_day is not None:
        bounds.append(("period_start", ">=", first_day - reach))
    if latest is not None:
        bounds.append(("period_start", "<=", latest))
    return bounds


def _delta_rs_loader(output: OutputSpec) -> Loader:
    # Imported here: a catalog output is read with Spark, so a Databricks task needs no deltalake.
    from deltalake import DeltaTable

    def load(table: Table, filters: list[tuple]) -> pd.DataFrame | None:
        path = output.table_path(table)
        if not DeltaTable.is_deltatable(path):
            return None
        delta_table = DeltaTable(path)
        columns = _page_columns(table, {field.name for field in delta_table.schema().fields})
        return delta_table.to_pandas(columns=columns, filters=filters or None)

    return load


def _spark_loader(spark: SparkSession, output: OutputSpec) -> Loader:
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    zone = spark.conf.get("spark.sql.session.timeZone")

    def load(table: Table, filters: list[tuple]) -> pd.DataFrame | None:
        name = output.table_path(table)
        if not spark.catalog.tableExists(name):
            return None
        rows = spark.read.table(name)
        for column, op, value in filters:
            rows = rows.where(_COMPARE[op](F.col(column), F.lit(value)))
        # toPandas gives an instant as the session zone's wall-clock time; the page shows UTC, as delta-rs reads it.
        columns = [F.to_utc_timestamp(column, zone).alias(column)
                   if isinstance(rows.schema[column].dataType, TimestampType) else F.col(column)
                   for column in _page_columns(table, set(rows.columns))]
        # Aggregates only (periods x segment values, variants, runs): small enough for the driver.
        return rows.select(*columns).toPandas()

    return load


_COMPARE = {"=": operator.eq, ">=": operator.ge, "<=": operator.le}


def _page_columns(table: Table, present: set[str]) -> list[str]:
    # A table written by an older version of the job may lack a column the page draws; its section leaves it out.
    return [column for column in PAGE_COLUMNS[table] if column in present]
