"""YAML file -> frozen, validated JobConfig (the only module that sees raw YAML)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

# Dimensions the job itself produces in the kpis table (every user; new or returning), so no input column may
# take their names.
ALL = "all"
USER_TYPE = "user_type"
RESERVED_SEGMENTS = frozenset({ALL, USER_TYPE})

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_PART = r"[A-Za-z_][A-Za-z0-9_]*"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names every bad key."""


def parse_duration(value: Any) -> timedelta:
    """'45s', '30m', '2h', '1d', '1h30m' or '1.5h' -> timedelta; a bare number has no unit and is refused."""
    if isinstance(value, timedelta):
        return value
    text = str(value).strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(text)
    if not isinstance(value, str) or not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {value!r}: write a number and a unit, e.g. 45s, 30m, 2h, 1d or 1h30m")
    return timedelta(seconds=sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin") from None
    return name


def _check_column_name(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a column name (letters, digits and _, not starting with a digit)")
    return name


def _check_event_name(name: str) -> str:
    if not name.strip():
        raise ValueError("an event name cannot be blank")
    return name


def _name_check(parts: str, described: str):
    pattern = re.compile(rf"^{_NAME_PART}(\.{_NAME_PART}){{{parts}}}$")

    def check(name: str) -> str:
        if not pattern.match(name):
            raise ValueError(f"{name!r} is not {described}")
        return name

    return check


class TableName(str):
    """A catalog table's name (catalog.schema.table or schema.table), where a plain str is a table's path."""


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
ColumnName = Annotated[str, AfterValidator(_check_column_name)]
EventName = Annotated[str, AfterValidator(_check_event_name)]
# A schema (database) in the session's catalog, or catalog.schema; a table as schema.table or catalog.schema.table.
SchemaName = Annotated[str, AfterValidator(_name_check("0,1", "a schema name: schema or catalog.schema"))]
QualifiedTableName = Annotated[
    str, AfterValidator(_name_check("1,2", "a table name: schema.table or catalog.schema.table"))
]


class InputFormat(StrEnum):
    PARQUET = "parquet"
    JSON = "json"
    CSV = "csv"
    DELTA = "delta"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputColumns(_Frozen):
    """Names of the input's columns; the job renames them to the keys' names when it reads."""

    user_id: ColumnName = "user_id"
    event_id: ColumnName = "event_id"
    event_name: ColumnName = "event_name"
    event_ts: ColumnName = "event_ts"
    event_date: ColumnName = "event_date"  # the partition column: UTC date of event_ts


class _Source(_Frozen):
    """Files or a Delta table under `path`, or a catalog table (`table`, a Delta table); `_key` names the section in
    messages."""

    _key: ClassVar[str]
    path: str | None = None
    table: QualifiedTableName | None = None
    format: InputFormat = InputFormat.PARQUET

    @model_validator(mode="before")
    @classmethod
    def _a_table_is_delta(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("table") is not None and "format" not in raw:
            return {**raw, "format": InputFormat.DELTA.value}
        return raw

    @model_validator(mode="after")
    def _path_or_table(self) -> _Source:
        key = self._key
        if (self.path is None) == (self.table is None):
            raise ValueError(f"give {key}.path (files or a Delta table) or {key}.table (a catalog table), not both")
        if self.table is not None and self.format is not InputFormat.DELTA:
            raise ValueError(f"{key}.table is a catalog table, read as delta: leave {key}.format out or set delta")
        return self

    @property
    def location(self) -> str:
        """The path or the table name, for messages."""
        return self.table if self.table is not None else self.path


class InputSpec(_Source):
    """Where events come from: files or a Delta table under `path`, or a catalog table (`table`, a Delta table)."""

    _key: ClassVar[str] = "input"
    columns: InputColumns = InputColumns()
    # How many days back a run looks for input partitions that changed since they were processed (late data).
    late_days: Annotated[int, Field(ge=0)] = 3
    # Every UTC partition up to this date has landed, with or without rows: for input whose empty days leave no
    # folder (a Delta table), or to say so for any input. None: a partition has landed when its folder exists.
    complete_through: date | None = None


def _distinct_names(names: tuple[str, ...], key: str) -> None:
    if len(set(names)) != len(names):
        raise ValueError(f"{key}: an event name is listed twice")


class Sessionization(_Frozen):
    inactivity_timeout: Duration = timedelta(minutes=30)
    max_session_duration: Duration = timedelta(hours=24)
    # Events that are not user actions (heartbeats, pushes received): they never open, extend or count in a session.
    non_interactive_events: tuple[EventName, ...] = ()

    @model_validator(mode="after")
    def _timeout_within_cap(self) -> Sessionization:
        if self.inactivity_timeout <= timedelta(0):
            raise ValueError("inactivity_timeout must be above 0")
        if self.max_session_duration < self.inactivity_timeout:
            raise ValueError("inactivity_timeout must be at most max_session_duration")
        _distinct_names(self.non_interactive_events, "non_interactive_events")
        return self


class Validation(_Frozen):
    """Data-quality rules applied to every input row before sessionization."""

    # How far event_ts may fall outside the UTC day of its partition (clock skew, late uploads) and still count.
    # Every run reads this much more input on each side of its days.
    partition_tolerance: Duration = timedelta(0)
    # A user with more events than this in one input partition (UTC day) is a bot or a test account: all their
    # rows of that day are quarantined. None: no limit.
    bot_max_events_per_day: Annotated[int, Field(gt=0)] | None = None
    # A reporting day without input partitions is skipped and reported (false) or fails the run (true).
    require_every_day: bool = False

    @model_validator(mode="after")
    def _tolerance_not_negative(self) -> Validation:
        if self.partition_tolerance < timedelta(0):
            raise ValueError("partition_tolerance must be 0s or more")
        return self


class Reporting(_Frozen):
    timezone: TimeZoneName = "UTC"
    segments: tuple[ColumnName, ...] = ("platform", "country")

    @model_validator(mode="after")
    def _segments_are_usable(self) -> Reporting:
        reserved = sorted(RESERVED_SEGMENTS.intersection(self.segments))
        if reserved:
            raise ValueError(f"segments: {', '.join(reserved)} is built in and cannot be an input segment")
        if len(set(self.segments)) != len(self.segments):
            raise ValueError("segments: a segment is listed twice")
        return self


class Engagement(_Frozen):
    """A session is engaged when it lasts at least min_duration, has at least min_actions actions, or converts."""

    min_duration: Duration = timedelta(seconds=10)
    min_actions: Annotated[int, Field(ge=1)] = 2

    @model_validator(mode="after")
    def _duration_not_negative(self) -> Engagement:
        if self.min_duration < timedelta(0):
            raise ValueError("min_duration must be 0s or more")
        return self


class Metrics(_Frozen):
    # Events that reach a goal (a purchase, a signup): a session with one converts.
    conversion_events: tuple[EventName, ...] = ()
    engagement: Engagement = Engagement()
    # The action_kpis table keeps, per period and segment value, this many event names by actions; the rest are
    # summed into one row named (other).
    max_action_names: Annotated[int, Field(ge=1)] = 500

    @model_validator(mode="after")
    def _names_listed_once(self) -> Metrics:
        _distinct_names(self.conversion_events, "conversion_events")
        return self


class AssignmentsSpec(_Source):
    """An assignments table (user_id, experiment_id, variant, assigned_at), read like the events."""

    _key: ClassVar[str] = "experiments.assignments"


class ExperimentSettings(_Frozen):
    """One experiment's optional settings."""

    # The variant the others are compared with. Default: the variant named control, else the first by name.
    control: str | None = None
    # The expected share of users per variant (any positive weights: 50/50, 0.9/0.1): the sample-ratio test's
    # reference. Default: equal shares.
    split: dict[str, Annotated[float, Field(gt=0)]] | None = None

    @model_validator(mode="after")
    def _control_in_split(self) -> ExperimentSettings:
        if self.control is not None and self.split is not None and self.control not in self.split:
            raise ValueError(f"control {self.control!r} is not a variant of split")
        if self.split is not None and len(self.split) < 2:
            raise ValueError("split: give the share of every variant, two or more")
        return self


class Experiments(_Frozen):
    """Where users' variants come from: two event columns (the experiment and the variant an event was seen
    under), or an assignments table; and optional settings per experiment id."""

    experiment_column: ColumnName | None = None
    variant_column: ColumnName | None = None
    assignments: AssignmentsSpec | None = None
    settings: dict[str, ExperimentSettings] = {}

    @model_validator(mode="after")
    def _one_source(self) -> Experiments:
        columns = (self.experiment_column, self.variant_column)
        if (None in columns) != (columns == (None, None)):
            raise ValueError("give experiment_column and variant_column together")
        if (self.experiment_column is None) == (self.assignments is None):
            raise ValueError("give experiment_column and variant_column (variants on the events) or assignments "
                             "(an assignments table), not both")
        if self.experiment_column is not None and self.experiment_column == self.variant_column:
            raise ValueError("experiment_column and variant_column must be two columns")
        return self

    @property
    def event_columns(self) -> tuple[str, ...]:
        """The event columns variants are read from (experiment, variant), or () with an assignments table."""
        if self.experiment_column is None or self.variant_column is None:
            return ()
        return self.experiment_column, self.variant_column


class Table(StrEnum):
    """The Delta tables a run writes under output.path."""

    SESSIONS = "sessions"
    KPIS = "kpis"
    ACTION_KPIS = "action_kpis"
    EXPERIMENTS = "experiments"  # written only when experiments are configured
    ASSIGNMENTS = "assignments"  # written only when variants are read off event columns
    USERS = "users"
    QUARANTINE = "quarantine"
    RUNS = "runs"


class OutputSpec(_Frozen):
    """Where the tables go: Delta tables in folders under `path`, or managed tables in the catalog schema `catalog`
    (`main.analytics` or `analytics`)."""

    path: str | None = None
    catalog: SchemaName | None = None

    @model_validator(mode="after")
    def _path_or_catalog(self) -> OutputSpec:
        if (self.path is None) == (self.catalog is None):
            raise ValueError("give output.path (a folder) or output.catalog (a schema: main.analytics), not both")
        return self

    def table_path(self, table: Table) -> str:
        """Where `table` lives: the folder output.path/<table>, or the TableName output.catalog.<table>."""
        if self.catalog is not None:
            return TableName(f"{self.catalog}.{table.value}")
        return f"{self.path.rstrip('/')}/{table.value}"

    @property
    def location(self) -> str:
        """The folder or the schema, for messages."""
        return self.catalog if self.catalog is not None else self.path


class JobConfig(_Frozen):
    input: InputSpec
    sessionization: Sessionization = Sessionization()
    validation: Validation = Validation()
    reporting: Reporting = Reporting()
    metrics: Metrics = Metrics()
    # None: no experiments table.
    experiments: Experiments | None = None
    output: OutputSpec

    @model_validator(mode="after")
    def _segments_are_not_event_columns(self) -> JobConfig:
        event_columns = set(InputColumns.model_fields) | set(self.input.columns.model_dump().values())
        clashing = sorted(event_columns.intersection(self.reporting.segments))
        if clashing:
            raise ValueError(f"reporting.segments: {', '.join(clashing)} is an event column, not a segment")
        tags = self.experiments.event_columns if self.experiments is not None else ()
        clashing = sorted(event_columns.intersection(tags))
        if clashing:
            raise ValueError(f"experiments: {', '.join(clashing)} is an event column (user, event id, name or time), "
                             "not the experiment or variant column")
        both = sorted(set(self.metrics.conversion_events) & set(self.sessionization.non_interactive_events))
        if both:
            raise ValueError(f"{', '.join(both)}: an event cannot be both a conversion (metrics.conversion_events) "
                             "and non-interactive (sessionization.non_interactive_events)")
        return self


def load_config(
    path: Path,
    *,
    input_path: str | None = None,
    input_format: str | None = None,
    output_path: str | None = None,
    complete_through: date | None = None,
) -> JobConfig:
    """Parse and validate the YAML at `path`, with command-line overrides applied first.

    Raises ConfigError naming every unknown or invalid key, before any Spark work starts.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections (input, sessionization, ...)")
    # A path given on the command line replaces the table or catalog the config names.
    overrides = {
        ("input", "path", "table"): input_path,
        ("input", "format", None): input_format,
        ("output", "path", "catalog"): output_path,
        ("input", "complete_through", None): complete_through,
    }
    for (section, key, replaced), value in overrides.items():
        if value is not None:
            raw.setdefault(section, {})
            if isinstance(raw[section], dict):
                raw[section][key] = value
                raw[section].pop(replaced, None)
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{path}: " + "; ".join(_describe(e) for e in error.errors())) from None


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{key}: {message}" if key else message
