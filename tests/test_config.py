from datetime import date, timedelta
from pathlib import Path

import pytest

from jobs.config import ConfigError, InputFormat, Table, TableName, load_config, parse_duration

MINIMAL = "input: {path: data/events}\noutput: {path: data/out}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        ("500ms", timedelta(milliseconds=500)),
    ],
)
def test_durations_are_a_number_and_a_unit(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30x", "30", "m30", "", "30 minutes"])
def test_a_duration_without_a_known_unit_is_refused(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_defaults_apply_to_every_optional_key(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))

    assert config.input.format is InputFormat.PARQUET
    assert config.input.columns.user_id == "user_id"
    assert config.input.columns.event_date == "event_date"
    assert config.sessionization.inactivity_timeout == timedelta(minutes=30)
    assert config.sessionization.max_session_duration == timedelta(hours=24)
    assert config.reporting.timezone == "UTC"
    assert config.reporting.segments == ("platform", "country")


def test_engagement_metrics_default_to_no_conversions_no_non_interactive_events_10s_or_2_actions(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))

    assert config.sessionization.non_interactive_events == ()
    assert config.metrics.conversion_events == ()
    assert config.metrics.engagement.min_duration == timedelta(seconds=10)
    assert config.metrics.engagement.min_actions == 2
    assert config.metrics.max_action_names == 500


def test_an_event_cannot_be_both_a_conversion_and_non_interactive(tmp_path):
    text = MINIMAL + "sessionization: {non_interactive_events: [ping, buy]}\nmetrics: {conversion_events: [buy]}\n"
    with pytest.raises(ConfigError, match="buy: an event cannot be both a conversion"):
        load_config(write(tmp_path, text))


def test_the_shipped_config_is_valid():
    config = load_config(Path(__file__).parent.parent / "conf" / "sessionlake.yaml")

    assert config.sessionization.inactivity_timeout == timedelta(minutes=30)


def test_complete_through_is_a_date_in_the_config_and_the_command_line_overrides_it(tmp_path):
    path = write(tmp_path, "input: {path: data/events, complete_through: 2026-10-27}\noutput: {path: data/out}\n")

    assert load_config(path).input.complete_through == date(2026, 10, 27)
    assert load_config(path, complete_through=date(2026, 10, 28)).input.complete_through == date(2026, 10, 28)
    assert load_config(write(tmp_path, MINIMAL)).input.complete_through is None


def test_a_complete_through_that_is_not_a_date_is_an_error_naming_the_key(tmp_path):
    path = write(tmp_path, "input: {path: data/events, complete_through: yesterday}\noutput: {path: data/out}\n")

    with pytest.raises(ConfigError, match="input.complete_through: "):
        load_config(path)


def test_an_unknown_key_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"sessionization\.timeuot: unknown key"):
        load_config(write(tmp_path, MINIMAL + "sessionization: {timeuot: 30m}\n"))


def test_an_invalid_duration_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"sessionization\.inactivity_timeout: invalid duration '30x'"):
        load_config(write(tmp_path, MINIMAL + "sessionization: {inactivity_timeout: 30x}\n"))


def test_a_timeout_of_zero_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="inactivity_timeout must be above 0"):
        load_config(write(tmp_path, MINIMAL + "sessionization: {inactivity_timeout: 0s}\n"))


def test_a_timeout_above_the_max_session_duration_is_an_error(tmp_path):
    text = MINIMAL + "sessionization: {inactivity_timeout: 2h, max_session_duration: 1h}\n"
    with pytest.raises(ConfigError, match="at most max_session_duration"):
        load_config(write(tmp_path, text))


def test_an_unknown_time_zone_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"reporting\.timezone: unknown time zone 'Mars/Olympus'"):
        load_config(write(tmp_path, MINIMAL + "reporting: {timezone: Mars/Olympus}\n"))


def test_an_unknown_input_format_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"input\.format"):
        load_config(write(tmp_path, "input: {path: x, format: xlsx}\noutput: {path: o}\n"))


def test_a_missing_required_key_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"output: Field required"):
        load_config(write(tmp_path, "input: {path: x}\n"))


def test_user_type_is_built_in_and_cannot_be_a_configured_segment(tmp_path):
    with pytest.raises(ConfigError, match="user_type is built in"):
        load_config(write(tmp_path, MINIMAL + "reporting: {segments: [platform, user_type]}\n"))


def test_an_event_column_cannot_be_a_segment(tmp_path):
    with pytest.raises(ConfigError, match="user_id is an event column"):
        load_config(write(tmp_path, MINIMAL + "reporting: {segments: [user_id]}\n"))


def test_command_line_overrides_replace_the_paths_and_format(tmp_path):
    config = load_config(
        write(tmp_path, MINIMAL), input_path="/elsewhere/events", input_format="json", output_path="/elsewhere/out"
    )

    assert (config.input.path, config.input.format, config.output.path) == (
        "/elsewhere/events",
        InputFormat.JSON,
        "/elsewhere/out",
    )


def test_overrides_supply_paths_the_file_leaves_out(tmp_path):
    config = load_config(write(tmp_path, "reporting: {timezone: UTC}\n"), input_path="in", output_path="out")

    assert (config.input.path, config.output.path) == ("in", "out")


def test_the_config_is_frozen(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))

    with pytest.raises(Exception):
        config.reporting.timezone = "Europe/Berlin"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("input: {path: x, late_days: three}", r"input\.late_days: Input should be a valid integer"),
        ("input: {path: x, late_days: -1}", r"input\.late_days: Input should be greater than or equal to 0"),
        ("reporting: {segments: platform}", r"reporting\.segments: Input should be a valid (list|tuple)"),
        ("reporting: {segments: [plat-form]}", r"reporting\.segments\.0: 'plat-form' is not a column name"),
        ("validation: {partition_tolerance: 2}", r"validation\.partition_tolerance: invalid duration 2"),
        ("validation: {bot_max_events_per_day: 0}", r"validation\.bot_max_events_per_day: Input should be greater than 0"),
        ("validation: {require_every_day: perhaps}", r"validation\.require_every_day: Input should be a valid boolean"),
        ("metrics: {engagement: {min_duration: 10}}", r"metrics\.engagement\.min_duration: invalid duration 10"),
        ("metrics: {engagement: {min_actions: 0}}", r"metrics\.engagement\.min_actions: Input should be greater than"),
        ("metrics: {max_action_names: 0}", r"metrics\.max_action_names: Input should be greater than or equal to 1"),
        ("metrics: {conversion_events: [' ']}", r"metrics\.conversion_events\.0: an event name cannot be blank"),
        ("metrics: {conversion_events: [buy, buy]}", r"metrics: conversion_events: an event name is listed twice"),
        ("sessionization: {non_interactive_events: ping}", r"sessionization\.non_interactive_events: Input should be"),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_an_error_naming_the_key(tmp_path, section, message):
    text = MINIMAL.replace("input: {path: data/events}\n", "") if section.startswith("input") else MINIMAL
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text + section + "\n"))


def test_the_data_quality_rules_default_to_strict_partitions_no_bot_limit_and_skipping_missing_days(tmp_path):
    rules = load_config(write(tmp_path, MINIMAL)).validation

    assert (rules.partition_tolerance, rules.bot_max_events_per_day, rules.require_every_day) == (
        timedelta(0), None, False
    )


def test_output_catalog_names_managed_tables_in_that_schema(tmp_path):
    config = load_config(write(tmp_path, "input: {path: data/events}\noutput: {catalog: main.analytics}\n"))

    assert config.output.table_path(Table.SESSIONS) == "main.analytics.sessions"
    assert isinstance(config.output.table_path(Table.SESSIONS), TableName)
    assert not isinstance(load_config(write(tmp_path, MINIMAL)).output.table_path(Table.SESSIONS), TableName)


def test_an_input_table_is_read_as_delta(tmp_path):
    config = load_config(write(tmp_path, "input: {table: raw.events}\noutput: {path: o}\n"))

    assert (config.input.table, config.input.path, config.input.format) == ("raw.events", None, InputFormat.DELTA)


@pytest.mark.parametrize(
    "text, message",
    [
        ("input: {path: e}\noutput: {path: o, catalog: analytics}\n", "output: give output.path .* or output.catalog"),
        ("input: {path: e}\noutput: {}\n", "output: give output.path .* or output.catalog"),
        ("input: {path: e, table: raw.events}\noutput: {path: o}\n", "input: give input.path .* or input.table"),
        ("input: {table: raw.events, format: parquet}\noutput: {path: o}\n", "input.table is a catalog table"),
        ("input: {table: events}\noutput: {path: o}\n", "'events' is not a table name"),
        ("input: {path: e}\noutput: {catalog: main.analytics.sessions}\n", "is not a schema name"),
        ("input: {path: e}\noutput: {catalog: 'my-schema'}\n", "is not a schema name"),
    ],
)
def test_where_tables_live_is_given_once_and_named_properly(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_experiments_are_off_unless_configured(tmp_path):
    assert load_config(write(tmp_path, MINIMAL)).experiments is None


def test_variants_come_from_two_event_columns_with_optional_settings_per_experiment(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + (
        "experiments:\n"
        "  experiment_column: experiment\n"
        "  variant_column: variant\n"
        "  settings: {checkout_v2: {control: old, split: {old: 9, new: 1}}}\n"
    )))

    experiments = config.experiments
    assert (experiments.experiment_column, experiments.variant_column, experiments.assignments) == (
        "experiment", "variant", None
    )
    assert experiments.settings["checkout_v2"].control == "old"
    assert experiments.settings["checkout_v2"].split == {"old": 9.0, "new": 1.0}


def test_variants_can_come_from_an_assignments_table_read_like_the_events(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + "experiments: {assignments: {table: ab.assignments}}\n"))

    assert (config.experiments.assignments.table, config.experiments.assignments.format) == (
        "ab.assignments", InputFormat.DELTA
    )


@pytest.mark.parametrize(
    "section, message",
    [
        ("{experiment_column: e}", "give experiment_column and variant_column together"),
        ("{experiment_column: e, variant_column: v, assignments: {path: a}}", "not both"),
        ("{settings: {x: {control: a}}}", "give experiment_column and variant_column .* or assignments"),
        ("{experiment_column: e, variant_column: e}", "must be two columns"),
        ("{experiment_column: event_name, variant_column: v}", "event_name is an event column"),
        ("{assignments: {path: a, table: ab.a}}", "give experiments.assignments.path .* or experiments.assignments.table"),
        ("{assignments: {path: a}, settings: {x: {control: a, split: {b: 1, c: 1}}}}",
         "control 'a' is not a variant of split"),
        ("{assignments: {path: a}, settings: {x: {split: {b: 1}}}}", "two or more"),
        ("{assignments: {path: a}, settings: {x: {split: {b: 1, c: 0}}}}", r"split\.c: Input should be greater than 0"),
    ],
)
def test_an_experiments_section_that_cannot_be_used_is_an_error_naming_the_problem(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, MINIMAL + f"experiments: {section}\n"))
