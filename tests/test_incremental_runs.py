"""Daily runs, late data, reruns and backfills on real Delta tables: each ends as a full recompute would."""

import os
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from jobs.runs import RUNNING, RunRecord, now, to_frame
from jobs.write import append_run
from tests.helpers import continued, utc
from tests.test_pipeline import MON, TUE, run, table, write_events

WED = date(2026, 11, 4)
TABLES = ("sessions", "users", "kpis")


def job(root: Path, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "job.yaml"
    config.write_text(f"input: {{path: {root / 'events'}}}\noutput: {{path: {root / 'out'}}}\n{extra}")
    return config


def event(user, event_id, ts):
    return (user, event_id, "view", ts, "ios", "DE")


def runs(spark, root):
    return table(spark, root, "runs").orderBy("started_at")


def test_a_session_crossing_midnight_is_extended_when_the_next_day_runs(spark, tmp_path):
    config = job(tmp_path)
    write_events(spark, tmp_path / "events", [event("u1", "e1", "2026-11-02T23:50:00"),
                                              event("u1", "e2", "2026-11-02T23:55:00")])
    assert run(config, "--date", "2026-11-02") == 0
    # Tuesday's events land the next day: the first continues Monday's session, the second opens a new one.
    write_events(spark, tmp_path / "events", [event("u1", "e3", "2026-11-03T00:10:00"),
                                              event("u1", "e4", "2026-11-03T09:00:00")])

    assert run(config, "--date", "2026-11-03") == 0

    assertDataFrameEqual(
        table(spark, tmp_path, "sessions").select("session_date", "session_start", "session_end", "actions",
                                                   "session_number"),
        [Row(session_date=MON, session_start=utc("2026-11-02T23:50:00"), session_end=utc("2026-11-03T00:10:00"),
             actions=3, session_number=1),
         Row(session_date=TUE, session_start=utc("2026-11-03T09:00:00"), session_end=utc("2026-11-03T09:00:00"),
             actions=1, session_number=2)],
    )
    days = table(spark, tmp_path, "kpis").where("period = 'day' AND dimension = 'all'")
    assertDataFrameEqual(
        days.select("period_start", "sessions", "actions"),
        [Row(period_start=MON, sessions=1, actions=3), Row(period_start=TUE, sessions=1, actions=1)],
    )


def test_a_backfill_of_an_earlier_day_renumbers_later_sessions_and_makes_the_user_returning(spark, tmp_path):
    config = job(tmp_path)
    write_events(spark, tmp_path / "events", [event("u1", "e1", "2026-11-02T10:00:00"),
                                              event("u1", "e2", "2026-11-03T10:00:00")])
    run(config, "--date", "2026-11-03")
    tuesday_type = "period = 'day' AND period_start = '2026-11-03' AND dimension = 'user_type'"
    assert [r.dimension_value for r in table(spark, tmp_path, "kpis").where(tuesday_type).collect()] == ["new"]

    run(config, "--date", "2026-11-02")

    assertDataFrameEqual(
        table(spark, tmp_path, "sessions").select("session_date", "session_number"),
        [Row(session_date=MON, session_number=1), Row(session_date=TUE, session_number=2)],
    )
    assertDataFrameEqual(
        table(spark, tmp_path, "users"), [Row(user_id="u1", first_seen=utc("2026-11-02T10:00:00"), sessions=2)]
    )
    user_types = table(spark, tmp_path, "kpis").where("dimension = 'user_type'")
    assertDataFrameEqual(
        user_types.select("period", "period_start", "dimension_value"),
        [Row(period="day", period_start=MON, dimension_value="new"),
         Row(period="day", period_start=TUE, dimension_value="returning"),
         Row(period="week", period_start=MON, dimension_value="new"),
         Row(period="month", period_start=date(2026, 11, 1), dimension_value="new")],
    )


def test_late_events_in_a_processed_partition_are_picked_up_by_the_next_run(spark, tmp_path):
    config = job(tmp_path)
    write_events(spark, tmp_path / "events", [event("u1", "e1", "2026-11-02T10:00:00"),
                                              event("u1", "e2", "2026-11-03T10:00:00"),
                                              event("u1", "e3", "2026-11-04T10:00:00")])
    run(config, "--date", "2026-11-02")
    run(config, "--date", "2026-11-03")
    write_events(spark, tmp_path / "events", [event("u2", "late", "2026-11-02T12:00:00")])  # a new file in Monday

    assert run(config, "--date", "2026-11-04") == 0

    monday = table(spark, tmp_path, "kpis").where("period = 'day' AND period_start = '2026-11-02' AND dimension = 'all'")
    assert [(r.sessions, r.users) for r in monday.collect()] == [(2, 2)]
    last = runs(spark, tmp_path).collect()[-1]
    # Monday changed; Tuesday reads Monday's events as context, so it is redone too; Wednesday was asked for.
    assert (last.first_day, last.last_day, last.status) == (MON, WED, "succeeded")


def test_changes_older_than_late_days_are_reported_not_processed(spark, tmp_path):
    config = job(tmp_path, "")
    config.write_text(config.read_text().replace("input: {path:", "input: {late_days: 1, path:"))
    write_events(spark, tmp_path / "events", [event("u1", "e1", "2026-11-02T10:00:00"),
                                              event("u1", "e2", "2026-11-03T10:00:00"),
                                              event("u1", "e3", "2026-11-04T10:00:00")])
    run(config, "--from", "2026-11-02", "--to", "2026-11-03")
    write_events(spark, tmp_path / "events", [event("u2", "late", "2026-11-02T12:00:00")])

    run(config, "--date", "2026-11-04")

    last = runs(spark, tmp_path).collect()[-1]
    assert last.changed_days_not_processed == [MON]
    assert table(spark, tmp_path, "sessions").where("user_id = 'u2'").count() == 0
    run(config, "--date", "2026-11-02")  # the backfill the report asks for
    assert table(spark, tmp_path, "sessions").where("user_id = 'u2'").count() == 1


def test_week_and_month_rows_are_incomplete_until_every_day_is_processed(spark, tmp_path):
    config = job(tmp_path)
    week = [MON + timedelta(days=n) for n in range(7)]
    write_events(spark, tmp_path / "events", [event("u1", f"e{d.day}", f"{d.isoformat()}T10:00:00") for d in week])
    run(config, "--from", "2026-11-02", "--to", "2026-11-07")

    def flags():
        rows = table(spark, tmp_path, "kpis").where("dimension = 'all' AND period != 'day'").collect()
        return {(r.period, r.period_start): r.is_complete for r in rows}

    assert flags() == {("week", MON): False, ("month", date(2026, 11, 1)): False}
    run(config, "--date", "2026-11-08")
    assert flags() == {("week", MON): True, ("month", date(2026, 11, 1)): False}
    day_flags = table(spark, tmp_path, "kpis").where("period = 'day'").select("is_complete").distinct().collect()
    assert [r.is_complete for r in day_flags] == [True]


def test_a_daily_run_reads_only_the_partitions_it_needs_however_long_the_history(spark, tmp_path):
    config = job(tmp_path)
    days = [date(2026, 10, 20) + timedelta(days=n) for n in range(12)]
    write_events(spark, tmp_path / "events",
                 [event(f"u{n}", f"e{d.day}-{n}", f"{d.isoformat()}T1{n}:00:00") for d in days for n in range(3)])
    run(config, "--from", "2026-10-20", "--to", "2026-10-30")

    run(config, "--date", "2026-10-31")

    last = runs(spark, tmp_path).collect()[-1]
    # With a 24h cap in UTC: the day before (context) and the day itself; there is no partition after it yet.
    assert last.partitions_read == [date(2026, 10, 30), date(2026, 10, 31)]
    # Its rows are those of its own partition: the day before's are the run before's.
    assert (last.rows_read, last.rows_sessionized, last.sessions_written) == (3, 3, 3)


def test_days_run_out_of_order_give_the_tables_of_one_range_run_even_for_a_bot(spark, tmp_path):
    # A bot sends an event every 20 minutes from Monday 05:00 to Wednesday 17:00, never pausing: the 24h cap cuts
    # its activity, and each cut depends on the one before, across days (a run that saw only Tuesday on would cut
    # at midnight). A person's session crosses midnight.
    start = utc("2026-11-02T05:00:00")
    bot = [event("bot", f"b{n:03d}", (start + timedelta(minutes=20 * n)).isoformat()) for n in range(181)]
    person = [event("u1", "e1", "2026-11-02T23:50:00"), event("u1", "e2", "2026-11-03T00:15:00"),
              event("u1", "e3", "2026-11-04T08:00:00")]
    outcomes = {}
    for mode, days in {"range": None, "shuffled": ["2026-11-04", "2026-11-02", "2026-11-03"]}.items():
        config = job(tmp_path / mode)
        write_events(spark, tmp_path / mode / "events", bot + person)
        if days is None:
            run(config, "--from", "2026-11-02", "--to", "2026-11-04")
        else:
            for day in days:
                assert run(config, "--date", day) == 0
        outcomes[mode] = {name: table(spark, tmp_path / mode, name).collect() for name in TABLES}

    for name in TABLES:
        assertDataFrameEqual(outcomes["shuffled"][name], outcomes["range"][name])
    bot_starts = sorted(r.session_start for r in outcomes["range"]["sessions"] if r.user_id == "bot")
    assert bot_starts == [utc("2026-11-02T05:00:00"), utc("2026-11-03T05:00:00"), utc("2026-11-04T05:00:00")]


def claim_as_another_run(spark, root: Path, run_id: str, pid: int) -> None:
    """A runs row marked running, as a run in process `pid` on this host appends it when it starts."""
    other = RunRecord(run_id=run_id, requested_first_day=TUE, requested_last_day=TUE, first_day=TUE, last_day=TUE,
                      reason="requested", status=RUNNING, started_at=now(), sessions_version=None,
                      users_version=None, pid=pid)
    append_run(to_frame(spark, other), str(root / "out" / "runs"), run_id)


@pytest.fixture(scope="module")
def monday_run(spark, tmp_path_factory) -> Path:
    """The root of one run of Monday, with u1's events of Monday and Tuesday (Tuesday not yet run): its tables are
    only read; a test that runs the job again does so on a copy of them (`continued`)."""
    root = tmp_path_factory.mktemp("monday_run")
    config = job(root)
    write_events(spark, root / "events", [event("u1", "e1", "2026-11-02T10:00:00"),
                                          event("u1", "e2", "2026-11-03T10:00:00")])
    assert run(config, "--date", "2026-11-02") == 0
    return root


def test_a_run_stops_before_writing_while_an_earlier_run_is_alive(spark, tmp_path, capsys, monday_run):
    config = continued(monday_run, tmp_path)
    before = {name: table(spark, tmp_path, name).collect() for name in TABLES}
    claim_as_another_run(spark, tmp_path, "other", pid=os.getpid())  # this process: alive

    assert run(config, "--date", "2026-11-03") == 3

    assert "another run (other, days 2026-11-03..2026-11-03" in capsys.readouterr().err
    for name, rows in before.items():
        assertDataFrameEqual(table(spark, tmp_path, name), rows)
    statuses = {r.run_id == "other": (r.status, r.wrote_tables) for r in table(spark, tmp_path, "runs")
                .where("first_day = '2026-11-03'").collect()}
    assert statuses == {True: ("running", False), False: ("failed", False)}


def test_a_run_that_died_before_writing_is_marked_failed_not_repaired(spark, tmp_path, monday_run):
    config = continued(monday_run, tmp_path)
    exited = subprocess.Popen(["true"])
    exited.wait()  # reaped: its pid names no process now
    claim_as_another_run(spark, tmp_path, "dead", pid=exited.pid)

    assert run(config, "--date", "2026-11-03") == 0

    dead = table(spark, tmp_path, "runs").where("run_id = 'dead'").first()
    assert (dead.status, dead.wrote_tables) == ("failed", False)
    assert "before writing anything" in dead.message
    assert sorted(r.session_date for r in table(spark, tmp_path, "sessions").collect()) == [MON, TUE]
