"""Landed days: a partition folder that exists has landed, whatever it holds, so a quiet day runs and says zero
sessions; a missing folder has not landed yet. For input without folders, --complete-through says what has."""

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.config import InputFormat, InputSpec
from jobs.read import landed_folders, list_input
from tests.test_pipeline import run, table, write_events

EVENTS_WITH_VARIANTS = ("user_id string, event_id string, event_name string, event_ts timestamp, platform string, "
                        "country string, experiment string, variant string")
SCHEMA = "user_id string, event_id string, event_name string, event_ts timestamp, platform string, country string"


def day(text: str) -> date:
    return date.fromisoformat(text)


def folder(root: Path, partition: str) -> Path:
    path = root / "events" / f"event_date={partition}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def json_line(user_id: str, event_id: str, ts: str) -> str:
    return json.dumps({"user_id": user_id, "event_id": event_id, "event_name": "view", "event_ts": ts,
                       "platform": "web", "country": "US"})


def landed(spark, root: Path, fmt: InputFormat, days: list[date]) -> set[date]:
    spec = InputSpec(path=str(root / "events"), format=fmt)
    listing = list_input(spark, spec)
    return set(listing.fingerprints()) | landed_folders(spark, spec, listing, days)


# The rule, on the listing alone: which folders count as landed.


@pytest.mark.parametrize("fmt, data_file, data", [
    (InputFormat.JSON, "part-0.json", json_line("u1", "e1", "2026-10-20T10:00:00Z") + "\n"),
    (InputFormat.CSV, "part-0.csv", "user_id,event_id,event_name,event_ts\nu1,e1,view,2026-10-20T10:00:00Z\n"),
])
def test_a_folder_with_rows_a_zero_byte_file_a_marker_or_nothing_has_landed_and_a_missing_one_has_not(
    spark, tmp_path, fmt, data_file, data
):
    (folder(tmp_path, "2026-10-20") / data_file).write_text(data)
    (folder(tmp_path, "2026-10-21") / data_file).write_text("")  # a quiet day's export: zero bytes
    (folder(tmp_path, "2026-10-22") / "_SUCCESS").write_text("")
    folder(tmp_path, "2026-10-23")  # nothing in it
    # 2026-10-24: no folder, not landed yet

    days = [day("2026-10-20"), day("2026-10-21"), day("2026-10-22"), day("2026-10-23"), day("2026-10-24")]

    assert landed(spark, tmp_path, fmt, days) == set(days[:4])
    # The zero-byte file is in the listing, so a file written into it later changes the day's fingerprint.
    files = list_input(spark, InputSpec(path=str(tmp_path / "events"), format=fmt)).files
    assert [f.size for f in files if f"event_date=2026-10-21/{data_file}" in f.path] == ["0"]


def test_files_under_a_path_with_a_space_and_a_percent_sign_are_listed_once_each(spark, tmp_path):
    # Spark's own listing names files as URIs (a space as %20), its scan as plain paths: one file, not two.
    root = tmp_path / "exports 100%"
    line = json_line("u1", "e1", "2026-10-20T10:00:00Z") + "\n"
    (folder(root, "2026-10-20") / "part 0.json").write_text(line)
    (folder(root, "2026-10-21") / "part 0.json").write_text("")

    listing = list_input(spark, InputSpec(path=str(root / "events"), format=InputFormat.JSON))

    assert sorted((f.path.split("/events/")[1], f.size) for f in listing.files) == [
        ("event_date=2026-10-20/part 0.json", str(len(line))),
        ("event_date=2026-10-21/part 0.json", "0"),
    ]
    assert listing.files[0].path.startswith("file:/") and "exports 100%/events" in listing.files[0].path


def test_a_parquet_folder_with_a_zero_row_file_or_a_marker_has_landed(spark, tmp_path):
    write_events(spark, tmp_path / "events", [("u1", "e1", "view", "2026-10-20T10:00:00", "web", "US")])
    spark.createDataFrame([], SCHEMA).write.parquet(str(folder(tmp_path, "2026-10-21")), mode="overwrite")
    (folder(tmp_path, "2026-10-22") / "_SUCCESS").write_text("")

    days = [day("2026-10-20"), day("2026-10-21"), day("2026-10-22"), day("2026-10-23")]

    assert landed(spark, tmp_path, InputFormat.PARQUET, days) == set(days[:3])


def test_a_delta_tables_folders_say_nothing_of_landing(spark, tmp_path):
    # Delta keeps removed files in the table's folders until VACUUM: only the log says what holds rows.
    frame = spark.createDataFrame([("u1", "e1", "view", "2026-10-20T10:00:00", date(2026, 10, 20))],
                                  "user_id string, event_id string, event_name string, event_ts string, event_date date")
    frame.write.format("delta").partitionBy("event_date").save(str(tmp_path / "events"))
    folder(tmp_path, "2026-10-21")

    assert landed(spark, tmp_path, InputFormat.DELTA, [day("2026-10-20"), day("2026-10-21")]) == {day("2026-10-20")}


# End to end: the quiet days of an export run, say zero sessions, and complete their periods.


@pytest.fixture
def export(tmp_path) -> tuple[Path, Path]:
    """A JSON export that writes event_date=D/part-0.json for every UTC day of 30 September..1 November 2026, zero
    bytes on a quiet day, reported in New York (UTC-4 in October: the New York day D is D 04:00 UTC to D+1 04:00 UTC).

    Events: u1 at 15:00 and 15:10 UTC on 20 October (one session, 2 actions) and u2 at 18:00 (1 action); u1 at
    16:00 UTC on 24 October. Every other day is quiet."""
    rows = {
        "2026-10-20": [json_line("u1", "e1", "2026-10-20T15:00:00Z"), json_line("u1", "e2", "2026-10-20T15:10:00Z"),
                       json_line("u2", "e3", "2026-10-20T18:00:00Z")],
        "2026-10-24": [json_line("u1", "e4", "2026-10-24T16:00:00Z")],
    }
    for n in range(33):
        partition = (date(2026, 9, 30) + timedelta(days=n)).isoformat()
        lines = rows.get(partition, [])
        (folder(tmp_path, partition) / "part-0.json").write_text("".join(line + "\n" for line in lines))
    config = tmp_path / "job.yaml"
    config.write_text(
        f"input: {{path: {tmp_path / 'events'}, format: json, late_days: 7}}\n"
        f"output: {{path: {tmp_path / 'out'}}}\n"
        "reporting: {timezone: America/New_York, segments: [platform]}\n"
    )
    return tmp_path, config


def kpis_of_all(spark, root: Path, period: str):
    return (
        table(spark, root, "kpis").where((F.col("dimension") == "all") & (F.col("period") == period))
        .select("period_start", "sessions", "users", "actions", "aps", "is_complete")
    )


def test_quiet_days_of_an_export_run_say_zero_sessions_a_late_file_fills_one_and_the_month_completes(
    spark, export, capsys
):
    root, config = export

    assert run(config, "--from", "2026-10-20", "--to", "2026-10-27") == 0

    # Every day ran: the quiet ones with zero sessions and null ratios (0 / 0 has no value).
    zero = dict(sessions=0, users=0, actions=0, aps=None, is_complete=True)
    assertDataFrameEqual(kpis_of_all(spark, root, "day"), [
        Row(period_start=day("2026-10-20"), sessions=2, users=2, actions=3, aps=1.5, is_complete=True),
        *[Row(period_start=day(f"2026-10-{n}"), **zero) for n in (21, 22, 23)],
        Row(period_start=day("2026-10-24"), sessions=1, users=1, actions=1, aps=1.0, is_complete=True),
        *[Row(period_start=day(f"2026-10-{n}"), **zero) for n in (25, 26, 27)],
    ])
    # The run's own partitions without a row are listed in its runs row, and the rows still add up (4 = 4).
    (record,) = table(spark, root, "runs").collect()
    assert record.empty_days == [day(f"2026-10-{n}") for n in (21, 22, 23, 25, 26, 27)]
    assert (record.rows_read, record.rows_sessionized, record.days_without_input) == (4, 4, [])
    assert "partitions landed without rows: 2026-10-21..2026-10-23, 2026-10-25..2026-10-27" in capsys.readouterr().out

    # A file lands late in the quiet 22 October; the next runs, for the rest of the month, find the day changed
    # within their late-data window (7 days) and process it again first.
    (folder(root, "2026-10-22") / "part-0.json").write_text(json_line("u3", "e5", "2026-10-22T12:00:00Z") + "\n")
    assert run(config, "--from", "2026-10-28", "--to", "2026-10-31") == 0
    assert [(r.user_id, r.session_date) for r in table(spark, root, "sessions").where(F.col("user_id") == "u3")
            .collect()] == [("u3", day("2026-10-22"))]
    assertDataFrameEqual(kpis_of_all(spark, root, "day").where(F.col("period_start") == "2026-10-22"), [
        Row(period_start=day("2026-10-22"), sessions=1, users=1, actions=1, aps=1.0, is_complete=True),
    ])

    # The start of October runs too, most of it quiet: its weeks and the month are complete.
    assert run(config, "--from", "2026-10-01", "--to", "2026-10-19") == 0
    assertDataFrameEqual(kpis_of_all(spark, root, "week").where(F.col("period_start") >= "2026-10-19"), [
        Row(period_start=day("2026-10-19"), sessions=4, users=3, actions=5, aps=5 / 4, is_complete=True),
        Row(period_start=day("2026-10-26"), sessions=0, users=0, actions=0, aps=None, is_complete=False),
    ])
    assertDataFrameEqual(kpis_of_all(spark, root, "month"), [
        Row(period_start=day("2026-10-01"), sessions=4, users=3, actions=5, aps=5 / 4, is_complete=True),
    ])


def test_parquet_days_with_a_marker_an_empty_folder_a_zero_row_or_a_zero_byte_file_run(spark, job):
    root, config = job
    write_events(spark, root / "events", [("u1", "e1", "view", "2026-11-02T10:00:00", "ios", "DE"),
                                          ("u1", "e2", "view", "2026-11-07T10:00:00", "ios", "DE")])
    (folder(root, "2026-11-02") / "part-z.parquet").write_text("")  # beside a data file: a parquet read fails on it
    (folder(root, "2026-11-03") / "_SUCCESS").write_text("")
    folder(root, "2026-11-04")
    spark.createDataFrame([], SCHEMA).write.parquet(str(folder(root, "2026-11-05")), mode="overwrite")
    (folder(root, "2026-11-06") / "part-0.parquet").write_text("")

    assert run(config, "--from", "2026-11-02", "--to", "2026-11-07") == 0

    days = table(spark, root, "kpis").where((F.col("dimension") == "all") & (F.col("period") == "day"))
    assert sorted((r.period_start.day, r.sessions) for r in days.collect()) == [
        (2, 1), (3, 0), (4, 0), (5, 0), (6, 0), (7, 1),
    ]
    (record,) = table(spark, root, "runs").collect()
    assert record.empty_days == [day(f"2026-11-0{n}") for n in (3, 4, 5, 6)]


def test_a_run_of_parquet_days_that_all_landed_empty_reads_the_columns_from_another_days_files(spark, job):
    root, config = job
    write_events(spark, root / "events", [("u1", "e1", "view", "2026-11-02T10:00:00", "ios", "DE")])
    # The run reads partitions 9..12 November (a day either side): none holds a data file.
    (folder(root, "2026-11-10") / "part-0.parquet").write_text("")
    (folder(root, "2026-11-11") / "part-0.parquet").write_text("")

    assert run(config, "--from", "2026-11-10", "--to", "2026-11-11") == 0

    (record,) = table(spark, root, "runs").collect()
    assert (record.rows_read, record.empty_days) == (0, [day("2026-11-10"), day("2026-11-11")])
    assert table(spark, root, "sessions").count() == 0


def test_a_csv_day_with_a_zero_byte_file_or_only_a_header_runs(spark, tmp_path):
    header = "user_id,event_id,event_name,event_ts,platform,country\n"
    (folder(tmp_path, "2026-11-02") / "part.csv").write_text(header + "u1,e1,view,2026-11-02T10:00:00Z,ios,DE\n")
    (folder(tmp_path, "2026-11-03") / "part.csv").write_text("")
    (folder(tmp_path, "2026-11-04") / "part.csv").write_text(header)
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {{path: {tmp_path / 'events'}, format: csv}}\noutput: {{path: {tmp_path / 'out'}}}\n")

    assert run(config, "--from", "2026-11-02", "--to", "2026-11-04") == 0

    (record,) = table(spark, tmp_path, "runs").collect()
    assert (record.first_day, record.last_day, record.empty_days) == (day("2026-11-02"), day("2026-11-04"),
                                                                       [day("2026-11-03"), day("2026-11-04")])


def test_a_delta_input_day_without_rows_is_skipped_until_complete_through_covers_it(spark, tmp_path, capsys):
    # A Delta table gets no partition for a day without rows: only the scheduler knows that day has landed.
    events = tmp_path / "events"
    frame = spark.createDataFrame(
        [("u1", "e1", "view", "2026-11-02T10:00:00Z", date(2026, 11, 2)),
         ("u1", "e2", "view", "2026-11-04T10:00:00Z", date(2026, 11, 4))],
        "user_id string, event_id string, event_name string, event_ts string, event_date date",
    )
    frame.write.format("delta").partitionBy("event_date").save(str(events))
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {{path: {events}, format: delta}}\noutput: {{path: {tmp_path / 'out'}}}\n"
                      "reporting: {segments: []}\n")

    assert run(config, "--from", "2026-11-02", "--to", "2026-11-04") == 0
    assert "days skipped, input missing: 2026-11-03" in capsys.readouterr().out
    # Alone, the day is the whole input asked for: an error that says what would make it landed.
    assert run(config, "--date", "2026-11-03") == 1
    assert ("has no partition for any day of 2026-11-03..2026-11-03: looked for the UTC partitions 2026-11-03 "
            "(partitions found: 2026-11-02, 2026-11-04); nothing was written. A day without rows of a table has "
            "landed when input.complete_through (--complete-through) covers it") in capsys.readouterr().err

    assert run(config, "--date", "2026-11-03", "--complete-through", "2026-11-04") == 0

    days = table(spark, tmp_path, "kpis").where((F.col("dimension") == "all") & (F.col("period") == "day"))
    assert sorted((r.period_start.day, r.sessions, r.is_complete) for r in days.collect()) == [
        (2, 1, True), (3, 0, True), (4, 1, True),
    ]
    latest = table(spark, tmp_path, "runs").orderBy(F.col("started_at").desc()).first()
    assert (latest.first_day, latest.empty_days) == (day("2026-11-03"), [day("2026-11-03")])


def test_a_range_whose_folders_exist_only_in_part_names_the_days_it_looked_for(spark, tmp_path, capsys):
    # New York's 20 October needs the UTC partitions of the 20th and the 21st; only the 20th's folder exists.
    (folder(tmp_path, "2026-10-20") / "part-0.json").write_text(json_line("u1", "e1", "2026-10-20T15:00:00Z") + "\n")
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {{path: {tmp_path / 'events'}, format: json}}\noutput: {{path: {tmp_path / 'out'}}}\n"
                      "reporting: {timezone: America/New_York}\n")

    assert run(config, "--date", "2026-10-20") == 1

    assert (
        "has no day of 2026-10-20..2026-10-20 with all its partitions (missing: 2026-10-21): looked for the UTC "
        "partitions 2026-10-20..2026-10-21 (partitions found: 2026-10-20); nothing was written"
    ) in capsys.readouterr().err


def test_an_empty_day_of_an_input_with_experiment_columns_runs_and_assigns_nothing(spark, tmp_path):
    # The day's own partitions hold no row: the variants read off them are none (and nothing to count as half
    # tagged), while its neighbours' rows are read for the sessions crossing midnight.
    tagged = EVENTS_WITH_VARIANTS
    write_events(spark, tmp_path / "events", [
        ("u1", "e1", "view", "2026-11-02T10:00:00", "web", "US", "test", "A"),
        ("u2", "e2", "view", "2026-11-04T10:00:00", "web", "US", "test", "B"),
    ], schema=tagged)
    folder(tmp_path, "2026-11-03")
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {{path: {tmp_path / 'events'}}}\noutput: {{path: {tmp_path / 'out'}}}\n"
                      "reporting: {segments: []}\n"
                      "experiments: {experiment_column: experiment, variant_column: variant}\n")

    assert run(config, "--date", "2026-11-03") == 0

    assert table(spark, tmp_path, "assignments").count() == 0
    (day_row,) = table(spark, tmp_path, "kpis").where("period = 'day' AND dimension = 'all'").collect()
    assert (day_row.period_start, day_row.sessions) == (day("2026-11-03"), 0)
