"""Bad input: row-level problems go to quarantine with a reason, dataset-level ones stop the run before it writes,
and every row read is accounted for."""

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

import jobs.pipeline
from jobs.config import InputFormat, InputSpec
from jobs.errors import InputError
from jobs.read import list_input, read_events
from jobs.validate import to_quarantine, with_bot_user_days, with_reject_reason
from tests.helpers import utc
from tests.test_pipeline import MON, MONDAY, run, table, write_events

TUE = MON + timedelta(days=1)


def write_lines(folder: Path, day: str, lines: list[str], name: str = "part.json") -> None:
    partition = folder / f"event_date={day}"
    partition.mkdir(parents=True, exist_ok=True)
    (partition / name).write_text("\n".join(lines) + "\n")


def event(user_id, event_id, ts="2026-11-02T10:00:00Z", name="view", **extra) -> str:
    return json.dumps({"user_id": user_id, "event_id": event_id, "event_name": name, "event_ts": ts, **extra})


def checked(spark, spec: InputSpec, tolerance=timedelta(0), first=MON, last=MON):
    return read_events(spark, spec, (), first, last).transform(with_reject_reason, tolerance)


def reasons(frame):
    return frame.select("event_id", "reject_reason")


def test_broken_json_lines_and_values_of_the_wrong_json_type_are_quarantined(spark, tmp_path):
    write_lines(tmp_path / "events", "2026-11-02", [
        event("u1", "e1"),
        event(42, "e2"),  # a whole-number id is an id, as in an integer parquet column
        event({"id": "u1"}, "e3"),  # an object is no user id
        event("u1", "e4", name=7),  # an event name is text
        event("u1", "e5", ts=1762077600),  # epoch seconds or milliseconds? a timestamp must be ISO-8601 text
        event("u1", 1.5),  # a fractional event id
        '{"user_id": "u1", "event_id": "e7", "event_ts": "2026-11-02T10:',  # cut off mid-line
        "[1, 2]",  # JSON, but not an object
        event(None, "e9"),  # a JSON null is a missing value, not a wrong type
    ])
    spec = InputSpec(path=str(tmp_path / "events"), format=InputFormat.JSON)

    assertDataFrameEqual(
        checked(spark, spec).select("user_id", "event_id", "reject_reason"),
        [Row(user_id="u1", event_id="e1", reject_reason=None), Row(user_id="42", event_id="e2", reject_reason=None),
         Row(user_id=None, event_id="e3", reject_reason="wrong_type"),
         Row(user_id="u1", event_id="e4", reject_reason="wrong_type"),
         Row(user_id="u1", event_id="e5", reject_reason="wrong_type"),
         Row(user_id="u1", event_id=None, reject_reason="wrong_type"),
         Row(user_id=None, event_id=None, reject_reason="malformed_row"),
         Row(user_id=None, event_id=None, reject_reason="malformed_row"),
         Row(user_id=None, event_id="e9", reject_reason="missing_user_id")],
    )


def test_a_quarantined_malformed_line_keeps_its_text_and_its_partition(spark, tmp_path):
    write_lines(tmp_path / "events", "2026-11-02", ['{"user_id": "u1", "event_id": "e7", "event_ts": "2026-'])
    spec = InputSpec(path=str(tmp_path / "events"), format=InputFormat.JSON)

    row = to_quarantine(checked(spark, spec), "run-1").first()

    assert json.loads(row["raw_row"]) == {
        "user_id": None, "event_id": None, "event_name": None, "event_ts": None,
        "_malformed_text": '{"user_id": "u1", "event_id": "e7", "event_ts": "2026-',
        "event_date": "2026-11-02",
    }


def test_csv_lines_with_too_few_or_too_many_fields_are_malformed(spark, tmp_path):
    partition = tmp_path / "events" / "event_date=2026-11-02"
    partition.mkdir(parents=True)
    (partition / "part.csv").write_text(
        "user_id,event_id,event_name,event_ts\n"
        "u1,e1,view,2026-11-02T10:00:00Z\n"
        "u1,e2,view\n"
        "u1,e3,view,2026-11-02T10:00:00Z,surplus\n"
    )
    spec = InputSpec(path=str(tmp_path / "events"), format=InputFormat.CSV)

    assertDataFrameEqual(
        reasons(checked(spark, spec)),
        [Row(event_id="e1", reject_reason=None), Row(event_id="e2", reject_reason="malformed_row"),
         Row(event_id="e3", reject_reason="malformed_row")],
    )


def test_a_timestamp_off_its_partition_by_more_than_the_tolerance_is_quarantined(spark, tmp_path):
    # Partition 2 Nov is [2 Nov 00:00, 3 Nov 00:00) UTC; with a 1h tolerance, [1 Nov 23:00, 3 Nov 01:00).
    write_lines(tmp_path / "events", "2026-11-02", [
        event("u1", "e0", ts="2026-11-02T12:00:00Z"),  # in the partition's own day
        event("u1", "e1", ts="2026-11-01T23:00:00Z"),  # exactly the tolerance early: kept
        event("u1", "e2", ts="2026-11-01T22:59:59Z"),  # a second more: out
        event("u1", "e3", ts="2026-11-03T00:59:59Z"),  # late, within the tolerance
        event("u1", "e4", ts="2026-11-03T01:00:00Z"),  # the end is exclusive
        event("u1", "e5", ts="1970-01-01T00:00:00Z"),  # an unset device clock
        event("u1", "e6", ts="2100-01-01T00:00:00Z"),  # far future
    ])
    spec = InputSpec(path=str(tmp_path / "events"), format=InputFormat.JSON)

    assertDataFrameEqual(
        reasons(checked(spark, spec, tolerance=timedelta(hours=1))),
        [Row(event_id="e0", reject_reason=None),
         Row(event_id="e1", reject_reason=None), Row(event_id="e2", reject_reason="event_date_mismatch"),
         Row(event_id="e3", reject_reason=None), Row(event_id="e4", reject_reason="event_date_mismatch"),
         Row(event_id="e5", reject_reason="event_date_mismatch"),
         Row(event_id="e6", reject_reason="event_date_mismatch")],
    )
    # Without a tolerance, only the partition's own UTC day counts.
    strict = {r["event_id"] for r in checked(spark, spec).where(F.col("reject_reason").isNull()).collect()}
    assert strict == {"e0"}


def test_a_user_over_the_bot_limit_is_quarantined_for_that_partition_only(spark, tmp_path):
    folder = tmp_path / "events"
    # bot: 4 distinct events on Monday (one sent twice: copies do not count), 1 on Tuesday; human: 2 on Monday.
    write_lines(folder, "2026-11-02", [
        event("bot", "b1", ts="2026-11-02T10:00:00Z"), event("bot", "b2", ts="2026-11-02T10:00:01Z"),
        event("bot", "b3", ts="2026-11-02T10:00:02Z"), event("bot", "b3", ts="2026-11-02T10:00:03Z"),
        event("bot", "b4", ts="2026-11-02T10:00:04Z"), event("bot", "b5", ts=None),
        event("human", "h1"), event("human", "h2"),
    ])
    write_lines(folder, "2026-11-03", [event("bot", "b6", ts="2026-11-03T10:00:00Z")])
    spec = InputSpec(path=str(folder), format=InputFormat.JSON)

    flagged = checked(spark, spec, last=TUE).transform(with_bot_user_days, 3)

    assertDataFrameEqual(
        reasons(flagged),
        [Row(event_id="b1", reject_reason="bot_user_day"), Row(event_id="b2", reject_reason="bot_user_day"),
         Row(event_id="b3", reject_reason="bot_user_day"), Row(event_id="b3", reject_reason="bot_user_day"),
         Row(event_id="b4", reject_reason="bot_user_day"), Row(event_id="b5", reject_reason="missing_event_ts"),
         Row(event_id="h1", reject_reason=None), Row(event_id="h2", reject_reason=None),
         Row(event_id="b6", reject_reason=None)],
    )
    # At the limit is not over it, and the rule is off by default.
    assert checked(spark, spec, last=TUE).transform(with_bot_user_days, 4).where("reject_reason = 'bot_user_day'").count() == 0
    assert reasons(checked(spark, spec, last=TUE).transform(with_bot_user_days, None)).where(
        "reject_reason IS NOT NULL").count() == 1


def test_non_interactive_events_do_not_count_towards_the_bot_limit(spark, tmp_path):
    folder = tmp_path / "events"
    # app: 2 actions and 4 heartbeats (limit 3: not a bot); bot: 4 actions and a heartbeat, all quarantined.
    write_lines(folder, "2026-11-02", [
        event("app", "a1"), event("app", "a2"),
        *[event("app", f"h{n}", name="heartbeat") for n in range(4)],
        *[event("bot", f"b{n}") for n in range(4)], event("bot", "bh", name="heartbeat"),
    ])
    spec = InputSpec(path=str(folder), format=InputFormat.JSON)

    flagged = checked(spark, spec).transform(with_bot_user_days, 3, ("heartbeat",))

    assert {r.event_id for r in flagged.where("reject_reason = 'bot_user_day'").collect()} == {
        "b0", "b1", "b2", "b3", "bh"
    }


# Dataset-level problems: a clear error, and nothing written.


def write_parquet(spark, path: Path, rows, schema: str) -> None:
    spark.createDataFrame(rows, schema).write.partitionBy("event_date").parquet(str(path))


def test_a_column_of_a_type_events_cannot_have_is_named_with_its_type(spark, tmp_path):
    write_parquet(spark, tmp_path / "events", [("u1", "e1", "view", True, MON)],
                  "user_id string, event_id string, event_name string, event_ts boolean, event_date date")

    with pytest.raises(InputError, match=r"column event_ts \(event_ts\) is boolean, but event_ts must be a timestamp"):
        read_events(spark, InputSpec(path=str(tmp_path / "events")), (), MON, MON)


def test_a_json_input_without_a_required_key_lists_the_keys_found(spark, tmp_path):
    write_lines(tmp_path / "events", "2026-11-02", [json.dumps({"userId": "u1", "event_id": "e1",
                                                                "event_name": "view", "event_ts": "2026-11-02"})])
    spec = InputSpec(path=str(tmp_path / "events"), format=InputFormat.JSON)

    with pytest.raises(InputError, match=r"has no column user_id; columns found \(the keys of the first 1,000 "
                                         r"records read\): event_id, event_name, event_ts, userId$"):
        read_events(spark, spec, (), MON, MON)


def test_a_segment_absent_from_json_records_is_unknown_not_an_error(spark, tmp_path, caplog):
    # JSON writers leave out null values, so a sparse segment may be absent from the records the check reads.
    write_lines(tmp_path / "events", "2026-11-02", [event("u1", "e1"), event("u2", "e2", country="DE")])
    spec = InputSpec(path=str(tmp_path / "events"), format=InputFormat.JSON)

    events = read_events(spark, spec, ("country", "device"), MON, MON)

    assertDataFrameEqual(events.select("user_id", "country", "device"),
                         [Row(user_id="u1", country=None, device=None), Row(user_id="u2", country="DE", device=None)])
    assert "reporting.segments: device is in none of the first 1000 JSON records read" in caplog.text


def test_a_segment_added_to_newer_parquet_files_is_read_and_unknown_before(spark, job):
    root, config = job
    config.write_text(config.read_text().replace("[platform, country]", "[platform]"))
    old = spark.createDataFrame([("u1", "e1", "view", utc("2026-11-02T10:00:00"), MON)],
                                "user_id string, event_id string, event_name string, event_ts timestamp, event_date date")
    old.write.partitionBy("event_date").parquet(str(root / "events"))
    write_events(spark, root / "events", [("u2", "e2", "view", "2026-11-03T10:00:00", "ios", "DE")])

    assert run(config, "--from", "2026-11-02", "--to", "2026-11-03") == 0

    assertDataFrameEqual(table(spark, root, "sessions").select("user_id", "platform"),
                         [Row(user_id="u1", platform="unknown"), Row(user_id="u2", platform="ios")])


def test_extra_input_columns_are_ignored(spark, tmp_path):
    write_parquet(spark, tmp_path / "events", [("u1", "e1", "view", "2026-11-02T10:00:00Z", "ios", "9.1", MON)],
                  "user_id string, event_id string, event_name string, event_ts string, platform string, "
                  "app_version string, event_date date")

    events = read_events(spark, InputSpec(path=str(tmp_path / "events")), ("platform",), MON, MON)

    assert events.columns == ["user_id", "event_id", "event_name", "event_ts", "platform", "event_date",
                              "source_row", "read_problem"]


def test_a_configured_segment_absent_from_the_input_is_named_as_a_segment(spark, tmp_path):
    write_events(spark, tmp_path / "events", MONDAY[:1])

    with pytest.raises(InputError, match="has no column device; reporting.segments names device; columns found: "):
        read_events(spark, InputSpec(path=str(tmp_path / "events")), ("platform", "device"), MON, MON)


@pytest.mark.parametrize(
    ("written", "configured", "message"),
    [
        ("json", "parquet", "holds json files, but input.format is parquet"),
        ("parquet", "csv", "holds parquet files, but input.format is csv"),
        ("delta", "parquet", "is a Delta table, but input.format is parquet: set input.format: delta"),
    ],
)
def test_an_input_format_that_does_not_match_the_files_is_an_error(spark, tmp_path, written, configured, message):
    write_events(spark, tmp_path / "events", MONDAY[:1], fmt=written)

    with pytest.raises(InputError, match=message):
        list_input(spark, InputSpec(path=str(tmp_path / "events"), format=configured))


def test_a_format_mismatch_stops_the_run_before_it_writes(spark, job, capsys):
    root, config = job
    write_events(spark, root / "events", MONDAY, fmt="json")

    assert run(config, "--date", "2026-11-02") == 1

    assert "holds json files, but input.format is parquet" in capsys.readouterr().err
    assert not (root / "out").exists()


def test_an_empty_input_folder_is_an_error_and_nothing_is_written(spark, job, capsys):
    root, config = job
    (root / "events").mkdir()

    assert run(config, "--date", "2026-11-02") == 1

    assert "holds no parquet files" in capsys.readouterr().err
    assert not (root / "out").exists()


def test_a_day_without_input_inside_a_range_is_skipped_and_reported(spark, job, capsys):
    root, config = job
    write_events(spark, root / "events", [*MONDAY, ("u1", "e9", "view", "2026-11-04T10:00:00", "ios", "DE")])

    assert run(config, "--from", "2026-11-02", "--to", "2026-11-04") == 0

    assert "days skipped, input missing: 2026-11-03" in capsys.readouterr().out
    runs = table(spark, root, "runs").orderBy("first_day").collect()
    assert [(r.first_day, r.last_day, r.days_without_input) for r in runs] == [
        (MON, MON, [TUE]), (TUE + timedelta(days=1), TUE + timedelta(days=1), [TUE]),
    ]
    assert sorted(r.session_date for r in table(spark, root, "sessions").collect()) == [MON, MON, MON, date(2026, 11, 4)]


def test_a_skipped_day_is_processed_by_the_next_run_once_its_input_arrives(spark, job):
    root, config = job
    write_events(spark, root / "events", [*MONDAY, ("u1", "e9", "view", "2026-11-04T10:00:00", "ios", "DE")])
    run(config, "--from", "2026-11-02", "--to", "2026-11-04")

    write_events(spark, root / "events", [("u4", "e10", "view", "2026-11-03T10:00:00", "ios", "DE"),
                                          ("u1", "e11", "view", "2026-11-05T10:00:00", "ios", "DE")])
    assert run(config, "--date", "2026-11-05") == 0  # 3 Nov is within its late-data window (3 days)

    assert ("u4", TUE) in {(r.user_id, r.session_date) for r in table(spark, root, "sessions").collect()}
    # One range: 3 Nov (arrived), 4 Nov (continues from 3 Nov, whose partition it reads) and 5 Nov (asked).
    last = table(spark, root, "runs").orderBy(F.col("started_at").desc()).first()
    assert (last.first_day, last.last_day, last.days_without_input) == (TUE, date(2026, 11, 5), [])


def test_a_day_without_input_fails_the_run_when_the_config_requires_every_day(spark, job, capsys):
    root, config = job
    config.write_text(config.read_text() + "validation: {require_every_day: true}\n")
    write_events(spark, root / "events", MONDAY)

    assert run(config, "--from", "2026-11-02", "--to", "2026-11-03") == 1

    assert "has no partition for 2026-11-03, and validation.require_every_day is set" in capsys.readouterr().err
    assert not (root / "out").exists()


# Accounting: every row of a run's partitions is sessionized, quarantined or deduplicated.


def test_a_run_records_rows_read_sessionized_quarantined_by_reason_and_deduplicated(spark, job, capsys):
    root, config = job
    # MONDAY: 8 rows; e4 is sent twice (1 copy dropped), one row lacks a user id and one a timestamp.
    write_events(spark, root / "events", MONDAY)

    run(config, "--date", "2026-11-02")

    printed = capsys.readouterr().out
    assert "rows read 8 = sessionized 5 + quarantined 2 + deduplicated 1" in printed
    assert "quarantined rows: missing_event_ts: 1, missing_user_id: 1" in printed

    record = table(spark, root, "runs").first()
    assert (record.rows_read, record.rows_sessionized, record.rows_quarantined, record.rows_deduplicated) == (
        8, 5, 2, 1
    )
    assert record.quarantine_reasons == {"missing_user_id": 1, "missing_event_ts": 1}


def test_a_run_that_loses_rows_fails_its_accounting_and_undoes_its_writes(spark, job, monkeypatch, capsys):
    root, config = job
    write_events(spark, root / "events", MONDAY)
    run(config, "--date", "2026-11-02")
    before = {name: table(spark, root, name).collect() for name in ("sessions", "users", "quarantine", "kpis")}
    # A bug that drops valid rows between validation and sessionization.
    lossy = jobs.pipeline.valid_events
    monkeypatch.setattr(jobs.pipeline, "valid_events", lambda checked: lossy(checked).where("event_id != 'e5'"))

    assert run(config, "--date", "2026-11-02") == 1

    assert "rows read (8) != sessionized (4) + quarantined (2, by reason 2) + deduplicated (1)" in capsys.readouterr().err
    for name, rows in before.items():
        assertDataFrameEqual(table(spark, root, name), rows)
    failed = table(spark, root, "runs").where("status = 'failed'").first()
    assert (failed.wrote_tables, failed.message.endswith("its writes were undone")) == (False, True)
    # Fixed, the next run has nothing to repair.
    monkeypatch.undo()
    assert run(config, "--date", "2026-11-02") == 0
    assert table(spark, root, "runs").where("status = 'repaired'").count() == 0
