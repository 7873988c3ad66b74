"""The report's edge: the job's Delta tables -> pandas frames with delta-rs (the `deltalake` package): no Spark,
no JVM."""

from __future__ import annotations

from datetime import date

import pandas as pd
from deltalake import DeltaTable

from jobs.config import OutputSpec, Table
from jobs.report import ReportTables


class ReportInputError(Exception):
    """The tables cannot be read for a report (a catalog output without a folder, say)."""


def read_report_tables(output: OutputSpec, first_day: date | None = None, last_day: date | None = None) -> ReportTables:
    """The rows of the tables under `output.path`, kpis limited to periods starting in [first_day, last_day] when
    given; a table that does not exist is None."""
    if output.path is None:
        raise ReportInputError(f"output.catalog {output.catalog!r}: the report reads the tables' files with delta-rs, "
                               "which does not know Spark's catalog; give --output with the schema's folder")
    return ReportTables(
        kpis=_periods_in(_read(output.table_path(Table.KPIS)), first_day, last_day),
        experiments=_read(output.table_path(Table.EXPERIMENTS)),
        action_kpis=_periods_in(_read(output.table_path(Table.ACTION_KPIS)), first_day, last_day),
        runs=_read(output.table_path(Table.RUNS)),
    )


def _periods_in(rows: pd.DataFrame | None, first_day: date | None, last_day: date | None) -> pd.DataFrame | None:
    """The rows of periods starting in [first_day, last_day] (either end open when None)."""
    if rows is None:
        return None
    if first_day is not None:
        rows = rows[rows["period_start"] >= first_day]
    if last_day is not None:
        rows = rows[rows["period_start"] <= last_day]
    return rows


def _read(path: str) -> pd.DataFrame | None:
    if not DeltaTable.is_deltatable(path):
        return None
    return DeltaTable(path).to_pandas()
