"""The runs ledger: one row per run (a contiguous range of days), what it read and wrote, and what it left.

It is also the job's memory across runs: which days have been processed, from which input and stored state
(DayState), and which run is writing now (the output's lock).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from jobs.costs import Costs
from jobs.plan import DayState

RUNS_SCHEMA = (
    "run_id string, requested_first_day date, requested_last_day date, first_day date, last_day date, "
    "reason string, status string, started_at timestamp, ended_at timestamp, host string, pid long, "
    "sessions_version long, users_version long, wrote_tables boolean, partitions_read array<date>, "
    "rows_read long, rows_deduplicated long, rows_quarantined long, sessions_written long, "
    "day_states array<struct<day: date, input_fingerprint: string, anchor_fingerprint: string>>, "
    "changed_days_not_processed array<date>, message string, "
    "rows_sessionized long, quarantine_reasons map<string, long>, days_without_input array<date>, "
    "rows_non_interactive long, configured_events_seen map<string, long>, action_names_folded long, "
    "empty_days array<date>, "
    "costs map<string, struct<spark_jobs: long, delta_reads: long, delta_commits: long>>"
)

RUNNING, SUCCEEDED, FAILED, REPAIRED = "running", "succeeded", "failed", "repaired"


# A run still marked running this long after it started is taken to be dead, even on another host.
DEAD_AFTER = timedelta(hours=12)


@dataclass(frozen=True)
class RunRecord:
    """One runs row. Versions are the stored tables' versions the run read (None: no table yet, or a run that
    has not yet taken the lock)."""

    run_id: str
    requested_first_day: date
    requested_last_day: date
    first_day: date
    last_day: date
    reason: str
    status: str
    started_at: datetime
    sessions_version: int | None
    users_version: int | None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    ended_at: datetime | None = None
    wrote_tables: bool = False
    partitions_read: tuple[date, ...] = ()
    rows_read: int | None = None
    rows_deduplicated: int | None = None
    rows_quarantined: int | None = None
    sessions_written: int | None = None
    day_states: tuple[DayState, ...] = ()
    changed_days_not_processed: tuple[date, ...] = ()
    message: str | None = None
    rows_sessionized: int | None = None
    quarantine_reasons: dict[str, int] = field(default_factory=dict)  # reason -> rows, for the rows read
    days_without_input: tuple[date, ...] = ()  # asked days skipped: a partition they need is missing
    rows_non_interactive: int | None = None  # valid rows of sessionization.non_interactive_events, not sessionized
    # Rows read of each conversion and non-interactive event name in the config: 0 is most likely a typo.
    configured_events_seen: dict[str, int] = field(default_factory=dict)
    action_names_folded: int | None = None  # distinct event names summed into (other) in action_kpis
    # The run's own input partitions (UTC dates first_day..last_day) that had landed without a single row.
    empty_days: tuple[date, ...] = ()
    # Per stage (and "plan", "claim and repair", "other"): the Spark jobs, Delta reads and commits it made. All of
    # the run's but its runs row's last update.
    costs: dict[str, Costs] = field(default_factory=dict)

    def finished(self, status: str, **changes) -> RunRecord:
        return replace(self, status=status, ended_at=now(), **changes)


def now() -> datetime:
    return datetime.now(timezone.utc)


def to_frame(spark: SparkSession, record: RunRecord) -> DataFrame:
    """The record as a one-row frame with RUNS_SCHEMA."""
    values = {f.name: getattr(record, f.name) for f in fields(RunRecord)}
    values["partitions_read"] = list(record.partitions_read)
    values["changed_days_not_processed"] = list(record.changed_days_not_processed)
    values["days_without_input"] = list(record.days_without_input)
    values["empty_days"] = list(record.empty_days)
    values["costs"] = {stage: (c.spark_jobs, c.delta_reads, c.delta_commits) for stage, c in record.costs.items()}
    values["day_states"] = [(s.day, s.input_fingerprint, s.anchor_fingerprint) for s in record.day_states]
    schema = StructType.fromDDL(RUNS_SCHEMA)
    return spark.createDataFrame([tuple(values[name] for name in schema.fieldNames())], schema)


def from_row(row) -> RunRecord:
    values = row.asDict()
    values["partitions_read"] = tuple(values["partitions_read"] or ())
    values["changed_days_not_processed"] = tuple(values["changed_days_not_processed"] or ())
    # Rows written before a column existed read it as null.
    values["days_without_input"] = tuple(values.get("days_without_input") or ())
    values["empty_days"] = tuple(values.get("empty_days") or ())
    values["costs"] = {stage: Costs(*c) for stage, c in (values.get("costs") or {}).items()}
    values["quarantine_reasons"] = dict(values.get("quarantine_reasons") or {})
    values.setdefault("rows_sessionized", None)
    values.setdefault("rows_non_interactive", None)
    values.setdefault("action_names_folded", None)
    values["configured_events_seen"] = dict(values.get("configured_events_seen") or {})
    values["day_states"] = tuple(DayState(*s) for s in values["day_states"] or ())
    # Spark hands timestamps back naive, in the process's local time zone; astimezone reads them so.
    for name in ("started_at", "ended_at"):
        if values[name] is not None:
            values[name] = values[name].astimezone(timezone.utc)
    return RunRecord(**values)


def load_runs(runs: DataFrame | None) -> list[RunRecord]:
    """Every runs row, oldest first: one row per run, so a small list even after years of daily runs."""
    if runs is None:
        return []
    return [from_row(row) for row in runs.orderBy("started_at", "run_id").collect()]


def processed_days(runs: list[RunRecord]) -> dict[date, DayState]:
    """Each processed day's state at its latest run that succeeded or was repaired (a repair finishes its work)."""
    done = sorted((r for r in runs if r.status in (SUCCEEDED, REPAIRED)), key=lambda r: r.ended_at)
    return {state.day: state for record in done for state in record.day_states}


def active_runs(runs: list[RunRecord]) -> list[RunRecord]:
    """Runs marked running (holding or waiting for the output's lock), oldest first."""
    return [r for r in runs if r.status == RUNNING]


def needing_repair(runs: list[RunRecord]) -> list[RunRecord]:
    """Runs that failed after writing and were not repaired since, oldest first."""
    return [r for r in runs if r.status == FAILED and r.wrote_tables]


def is_alive(record: RunRecord) -> bool:
    """Whether a running run may still be writing: its process exists (same host), or it started recently."""
    if record.host == socket.gethostname():
        try:
            os.kill(record.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return now() - record.started_at < DEAD_AFTER
