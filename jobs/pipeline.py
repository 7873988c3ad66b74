"""Plans a run's days, then per range of days: read -> validate -> sessionize -> write sessions, users,
quarantine -> KPIs, with the runs ledger around each range."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, timedelta

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from jobs.config import ALL, InputFormat, JobConfig, OutputSpec, Table
from jobs.costs import NONE, Costs, Tally, counting
from jobs.dates import local_date
from jobs.errors import AccountingError, ConflictError, InputError
from jobs.experiments import (
    ASSIGNMENTS_SCHEMA,
    EXPERIMENT_SEGMENTS,
    assignments_from_events,
    first_day_to_read,
    excluded_users,
    is_half_tagged,
    resolved_assignments,
    variant_moments,
    with_user_type,
)
from jobs.incremental import (
    NO_ANCHORS,
    USER_SCHEMA,
    anchor_fingerprints,
    as_stored,
    counts_before,
    extended_anchors,
    latest_sessions_before,
    numbered,
    renumbered_later,
    resume_points,
    user_updates,
)
from jobs.inference import EXPERIMENTS_SCHEMA, experiment_rows
from jobs.metrics import (
    action_kpis_by_period,
    folded_name_count,
    ranked_actions,
    in_periods,
    kpis_by_period,
    with_completeness,
    with_empty_periods,
    with_first_seen_day,
)
from jobs.periods import Period, Periods, complete_periods, days_of, periods_of
from jobs.plan import (
    DayState,
    blocks,
    changed_inputs,
    days_after,
    days_between,
    input_days,
    input_dependencies,
    input_fingerprint,
    local_day,
    required_partitions,
    utc_span,
)
from jobs.read import (
    InputListing,
    commits_by_tag,
    events_between,
    landed_folders,
    list_input,
    load_input,
    read_assignments,
    read_events,
    read_table,
    table_exists,
    table_version,
    writer_start,
    unpartitioned_days,
)
from jobs.runs import (
    FAILED,
    REPAIRED,
    RUNNING,
    SUCCEEDED,
    RunRecord,
    active_runs,
    is_alive,
    load_runs,
    needing_repair,
    now,
    processed_days,
    to_frame,
)
from jobs.sessionize import session_marks, session_schema, to_sessions
from jobs.show import experiment_table
from jobs.validate import (
    checked_assignments,
    REASONS,
    is_named,
    to_quarantine,
    valid_events,
    with_bot_user_days,
    with_reject_reason,
    without_non_interactive,
)
from jobs.write import (
    append_run,
    merge_users,
    replace_assignments,
    replace_experiments,
    replace_kpis,
    replace_quarantine,
    replace_sessions,
    require_schema,
    restore_table,
    tagged_commits,
    update_run,
    update_sessions,
)

log = logging.getLogger(__name__)

# The tables a run writes its days into (runs is the ledger, written around them).
_WRITTEN_TABLES = (
    Table.SESSIONS, Table.USERS, Table.QUARANTINE, Table.KPIS, Table.ACTION_KPIS, Table.ASSIGNMENTS, Table.EXPERIMENTS
)


def run(spark: SparkSession, config: JobConfig, first_day: date, last_day: date) -> list[RunRecord]:
    """Process reporting days [first_day, last_day], and every processed day that must follow; the records of
    its steps' runs, as the runs table holds them.

    Before the asked days come the days within input.late_days before first_day whose input changed since they were
    processed; after each range come the processed days whose input or stored context it changed. Changed days
    older than the window are logged and recorded, not processed.
    """
    rules, timezone = config.sessionization, config.reporting.timezone
    window_start = first_day - timedelta(days=config.input.late_days)
    with counting(spark) as planning:  # recorded as the first step's "plan"
        require_schema(spark, config.output.catalog)
        assignments = _usable_assignments(spark, config)  # checked before any work: a bad one stops the run here
        runs = _runs(spark, config)
        processed = processed_days(runs)
        # Whether the folders of days skipped earlier have landed since is looked up too.
        inputs = _list_input(spark, config, window_start, last_day,
                             {p for day in _skipped_days(runs) for p in required_partitions(day, day, timezone)})
        without_input = _days_without_input(config, inputs, first_day, last_day)
        asked = set(days_between(first_day, last_day)) - set(without_input)
        late, left = _late_days(spark, config, inputs, runs, window_start, first_day)
    reasons = {day: "late input" for day in late} | {day: "requested" for day in asked}
    records = []
    pending = set(reasons)
    plan_costs = planning.stop()
    while pending:
        step_first, step_last = blocks(pending)[0]
        step_days = set(days_between(step_first, step_last))
        pending -= step_days
        reason = "requested" if step_days & asked else reasons.get(step_first, "follows changed days")
        context = _RunContext((first_day, last_day), inputs, left, without_input, assignments, plan_costs)
        record = _step(spark, config, step_first, step_last, reason, context)
        records.append(record)
        with counting(spark) as checks:  # recorded as the next step's "plan"
            processed.update({state.day: state for state in record.day_states})
            following = [processed[d] for d in days_after(step_last, timezone, rules.max_session_duration)
                         if d in processed and d not in pending]
            for day in sorted(_stale_days(spark, config, following, inputs.fingerprints)):
                log.info("day %s continues from days this run changed: processing it again", day)
                pending.add(day)
        plan_costs = checks.stop()
    return records


def _usable_assignments(spark: SparkSession, config: JobConfig) -> DataFrame | None:
    """The configured assignments input, checked (user_id, experiment_id, variant, assigned_at as an instant), or
    None without one (no experiments, or variants read off the events). InputError naming each reason a row cannot
    be used, with its count."""
    experiments = config.experiments
    if experiments is None or experiments.assignments is None:
        return None
    checked = checked_assignments(read_assignments(spark, experiments.assignments))
    rejected = (
        checked.where(F.col("reject_reason").isNotNull()).groupBy("reject_reason").count()
        .collect()  # one row per reason
    )
    if rejected:
        reasons = ", ".join(f"{row['reject_reason']} {row['count']:,}" for row in sorted(rejected))
        raise InputError(f"experiments.assignments {experiments.assignments.location!r}: rows that cannot be used "
                         f"({reasons}); fix them and run again")
    return checked.drop("reject_reason")


def _write_experiments(
    spark: SparkSession, config: JobConfig, assignments: DataFrame | None, last_day: date
) -> int:
    """Recompute the experiments table whole, windows up to `last_day` (the latest processed day), from the stored
    sessions and the assignments: the checked assignments input, or None for those stored from the events. The
    rows written."""
    timezone, settings = config.reporting.timezone, config.experiments.settings
    if assignments is None:
        stored = read_table(spark, config.output.table_path(Table.ASSIGNMENTS))
        assignments = spark.createDataFrame([], ASSIGNMENTS_SCHEMA) if stored is None else stored
    users = read_table(spark, config.output.table_path(Table.USERS))
    resolved = (
        resolved_assignments(assignments, timezone, last_day).transform(with_user_type, users, timezone).persist()
    )  # few rows, read twice
    try:
        # Only the partitions of sessions that can count: a literal day, which Delta prunes the table's files by.
        first_day = first_day_to_read(resolved, config.sessionization.max_session_duration, timezone).first()["day"]
        if first_day is None:
            return _replace_experiments(spark, config, [])  # no assignments (yet): no rows
        sessions = read_table(spark, config.output.table_path(Table.SESSIONS)).where(
            F.col("session_date") >= F.lit(first_day)
        )
        # A row per variant, segment value and day.
        moments = variant_moments(sessions, resolved, timezone, last_day, EXPERIMENT_SEGMENTS).collect()
        excluded = {row["experiment_id"]: row["excluded_users"] for row in excluded_users(resolved).collect()}
    finally:
        resolved.unpersist()
    rows = experiment_rows(
        [row.asDict() for row in moments],
        excluded,
        controls={name: each.control for name, each in settings.items() if each.control is not None},
        splits={name: each.split for name, each in settings.items() if each.split is not None},
    )
    return _replace_experiments(spark, config, rows)


def _replace_experiments(spark: SparkSession, config: JobConfig, rows: list[dict[str, object]]) -> int:
    columns = [field.split(" ")[0] for field in EXPERIMENTS_SCHEMA.split(", ")]
    experiments = spark.createDataFrame([tuple(row[name] for name in columns) for row in rows], EXPERIMENTS_SCHEMA)
    replace_experiments(experiments, config.output.table_path(Table.EXPERIMENTS))
    return len(rows)


def _late_days(
    spark: SparkSession, config: JobConfig, inputs: _Input, runs: list[RunRecord], window_start: date, first_day: date
) -> tuple[set[date], tuple[date, ...]]:
    """(the days of [window_start, first_day) to process again, the changed days before window_start left alone).

    A day comes back when its input changed since it was processed, when its stored context changed (a follow-up
    cut off by a crash or a conflict), or when it was skipped for want of input that has arrived since. Changed
    days before the window are logged, not processed.
    """
    rules, timezone = config.sessionization, config.reporting.timezone
    tolerance = config.validation.partition_tolerance
    processed = processed_days(runs)
    changed = changed_inputs(processed, inputs.fingerprints, timezone, rules.max_session_duration, tolerance)
    late = {day for day in changed if window_start <= day < first_day}
    left = tuple(day for day in changed if day < window_start)
    in_window = [state for day, state in processed.items() if window_start <= day < first_day and day not in late]
    late |= _stale_days(spark, config, in_window, inputs.fingerprints)
    skipped = {day for day in _skipped_days(runs) if day < first_day}
    arrived = {day for day in skipped if _has_input(config, inputs, day)}
    late |= {day for day in arrived if day >= window_start}
    if arrived - late:
        log.warning("input arrived for skipped days %s, outside this run's late-data window (from %s): run them "
                    "with --from/--to", ", ".join(map(str, sorted(arrived - late))), window_start)
    if left:
        log.warning(
            "input changed for processed days %s, outside this run's late-data window (from %s): "
            "run them with --from/--to", ", ".join(map(str, left)), window_start,
        )
    return late, left


def _skipped_days(runs: list[RunRecord]) -> set[date]:
    """The days earlier runs skipped for want of input and no run has processed since."""
    return {day for r in runs for day in r.days_without_input} - set(processed_days(runs))


@dataclass(frozen=True)
class _Input:
    """The input as a run found it, listed once: its files, per partition date a fingerprint of its files, the
    partitions that have landed, and the input loaded for every partition the run's days need (each step takes its
    own partitions from it, so the files are listed and their schemas merged once)."""

    listing: InputListing
    fingerprints: dict[date, str]
    # Partitions with files, or whose folder exists (an empty day's), among the days the run looked at.
    present: frozenset[date]
    source: DataFrame
    source_range: tuple[date, date]  # the partitions `source` was loaded for
    complete_through: date | None = None  # input.complete_through: every partition up to it has landed

    def has_landed(self, partition: date) -> bool:
        """Whether the UTC partition has landed: it has files, its folder exists, or complete_through covers it."""
        return partition in self.present or (self.complete_through is not None and partition <= self.complete_through)


@dataclass(frozen=True)
class _RunContext:
    """What every step of one `run` call shares: the days asked, the input found, the days it left out, and the
    checked assignments input (None without one)."""

    requested: tuple[date, date]
    input: _Input
    changed_days_not_processed: tuple[date, ...]
    days_without_input: tuple[date, ...]
    assignments: DataFrame | None = None
    plan_costs: Costs = NONE  # what the run did to plan this step, since the step before (or its start)


def _list_input(
    spark: SparkSession, config: JobConfig, first_day: date, last_day: date, also: set[date] = frozenset()
) -> _Input:
    """List the input partitions and check the input's format, columns and types: every input error is raised
    here, before a run writes anything. The partitions of [first_day, last_day]'s input and `also` are looked up
    as folders when they have no file (a landed day without rows)."""
    rules = config.sessionization
    listing = list_input(spark, config.input)
    fingerprints = listing.fingerprints()
    first_input, last_input = input_days(
        first_day, last_day, config.reporting.timezone, rules.max_session_duration,
        config.validation.partition_tolerance,
    )
    segments = config.reporting.segments
    source = load_input(spark, config.input, segments, first_input, last_input, listing, _tags(config))
    complete_through = config.input.complete_through
    if not fingerprints and config.input.format is InputFormat.DELTA:
        events = events_between(source, config.input, segments, first_input, last_input)
        present = frozenset(unpartitioned_days(events))
    else:
        looked_up = set(days_between(first_input, last_input)) | set(also)
        present = frozenset(fingerprints) | landed_folders(spark, config.input, listing, looked_up)
    return _Input(listing, fingerprints, present, source, (first_input, last_input), complete_through)


def _tags(config: JobConfig) -> tuple[str, ...]:
    return config.experiments.event_columns if config.experiments is not None else ()


def _events(
    spark: SparkSession,
    config: JobConfig,
    inputs: _Input,
    first_input: date,
    last_input: date,
    columns: tuple[str, ...] | None = None,
) -> DataFrame:
    """The events of partitions [first_input, last_input], with `columns` (the segments by default) besides the
    event columns: from the run's read when it holds them, else read anew (a repair of a broken run's days, a day
    after the run's range that continues from days it changed)."""
    columns = config.reporting.segments if columns is None else columns
    if inputs.source_range[0] <= first_input and last_input <= inputs.source_range[1]:
        return events_between(inputs.source, config.input, columns, first_input, last_input)
    return read_events(spark, config.input, columns, first_input, last_input, inputs.listing)


def _missing_partitions(config: JobConfig, inputs: _Input, day: date) -> list[date]:
    return [p for p in required_partitions(day, day, config.reporting.timezone) if not inputs.has_landed(p)]


def _has_input(config: JobConfig, inputs: _Input, day: date) -> bool:
    return not _missing_partitions(config, inputs, day)


def _days_without_input(config: JobConfig, inputs: _Input, first_day: date, last_day: date) -> tuple[date, ...]:
    """The days of [first_day, last_day] that lack an input partition they overlap, logged one by one.

    A run replaces its days in every table, so running a day without input would erase what was stored: such a
    day is skipped, or fails the run when validation.require_every_day is set or when no day has input.
    """
    asked = days_between(first_day, last_day)
    missing = {day: _missing_partitions(config, inputs, day) for day in asked}
    without = tuple(day for day in asked if missing[day])
    if not without:
        return ()
    path = config.input.location
    found = _dates(sorted(inputs.present)) or "none"
    if len(without) == len(asked):
        looked_for = required_partitions(first_day, last_day, config.reporting.timezone)
        absent = sorted({p for day in without for p in missing[day]})
        if len(absent) == len(looked_for):
            what = f"no partition for any day of {first_day}..{last_day}"
        else:
            what = f"no day of {first_day}..{last_day} with all its partitions (missing: {_dates(absent)})"
        raise InputError(
            f"input {path!r} has {what}: looked for the UTC partitions {_dates(looked_for)} "
            f"(partitions found: {found}); nothing was written. {_landing_rule(config)}"
        )
    if config.validation.require_every_day:
        partitions = sorted({p for day in without for p in missing[day]})
        raise InputError(
            f"input {path!r} has no partition for {', '.join(map(str, partitions))}, and "
            "validation.require_every_day is set; nothing was written"
        )
    for day in without:
        log.warning("day %s skipped: input partition %s missing (it can be run once the input is there)",
                    day, ", ".join(map(str, missing[day])))
    return without


def _landing_rule(config: JobConfig) -> str:
    # A Delta or catalog table has no folder for a day without rows: only the override says it has landed.
    override = "input.complete_through (--complete-through) covers it"
    if config.input.format is InputFormat.DELTA:
        return f"A day without rows of a table has landed when {override}"
    return f"A partition has landed when its folder exists, or when {override}"


def _dates(days: list[date]) -> str:
    # Consecutive days as a range: a year of partitions stays one line.
    return ", ".join(str(first) if first == last else f"{first}..{last}" for first, last in blocks(days))


def _runs(spark: SparkSession, config: JobConfig) -> list[RunRecord]:
    return load_runs(read_table(spark, config.output.table_path(Table.RUNS)))


def _stale_days(
    spark: SparkSession, config: JobConfig, states: list[DayState], fingerprints: dict[date, str]
) -> set[date]:
    """The processed days among `states` whose input or anchors changed since they were processed."""
    rules, timezone = config.sessionization, config.reporting.timezone
    tolerance = config.validation.partition_tolerance
    anchors = _anchor_fingerprints(spark, config, [state.day for state in states])
    stale = set()
    for state in states:
        inputs = input_dependencies(state.day, timezone, rules.max_session_duration, tolerance)
        input_changed = input_fingerprint(inputs, fingerprints) != state.input_fingerprint
        anchors_changed = anchors[state.day] != state.anchor_fingerprint
        if input_changed or anchors_changed:
            stale.add(state.day)
    return stale


def _anchor_window(config: JobConfig, first_day: date):
    # A run continues from each user's latest stored session starting up to twice max_session_duration before it.
    cap = config.sessionization.max_session_duration
    first_instant, _ = utc_span(first_day, first_day, config.reporting.timezone)
    return first_instant - 2 * cap, first_instant - cap, first_instant


def _anchor_fingerprints(spark: SparkSession, config: JobConfig, days: list[date]) -> dict[date, str]:
    if not days:
        return {}
    stored = read_table(spark, config.output.table_path(Table.SESSIONS))
    if stored is None:
        return {day: NO_ANCHORS for day in days}
    windows = []
    for day in days:
        since, _, until = _anchor_window(config, day)
        windows.append((day, since, until))
    first_stored_day = local_day(min(since for _, since, _ in windows), config.reporting.timezone)
    rows = anchor_fingerprints(
        stored.where(F.col("session_date").between(F.lit(first_stored_day), F.lit(max(days)))),
        spark.createDataFrame(windows, "window_day date, window_since timestamp, window_until timestamp"),
    ).collect()  # a row per day
    return {day: NO_ANCHORS for day in days} | {row["day"]: row["fingerprint"] for row in rows}


def _step(
    spark: SparkSession,
    config: JobConfig,
    first_day: date,
    last_day: date,
    reason: str,
    context: _RunContext,
) -> RunRecord:
    """Claim the output, repair the runs that died or failed half way, process [first_day, last_day] and record
    the outcome in runs; the finished record."""
    runs_path = config.output.table_path(Table.RUNS)
    claim = RunRecord(
        run_id=uuid.uuid4().hex,
        requested_first_day=context.requested[0],
        requested_last_day=context.requested[1],
        first_day=first_day,
        last_day=last_day,
        reason=reason,
        status=RUNNING,
        started_at=now(),
        sessions_version=None,
        users_version=None,
        changed_days_not_processed=context.changed_days_not_processed,
        days_without_input=context.days_without_input,
    )
    outside = Tally(spark)  # the claim, the lock, and whatever runs between the stages
    try:
        append_run(to_frame(spark, claim), runs_path, claim.run_id)
    except BaseException:
        outside.stop()
        raise
    record, progress = claim, _Progress()
    try:
        # The lock: of the runs marked running, the one whose row was committed first goes on; a later one stops.
        # The rows are read before the commit versions, so every row seen has its version in the history read after.
        runs = _runs(spark, config)
        commits = commits_by_tag(spark, runs_path)
        mine = commits[claim.run_id]
        earlier = [r for r in active_runs(runs) if commits.get(r.run_id, -1) < mine]  # -1: before the history read
        alive = [r for r in earlier if is_alive(r)]
        if alive:
            raise ConflictError(_conflict_message(config, alive[0]))

        # Every run before this one has finished or died, and none can start writing now: repair the broken ones.
        processed = set(processed_days(runs))
        for broken in sorted(earlier + needing_repair(runs), key=lambda r: commits.get(r.run_id, -1)):
            processed |= _repair(spark, config, broken, context.input, processed, claim.run_id, progress.costs)
        record = replace(
            claim,
            sessions_version=table_version(spark, config.output.table_path(Table.SESSIONS)),
            users_version=table_version(spark, config.output.table_path(Table.USERS)),
        )
        log.info(
            "run %s: days %s..%s (%s, %s), stored sessions %s, users %s",
            record.run_id, first_day, last_day, config.reporting.timezone, reason,
            _version(record.sessions_version), _version(record.users_version),
        )
        with tagged_commits(spark, record.run_id):
            finished = _process(spark, config, record, context.input, processed, progress)
            if config.experiments is not None:
                # Under the lock, as the step's last write: no other run changes the tables it is computed from.
                with _Stages(spark, record, progress.costs)("write experiments") as counts:
                    last_processed = max(processed | {state.day for state in finished.day_states})
                    counts["rows"] = _write_experiments(spark, config, context.assignments, last_processed)
    except BaseException as error:
        # Whatever stopped the run, its row must not stay running: later runs would take it for a live one.
        message = str(error) if isinstance(error, ConflictError) else f"{type(error).__name__}: {error}"[:2000]
        if isinstance(error, AccountingError):
            # Numbers that do not add up must not stay in the tables, nor be redone by a repair (they would fail
            # the same way): the tables go back to where the run found them.
            progress.wrote_tables = not _undo(spark, config, record.run_id)
            message += "; its writes were undone" if not progress.wrote_tables else ""
        failed = record.finished(FAILED, wrote_tables=progress.wrote_tables, message=message)
        update_run(to_frame(spark, _with_costs(failed, context.plan_costs, progress, outside.stop())), runs_path)
        raise
    finished = _with_costs(finished, context.plan_costs, progress, outside.stop())
    update_run(to_frame(spark, finished), runs_path)
    log.info("run %s: done", record.run_id)
    return finished


def _with_costs(record: RunRecord, plan: Costs, progress: _Progress, outside: Costs) -> RunRecord:
    """The record with its costs per stage (every stage of the step and of the repairs it made), logged."""
    costs = {"plan": plan, **progress.costs, "claim, lock and other": outside}
    total = sum(costs.values(), NONE)
    log.info("run %s: %s in all; %s", record.run_id, total.describe(),
             "; ".join(f"{stage}: {c.describe()}" for stage, c in costs.items()))
    return replace(record, costs=costs)


def _version(version: int | None) -> str:
    return "(no table yet)" if version is None else f"v{version}"


def _conflict_message(config: JobConfig, other: RunRecord) -> str:
    return (
        f"another run ({other.run_id}, days {other.first_day}..{other.last_day}, "
        f"started {other.started_at:%Y-%m-%d %H:%M:%S} on {other.host}, pid {other.pid}) is writing to "
        f"{config.output.location}; this run stopped before writing its days. "
        "Run again when it has finished (a run that died is repaired by the next run)."
    )


def _repair(
    spark: SparkSession,
    config: JobConfig,
    broken: RunRecord,
    inputs: _Input,
    processed: set[date],
    repairer: str,
    costs: dict[str, Costs],
) -> set[date]:
    """Finish a run that died or failed half way; the days it processed (none if it had written nothing)."""
    # Every write of a run is a Delta commit tagged with its run id, and while a run holds the lock no other run
    # writes. So the stored state the broken run started from is, per table, the version before its first tagged
    # commit, or the current version if it never wrote there. Processing its days again from that state redoes
    # every write it made or meant to make, each a replace or an update to absolute values: the tables end as the
    # run would have left them, however many repairs died before this one (they are tagged with its id too).
    tables = [config.output.table_path(t) for t in _WRITTEN_TABLES]
    starts = [writer_start(spark, path, broken.run_id) for path in tables]
    runs_path = config.output.table_path(Table.RUNS)
    wrote_tagged = any(start.first_commit is not None for start in starts)
    recorded_versions = broken.sessions_version is not None or broken.users_version is not None
    if wrote_tagged:
        versions = (starts[0].version_read, starts[1].version_read)
    elif broken.wrote_tables or recorded_versions:
        versions = (broken.sessions_version, broken.users_version)  # a run from before commits were tagged
    else:
        log.warning("run %s (days %s..%s) died before writing: nothing to repair", broken.run_id,
                    broken.first_day, broken.last_day)
        message = f"{broken.message or 'died'} before writing anything; seen by {repairer}"
        update_run(to_frame(spark, broken.finished(FAILED, wrote_tables=False, message=message)), runs_path)
        return set()
    log.warning("run %s (days %s..%s) did not finish: repairing it", broken.run_id, broken.first_day, broken.last_day)
    record = replace(broken, sessions_version=versions[0], users_version=versions[1])
    with tagged_commits(spark, broken.run_id):
        repaired = _process(spark, config, record, inputs, processed, _Progress(costs))
    message = f"{broken.message or 'did not finish'}; repaired by {repairer}"
    update_run(to_frame(spark, repaired.finished(REPAIRED, message=message)), runs_path)
    return {state.day for state in repaired.day_states}


def _undo(spark: SparkSession, config: JobConfig, run_id: str) -> bool:
    """Restore every table the run wrote to the version before its first commit; False if it created one (a
    table cannot be restored to not existing), which then stays as written."""
    starts = {t: writer_start(spark, config.output.table_path(t), run_id) for t in _WRITTEN_TABLES}
    written = {t: start for t, start in starts.items() if start.first_commit is not None}
    if any(start.version_read is None for start in written.values()):
        return False
    for table, start in written.items():
        restore_table(spark, config.output.table_path(table), start.version_read)
    return True


class _Stages:
    """Times and counts the stages of one run's range of days: each logs a line with its row counts, seconds and
    costs (Spark jobs, Delta reads and commits) when it ends, or when it fails, and adds its costs to `costs`."""

    def __init__(self, spark: SparkSession, record: RunRecord, costs: dict[str, Costs]) -> None:
        self.spark, self.costs = spark, costs
        self.prefix = f"run {record.run_id} ({record.first_day}..{record.last_day})"

    @contextmanager
    def __call__(self, name: str) -> Iterator[dict[str, int]]:
        started, counts = time.monotonic(), {}
        log.debug("%s: %s ...", self.prefix, name)
        with counting(self.spark) as tally:
            try:
                yield counts
            except BaseException:
                log.error("%s: %s failed after %.1f s", self.prefix, name, time.monotonic() - started)
                raise
            finally:
                self.costs[name] = self.costs.get(name, NONE) + tally.stop()
        shown = ", ".join(f"{what} {count:,}" for what, count in counts.items())
        log.info("%s: %s: %s (%.1f s; %s)", self.prefix, name, shown, time.monotonic() - started,
                 self.costs[name].describe())


class _Progress:
    """Whether a run has written to any table yet (a run that fails after that must be repaired), and the costs of
    its stages so far."""

    def __init__(self, costs: dict[str, Costs] | None = None) -> None:
        self.wrote_tables = False
        self.costs: dict[str, Costs] = {} if costs is None else costs


def _require_every_day(
    spark: SparkSession, config: JobConfig, inputs: _Input, events: DataFrame, first_day: date, last_day: date
) -> None:
    # A run replaces its days in every table, so a day without input would silently erase what was stored. `run`
    # skips the asked days without input before any step, so this guards the days a repair redoes: their input
    # may have been removed since the broken run, or lie outside the days the run looked up.
    required = required_partitions(first_day, last_day, config.reporting.timezone)
    unseen = [day for day in required if not inputs.has_landed(day)]
    if not unseen:
        return
    if not inputs.fingerprints and config.input.format is InputFormat.DELTA:
        landed = unpartitioned_days(events)  # a Delta table without date folders: the dates its rows have
    else:
        landed = landed_folders(spark, config.input, inputs.listing, unseen)
    missing = [day.isoformat() for day in unseen if day not in landed]
    if missing:
        raise InputError(
            f"input {config.input.location!r} has no partition for {', '.join(missing)}; nothing was written "
            "(a run replaces its days, so running a day without input would erase it)"
        )


def _checked(events: DataFrame, config: JobConfig) -> DataFrame:
    """The events with reject_reason by the config's validation rules: the one chain both passes over a run's
    events (sessionizing, and assignments read off the events) apply, so they agree on which rows are valid."""
    return (
        events
        .transform(with_reject_reason, config.validation.partition_tolerance)
        .transform(with_bot_user_days, config.validation.bot_max_events_per_day,
                   config.sessionization.non_interactive_events)
    )


def _is_owned_by_run(first_day: date, last_day: date):
    # A rejected row belongs to the run of its input partition, so reruns replace it exactly; undated rows
    # belong to every run, and each run replaces them.
    return F.col("event_date").between(F.lit(first_day), F.lit(last_day)) | F.col("event_date").isNull()


def _stored(spark: SparkSession, path: str, version: int | None, schema: str) -> DataFrame:
    frame = read_table(spark, path, version) if version is not None else None
    if frame is None:
        return spark.createDataFrame([], schema)
    # A table written by an older version lacks the columns added since: null, as they will be once added.
    missing = [field for field in StructType.fromDDL(schema).fields if field.name not in frame.columns]
    return frame.withColumns({field.name: F.lit(None).cast(field.dataType) for field in missing})


def _process(
    spark: SparkSession,
    config: JobConfig,
    record: RunRecord,
    inputs: _Input,
    processed_before: set[date],
    progress: _Progress,
) -> RunRecord:
    first_day, last_day = record.first_day, record.last_day
    rules, segments, timezone = config.sessionization, config.reporting.segments, config.reporting.timezone
    tolerance = config.validation.partition_tolerance
    sessions_path, users_path = config.output.table_path(Table.SESSIONS), config.output.table_path(Table.USERS)
    lookback_start, context_start, first_instant = _anchor_window(config, first_day)
    first_input, last_input = input_days(first_day, last_day, timezone, rules.max_session_duration, tolerance)

    fingerprints = inputs.fingerprints
    events = _events(spark, config, inputs, first_input, last_input)
    _require_every_day(spark, config, inputs, events, first_day, last_day)
    # The run accounts for the rows of its own partitions: each is quarantined, non-interactive, deduplicated or
    # sessionized. The counts are taken at three different steps, so a row lost or duplicated between them shows.
    is_own_row = _is_owned_by_run(first_day, last_day)
    non_interactive = rules.non_interactive_events
    configured_events = (*config.metrics.conversion_events, *non_interactive)
    is_own_valid_row = is_own_row & F.col("reject_reason").isNull()
    reading, dedup = Observation("read"), Observation("dedup")
    checked = _checked(events, config)
    observed = (
        checked
        .observe(
            reading,
            F.count_if(is_own_row).alias("rows"),
            F.count_if(is_own_row & F.col("reject_reason").isNotNull()).alias("rejected"),
            *[F.count_if(is_own_row & (F.col("reject_reason") == reason)).alias(reason) for reason in REASONS],
            F.count_if(is_own_valid_row & is_named(non_interactive)).alias("non_interactive"),
            F.collect_set(F.when(is_own_row, F.col("event_date"))).alias("partitions_with_rows"),
            *[F.count_if(is_own_valid_row & (F.col("event_name") == name)).alias(f"seen {n}")
              for n, name in enumerate(configured_events)],
        )
    )

    stored = _stored(spark, sessions_path, record.sessions_version, session_schema(segments))
    users = _stored(spark, users_path, record.users_version, USER_SCHEMA)
    lookback = stored.where(
        F.col("session_date").between(F.lit(local_day(lookback_start, timezone)), F.lit(first_day - timedelta(days=1)))
    )
    anchors = latest_sessions_before(lookback, lookback_start, first_instant)
    conversion_events, engagement = config.metrics.conversion_events, config.metrics.engagement
    marks = session_marks(
        without_non_interactive(valid_events(observed), non_interactive), rules.inactivity_timeout,
        rules.max_session_duration, segments, resume_points(anchors, context_start, first_instant), dedup, is_own_row,
        conversion_events,
    ).persist(StorageLevel.DISK_ONLY)  # read by each branch of to_sessions: the events' windows then run once

    def sessions_of(pieces: DataFrame) -> DataFrame:
        return to_sessions(
            pieces, rules.max_session_duration, segments, timezone, conversion_events,
            engagement.min_duration, engagement.min_actions,
        )

    new_sessions = sessions_of(marks)
    # The extended anchors come from the marks of users whose anchor may go on (see resume_points) only: a bot's
    # capped sessions, costly to cut, are cut again only when the bot continues a stored session.
    continuing = anchors.where(F.col("session_start") >= F.lit(context_start)).select("user_id")
    anchored_sessions = sessions_of(marks.join(continuing, on="user_id", how="left_semi"))
    stored_from = stored.where(F.col("session_date") >= F.lit(first_day))
    old_run_sessions = stored_from.where(F.col("session_date") <= F.lit(last_day))
    later = stored_from.where(F.col("session_date") > F.lit(last_day))
    before = counts_before(users, stored_from)
    in_run = F.col("session_date").between(F.lit(first_day), F.lit(last_day))
    stage = _Stages(spark, record, progress.costs)
    try:
        progress.wrote_tables = True
        with stage("read, validate, sessionize, write sessions") as counts:
            sessions_written = replace_sessions(
                numbered(new_sessions.where(in_run), before).transform(as_stored, segments), sessions_path,
                first_day, last_day,
            )
            # The read counts are read after this write, which runs the query that fills them.
            counts["sessions written"] = sessions_written
        # The run's sessions as written, for the steps below: read back, not numbered again. Later writes of this
        # run touch no session of its days (extended anchors start before them, renumbered ones after).
        run_sessions = read_table(spark, sessions_path).where(in_run)
        extended = (
            extended_anchors(anchored_sessions, anchors, context_start)
            .transform(as_stored, segments)
            .join(anchors.select("session_id", "session_end", "actions"), on=["session_id", "session_end", "actions"],
                  how="left_anti")
            .persist()  # few rows, read twice
        )  # anchors whose events changed: their day, week and month are recomputed
        changed = extended.unionByName(
            renumbered_later(later, before, run_sessions).transform(as_stored, segments)
        ).persist()  # few rows; checked, then merged
        with stage("update extended and renumbered sessions") as counts:
            updated = 0 if changed.isEmpty() else update_sessions(changed, sessions_path, local_day(context_start, timezone))
            extended_days = {row["session_date"] for row in extended.select("session_date").distinct().collect()}
            counts["sessions updated"] = updated
        changed.unpersist()
        extended.unpersist()

        # Few rows (the run's users), read twice: persisted so the joins behind them run once.
        with stage("merge users") as counts:
            updates = user_updates(users, old_run_sessions, run_sessions, later, first_instant).persist()
            first_seen_days = _changed_first_seen_days(updates, users, timezone)
            merged = merge_users(updates, users_path)
            counts |= {"new": merged.inserted, "updated": merged.updated, "deleted": merged.deleted}
        updates.unpersist()
    finally:
        marks.unpersist()

    # Not from `observed`: the read counts come from the sessionizing query alone. They are in once the sessions
    # are written; when they hold no rejected row, the run's quarantine is empty and its write only removes what
    # earlier runs of these partitions put there, without reading the events a second time.
    read_counts = reading.get
    has_rejected_rows = read_counts["rejected"] > 0
    quarantine = to_quarantine(checked.where(is_own_row), record.run_id)
    if not has_rejected_rows:
        quarantine = quarantine.where(F.lit(False))  # Spark plans no scan under a filter that is always false
    with stage("write quarantine") as counts:
        rows_quarantined = replace_quarantine(
            quarantine, config.output.table_path(Table.QUARANTINE), first_day, last_day
        )
        counts["rows"] = rows_quarantined
    if _tags(config):
        with stage("write assignments read off the events") as counts:
            own_rows = any(first_day <= day <= last_day for day in read_counts["partitions_with_rows"])
            counts |= _write_assignments(spark, config, inputs, first_day, last_day, processed_before, own_rows)

    run_days = set(days_between(first_day, last_day))
    periods = periods_of(run_days | extended_days | first_seen_days)
    period_days = {day for period, starts in periods.items() for start in starts for day in days_of(period, start)}
    processed = set(processed_before) | run_days
    current = read_table(spark, sessions_path).where(F.col("session_date").isin(sorted(period_days)))
    # The periods' sessions by user, with each user's first day: read by both KPI tables, each in several steps.
    dated = with_first_seen_day(current, read_table(spark, users_path), segments, timezone).persist(
        StorageLevel.DISK_ONLY
    )
    try:
        kpis = (
            kpis_by_period(dated, segments)
            .where(in_periods(periods))
            .transform(with_empty_periods, _periods_frame(spark, periods))
            .transform(with_completeness, complete_periods(periods, processed))
        )
        with stage("compute and write KPIs") as counts:
            counts["periods"] = sum(len(starts) for starts in periods.values())
            counts["rows"] = replace_kpis(kpis, config.output.table_path(Table.KPIS), periods)
        with stage("compute and write action KPIs") as counts:
            counts["rows"], names_folded = _write_action_kpis(config, dated, periods, processed)
            counts["names folded into (other)"] = names_folded
    finally:
        dated.unpersist()

    dedup_counts = dedup.get
    counts = _accounted(
        record, read_counts["rows"], dedup_counts["kept"], rows_quarantined, dedup_counts["copies"],
        read_counts["non_interactive"], {reason: read_counts[reason] for reason in REASONS if read_counts[reason]},
    )
    seen = {name: read_counts[f"seen {n}"] for n, name in enumerate(configured_events)}
    for name, rows in seen.items():
        if not rows:
            log.warning("run %s: event %r, named in the config, was not seen in days %s..%s (a typo?)",
                        record.run_id, name, first_day, last_day)
    anchors = _anchor_fingerprints(spark, config, sorted(run_days))
    day_states = tuple(
        DayState(
            day,
            input_fingerprint(input_dependencies(day, timezone, rules.max_session_duration, tolerance), fingerprints),
            anchors[day],
        )
        for day in sorted(run_days)
    )
    return record.finished(
        SUCCEEDED,
        wrote_tables=True,
        partitions_read=tuple(d for d in days_between(first_input, last_input) if inputs.has_landed(d)),
        **counts,
        sessions_written=sessions_written,
        day_states=day_states,
        configured_events_seen=seen,
        action_names_folded=names_folded,
        empty_days=_empty_days(record, read_counts["partitions_with_rows"]),
    )


def _empty_days(record: RunRecord, partitions_with_rows: list[date]) -> tuple[date, ...]:
    """The run's own partitions that had landed without rows, logged: their days run, and say zero sessions."""
    with_rows = set(partitions_with_rows)
    empty = tuple(day for day in days_between(record.first_day, record.last_day) if day not in with_rows)
    if empty:
        log.info("run %s: partitions %s landed without rows", record.run_id, _dates(list(empty)))
    return empty


def _periods_frame(spark: SparkSession, periods: Periods) -> DataFrame:
    rows = [(period.value, start) for period, starts in periods.items() for start in sorted(starts)]
    return spark.createDataFrame(rows, "period string, period_start date")


def _write_assignments(
    spark: SparkSession, config: JobConfig, inputs: _Input, first_day: date, last_day: date, processed_before: set[date],
    has_rows: bool,
) -> dict[str, int]:
    """Replace the assignments of input partitions [first_day, last_day], read off their valid events (bots' are
    quarantined, so they assign nothing); the rows written and the events tagged with only one of the two columns.
    `has_rows`: whether those partitions hold any row (they may all have landed empty).

    A pass of its own over the run's partitions, reading only the columns it needs: the sessionizing query stays as
    it is without experiments."""
    tags = _tags(config)
    path = config.output.table_path(Table.ASSIGNMENTS)
    earlier = sorted(day for day in processed_before if day < first_day)
    if earlier and not table_exists(spark, path):
        log.warning("experiments: days %s..%s were processed before variants were read off the events, so their "
                    "assignments are not stored; run them again (--from %s --to %s) if an experiment ran then",
                    earlier[0], earlier[-1], earlier[0], earlier[-1])
    tagging = Observation("tagging")
    own_events = _events(spark, config, inputs, first_day, last_day, tags).where(
        _is_owned_by_run(first_day, last_day)
    )
    valid = valid_events(_checked(own_events, config)).observe(
        tagging, F.count_if(is_half_tagged(*tags)).alias("half_tagged")
    )
    written = replace_assignments(assignments_from_events(valid, *tags), path, first_day, last_day)
    # Partitions that all landed empty leave Spark an empty scan, which it drops with the observation on it: the
    # observation is never filled, and there is nothing to count.
    half_tagged = tagging.get["half_tagged"] if has_rows else 0
    if half_tagged:
        log.warning("%d valid events of partitions %s..%s have only one of experiments.%s: they assign nothing",
                    half_tagged, first_day, last_day, " and ".join(tags))
    return {"rows": written, "events with only one of the two columns": half_tagged}


def _write_action_kpis(
    config: JobConfig, dated: DataFrame, periods: Periods, processed: set[date]
) -> tuple[int, int]:
    """Replace the action_kpis rows of `periods`, from the `dated` sessions (see with_first_seen_day); (rows
    written, distinct event names folded into (other) in any of their groups)."""
    segments = config.reporting.segments
    max_names = config.metrics.max_action_names
    # Few rows (groups x names), read by the checks below and by the table: computed once.
    ranked = ranked_actions(dated, segments).where(in_periods(periods)).persist()
    try:
        names_folded = folded_name_count(ranked, max_names)
        action_kpis = (
            action_kpis_by_period(dated, segments, ranked, max_names, fold=names_folded > 0)
            .where(in_periods(periods))
            .transform(with_completeness, complete_periods(periods, processed))
        )
        path = config.output.table_path(Table.ACTION_KPIS)
        return replace_kpis(action_kpis, path, periods, Table.ACTION_KPIS), names_folded
    finally:
        ranked.unpersist()


def _accounted(
    record: RunRecord, rows_read: int, rows_sessionized: int, rows_quarantined: int, rows_deduplicated: int,
    rows_non_interactive: int, quarantine_reasons: dict[str, int],
) -> dict:
    """The run's row counts as RunRecord fields, once they add up; AccountingError when a row is unaccounted for."""
    counts = {
        "rows_read": rows_read,
        "rows_sessionized": rows_sessionized,
        "rows_quarantined": rows_quarantined,
        "rows_deduplicated": rows_deduplicated,
        "rows_non_interactive": rows_non_interactive,
        "quarantine_reasons": quarantine_reasons,
    }
    log.info("run %s: rows read %s = sessionized %s + quarantined %s + deduplicated %s + non-interactive %s; "
             "quarantined by reason: %s", record.run_id, rows_read, rows_sessionized, rows_quarantined,
             rows_deduplicated, rows_non_interactive, quarantine_reasons or "none")
    if rows_read != rows_sessionized + rows_quarantined + rows_deduplicated + rows_non_interactive or (
        rows_quarantined != sum(quarantine_reasons.values())
    ):
        raise AccountingError(
            f"run {record.run_id} (days {record.first_day}..{record.last_day}): rows read ({rows_read:,}) != "
            f"sessionized ({rows_sessionized:,}) + quarantined ({rows_quarantined:,}, by reason "
            f"{sum(quarantine_reasons.values()):,}) + deduplicated ({rows_deduplicated:,}) + non-interactive "
            f"({rows_non_interactive:,})"
        )
    return counts


def _changed_first_seen_days(updates: DataFrame, users: DataFrame, timezone: str) -> set[date]:
    # Where a user's first session moves, new and returning change in the periods it leaves and enters.
    def day_of(column: str) -> Column:
        return local_date(F.col(column), timezone)

    rows = (
        updates.alias("new")
        .join(users.alias("old"), on="user_id", how="left")
        .where(~F.col("new.first_seen").eqNullSafe(F.col("old.first_seen")))
        .select(F.array(day_of("new.first_seen"), day_of("old.first_seen")).alias("days"))
        .select(F.explode("days").alias("day"))
        .where(F.col("day").isNotNull())
        .distinct()
        .collect()  # one row per day
    )
    return {row["day"] for row in rows}


def summary(
    spark: SparkSession, config: JobConfig, first_day: date, last_day: date, records: list[RunRecord]
) -> str:
    """A short text report of the KPI rows (dimension `all`) of [first_day, last_day], and the row accounting of
    the runs `records` (rows read, sessionized, quarantined by reason, deduplicated)."""
    periods = periods_of(days_between(first_day, last_day))
    kpi_rows = (
        read_table(spark, config.output.table_path(Table.KPIS))
        .where(in_periods(periods) & (F.col("dimension") == ALL))
        .collect()  # a handful of rows: one per period
    )
    period_order = [p.value for p in Period]
    kpi_rows.sort(key=lambda row: (period_order.index(row["period"]), row["period_start"]))
    lines = [
        f"sessionlake: {first_day}..{last_day} ({config.reporting.timezone}) -> {config.output.location}",
        f"{'period':<6} {'start':<10} {'sessions':>10} {'users':>8} {'actions':>11} {'APS':>7} {'SPU':>6}"
        f" {'median s':>9} {'p90 s':>8} {'bounce':>7} {'engaged':>8} {'convert':>8}",
    ]

    # A row written by a version without a column has null in it: shown as "-".
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    def percent(rate: float | None) -> str:
        return "-" if rate is None else f"{100 * rate:.1f}%"

    def ratio(value: float | None) -> str:  # null in a period without sessions
        return "-" if value is None else f"{value:.2f}"

    for row in kpi_rows:
        partial = "" if row["is_complete"] else "  (incomplete)"
        lines.append(
            f"{row['period']:<6} {row['period_start'].isoformat():<10} {row['sessions']:>10,} {row['users']:>8,}"
            f" {row['actions']:>11,} {ratio(row['aps']):>7} {ratio(row['spu']):>6}"
            f" {seconds(row['median_duration_seconds']):>9} {seconds(row['p90_duration_seconds']):>8}"
            f" {percent(row['bounce_rate']):>7} {percent(row['engagement_rate']):>8}"
            f" {percent(row['conversion_rate']):>8}{partial}"
        )
    lines.extend(_accounting_lines(records))
    experiments = read_table(spark, config.output.table_path(Table.EXPERIMENTS)) if config.experiments else None
    if experiments is not None:
        names = sorted(row["experiment_id"] for row in experiments.select("experiment_id").distinct().collect())
        lines.append(f"experiments: {', '.join(names) if names else 'none assigned yet'}"
                     + ("; `sessionlake experiments --experiment ID` shows one" if names else ""))
    return "\n".join(lines)


def experiment_report(
    spark: SparkSession, output: OutputSpec, experiment_id: str, window_end: date | None, segment: str | None
) -> str:
    """The `experiments` command's text: the experiment's window ending `window_end` (None: the latest), for all
    users or, with `segment`, a table per value of that breakdown. InputError naming what there is for an
    unknown experiment, window or breakdown, or without an experiments table."""
    path = output.table_path(Table.EXPERIMENTS)
    table = read_table(spark, path)
    if table is None:
        raise InputError(f"no experiments table at {path!r}: configure experiments and run the job first")
    rows = table.where(F.col("experiment_id") == experiment_id).collect()  # its variants x days x breakdowns
    if not rows:
        known = sorted(row["experiment_id"] for row in table.select("experiment_id").distinct().collect())
        raise InputError(f"unknown experiment {experiment_id!r} in {path!r}; the experiments there: "
                         f"{', '.join(known) if known else 'none yet'}")
    window = [row.asDict() for row in rows if (row["window_end"] == window_end if window_end else row["is_latest"])]
    if not window:
        ends = sorted({row["window_end"] for row in rows})
        raise InputError(f"experiment {experiment_id!r} has no window ending {window_end}: its windows end "
                         f"{ends[0]} to {ends[-1]}")
    dimension = segment or ALL
    values = sorted({row["dimension_value"] for row in window if row["dimension"] == dimension})
    if not values:
        known = sorted({row["dimension"] for row in window} - {ALL})
        raise InputError(f"experiment {experiment_id!r} has no breakdown by {segment!r}; its breakdowns: "
                         f"{', '.join(known)}")
    return "\n\n".join(
        experiment_table([row for row in window if row["dimension"] == dimension and row["dimension_value"] == value])
        for value in values
    )


def _accounting_lines(records: list[RunRecord]) -> list[str]:
    def total(name: str) -> int:
        return sum(getattr(r, name) or 0 for r in records)

    by_reason: dict[str, int] = {}
    for record in records:
        for reason, rows in record.quarantine_reasons.items():
            by_reason[reason] = by_reason.get(reason, 0) + rows
    lines = [
        f"rows read {total('rows_read'):,} = sessionized {total('rows_sessionized'):,} + quarantined "
        f"{total('rows_quarantined'):,} + deduplicated {total('rows_deduplicated'):,} + non-interactive "
        f"{total('rows_non_interactive'):,}",
        "quarantined rows: " + (", ".join(f"{reason}: {rows:,}" for reason, rows in sorted(by_reason.items())) or "none"),
    ]
    seen: dict[str, int] = {}
    for record in records:
        for name, rows in record.configured_events_seen.items():
            seen[name] = seen.get(name, 0) + rows
    unseen = sorted(name for name, rows in seen.items() if not rows)
    if unseen:
        lines.append("configured events never seen (a typo in the config?): " + ", ".join(unseen))
    skipped = sorted({day for record in records for day in record.days_without_input})
    if skipped:
        lines.append("days skipped, input missing: " + ", ".join(map(str, skipped)))
    empty = sorted({day for record in records for day in record.empty_days})
    if empty:
        lines.append("partitions landed without rows: " + _dates(empty))
    return lines
