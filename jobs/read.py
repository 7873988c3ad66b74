"""Input paths or tables -> events with canonical column names; existing output tables -> frames."""

from __future__ import annotations

import hashlib
import logging
import re
from urllib.parse import unquote
from collections.abc import Iterable
from datetime import date
from functools import reduce
from operator import or_
from typing import NamedTuple

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    ByteType,
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    NumericType,
    ShortType,
    StringType,
    TimestampNTZType,
    TimestampType,
)

from jobs.config import AssignmentsSpec, InputFormat, InputSpec, TableName
from jobs.costs import DELTA_READS, count
from jobs.errors import InputError

log = logging.getLogger(__name__)

# The canonical event columns every later stage uses, in order; segments and event_date follow them.
EVENT_COLUMNS = ("user_id", "event_id", "event_name", "event_ts")
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
# All input columns of a row, kept as a struct so a quarantined row can be stored as it was read.
SOURCE_ROW = "source_row"
# Why the reader could not take a row as it is (one of the codes below), or null.
READ_PROBLEM = "read_problem"
MALFORMED_ROW = "malformed_row"  # a JSON line that does not parse as an object, a CSV line with the wrong fields
WRONG_TYPE = "wrong_type"  # a JSON value of a type that does not belong in its column
# Where the JSON and CSV readers put the text of a line they could not parse.
_MALFORMED_TEXT = "_malformed_text"
# How many JSON records the column check reads: JSON files declare no columns, so they are found in the data.
_JSON_SAMPLE = 1000

# The JSON value types (as schema_of_variant names them) each column takes. Ids may be whole numbers, as they may
# be integer columns in parquet; event names and times must be strings (epoch numbers are ambiguous: s or ms?);
# segments take any scalar. Every other type, an object or an array above all, is WRONG_TYPE.
_WHOLE_NUMBER = r"BIGINT|INT|SMALLINT|TINYINT|DECIMAL\(\d+,0\)"
_JSON_TYPES = {
    "user_id": rf"STRING|{_WHOLE_NUMBER}",
    "event_id": rf"STRING|{_WHOLE_NUMBER}",
    "event_name": "STRING",
    "event_ts": "STRING",
}
_JSON_SCALAR = rf"STRING|{_WHOLE_NUMBER}|DECIMAL\(\d+,\d+\)|DOUBLE|FLOAT|BOOLEAN"

# The column types parquet and Delta input may have, per column; a column of another type is an input error.
_ID_TYPES = (StringType, ByteType, ShortType, IntegerType, LongType)
_TYPED_COLUMNS = {
    "user_id": (_ID_TYPES, "a string or an integer"),
    "event_id": (_ID_TYPES, "a string or an integer"),
    "event_name": ((StringType,), "a string"),
    "event_ts": ((TimestampType, TimestampNTZType, StringType), "a timestamp or ISO-8601 text"),
}
_SEGMENT_TYPES = ((StringType, NumericType, BooleanType, DateType), "a string, a number, a boolean or a date")


class InputFile(NamedTuple):
    """One input file as listed: no data is read to list it."""

    path: str
    size: str  # bytes, as text ("" for a Delta table's files: Delta never rewrites a file in place)
    modified: str  # microseconds since the epoch, as text ("" for Delta)


class InputListing(NamedTuple):
    """The input's files, listed once per run; the run's fingerprints and parquet reads both come from it."""

    date_column: str
    files: tuple[InputFile, ...]

    def fingerprints(self) -> dict[date, str]:
        """Per input partition date: a fingerprint of its files that changes when a file is added, replaced or
        removed. A file outside a date folder has no date, and no fingerprint."""
        by_day: dict[date, list[str]] = {}
        for file in self.files:
            day = _partition_date(_partition_text(file.path, self.date_column))
            if day is not None:
                by_day.setdefault(day, []).append(f"{file.path}|{file.size}|{file.modified}")
        return {day: hashlib.sha256(",".join(sorted(lines)).encode()).hexdigest() for day, lines in by_day.items()}

    def paths_between(self, first_day: date, last_day: date) -> list[str]:
        """What a run of partitions [first_day, last_day] reads: the date folders of those partitions, and every
        file outside a date folder (its rows go to quarantine, whichever days run).

        Folders rather than their files: Spark lists a few folders on the driver, but many files with a job of one
        task per file. A file that lands between the listing and the read is read without being in the day's
        fingerprint, so a later run finds the day changed (and processes it again while it is in the late-data
        window, as for any late file).
        """
        files = self._files_between(first_day, last_day)
        only_file: list[InputFile] = []
        if not any(self._is_dated(file) and file.size != "0" for file in files):
            # No partition of the days holds data: the latest data file gives the read its columns (its rows lie
            # outside the days, which the read filters on before anything else).
            only_file = [file for file in self.files if self._is_dated(file) and file.size != "0"][-1:]
            files += only_file
        # A zero-byte file holds no rows, but a parquet read fails on it (no footer): the other files of its folder
        # are read one by one.
        with_zero_byte_file = {_partition_folder(file.path, self.date_column) for file in files if file.size == "0"}
        paths: dict[str, None] = {}  # ordered and unique
        for file in (file for file in files if file.size != "0"):
            folder = _partition_folder(file.path, self.date_column)
            whole_folder = self._is_dated(file) and folder not in with_zero_byte_file and file not in only_file
            paths[folder if whole_folder else file.path] = None
        return list(paths)

    def _is_dated(self, file: InputFile) -> bool:
        return _partition_date(_partition_text(file.path, self.date_column)) is not None

    def _files_between(self, first_day: date, last_day: date) -> list[InputFile]:
        def wanted(path: str) -> bool:
            day = _partition_date(_partition_text(path, self.date_column))
            return day is None or first_day <= day <= last_day

        return [file for file in self.files if wanted(file.path)]


def _partition_folder(path: str, date_column: str) -> str:
    # The path up to and including its date folder (.../event_date=VALUE): the first, as in _partition_text.
    match = re.search(rf"^(.*?/{re.escape(date_column)}=[^/]*)/", path)
    return match.group(1) if match else path


def _partition_text(path: str, date_column: str) -> str:
    # The value of the path's date folder (event_date=VALUE/), "" when it has none.
    match = re.search(rf"/{re.escape(date_column)}=([^/]*)/", path)
    return match.group(1) if match else ""


def _partition_date(text: str) -> date | None:
    # Only a full, real YYYY-MM-DD is a partition date: a lenient parse would read event_date=2026-11 as 1 November.
    if not re.match(_ISO_DATE, text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def list_input(spark: SparkSession, spec: InputSpec) -> InputListing:
    """The input's files, from the file listing (never the data), after checking that they are of input.format.

    Raises InputError for a missing path, a Delta table read as files, or files of another format.
    """
    if spec.format is InputFormat.DELTA:
        count(DELTA_READS)
        files = tuple(InputFile(path, "", "") for path in _load(spark, spec, []).inputFiles())
    else:
        files = _list_files(spark, spec)
        _require_format(spark, spec, files)
    return InputListing(spec.columns.event_date, files)


def landed_folders(spark: SparkSession, spec: InputSpec, listing: InputListing, days: Iterable[date]) -> frozenset[date]:
    """Those of `days` whose partition folder exists in folder input, whatever it holds: a day with only a
    `_SUCCESS` marker, or an empty folder, has landed even though the listing shows no file in it.

    Only the days the listing has no file for are looked at, one folder each (a listing call on the driver, no
    data read), under every parent folder the listing's date folders sit in. A Delta table's folders may hold
    files Delta has removed, so for Delta input this is empty: `input.complete_through` says what has landed.
    """
    if spec.format is InputFormat.DELTA or spec.path is None:
        return frozenset()
    with_files = set(listing.fingerprints())
    parents = {
        _partition_folder(file.path, listing.date_column).rsplit(f"/{listing.date_column}=", 1)[0]
        for file in listing.files
        if _partition_date(_partition_text(file.path, listing.date_column))
    } or {spec.path.rstrip("/")}
    landed = set()
    for day in sorted(set(days) - with_files):
        if any(_folder_exists(spark, f"{parent}/{listing.date_column}={day.isoformat()}") for parent in sorted(parents)):
            landed.add(day)
    return frozenset(landed)


def _folder_exists(spark: SparkSession, folder: str) -> bool:
    # Spark's file sources list a folder when a reader is created, without running a job, and fail on a path that
    # does not exist: the public way to ask a cluster's file system (S3, ABFS, DBFS, HDFS) about a folder.
    try:
        spark.read.format("binaryFile").load(folder)
    except AnalysisException as error:
        if "PATH_NOT_FOUND" in str(error):
            return False
        raise
    return True


def read_events(
    spark: SparkSession,
    spec: InputSpec,
    segments: tuple[str, ...],
    first_day: date,
    last_day: date,
    listing: InputListing | None = None,
) -> DataFrame:
    """Events of the input partitions [first_day, last_day] (UTC dates) and of any partition whose value is not a
    date (these are quarantined), renamed to the canonical columns: events_between(load_input(...)).

    Output: user_id, event_id, event_name (strings), event_ts (as stored: a timestamp or text), the segments
    (strings), event_date (date), source_row (a struct of every input column and the partition's text, for
    quarantine) and read_problem (MALFORMED_ROW, WRONG_TYPE or null). Raises InputError when a column is missing
    or of a type events cannot have. `listing` is the run's `list_input`; parquet input is listed when it is not
    given.
    """
    source = load_input(spark, spec, segments, first_day, last_day, listing)
    return events_between(source, spec, segments, first_day, last_day)


def _wanted_columns(spec: InputSpec, segments: tuple[str, ...]) -> dict[str, str]:
    # Canonical name -> input column name.
    names = spec.columns
    return {
        "user_id": names.user_id,
        "event_id": names.event_id,
        "event_name": names.event_name,
        "event_ts": names.event_ts,
        **{segment: segment for segment in segments},
    }


def load_input(
    spark: SparkSession,
    spec: InputSpec,
    segments: tuple[str, ...],
    first_day: date,
    last_day: date,
    listing: InputListing | None = None,
    tags: tuple[str, ...] = (),
) -> DataFrame:
    """The input as loaded for partitions [first_day, last_day], with its own column names: parquet files listed
    and their schemas merged, every format's columns and types checked (InputError otherwise). Filter and rename
    it with events_between, for those days or any days within them, as often as needed: the listing and the
    checks are done once. `tags` are the experiment columns (experiments.experiment_column, variant_column),
    loaded and checked like segments; pass them to events_between's `segments` to have them as columns."""
    names = spec.columns
    segments = tuple(dict.fromkeys([*segments, *tags]))  # a segment may also be a tag: loaded once
    wanted = _wanted_columns(spec, segments)
    if spec.format is InputFormat.PARQUET:
        listing = listing or list_input(spark, spec)
        source = _load(spark, spec, [*wanted.values(), names.event_date], listing.paths_between(first_day, last_day))
    else:
        source = _load(spark, spec, [*wanted.values(), names.event_date])
    if spec.format is InputFormat.JSON:
        _require_json_keys(
            _json_columns(spark, spec, first_day, last_day), spec, segments, list(wanted.values()), tags
        )
    else:
        _require_columns(source.columns, spec, segments, [*wanted.values(), names.event_date], tags)
    if spec.format in (InputFormat.PARQUET, InputFormat.DELTA):
        _require_types(source, spec, wanted)
    return source


def events_between(
    source: DataFrame, spec: InputSpec, segments: tuple[str, ...], first_day: date, last_day: date
) -> DataFrame:
    """The events (see read_events) of load_input's `source` in partitions [first_day, last_day], and the undated
    ones.

    The days are filtered on the input's partition column before anything else: a filter on a column computed from
    it would stay above the projection, and Spark would read every partition's files (a test pins this).
    """
    names = spec.columns
    wanted = _wanted_columns(spec, segments)
    partition_text = F.col(names.event_date).cast(StringType())
    # Only a full YYYY-MM-DD is a partition date (as in _partition_date), so an unreal date is null too.
    partition_day = F.when(partition_text.rlike(_ISO_DATE), partition_text.try_cast(DateType()))
    row_columns = [F.col(c) for c in source.columns if c != names.event_date]
    if spec.format is InputFormat.JSON:
        columns = {name: _json_text(input_name, _JSON_TYPES.get(name, _JSON_SCALAR)) for name, input_name in wanted.items()}
        wrong_type = reduce(or_, [F.coalesce(is_wrong, F.lit(False)) for _, is_wrong in columns.values()])
        values = {name: value for name, (value, _) in columns.items()}
    else:
        values = {
            name: F.col(input_name) if name == "event_ts" else _as_text(source, input_name)
            for name, input_name in wanted.items()
        }
        wrong_type = F.lit(False)
    malformed = F.col(_MALFORMED_TEXT).isNotNull() if _MALFORMED_TEXT in source.columns else F.lit(False)
    return (
        source
        .where(partition_day.between(F.lit(first_day), F.lit(last_day)) | partition_day.isNull())
        .select(
            *[value.alias(name) for name, value in values.items()],
            partition_day.alias("event_date"),
            F.struct(*row_columns, partition_text.alias(names.event_date)).alias(SOURCE_ROW),
            F.when(malformed, F.lit(MALFORMED_ROW)).when(wrong_type, F.lit(WRONG_TYPE)).alias(READ_PROBLEM),
        )
        .select(*EVENT_COLUMNS, *segments, "event_date", SOURCE_ROW, READ_PROBLEM)
    )


def _as_text(source: DataFrame, name: str) -> Column:
    # Ids and segments compare as text: a numeric user id in parquet and the same id in JSON are one user.
    if isinstance(source.schema[name].dataType, StringType):
        return F.col(name)
    return F.col(name).cast(StringType())


def _json_text(name: str, allowed_types: str) -> tuple[Column, Column]:
    """A JSON value (read as a variant) -> (its text when its type is allowed, whether its type is not allowed).

    A missing key and a JSON null are null, not a wrong type: the missing-value rules judge them.
    """
    value_type = F.schema_of_variant(F.col(name))
    is_wrong = ~value_type.rlike(rf"^({allowed_types}|VOID)$")
    return F.when(~is_wrong, F.try_variant_get(F.col(name), "$", "string")), is_wrong


def _load(spark: SparkSession, spec: InputSpec, columns: list[str], paths: list[str] | None = None) -> DataFrame:
    reader = spark.read.format(spec.format.value)
    if spec.format is InputFormat.PARQUET and paths:
        # Parquet files carry their own schemas, and Spark takes one file's unless told to merge them: a column
        # added to newer files (a new segment) would be missing. Merging the footers of only the partitions read
        # keeps that cost to the run's days, whatever the history's length.
        return _checked_load(reader.option("basePath", spec.path).option("mergeSchema", "true"), spec, paths)
    if spec.format is InputFormat.JSON:
        # An explicit schema skips inference (a scan of every file). Each field is read as a variant, so its JSON
        # type can be checked; a line that is not a JSON object lands whole in _MALFORMED_TEXT. The partition is
        # text: a folder that is not a date must reach quarantine, not fail the listing.
        *fields, partition = columns
        schema = ", ".join([*(f"{c} variant" for c in fields), f"{_MALFORMED_TEXT} string", f"{partition} string"])
        reader = reader.schema(schema).option("columnNameOfCorruptRecord", _MALFORMED_TEXT)
    if spec.format is InputFormat.CSV:
        # Every value is read as text, under the header's names; a line with more or fewer fields than the header
        # keeps its text in _MALFORMED_TEXT. That needs a schema, so the header is read first.
        header = _load_csv(spark.read, spec).columns
        # A CSV parser that reads only the columns a query needs cannot count a line's fields, so it would let a
        # malformed line through in one query and reject it in another. Reading every column keeps them agreed.
        spark.conf.set("spark.sql.csv.parser.columnPruning.enabled", "false")
        schema = ", ".join(f"`{c}` string" for c in header if c != columns[-1])
        reader = (
            reader.option("header", "true")
            .schema(f"{schema}, {_MALFORMED_TEXT} string")
            .option("columnNameOfCorruptRecord", _MALFORMED_TEXT)
            # Every file's header must match those names: a file with other columns fails the read rather than
            # being read by position into the wrong columns.
            .option("enforceSchema", "false")
        )
    return _load_csv(reader, spec) if spec.format is InputFormat.CSV else _checked_load(reader, spec)


def _load_csv(reader, spec: InputSpec) -> DataFrame:
    return _checked_load(reader.format("csv").option("header", "true").option("inferSchema", "false"), spec)


def _checked_load(reader, spec: InputSpec, paths: list[str] | None = None) -> DataFrame:
    try:
        if spec.table is not None:
            return reader.table(spec.table)
        return reader.load(paths or spec.path)
    except AnalysisException as error:
        if "TABLE_OR_VIEW_NOT_FOUND" in str(error):
            raise InputError(f"input.table {spec.table!r} does not exist") from None
        if "PATH_NOT_FOUND" in str(error) or "is not a Delta table" in str(error):
            raise InputError(
                f"input.path {spec.path!r} does not exist or holds no {spec.format.value} input"
            ) from None
        if "UNABLE_TO_INFER_SCHEMA" in str(error):
            raise InputError(f"input.path {spec.path!r} holds no {spec.format.value} files") from None
        raise
    except Exception as error:  # a file that is not parquet fails while Spark reads its footer
        if "CANNOT_READ_FILE_FOOTER" in str(error):
            raise InputError(
                f"input.path {spec.path!r} holds files that are not {spec.format.value}: check input.format"
            ) from None
        raise


def _json_columns(spark: SparkSession, spec: InputSpec, first_day: date, last_day: date) -> list[str]:
    # The keys of the first JSON records of the days read (few: one task reads the start of one file).
    lines = spark.read.text(spec.path)
    partition_text = F.col(spec.columns.event_date).cast(StringType())
    rows = (
        lines.where(partition_text.between(first_day.isoformat(), last_day.isoformat()))
        .limit(_JSON_SAMPLE)
        .select(F.explode(F.json_object_keys("value")).alias("key"))
        .distinct()
        .collect()  # the distinct keys of at most _JSON_SAMPLE records
    )
    return sorted(row["key"] for row in rows)


def _require_columns(
    found: list[str], spec: InputSpec, segments: tuple[str, ...], required: list[str], tags: tuple[str, ...] = ()
) -> None:
    missing = [c for c in required if c not in found]
    if missing:
        listed = ", ".join(c for c in found if c != _MALFORMED_TEXT)
        hint = "".join(
            f"; {key} names {', '.join(named)}"
            for key, named in (("experiments", [c for c in missing if c in tags]),
                               ("reporting.segments", [c for c in missing if c in segments and c not in tags]))
            if named
        )
        raise InputError(f"input {spec.location!r} has no column {', '.join(missing)}{hint}; columns found: {listed}")


def _require_json_keys(
    found: list[str], spec: InputSpec, segments: tuple[str, ...], required: list[str], tags: tuple[str, ...] = ()
) -> None:
    # JSON declares no columns, and a writer may leave out null values: a key absent from the first records read
    # is a missing column only for the event columns every row needs. An absent segment or experiment column is
    # only worth a warning (most events carry no experiment).
    if not found:
        return  # no records to learn keys from: there are none, or every row is malformed
    events_missing = [c for c in required if c not in found and c not in segments]
    if events_missing:
        raise InputError(
            f"input {spec.location!r} has no column {', '.join(events_missing)}; columns found (the keys of the first "
            f"{_JSON_SAMPLE:,} records read): {', '.join(found)}"
        )
    for segment in (c for c in segments if c not in found and c not in tags):
        log.warning("reporting.segments: %s is in none of the first %d JSON records read; where it is absent, "
                    "its value is 'unknown'", segment, _JSON_SAMPLE)
    for tag in (c for c in tags if c not in found):
        log.warning("experiments: %s is in none of the first %d JSON records read (a typo?); events without it are "
                    "in no experiment", tag, _JSON_SAMPLE)


def _require_types(source: DataFrame, spec: InputSpec, wanted: dict[str, str]) -> None:
    for name, input_name in wanted.items():
        kinds, described = _TYPED_COLUMNS.get(name, _SEGMENT_TYPES)
        data_type = source.schema[input_name].dataType
        whole_decimal = isinstance(data_type, DecimalType) and data_type.scale == 0 and name in ("user_id", "event_id")
        if not isinstance(data_type, kinds) and not whole_decimal:
            raise InputError(
                f"input {spec.location!r}: column {input_name} ({name}) is {data_type.simpleString()}, "
                f"but {name} must be {described}"
            )


def _list_files(spark: SparkSession, spec: InputSpec) -> tuple[InputFile, ...]:
    # binaryFile lists the files like any file source; without its content column it reads no data.
    try:
        listing = spark.read.format("binaryFile").load(spec.path)
    except AnalysisException as error:
        if "PATH_NOT_FOUND" in str(error):
            raise InputError(f"input.path {spec.path!r} does not exist or holds no {spec.format.value} input") from None
        raise
    rows = listing.select(
        "path",
        F.col("length").cast("string").alias("size"),
        # Microseconds since the epoch: text of a timestamp would change with the session time zone.
        F.unix_micros("modificationTime").cast("string").alias("modified"),
    ).collect()  # a listing, not data: one short row per input file (three years of hourly files: 26k rows)
    files = [InputFile(row["path"], row["size"], row["modified"]) for row in rows]
    # The scan skips zero-byte files, but the reader's own listing (inputFiles, on the driver) has them: a quiet
    # day's empty export file still marks its day as landed.
    listed = {file.path for file in files}
    empty = {_as_scanned(path) for path in listing.inputFiles()} - listed
    return tuple(sorted(files + [InputFile(path, "0", "") for path in empty]))


def _as_scanned(path: str) -> str:
    # inputFiles gives URIs (file:///a%20b/x%2525.json), the scan's path column plain paths (file:/a b/x%25.json):
    # the same file, in the scan's form.
    return re.sub(r"^file:/+", "file:/", unquote(path))


# File name endings of each file format (a compression suffix may follow: .json.gz, .csv.bz2).
_EXTENSIONS = {InputFormat.PARQUET: ("parquet",), InputFormat.JSON: ("json", "jsonl", "ndjson"), InputFormat.CSV: ("csv",)}


def _require_format(spark: SparkSession, spec: InputSpec, files: tuple[InputFile, ...]) -> None:
    # Reading a Delta table's folder as parquet would also read the files Delta has removed: wrong numbers, no error.
    count(DELTA_READS)
    if DeltaTable.isDeltaTable(spark, spec.path):
        raise InputError(f"input.path {spec.path!r} is a Delta table, but input.format is {spec.format.value}: "
                         "set input.format: delta")
    known = "|".join(ext for exts in _EXTENSIONS.values() for ext in exts)
    extensions = {
        match.group(1) for file in files if (match := re.search(rf"\.({known})(\.[a-z0-9]+)?$", file.path.lower()))
    }
    if extensions.intersection(_EXTENSIONS[spec.format]):
        return
    others = sorted(f.value for f, exts in _EXTENSIONS.items() if extensions.intersection(exts))
    if others:
        raise InputError(f"input.path {spec.path!r} holds {' and '.join(others)} files, but input.format is "
                         f"{spec.format.value}: set input.format to match the files")


ASSIGNMENT_COLUMNS = ("user_id", "experiment_id", "variant", "assigned_at")


def read_assignments(spark: SparkSession, spec: AssignmentsSpec) -> DataFrame:
    """The assignments input's four columns: the ids as text, assigned_at as stored (a timestamp or text, which
    validation parses). InputError when it cannot be read or lacks a column."""
    reader = spark.read.format(spec.format.value)
    if spec.format is InputFormat.CSV:
        reader = reader.option("header", "true").option("inferSchema", "false")
    try:
        source = reader.table(spec.table) if spec.table is not None else reader.load(spec.path)
    except AnalysisException as error:
        if any(kind in str(error) for kind in ("TABLE_OR_VIEW_NOT_FOUND", "PATH_NOT_FOUND", "is not a Delta table",
                                               "UNABLE_TO_INFER_SCHEMA")):
            raise InputError(f"experiments.assignments {spec.location!r} does not exist or holds no "
                             f"{spec.format.value} input") from None
        raise
    missing = [name for name in ASSIGNMENT_COLUMNS if name not in source.columns]
    if missing:
        raise InputError(f"experiments.assignments {spec.location!r} has no column {', '.join(missing)}; columns "
                         f"found: {', '.join(source.columns)}")
    return source.select(*[_as_text(source, name).alias(name) for name in ASSIGNMENT_COLUMNS[:3]], "assigned_at")


def unpartitioned_days(events: DataFrame) -> set[date]:
    """The event dates present in `events` (from read_events), by a query of the data: for an input whose files
    are not in date folders (a Delta table not partitioned by the date column)."""
    rows = events.select("event_date").distinct().collect()  # one row per date: a tiny result
    return {row["event_date"] for row in rows if row["event_date"]}


def table_exists(spark: SparkSession, table: str) -> bool:
    """Whether there is a table at `table`: a Delta table's path, or a TableName in the session's catalog."""
    count(DELTA_READS)
    if isinstance(table, TableName):
        return spark.catalog.tableExists(table)
    return DeltaTable.isDeltaTable(spark, table)


def delta_table(spark: SparkSession, table: str) -> DeltaTable:
    """The Delta table at `table`: a path, or a TableName in the session's catalog."""
    count(DELTA_READS)
    return DeltaTable.forName(spark, table) if isinstance(table, TableName) else DeltaTable.forPath(spark, table)


def read_table(spark: SparkSession, table: str, version: int | None = None) -> DataFrame | None:
    """The Delta table at `table` (a path or a TableName; as of `version`, if given), or None when no table has been
    written there yet."""
    if not table_exists(spark, table):
        return None
    count(DELTA_READS)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.table(table) if isinstance(table, TableName) else reader.load(table)


def table_version(spark: SparkSession, table: str) -> int | None:
    """The latest version of the Delta table at `table`, or None when there is no table yet."""
    if not table_exists(spark, table):
        return None
    count(DELTA_READS)  # the history, besides the snapshot
    return delta_table(spark, table).history(1).select("version").first()["version"]


def commits_by_tag(spark: SparkSession, path: str, last: int = 500) -> dict[str, int]:
    """userMetadata -> its first commit version, over the table's last `last` commits: the order in which tagged
    commits landed, which no writer's clock can get wrong."""
    count(DELTA_READS)
    history = delta_table(spark, path).history(last).select("version", "userMetadata").collect()
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
    if not table_exists(spark, path):
        return WriterStart(None, None)
    count(DELTA_READS)
    history = delta_table(spark, path).history(last).select("version", "userMetadata").collect()
    tagged = [row["version"] for row in history if row["userMetadata"] == tag]
    if not tagged:
        return WriterStart(None, history[0]["version"])
    first = min(tagged)
    return WriterStart(first, first - 1 if first > 0 else None)
