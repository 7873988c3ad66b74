"""Input paths or tables -> events with canonical column names; existing output tables -> frames."""

from __future__ import annotations

import re
from datetime import date
from typing import NamedTuple

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, StructField, StructType

from jobs.config import InputFormat, InputSpec

# The canonical event columns every later stage uses, in order; segments and event_date follow them.
EVENT_COLUMNS = ("user_id", "event_id", "event_name", "event_ts")
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
# All input columns of a row, kept as a struct so a quarantined row can be stored as it was read.
SOURCE_ROW = "source_row"


class InputError(ValueError):
    """The input cannot be read as events: a missing path, or a missing column (the message lists those found)."""


def read_events(
    spark: SparkSession, spec: InputSpec, segments: tuple[str, ...], first_day: date, last_day: date
) -> DataFrame:
    """Events of the input partitions [first_day, last_day] (UTC dates) and of any partition whose value is not a
    date (these are quarantined), renamed to the canonical columns.

    Output: user_id, event_id, event_name (strings), event_ts (as stored: a timestamp or text), the segments
    (strings), event_date (date) and source_row (a struct of every input column, for quarantine).
    """
    names = spec.columns
    wanted = {
        "user_id": names.user_id,
        "event_id": names.event_id,
        "event_name": names.event_name,
        "event_ts": names.event_ts,
        **{segment: segment for segment in segments},
    }
    source = _load(spark, spec, [*wanted.values(), names.event_date])
    _require_columns(source, spec, [*wanted.values(), names.event_date])

    # Only a full YYYY-MM-DD is a partition date: a lenient cast would read event_date=2026-11 as 1 November.
    partition_text = F.col(names.event_date).cast(StringType())
    partition_day = F.when(partition_text.rlike(_ISO_DATE), partition_text.try_cast(DateType()))
    row_columns = [c for c in source.columns if c != names.event_date]
    return (
        source
        .where(partition_day.between(F.lit(first_day), F.lit(last_day)) | partition_day.isNull())
        .select(
            *[_as_text(source, input_name).alias(name) for name, input_name in wanted.items() if name != "event_ts"],
            F.col(names.event_ts).alias("event_ts"),
            partition_day.alias("event_date"),
            F.struct(*row_columns).alias(SOURCE_ROW),
        )
        .select(*EVENT_COLUMNS, *segments, "event_date", SOURCE_ROW)
    )


def _as_text(source: DataFrame, name: str):
    # Ids and segments compare as text: a numeric user id in parquet and the same id in JSON are one user.
    if isinstance(source.schema[name].dataType, StringType):
        return F.col(name)
    return F.col(name).cast(StringType())


def _load(spark: SparkSession, spec: InputSpec, columns: list[str]) -> DataFrame:
    reader = spark.read.format(spec.format.value)
    if spec.format is InputFormat.JSON:
        # An explicit schema skips inference (a scan of every file) and reads every wanted field as text,
        # so a timestamp keeps its written offset until validation parses it.
        # The partition is text too: a folder that is not a date must reach quarantine, not fail the listing.
        reader = reader.schema(StructType([StructField(c, StringType()) for c in columns]))
    if spec.format is InputFormat.CSV:
        # No schema: CSV columns are matched by header name, and every value is read as text.
        reader = reader.option("header", "true").option("inferSchema", "false")
    try:
        return reader.load(spec.path)
    except AnalysisException as error:
        if "PATH_NOT_FOUND" in str(error) or "is not a Delta table" in str(error):
            raise InputError(
                f"input.path {spec.path!r} does not exist or holds no {spec.format.value} input"
            ) from None
        raise


def _require_columns(source: DataFrame, spec: InputSpec, required: list[str]) -> None:
    missing = [c for c in required if c not in source.columns]
    if missing:
        raise InputError(
            f"input {spec.path!r} has no column {', '.join(missing)}; columns found: {', '.join(source.columns)}"
        )


def partition_fingerprints(spark: SparkSession, spec: InputSpec) -> dict[date, str]:
    """Per input partition date: a fingerprint of its files that changes when a file is added, replaced or removed.

    Read from the file listing, never the data: paths, sizes and modification times for parquet, JSON and CSV; the
    active file paths for Delta (Delta never rewrites a file in place). A Delta input not partitioned by the
    date column has no per-day files: see `unpartitioned_days`.
    """
    folder = rf"/{re.escape(spec.columns.event_date)}=(\d{{4}}-\d{{2}}-\d{{2}})/"
    if spec.format is InputFormat.DELTA:
        paths = _load(spark, spec, []).inputFiles()
        files = spark.createDataFrame([(p, "", "") for p in paths], "path string, size string, modified string")
    else:
        files = _list_files(spark, spec)
    rows = (
        files
        .withColumn("day", F.regexp_extract("path", folder, 1))
        .where(F.col("day") != "")
        .groupBy("day")
        .agg(F.array_sort(F.collect_list(F.concat_ws("|", "path", "size", "modified"))).alias("files"))
        .select("day", F.sha2(F.concat_ws(",", "files"), 256).alias("fingerprint"))
        .collect()  # one row per partition folder
    )
    return {date.fromisoformat(row["day"]): row["fingerprint"] for row in rows}


def _list_files(spark: SparkSession, spec: InputSpec) -> DataFrame:
    # binaryFile lists the files like any file source; without its content column it reads no data.
    try:
        listing = spark.read.format("binaryFile").load(spec.path)
    except AnalysisException as error:
        if "PATH_NOT_FOUND" in str(error):
            raise InputError(f"input.path {spec.path!r} does not exist or holds no {spec.format.value} input") from None
        raise
    return listing.select(
        "path",
        F.col("length").cast("string").alias("size"),
        # Microseconds since the epoch: text of a timestamp would change with the session time zone.
        F.unix_micros("modificationTime").cast("string").alias("modified"),
    )


def unpartitioned_days(events: DataFrame) -> set[date]:
    """The event dates present in `events` (from read_events), by a query of the data: for an input whose files
    are not in date folders (a Delta table not partitioned by the date column)."""
    rows = events.select("event_date").distinct().collect()  # one row per date: a tiny result
    return {row["event_date"] for row in rows if row["event_date"]}


def read_table(spark: SparkSession, path: str, version: int | None = None) -> DataFrame | None:
    """The Delta table at `path` (as of `version`, if given), or None when no table has been written there yet."""
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)


def table_version(spark: SparkSession, path: str) -> int | None:
    """The latest version of the Delta table at `path`, or None when there is no table yet."""
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).select("version").first()["version"]


def commits_by_tag(spark: SparkSession, path: str, last: int = 500) -> dict[str, int]:
    """userMetadata -> its first commit version, over the table's last `last` commits: the order in which tagged
    commits landed, which no writer's clock can get wrong."""
    history = DeltaTable.forPath(spark, path).history(last).select("version", "userMetadata").collect()
    firsts: dict[str, int] = {}
    for row in history:
        if row["userMetadata"]:
            firsts[row["userMetadata"]] = min(row["version"], firsts.get(row["userMetadata"], row["version"]))
    return firsts


class WriterStart(NamedTuple):
    """Where a writer that tags its commits started in a table."""

    first_commit: int | None  # its first tagged commit; None if it committed nothing there
    version_read: int | None  # the version before it: what the writer read (None: no table yet)


def writer_start(spark: SparkSession, path: str, tag: str, last: int = 500) -> WriterStart:
    """The first commit tagged `tag` (userMetadata) in the table at `path`, and the version before it; when there
    is none, the latest version (nothing was written since the writer started, if it held the output's lock)."""
    if not DeltaTable.isDeltaTable(spark, path):
        return WriterStart(None, None)
    history = DeltaTable.forPath(spark, path).history(last).select("version", "userMetadata").collect()
    tagged = [row["version"] for row in history if row["userMetadata"] == tag]
    if not tagged:
        return WriterStart(None, history[0]["version"])
    first = min(tagged)
    return WriterStart(first, first - 1 if first > 0 else None)
