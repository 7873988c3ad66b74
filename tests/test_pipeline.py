"""End to end: event files on disk -> `sessionlake run` -> Delta tables read back (by Spark and by delta-rs)."""

import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.cli import main
from jobs.plan import input_days, required_partitions
from tests.helpers import continued, job_config, utc

EVENTS = "user_id string, event_id string, event_name string, event_ts timestamp, platform string, country string"
MON, TUE = date(2026, 11, 2), date(2026, 11, 3)

# Monday 2 Nov 2026, hand-worked: u1 has sessions 10:00-10:10 (2 actions) and 11:00 (1 action, after a 50-minute
# gap); u2 sends e4 twice (the 09:01 copy is dropped) and has one session 09:00-09:20 with 2 actions. Two rows
# are rejected: one without user id, one without timestamp.
MONDAY = [
    ("u1", "e1", "view", "2026-11-02T10:00:00", "ios", "DE"),
    ("u1", "e2", "click", "2026-11-02T10:10:00", "ios", "DE"),
    ("u1", "e3", "view", "2026-11-02T11:00:00", "web", "DE"),
    ("u2", "e4", "search", "2026-11-02T09:00:00", "android", "BR"),
    ("u2", "e4", "search", "2026-11-02T09:01:00", "android", "BR"),
    ("u2", "e5", "like", "2026-11-02T09:20:00", "android", "BR"),
    (None, "e6", "view", "2026-11-02T12:00:00", "ios", "US"),
    ("u3", "e7", "view", None, "ios", "US"),
]


def write_events(spark, path: Path, rows, fmt="parquet", schema=EVENTS):
    """Write rows as Hive-style event_date partitions: the UTC date of event_ts, or Monday for a row without one.
    `schema` may add columns after EVENTS'."""
    frame = spark.createDataFrame([(*r[:3], utc(r[3]) if r[3] else None, *r[4:]) for r in rows], schema)
    frame = frame.withColumn("event_date", F.coalesce(F.to_date("event_ts"), F.lit(MON)))
    if fmt != "parquet":
        frame = frame.withColumn("event_ts", F.date_format("event_ts", "yyyy-MM-dd'T'HH:mm:ssXXX"))
    writer = frame.write.mode("append").partitionBy("event_date")
    writer.option("header", "true").format(fmt).save(str(path)) if fmt == "csv" else writer.format(fmt).save(str(path))


def run(config: Path, *flags: str) -> int:
    return main(["run", "--config", str(config), *flags])


def table(spark, root: Path, name: str):
    return spark.read.format("delta").load(str(root / "out" / name))


# The `job` fixture's config beyond its input and output.
SEGMENTS = "reporting: {segments: [platform, country]}\n"


@pytest.fixture(scope="module")
def monday(spark, tmp_path_factory) -> Path:
    """The root of one run of MONDAY (the `job` config): its tables are only read; a test that runs the job again
    does so on a copy of them (`continued`)."""
    root = tmp_path_factory.mktemp("monday")
    write_events(spark, root / "events", MONDAY)
    assert run(job_config(root, root / "events", SEGMENTS), "--date", "2026-11-02") == 0
    return root


@pytest.fixture(scope="module")
def parquet_sessions(spark, tmp_path_factory) -> list[Row]:
    """The sessions of MONDAY's valid rows read from parquet: what every other input format must give."""
    root = tmp_path_factory.mktemp("parquet")
    write_events(spark, root / "events", [r for r in MONDAY if r[0] is not None and r[3] is not None])
    config = root / "job.yaml"
    config.write_text(f"input: {{path: {root / 'events'}, format: parquet}}\noutput: {{path: {root / 'out'}}}\n")
    assert run(config, "--date", "2026-11-02") == 0
    sessions = table(spark, root, "sessions").collect()
    assert len(sessions) == 3
    return sessions


def test_a_run_writes_sessions_users_kpis_and_quarantine(spark, monday):
    root = monday

    assertDataFrameEqual(
        table(spark, root, "sessions").select(
            "user_id", "session_start", "session_end", "duration_seconds", "actions", "session_number",
            "session_date", "platform", "country",
        ),
        [Row(user_id="u1", session_start=utc("2026-11-02T10:00:00"), session_end=utc("2026-11-02T10:10:00"),
             duration_seconds=600.0, actions=2, session_number=1, session_date=MON, platform="ios", country="DE"),
         Row(user_id="u1", session_start=utc("2026-11-02T11:00:00"), session_end=utc("2026-11-02T11:00:00"),
             duration_seconds=0.0, actions=1, session_number=2, session_date=MON, platform="web", country="DE"),
         Row(user_id="u2", session_start=utc("2026-11-02T09:00:00"), session_end=utc("2026-11-02T09:20:00"),
             duration_seconds=1200.0, actions=2, session_number=1, session_date=MON, platform="android", country="BR")],
    )
    assertDataFrameEqual(
        table(spark, root, "users"),
        [Row(user_id="u1", first_seen=utc("2026-11-02T10:00:00")),
         Row(user_id="u2", first_seen=utc("2026-11-02T09:00:00"))],
    )
    assertDataFrameEqual(
        table(spark, root, "quarantine").select("event_date", "reject_reason"),
        [Row(event_date=MON, reject_reason="missing_user_id"), Row(event_date=MON, reject_reason="missing_event_ts")],
    )
    kpis = table(spark, root, "kpis")
    day_all = kpis.where("period = 'day' AND dimension = 'all'").select(
        "period_start", "sessions", "users", "actions", "aps", "spu"
    )
    assertDataFrameEqual(day_all, [Row(period_start=MON, sessions=3, users=2, actions=5, aps=5 / 3, spu=1.5)])
    day_platforms = kpis.where("period = 'day' AND dimension = 'platform'").select("dimension_value", "sessions")
    assertDataFrameEqual(
        day_platforms,
        [Row(dimension_value="ios", sessions=1), Row(dimension_value="web", sessions=1),
         Row(dimension_value="android", sessions=1)],
    )
    assert {(r.period, r.period_start) for r in kpis.select("period", "period_start").distinct().collect()} == {
        ("day", MON), ("week", MON), ("month", date(2026, 11, 1))
    }


def test_rerunning_a_day_leaves_every_table_as_it_was(spark, tmp_path, monday):
    root, config = tmp_path, continued(monday, tmp_path, SEGMENTS)
    first = {name: table(spark, root, name).drop("run_id").collect() for name in ("sessions", "users", "kpis", "quarantine")}

    run(config, "--date", "2026-11-02")

    for name, rows in first.items():
        assertDataFrameEqual(table(spark, root, name).drop("run_id"), rows)


def test_daily_runs_continue_session_numbers_and_combine_into_the_week(spark, job):
    root, config = job
    write_events(
        spark, root / "events", [("u1", "e1", "view", "2026-11-02T10:00:00", "ios", "DE"),
                                 ("u1", "e2", "view", "2026-11-03T10:00:00", "ios", "DE"),
                                 ("u2", "e3", "view", "2026-11-03T11:00:00", "web", "FR")],
    )

    run(config, "--date", "2026-11-02")
    run(config, "--date", "2026-11-03")

    assertDataFrameEqual(
        table(spark, root, "sessions").select("user_id", "session_date", "session_number"),
        [Row(user_id="u1", session_date=MON, session_number=1), Row(user_id="u1", session_date=TUE, session_number=2),
         Row(user_id="u2", session_date=TUE, session_number=1)],
    )
    week = table(spark, root, "kpis").where("period = 'week'").select("dimension", "dimension_value", "sessions", "users")
    assertDataFrameEqual(
        week.where("dimension IN ('all', 'user_type')"),
        [Row(dimension="all", dimension_value="all", sessions=3, users=2),
         Row(dimension="user_type", dimension_value="new", sessions=3, users=2)],
    )
    tuesday = table(spark, root, "kpis").where("period = 'day' AND period_start = '2026-11-03' AND dimension = 'user_type'")
    assertDataFrameEqual(
        tuesday.select("dimension_value", "users"),
        [Row(dimension_value="returning", users=1), Row(dimension_value="new", users=1)],
    )


@pytest.mark.parametrize("partitioned", [True, False])
def test_a_delta_table_input_gives_the_same_sessions_as_parquet(spark, tmp_path, partitioned, parquet_sessions):
    rows = [r for r in MONDAY if r[0] is not None and r[3] is not None]
    write_events(spark, tmp_path / "parquet", rows)
    frame = spark.read.parquet(str(tmp_path / "parquet"))
    writer = frame.write.format("delta").partitionBy("event_date") if partitioned else frame.write.format("delta")
    writer.save(str(tmp_path / "delta"))
    config = tmp_path / "delta.yaml"
    config.write_text(f"input: {{path: {tmp_path / 'delta'}, format: delta}}\noutput: {{path: {tmp_path / 'out'}}}\n")

    assert run(config, "--date", "2026-11-02") == 0

    assertDataFrameEqual(table(spark, tmp_path, "sessions"), parquet_sessions)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_text_inputs_with_iso_timestamps_give_the_same_sessions_as_parquet(spark, tmp_path, fmt, parquet_sessions):
    rows = [r for r in MONDAY if r[0] is not None and r[3] is not None]
    write_events(spark, tmp_path / "events", rows, fmt=fmt)
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {{path: {tmp_path / 'events'}}}\noutput: {{path: {tmp_path / 'out'}}}\n")

    assert run(config, "--date", "2026-11-02", "--input-format", fmt) == 0

    assertDataFrameEqual(table(spark, tmp_path, "sessions"), parquet_sessions)


def test_command_line_paths_override_the_config(spark, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("input: {path: /nowhere/events}\noutput: {path: /nowhere/out}\n")
    write_events(spark, tmp_path / "elsewhere", MONDAY)

    code = run(config, "--date", "2026-11-02", "--input", str(tmp_path / "elsewhere"), "--output", str(tmp_path / "o"))

    assert code == 0
    assert spark.read.format("delta").load(str(tmp_path / "o" / "sessions")).count() == 3


def test_renamed_input_columns_are_mapped_by_the_config(spark, tmp_path):
    frame = spark.createDataFrame(
        [("u1", "e1", "view", utc("2026-11-02T10:00:00"), "ios", "DE", MON)],
        "uid string, id string, name string, ts timestamp, platform string, country string, day date",
    )
    frame.write.partitionBy("day").parquet(str(tmp_path / "events"))
    config = tmp_path / "job.yaml"
    config.write_text(
        f"input:\n  path: {tmp_path / 'events'}\n"
        "  columns: {user_id: uid, event_id: id, event_name: name, event_ts: ts, event_date: day}\n"
        f"output: {{path: {tmp_path / 'out'}}}\n"
    )

    assert run(config, "--date", "2026-11-02") == 0
    assert [r.user_id for r in spark.read.format("delta").load(str(tmp_path / "out" / "sessions")).collect()] == ["u1"]


def test_tables_are_readable_by_another_delta_reader(monday):
    root = monday

    sessions = DeltaTable(str(root / "out" / "sessions")).to_pyarrow_table().to_pylist()
    kpis = DeltaTable(str(root / "out" / "kpis")).to_pyarrow_table().to_pylist()

    assert sorted((s["user_id"], s["actions"], s["session_number"]) for s in sessions) == [
        ("u1", 1, 2), ("u1", 2, 1), ("u2", 2, 1)
    ]
    day_all = [k for k in kpis if k["period"] == "day" and k["dimension"] == "all"]
    assert [(k["sessions"], k["users"], k["actions"]) for k in day_all] == [(3, 2, 5)]


def test_rows_in_an_undated_partition_are_quarantined_once_however_often_days_run(spark, job):
    root, config = job
    write_events(spark, root / "events", MONDAY[:1])
    spark.createDataFrame([("u9", "e9", "view", None, "ios", "DE")], EVENTS).withColumn(
        "event_date", F.lit(None).cast("date")
    ).write.mode("append").partitionBy("event_date").parquet(str(root / "events"))

    run(config, "--date", "2026-11-02")
    run(config, "--date", "2026-11-02")

    assertDataFrameEqual(
        table(spark, root, "quarantine").select("event_date", "reject_reason"),
        [Row(event_date=None, reject_reason="missing_event_ts")],
    )


def test_a_rerun_on_input_without_bad_rows_removes_the_quarantined_rows_of_its_day(spark, job):
    root, config = job
    write_events(spark, root / "events", MONDAY)
    run(config, "--date", "2026-11-02")
    assert table(spark, root, "quarantine").count() == 2
    shutil.rmtree(root / "events")
    write_events(spark, root / "events", MONDAY[:6])  # the row without user id and the one without time are gone

    assert run(config, "--date", "2026-11-02") == 0

    assert table(spark, root, "quarantine").count() == 0
    latest = table(spark, root, "runs").orderBy(F.col("started_at").desc()).first()
    assert (latest["rows_read"], latest["rows_quarantined"], latest["quarantine_reasons"]) == (6, 0, {})


def test_a_range_without_any_input_is_an_error_and_nothing_is_written(spark, tmp_path, monday, capsys):
    root, config = tmp_path, continued(monday, tmp_path, SEGMENTS)

    assert run(config, "--from", "2026-11-03", "--to", "2026-11-04") == 1

    assert (
        "has no partition for any day of 2026-11-03..2026-11-04: looked for the UTC partitions "
        "2026-11-03..2026-11-04 (partitions found: 2026-11-02); nothing was written"
        in capsys.readouterr().err
    )
    assert table(spark, root, "sessions").count() == 3  # Monday's sessions are still there
    assert table(spark, root, "runs").count() == 1  # not even a runs row


def test_a_missing_input_path_is_a_clear_error(spark, job, capsys):
    root, config = job

    assert run(config, "--date", "2026-11-02") == 1
    assert "does not exist or holds no parquet input" in capsys.readouterr().err


def test_a_missing_column_is_named_with_the_columns_found(spark, job, capsys):
    root, config = job
    spark.createDataFrame([("u1", MON)], "user_id string, event_date date").write.partitionBy("event_date").parquet(
        str(root / "events")
    )

    assert run(config, "--date", "2026-11-02") == 1
    error = capsys.readouterr().err
    assert "has no column event_id, event_name, event_ts, platform, country" in error
    assert "columns found: user_id, event_date" in error


def test_a_run_reads_its_days_widened_by_the_cap_in_the_reporting_zone():
    # Berlin, 29 Mar 2026 (23 hours): 28 Mar 23:00 UTC to 29 Mar 22:00 UTC, widened by 24h on both sides.
    assert input_days(date(2026, 3, 29), date(2026, 3, 29), "Europe/Berlin", timedelta(hours=24)) == (
        date(2026, 3, 27), date(2026, 3, 30)
    )
    # Los Angeles, 1 Nov 2026 (25 hours): 1 Nov 07:00 UTC to 2 Nov 08:00 UTC; a 2h cap stays within those dates.
    assert input_days(date(2026, 11, 1), date(2026, 11, 1), "America/Los_Angeles", timedelta(hours=2)) == (
        date(2026, 11, 1), date(2026, 11, 2)
    )


def test_reporting_days_outside_utc_need_every_utc_partition_they_overlap():
    # Los Angeles, 1 Nov 2026 runs from 07:00 UTC on 1 Nov to 08:00 UTC on 2 Nov; Berlin's 29 Mar 2026 from
    # 23:00 UTC on 28 Mar to 22:00 UTC on 29 Mar; a UTC day needs only its own partition.
    assert required_partitions(date(2026, 11, 1), date(2026, 11, 1), "America/Los_Angeles") == [
        date(2026, 11, 1), date(2026, 11, 2)
    ]
    assert required_partitions(date(2026, 3, 29), date(2026, 3, 29), "Europe/Berlin") == [
        date(2026, 3, 28), date(2026, 3, 29)
    ]
    assert required_partitions(date(2026, 11, 1), date(2026, 11, 2), "UTC") == [date(2026, 11, 1), date(2026, 11, 2)]


def test_json_rows_in_a_folder_that_is_not_a_date_are_quarantined(spark, job):
    root, config = job
    write_events(spark, root / "events", MONDAY[:1], fmt="json")
    odd = root / "events" / "event_date=unknown"
    odd.mkdir()
    (odd / "part.json").write_text(
        '{"user_id": "u5", "event_id": "e50", "event_name": "view", "event_ts": "2026-11-02T10:00:00Z"}\n'
    )

    assert run(config, "--date", "2026-11-02", "--input-format", "json") == 0

    assertDataFrameEqual(
        table(spark, root, "quarantine").select("event_date", "reject_reason"),
        [Row(event_date=None, reject_reason="missing_event_date")],
    )
    assert [r.user_id for r in table(spark, root, "sessions").collect()] == ["u1"]


# Monday 2 Nov 2026 with engagement metrics: purchase and signup convert, heartbeat is not an action. u1 views at
# 10:00 and buys at 11:15; the heartbeats at 10:25 and 10:50 would bridge the 75-minute gap if they counted, so u1
# has two bounces, the second converting. u2: search 09:00, purchase 09:10, view 09:20: one session of 3 actions
# over 20 minutes, converting at its 2nd action. u3 only sends a heartbeat: no session, no user.
ENGAGEMENT = [
    ("u1", "e1", "view", "2026-11-02T10:00:00", "ios", "DE"),
    ("u1", "e2", "heartbeat", "2026-11-02T10:25:00", "ios", "DE"),
    ("u1", "e3", "heartbeat", "2026-11-02T10:50:00", "ios", "DE"),
    ("u1", "e4", "purchase", "2026-11-02T11:15:00", "ios", "DE"),
    ("u2", "e5", "search", "2026-11-02T09:00:00", "web", "BR"),
    ("u2", "e6", "purchase", "2026-11-02T09:10:00", "web", "BR"),
    ("u2", "e7", "view", "2026-11-02T09:20:00", "web", "BR"),
    ("u3", "e8", "heartbeat", "2026-11-02T12:00:00", "web", "BR"),
]


def engagement_job(root: Path) -> Path:
    config = root / "engagement.yaml"
    config.write_text(
        f"input: {{path: {root / 'events'}}}\noutput: {{path: {root / 'out'}}}\n"
        "sessionization: {non_interactive_events: [heartbeat]}\n"
        "metrics: {conversion_events: [purchase, signup]}\n"
    )
    return config


def test_engagement_metrics_flow_from_events_to_sessions_kpis_and_action_kpis(spark, tmp_path, capsys):
    write_events(spark, tmp_path / "events", ENGAGEMENT)

    assert run(engagement_job(tmp_path), "--date", "2026-11-02") == 0

    sessions = table(spark, tmp_path, "sessions").select(
        "user_id", "session_start", "actions", "duration_seconds", "is_bounce", "is_engaged", "conversions",
        "converted", "first_conversion_ts", "actions_to_conversion",
        F.array_sort(F.map_entries("action_counts")).alias("action_counts"),
    )
    assertDataFrameEqual(
        sessions,
        [Row(user_id="u1", session_start=utc("2026-11-02T10:00:00"), actions=1, duration_seconds=0.0, is_bounce=True,
             is_engaged=False, conversions=0, converted=False, first_conversion_ts=None, actions_to_conversion=None,
             action_counts=[("view", 1)]),
         Row(user_id="u1", session_start=utc("2026-11-02T11:15:00"), actions=1, duration_seconds=0.0, is_bounce=True,
             is_engaged=True, conversions=1, converted=True, first_conversion_ts=utc("2026-11-02T11:15:00"),
             actions_to_conversion=1, action_counts=[("purchase", 1)]),
         Row(user_id="u2", session_start=utc("2026-11-02T09:00:00"), actions=3, duration_seconds=1200.0,
             is_bounce=False, is_engaged=True, conversions=1, converted=True,
             first_conversion_ts=utc("2026-11-02T09:10:00"), actions_to_conversion=2,
             action_counts=[("purchase", 1), ("search", 1), ("view", 1)])],
    )
    assert sorted(r.user_id for r in table(spark, tmp_path, "users").collect()) == ["u1", "u2"]
    # Durations 0, 0 and 1200 s: median 0, p90 at rank 2 x 0.9 = 1.8, 0 + 0.8 x 1200 = 960.
    day = table(spark, tmp_path, "kpis").where("period = 'day' AND dimension = 'all'").select(
        "sessions", "users", "actions", "avg_duration_seconds", "median_duration_seconds", "p90_duration_seconds",
        "bounces", "engaged_sessions", "converting_sessions", "converting_users", "conversion_rate",
        "user_conversion_rate",
    )
    assertDataFrameEqual(
        day,
        [Row(sessions=3, users=2, actions=5, avg_duration_seconds=400.0, median_duration_seconds=0.0,
             p90_duration_seconds=960.0, bounces=2, engaged_sessions=2, converting_sessions=2, converting_users=2,
             conversion_rate=2 / 3, user_conversion_rate=1.0)],
    )
    mix = table(spark, tmp_path, "action_kpis").where("period = 'day' AND dimension = 'all'").select(
        "event_name", "actions", "sessions_with_action", "users_with_action", "share_of_actions", "is_complete"
    )
    assertDataFrameEqual(
        mix,
        [Row(event_name="purchase", actions=2, sessions_with_action=2, users_with_action=2, share_of_actions=0.4,
             is_complete=True),
         Row(event_name="view", actions=2, sessions_with_action=2, users_with_action=2, share_of_actions=0.4,
             is_complete=True),
         Row(event_name="search", actions=1, sessions_with_action=1, users_with_action=1, share_of_actions=0.2,
             is_complete=True)],
    )

    # Heartbeats are accounted for as their own term; signup never occurred, and the summary says so.
    printed = capsys.readouterr().out
    assert "rows read 8 = sessionized 5 + quarantined 0 + deduplicated 0 + non-interactive 3" in printed
    assert "configured events never seen (a typo in the config?): signup" in printed
    record = table(spark, tmp_path, "runs").first()
    assert (record.rows_non_interactive, record.configured_events_seen) == (
        3, {"purchase": 2, "signup": 0, "heartbeat": 3}
    )
    assert record.action_names_folded == 0


def test_tables_of_an_earlier_version_gain_the_new_columns_null_in_their_old_rows(spark, job):
    root, config = job
    write_events(spark, root / "events", MONDAY)
    assert run(config, "--date", "2026-11-02") == 0
    # As an earlier version left them: sessions and kpis without the engagement columns, no action_kpis.
    earlier = {
        ("sessions", "session_date"): ["session_id", "user_id", "session_start", "session_end", "duration_seconds",
                                       "actions", "session_number", "session_date", "platform", "country"],
        ("kpis", "period"): ["period", "period_start", "dimension", "dimension_value", "sessions", "users",
                             "actions", "aps", "spu", "is_complete"],
    }
    for (name, partition), columns in earlier.items():
        old = table(spark, root, name).select(*columns).localCheckpoint()
        (old.write.format("delta").mode("overwrite").option("overwriteSchema", "true").partitionBy(partition)
         .save(str(root / "out" / name)))
    shutil.rmtree(root / "out" / "action_kpis")
    write_events(spark, root / "events", [("u1", "e9", "view", "2026-11-03T10:05:00", "ios", "DE")])

    assert run(config, "--date", "2026-11-03") == 0

    sessions = table(spark, root, "sessions").select("user_id", "session_date", "actions", "is_bounce")
    assertDataFrameEqual(
        sessions,
        [Row(user_id="u1", session_date=MON, actions=2, is_bounce=None),
         Row(user_id="u1", session_date=MON, actions=1, is_bounce=None),
         Row(user_id="u2", session_date=MON, actions=2, is_bounce=None),
         Row(user_id="u1", session_date=TUE, actions=1, is_bounce=True)],
    )
    # The week holds Monday's 3 sessions, stored without is_bounce, and Tuesday's bounce: 1 bounce counted until
    # Monday is run again.
    kpis = table(spark, root, "kpis").where("dimension = 'all'").select("period", "period_start", "sessions", "bounces")
    assertDataFrameEqual(
        kpis,
        [Row(period="day", period_start=MON, sessions=3, bounces=None),
         Row(period="day", period_start=TUE, sessions=1, bounces=1),
         Row(period="week", period_start=MON, sessions=4, bounces=1),
         Row(period="month", period_start=date(2026, 11, 1), sessions=4, bounces=1)],
    )
    mix = table(spark, root, "action_kpis").where("period = 'day'").select("period_start", "event_name", "actions")
    assertDataFrameEqual(mix.distinct(), [Row(period_start=TUE, event_name="view", actions=1)])
