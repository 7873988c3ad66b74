"""Command-line errors: one line naming the flag or key, a non-zero exit, and no Spark started."""

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from jobs.cli import entry_point, main, parse_args

MINIMAL = "input: {path: data/events}\noutput: {path: data/out}\n"


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(MINIMAL)
    return path


def exit_code(argv) -> int:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    return stopped.value.code


def test_from_after_to_is_an_error_naming_both_flags(config, capsys):
    assert exit_code(["run", "--config", str(config), "--from", "2026-11-02", "--to", "2026-11-01"]) == 2
    assert "--from 2026-11-02 is after --to 2026-11-01" in capsys.readouterr().err


def test_a_date_that_is_not_a_date_is_an_error_naming_the_flag(config, capsys):
    assert exit_code(["run", "--config", str(config), "--date", "2026-02-30"]) == 2
    assert "argument --date: '2026-02-30' is not a date (YYYY-MM-DD)" in capsys.readouterr().err


def test_a_run_needs_a_date_or_a_range(config, capsys):
    assert exit_code(["run", "--config", str(config), "--from", "2026-11-01"]) == 2
    assert "give --date D, --day-before D, or both --from D1 and --to D2" in capsys.readouterr().err


def test_a_date_and_a_range_together_are_an_error(config, capsys):
    argv = ["run", "--config", str(config), "--date", "2026-11-01", "--from", "2026-11-01", "--to", "2026-11-02"]
    assert exit_code(argv) == 2
    assert "--date and --from/--to cannot be combined: give one" in capsys.readouterr().err


def test_day_before_runs_the_reporting_day_before_the_date_a_scheduler_passes():
    # A daily job scheduled on 1 March 2028 (a leap year) processes 29 February.
    args = parse_args(["run", "--config", "job.yaml", "--day-before", "2028-03-01"])

    assert (args.first_day, args.last_day) == (date(2028, 2, 29), date(2028, 2, 29))


def test_complete_before_says_every_partition_before_the_date_a_scheduler_passes_has_landed():
    args = parse_args(["run", "--config", "job.yaml", "--day-before", "2028-03-01", "--complete-before", "2028-03-01"])

    assert args.complete_through == date(2028, 2, 29)


def test_complete_through_and_complete_before_together_are_an_error(config, capsys):
    argv = ["run", "--config", str(config), "--date", "2026-11-01", "--complete-through", "2026-11-01",
            "--complete-before", "2026-11-02"]
    assert exit_code(argv) == 2
    assert "--complete-through and --complete-before cannot be combined: give one" in capsys.readouterr().err


def test_an_unknown_input_format_flag_is_refused(config, capsys):
    assert exit_code(["run", "--config", str(config), "--date", "2026-11-01", "--input-format", "xlsx"]) == 2
    assert "argument --input-format: invalid choice: 'xlsx'" in capsys.readouterr().err


def test_a_bad_config_fails_with_one_line_before_spark_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL + "sessionization: {inactivity_timeout: 30x}\n")

    # `python -m jobs` is the same command line as `sessionlake`; a fresh process shows no JVM was needed.
    done = subprocess.run(
        [sys.executable, "-m", "jobs", "run", "--config", str(bad), "--date", "2026-11-01"],
        capture_output=True, text=True, timeout=60,
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"sessionlake: error: {bad}: sessionization.inactivity_timeout: invalid duration '30x': "
        "write a number and a unit, e.g. 45s, 30m, 2h, 1d or 1h30m"
    ]


def test_a_missing_config_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.yaml"), "--date", "2026-11-01"]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


def test_the_sample_command_generates_events_and_sessionizes_them(spark, tmp_path, capsys):
    argv = ["sample", "--users", "30", "--days", "2", "--events", str(tmp_path / "events"),
            "--output", str(tmp_path / "out")]

    assert main(argv) == 0

    days = spark.read.format("delta").load(str(tmp_path / "out" / "kpis")).where("period = 'day' AND dimension = 'all'")
    assert sorted(r["period_start"] for r in days.collect()) == [date(2026, 11, 1), date(2026, 11, 2)]
    printed = capsys.readouterr().out
    assert printed.startswith("sessionlake: 2026-11-01..2026-11-02 (UTC)")
    assert "day    2026-11-02" in printed
    # Engagement beside APS and SPU; the sample's config makes purchase its conversion.
    assert "APS    SPU  median s    p90 s  bounce  engaged  convert" in printed
    assert "configured events never seen" not in printed


def test_the_sample_size_must_be_positive(capsys):
    assert exit_code(["sample", "--days", "0"]) == 2
    assert "argument --days: '0' is not a whole number above 0" in capsys.readouterr().err


def test_the_command_raises_its_exit_code_for_schedulers_that_call_it_as_a_function(tmp_path, monkeypatch):
    # A Databricks python_wheel_task calls the entry point and ignores what it returns.
    monkeypatch.setattr(sys, "argv", ["sessionlake", "run", "--config", str(tmp_path / "nope.yaml"), "--date", "2026-11-01"])

    with pytest.raises(SystemExit) as stopped:
        entry_point()
    assert stopped.value.code == 2


def test_the_experiments_command_needs_a_config_or_the_tables_folder(capsys):
    assert exit_code(["experiments", "--experiment", "checkout"]) == 2
    assert "give --config (the job's config) or --output (the tables' folder)" in capsys.readouterr().err


def test_a_report_range_that_ends_before_it_starts_is_an_error(capsys):
    assert exit_code(["report", "--output", "out", "--from", "2026-11-05", "--to", "2026-11-01"]) == 2
    assert "--from 2026-11-05 is after --to 2026-11-01" in capsys.readouterr().err
