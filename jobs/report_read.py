"""The report's edge: the job's Delta tables -> pandas frames with delta-rs (the `deltalake` package): no Spark,
no JVM."""

from __future__ import annotations

from datetime import date

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
    kpis = _read(output.table_path(Table.KPIS))
    if kpis is not None and first_day is not None:
        kpis = kpis[kpis["period_start"] >= first_day]
    if kpis is not None and last_day is not None:
        kpis = kpis[kpis["period_start"] <= last_day]
    action_kpis = _read(output.table_path(Table.ACTION_KPIS))
    if action_kpis is not None and first_day is not None:
        action_kpis = action_kpis[action_kpis["period_start"] >= first_day]
    if action_kpis is not None and last_day is not None:
        action_kpis = action_kpis[action_kpis["period_start"] <= last_day]
    return ReportTables(
        kpis=kpis,
        experiments=_read(output.table_path(Table.EXPERIMENTS)),
        action_kpis=action_kpis,
        runs=_read(output.table_path(Table.RUNS)),
    )


def _read(path: str):
    if not DeltaTable.is_deltatable(path):
        return None
    return DeltaTable(path).to_pandas()
