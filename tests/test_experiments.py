"""Experiments' frames: assignments resolved per user, and per-variant moments of each analysis window."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.cli import main
from jobs.config import AssignmentsSpec
from jobs.experiments import (
    ASSIGNMENTS_SCHEMA,
    assignments_from_events,
    excluded_users,
    first_day_to_read,
    is_half_tagged,
    resolved_assignments,
    variant_moments,
    with_user_type,
)
from jobs.errors import InputError
from jobs.read import read_assignments
from jobs.validate import checked_assignments
from tests.helpers import continued, job_config, utc
from tests.test_pipeline import SEGMENTS, run, table, write_events

SESSIONS = "user_id string, session_start timestamp, session_end timestamp, session_date date, actions long"
MON, TUE, WED = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)


def sessions(spark, rows):
    """(user, start, end, actions) rows; the session's day is its UTC start date."""
    return spark.createDataFrame(
        [(u, utc(start), utc(end), utc(start).date(), actions) for u, start, end, actions in rows], SESSIONS
    )


def assignments(spark, rows):
    return spark.createDataFrame([(u, e, v, utc(at)) for u, e, v, at in rows], ASSIGNMENTS_SCHEMA)


def test_a_user_assigned_two_variants_by_the_last_day_is_excluded_and_counted(spark):
    given = assignments(spark, [
        ("u1", "exp", "A", "2026-11-02T10:00"),
        ("u2", "exp", "A", "2026-11-02T10:00"),
        ("u2", "exp", "B", "2026-11-03T10:00"),  # u2 saw both variants: out of the experiment
        ("u2", "other", "B", "2026-11-03T10:00"),  # ... but not out of another one
        ("u1", "exp", "B", "2026-11-05T10:00"),  # after the last day: not known yet
    ])
    resolved = resolved_assignments(given, "UTC", WED)
    assertDataFrameEqual(
        resolved,
        [Row(experiment_id="exp", user_id="u1", variant="A", assigned_at=utc("2026-11-02T10:00"), is_excluded=False),
         Row(experiment_id="exp", user_id="u2", variant=None, assigned_at=utc("2026-11-02T10:00"), is_excluded=True),
         Row(experiment_id="other", user_id="u2", variant="B", assigned_at=utc("2026-11-03T10:00"),
             is_excluded=False)],
    )
    assertDataFrameEqual(
        excluded_users(resolved),
        [Row(experiment_id="exp", excluded_users=1), Row(experiment_id="other", excluded_users=0)],
    )


def test_a_repeated_assignment_to_the_same_variant_keeps_the_earliest_time(spark):
    given = assignments(spark, [("u1", "exp", "A", "2026-11-02T10:00"), ("u1", "exp", "A", "2026-11-01T08:00")])
    assertDataFrameEqual(
        resolved_assignments(given, "UTC", WED).select("variant", "assigned_at", "is_excluded"),
        [Row(variant="A", assigned_at=utc("2026-11-01T08:00"), is_excluded=False)],
    )


def test_assignments_read_off_events_start_at_each_users_first_tagged_event_of_each_partition(spark):
    events = spark.createDataFrame(
        [("u1", utc("2026-11-02T09:00"), MON, None, None),  # untagged: assigns nothing
         ("u1", utc("2026-11-02T10:00"), MON, "exp", "A"),
         ("u1", utc("2026-11-02T11:00"), MON, "exp", "A"),
         ("u1", utc("2026-11-03T08:00"), TUE, "exp", "A"),  # another partition: its own row, replaced with it
         ("u2", utc("2026-11-02T12:00"), MON, "exp", None),  # an experiment without a variant assigns nothing
         ("u2", utc("2026-11-02T13:00"), MON, "exp", " "),  # ... nor with a blank one
         ("u3", utc("2026-11-02T14:00"), MON, " exp", "B ")],  # values are trimmed
        "user_id string, event_ts timestamp, event_date date, experiment string, variant string",
    )
    assertDataFrameEqual(
        assignments_from_events(events, experiment_column="experiment", variant_column="variant"),
        [Row(user_id="u1", experiment_id="exp", variant="A", assigned_at=utc("2026-11-02T10:00"), event_date=MON),
         Row(user_id="u1", experiment_id="exp", variant="A", assigned_at=utc("2026-11-03T08:00"), event_date=TUE),
         Row(user_id="u3", experiment_id="exp", variant="B", assigned_at=utc("2026-11-02T14:00"), event_date=MON)],
    )
    assert events.where(is_half_tagged("experiment", "variant")).count() == 2


def test_each_days_window_holds_the_users_assigned_so_far_and_their_sessions_since_assignment(spark):
    # u1 in A from Mon 10:00: its Mon 09:00-09:20 session (3 actions) ended before it and does not count; Mon 10:00
    # (2 actions) and Tue 08:00 (4) do. u3 in A from Tue 12:00, one session Tue 12:30 (6). u2 in B from Mon 09:00,
    # sessions Mon 09:00 (1: at the assignment instant, it counts) and Wed 20:00 (5). u5 in B from Wed, no session:
    # a user with 0 sessions. u4 in both variants: excluded, its session counts nowhere.
    given_sessions = sessions(spark, [
        ("u1", "2026-11-02T09:00", "2026-11-02T09:20", 3), ("u1", "2026-11-02T10:00", "2026-11-02T10:05", 2),
        ("u1", "2026-11-03T08:00", "2026-11-03T08:30", 4),
        ("u3", "2026-11-03T12:30", "2026-11-03T12:40", 6),
        ("u2", "2026-11-02T09:00", "2026-11-02T09:00", 1), ("u2", "2026-11-04T20:00", "2026-11-04T20:10", 5),
        ("u4", "2026-11-02T11:00", "2026-11-02T11:10", 2),
    ])
    given_assignments = assignments(spark, [
        ("u1", "exp", "A", "2026-11-02T10:00"), ("u3", "exp", "A", "2026-11-03T12:00"),
        ("u2", "exp", "B", "2026-11-02T09:00"), ("u5", "exp", "B", "2026-11-04T00:00"),
        ("u4", "exp", "A", "2026-11-02T08:00"), ("u4", "exp", "B", "2026-11-03T08:00"),
    ])

    moments = variant_moments(given_sessions, resolved_assignments(given_assignments, "UTC", WED), "UTC", WED)

    # (users, sessions, actions, sum of S^2, sum of A^2, sum of A x S) with each user's (S, A) to date:
    # A Mon: u1 (1, 2). A Tue and Wed: u1 (2, 6), u3 (1, 6): 2, 3, 12, 4 + 1, 36 + 36, 12 + 6.
    # B Mon and Tue: u2 (1, 1). B Wed: u2 (2, 6), u5 (0, 0): 2, 2, 6, 4, 36, 12.
    expected = [
        ("A", MON, 1, 1, 2, 1, 4, 2), ("A", TUE, 2, 3, 12, 5, 72, 18), ("A", WED, 2, 3, 12, 5, 72, 18),
        ("B", MON, 1, 1, 1, 1, 1, 1), ("B", TUE, 1, 1, 1, 1, 1, 1), ("B", WED, 2, 2, 6, 4, 36, 12),
    ]
    assertDataFrameEqual(
        moments,
        [Row(experiment_id="exp", variant=v, dimension="all", dimension_value="all", window_end=d, users=n,
             sessions=s, actions=a, sessions_squared=s2, actions_squared=a2, actions_times_sessions=a_s)
         for v, d, n, s, a, s2, a2, a_s in expected],
    )


def test_a_user_is_returning_if_their_first_session_began_on_a_day_before_their_assignment_day(spark):
    # u1 first seen Sunday, assigned Monday: returning. u2 first seen Monday 08:00, assigned Monday 10:00: new (the
    # same day). u3 never had a session: new. Days are Berlin's: u4, first seen Sunday 23:30 UTC (Monday 00:30 in
    # Berlin) and assigned Monday, is new.
    users = spark.createDataFrame(
        [("u1", utc("2026-11-01T12:00")), ("u2", utc("2026-11-02T08:00")), ("u4", utc("2026-11-01T23:30"))],
        "user_id string, first_seen timestamp",
    )
    given = assignments(spark, [("u1", "exp", "A", "2026-11-02T10:00"), ("u2", "exp", "A", "2026-11-02T10:00"),
                                ("u3", "exp", "B", "2026-11-02T10:00"), ("u4", "exp", "B", "2026-11-02T10:00")])

    typed = with_user_type(resolved_assignments(given, "Europe/Berlin", MON), users, "Europe/Berlin")

    assertDataFrameEqual(
        typed.select("user_id", "user_type"),
        [Row(user_id="u1", user_type="returning"), Row(user_id="u2", user_type="new"),
         Row(user_id="u3", user_type="new"), Row(user_id="u4", user_type="new")],
    )


def test_moments_are_broken_down_by_each_segment_value_besides_all_users(spark):
    # u1 (returning) and u2 (new) in A, u3 (new) in B, all assigned Monday; u1 has 2 sessions (1 and 3 actions),
    # u2 one (2 actions), u3 none.
    given_sessions = sessions(spark, [("u1", "2026-11-02T10:00", "2026-11-02T10:05", 1),
                                      ("u1", "2026-11-02T12:00", "2026-11-02T12:05", 3),
                                      ("u2", "2026-11-02T10:00", "2026-11-02T10:05", 2)])
    resolved = resolved_assignments(assignments(spark, [
        ("u1", "exp", "A", "2026-11-02T09:00"), ("u2", "exp", "A", "2026-11-02T09:00"),
        ("u3", "exp", "B", "2026-11-02T09:00"),
    ]), "UTC", MON).withColumn("user_type", F.when(F.col("user_id") == "u1", "returning").otherwise("new"))

    moments = variant_moments(given_sessions, resolved, "UTC", MON, segments=("user_type",))

    # (variant, dimension, value): users, sessions, actions, sum S^2, sum A^2, sum A x S; u1 (2, 4), u2 (1, 2).
    expected = [
        ("A", "all", "all", 2, 3, 6, 5, 20, 10), ("B", "all", "all", 1, 0, 0, 0, 0, 0),
        ("A", "user_type", "returning", 1, 2, 4, 4, 16, 8), ("A", "user_type", "new", 1, 1, 2, 1, 4, 2),
        ("B", "user_type", "new", 1, 0, 0, 0, 0, 0),
    ]
    assertDataFrameEqual(
        moments.drop("experiment_id", "window_end"),
        [Row(variant=v, dimension=d, dimension_value=dv, users=n, sessions=s, actions=a, sessions_squared=s2,
             actions_squared=a2, actions_times_sessions=a_s) for v, d, dv, n, s, a, s2, a2, a_s in expected],
    )


def test_sessions_are_read_from_the_day_of_the_first_assignment_less_the_longest_session(spark):
    # The first assignment is Monday 00:05 in Berlin (Sunday 23:05 UTC). A session that counts ends at 00:05 or
    # later: with sessions of up to 24 hours, it began on Sunday at the earliest; up to 1 hour, Sunday 23:05; up to
    # 4 minutes, Monday 00:01.
    resolved = resolved_assignments(assignments(spark, [("u1", "exp", "A", "2026-11-01T23:05"),
                                                        ("u2", "exp", "B", "2026-11-03T10:00")]), "Europe/Berlin", WED)
    for cap, day in ((timedelta(hours=24), date(2026, 11, 1)), (timedelta(hours=1), date(2026, 11, 1)),
                     (timedelta(minutes=4), MON)):
        assert first_day_to_read(resolved, cap, "Europe/Berlin").first()["day"] == day
    none = resolved_assignments(assignments(spark, []), "UTC", WED)
    assert first_day_to_read(none, timedelta(hours=24), "UTC").first()["day"] is None


def test_the_session_in_which_a_user_is_assigned_counts_whole_and_one_ended_before_does_not(spark):
    given_sessions = sessions(spark, [
        ("u1", "2026-11-02T09:00", "2026-11-02T09:59:59", 3),  # ended a second before the assignment
        ("u1", "2026-11-02T09:50", "2026-11-02T10:10", 4),  # open at 10:00: counts, its 4 actions too
    ])
    given_assignments = assignments(spark, [("u1", "exp", "A", "2026-11-02T10:00")])
    moments = variant_moments(given_sessions, resolved_assignments(given_assignments, "UTC", MON), "UTC", MON)
    assertDataFrameEqual(
        moments.select("window_end", "users", "sessions", "actions"),
        [Row(window_end=MON, users=1, sessions=1, actions=4)],
    )


def test_a_session_begun_the_day_before_the_assignment_counts_from_the_assignment_day(spark):
    given_sessions = sessions(spark, [("u1", "2026-11-02T23:50", "2026-11-03T00:10", 2)])
    given_assignments = assignments(spark, [("u1", "exp", "A", "2026-11-03T00:05")])
    moments = variant_moments(given_sessions, resolved_assignments(given_assignments, "UTC", TUE), "UTC", TUE)
    assertDataFrameEqual(
        moments.select("window_end", "users", "sessions", "actions"),
        [Row(window_end=TUE, users=1, sessions=1, actions=2)],
    )


def test_a_variant_without_users_yet_has_zero_rows_from_the_experiments_first_day(spark):
    given_sessions = sessions(spark, [("u1", "2026-11-02T10:00", "2026-11-02T10:00", 1),
                                      ("u2", "2026-11-03T10:00", "2026-11-03T10:00", 2)])
    given_assignments = assignments(spark, [("u1", "exp", "A", "2026-11-02T10:00"),
                                            ("u2", "exp", "B", "2026-11-03T10:00")])
    moments = variant_moments(given_sessions, resolved_assignments(given_assignments, "UTC", TUE), "UTC", TUE)
    assertDataFrameEqual(
        moments.select("variant", "window_end", "users", "sessions", "actions"),
        [Row(variant="A", window_end=MON, users=1, sessions=1, actions=1),
         Row(variant="A", window_end=TUE, users=1, sessions=1, actions=1),
         Row(variant="B", window_end=MON, users=0, sessions=0, actions=0),
         Row(variant="B", window_end=TUE, users=1, sessions=1, actions=2)],
    )


def test_windows_end_on_days_of_the_job_time_zone(spark):
    # Assigned Mon 23:30 UTC, which is Tue 00:30 in Berlin: the user first counts in the window ending Tuesday.
    # The session at Tue 22:30 UTC is Tue 23:30 in Berlin (session_date is the job's local date).
    given_sessions = spark.createDataFrame(
        [("u1", utc("2026-11-03T22:30"), utc("2026-11-03T22:40"), TUE, 4)], SESSIONS
    )
    given_assignments = assignments(spark, [("u1", "exp", "A", "2026-11-02T23:30")])
    resolved = resolved_assignments(given_assignments, "Europe/Berlin", WED)
    moments = variant_moments(given_sessions, resolved, "Europe/Berlin", WED)
    assertDataFrameEqual(
        moments.select("window_end", "users", "sessions", "actions"),
        [Row(window_end=TUE, users=1, sessions=1, actions=4), Row(window_end=WED, users=1, sessions=1, actions=4)],
    )


def test_an_assignments_csv_is_read_with_text_times_parsed_as_instants_and_bad_rows_given_a_reason(spark, tmp_path):
    (tmp_path / "assignments.csv").write_text(
        "user_id,experiment_id,variant,assigned_at,note\n"
        "u1,exp,A,2026-11-02T10:00:00Z,\n"
        "u2,exp,B,2026-11-02T12:00:00+02:00,\n"  # 10:00 UTC
        "u3,exp,B,2026-11-02T10:00:00,\n"  # no offset: UTC, as for event_ts
        ",exp,A,2026-11-02T10:00:00Z,\n"
        "u5,,A,2026-11-02T10:00:00Z,\n"
        "u6,exp,,2026-11-02T10:00:00Z,\n"
        "u7,exp,A,yesterday,\n"
    )
    read = read_assignments(spark, AssignmentsSpec(path=str(tmp_path / "assignments.csv"), format="csv"))

    assertDataFrameEqual(
        checked_assignments(read),
        [Row(user_id="u1", experiment_id="exp", variant="A", assigned_at=utc("2026-11-02T10:00"), reject_reason=None),
         Row(user_id="u2", experiment_id="exp", variant="B", assigned_at=utc("2026-11-02T10:00"), reject_reason=None),
         Row(user_id="u3", experiment_id="exp", variant="B", assigned_at=utc("2026-11-02T10:00"), reject_reason=None),
         Row(user_id=None, experiment_id="exp", variant="A", assigned_at=utc("2026-11-02T10:00"),
             reject_reason="missing_user_id"),
         Row(user_id="u5", experiment_id=None, variant="A", assigned_at=utc("2026-11-02T10:00"),
             reject_reason="missing_experiment_id"),
         Row(user_id="u6", experiment_id="exp", variant=None, assigned_at=utc("2026-11-02T10:00"),
             reject_reason="missing_variant"),
         Row(user_id="u7", experiment_id="exp", variant="A", assigned_at=None, reject_reason="bad_assigned_at")],
    )


def test_parquet_assignments_keep_their_timestamps_and_read_numeric_ids_as_text(spark, tmp_path):
    spark.createDataFrame([(42, "exp", "A", utc("2026-11-02T10:00"))],
                          "user_id long, experiment_id string, variant string, assigned_at timestamp",
                          ).write.parquet(str(tmp_path / "assignments"))
    read = read_assignments(spark, AssignmentsSpec(path=str(tmp_path / "assignments")))
    assertDataFrameEqual(
        checked_assignments(read).select("user_id", "assigned_at", "reject_reason"),
        [Row(user_id="42", assigned_at=utc("2026-11-02T10:00"), reject_reason=None)],
    )


def test_assignments_without_a_needed_column_or_at_a_missing_path_are_an_error_naming_them(spark, tmp_path):
    spark.createDataFrame([("u1", "exp", "A")], "user_id string, experiment string, variant string").write.parquet(
        str(tmp_path / "assignments")
    )
    with pytest.raises(InputError, match="has no column experiment_id, assigned_at; columns found: user_id, "
                                         "experiment, variant"):
        read_assignments(spark, AssignmentsSpec(path=str(tmp_path / "assignments")))
    with pytest.raises(InputError, match="experiments.assignments '.*nowhere' does not exist"):
        read_assignments(spark, AssignmentsSpec(path=str(tmp_path / "nowhere")))


# End to end: `sessionlake run` with an assignments table writes the experiments table.
# Monday: u1 has sessions 10:00-10:10 (2 actions) and 11:00 (1); u2 09:00-09:20 (2); u3 12:00 (1).
# Tuesday: u1 10:00 (1); u4 10:00-10:05 (2).
EVENTS_MON_TUE = [
    ("u1", "e1", "view", "2026-11-02T10:00:00", "ios", "DE"), ("u1", "e2", "click", "2026-11-02T10:10:00", "ios", "DE"),
    ("u1", "e3", "view", "2026-11-02T11:00:00", "ios", "DE"),
    ("u2", "e4", "search", "2026-11-02T09:00:00", "web", "BR"), ("u2", "e5", "like", "2026-11-02T09:20:00", "web", "BR"),
    ("u3", "e6", "view", "2026-11-02T12:00:00", "ios", "US"),
    ("u1", "e7", "view", "2026-11-03T10:00:00", "ios", "DE"),
    ("u4", "e8", "view", "2026-11-03T10:00:00", "web", "US"), ("u4", "e9", "click", "2026-11-03T10:05:00", "web", "US"),
]
# u3 is assigned at 11:30, before its 12:00 session; u4 on Tuesday 09:00; u5 on Tuesday, with no session.
ASSIGNED = [
    ("u1", "exp", "A", "2026-11-02T00:00"), ("u2", "exp", "B", "2026-11-02T00:00"),
    ("u3", "exp", "A", "2026-11-02T11:30"), ("u4", "exp", "B", "2026-11-03T09:00"),
    ("u5", "exp", "A", "2026-11-03T08:00"),
]


def with_assignments(spark, job, rows) -> tuple:
    root, config = job
    write_events(spark, root / "events", EVENTS_MON_TUE)
    assignments(spark, rows).write.parquet(str(root / "assignments"))
    config.write_text(config.read_text() + f"experiments: {{assignments: {{path: {root / 'assignments'}}}}}\n")
    return root, config


def assigned_settings(shared: Path) -> str:
    """The `job` fixture's config beyond input and output, with the assignments under `shared` (as
    with_assignments writes it)."""
    return SEGMENTS + f"experiments: {{assignments: {{path: {shared / 'assignments'}}}}}\n"


@pytest.fixture(scope="module")
def assigned(spark, tmp_path_factory) -> Path:
    """The root of one run of EVENTS_MON_TUE with the ASSIGNED table, Monday to Tuesday: its tables are only read;
    a test that runs the job again does so on a copy of them, with this run's input read in place."""
    root = tmp_path_factory.mktemp("assigned")
    write_events(spark, root / "events", EVENTS_MON_TUE)
    assignments(spark, ASSIGNED).write.parquet(str(root / "assignments"))
    config = job_config(root, root / "events", assigned_settings(root))
    assert run(config, "--from", "2026-11-02", "--to", "2026-11-03") == 0
    return root


def test_a_run_writes_each_variants_cumulative_windows_with_their_statistics(spark, assigned):
    root = assigned

    table = spark.read.format("delta").load(str(root / "out" / "experiments")).where("dimension = 'all'")
    # Monday: A holds u1 (2 sessions, 3 actions) and u3 (1, 1); B holds u2 (1, 2).
    # Tuesday: A adds u1's session (3, 4) and u5 (0, 0); B adds u4 (1, 2).
    assertDataFrameEqual(
        table.select("variant", "window_start", "window_end", "is_latest", "control_variant", "is_control",
                     "excluded_users", "users", "sessions", "actions"),
        [Row(variant="A", window_start=MON, window_end=MON, is_latest=False, control_variant="A", is_control=True,
             excluded_users=0, users=2, sessions=3, actions=4),
         Row(variant="B", window_start=MON, window_end=MON, is_latest=False, control_variant="A", is_control=False,
             excluded_users=0, users=1, sessions=1, actions=2),
         Row(variant="A", window_start=MON, window_end=TUE, is_latest=True, control_variant="A", is_control=True,
             excluded_users=0, users=3, sessions=4, actions=5),
         Row(variant="B", window_start=MON, window_end=TUE, is_latest=True, control_variant="A", is_control=False,
             excluded_users=0, users=2, sessions=2, actions=4)],
    )
    latest_b = table.where("variant = 'B' AND is_latest").first()
    # A on Tuesday, users (S, A) = (3, 4), (1, 1), (0, 0): APS 5/4 with Var = 3/256 by the delta method (mS 4/3,
    # mA 5/3, var S 7/3, var A 13/3, cov 19/6); B's users are alike, (1, 2) twice: APS 2, SE 0. Lift 2 / 1.25 - 1
    # = 0.6, SE = 1.6 x sqrt(3/256) / 1.25 = 1.28 x sqrt(3/256).
    assert latest_b["aps"] == pytest.approx(2.0) and latest_b["aps_lift"] == pytest.approx(0.6)
    assert latest_b["aps_lift_ci_high"] == pytest.approx(0.6 + 1.959964 * 1.28 * math.sqrt(3 / 256), rel=1e-6)
    assert latest_b["spu"] == pytest.approx(1.0) and latest_b["spu_lift"] == pytest.approx(1.0 / (4 / 3) - 1)


def test_a_rerun_of_a_day_leaves_the_experiments_table_as_it_was(spark, tmp_path, assigned):
    # The tables of `assigned`'s Monday-to-Tuesday run, copied: the rerun continues that run on the copy.
    root, config = tmp_path, continued(assigned, tmp_path, assigned_settings(assigned))
    before = spark.read.format("delta").load(str(root / "out" / "experiments")).collect()

    assert run(config, "--date", "2026-11-02") == 0

    assertDataFrameEqual(spark.read.format("delta").load(str(root / "out" / "experiments")), before)


def test_unusable_assignment_rows_stop_the_run_with_each_reason_counted(spark, job, capsys):
    root, config = with_assignments(spark, job, [*ASSIGNED, (None, "exp", "A", "2026-11-02T00:00")])

    assert run(config, "--date", "2026-11-02") == 1

    assert "rows that cannot be used (missing_user_id 1); fix them and run again" in capsys.readouterr().err
    assert not (root / "out" / "sessions").exists()


# The same users as ASSIGNED, their variants carried by their events: u1 and u2 from their first event, u3 from
# its 12:00 event, u4 from Tuesday's, u5 by an exposure event (non-interactive: it opens no session).
TAGGED_MON_TUE = [
    (*event, *({"u1": ("exp", "A"), "u2": ("exp", "B"), "u3": ("exp", "A"), "u4": ("exp", "B")}[event[0]]))
    for event in EVENTS_MON_TUE
] + [("u5", "e10", "exposure", "2026-11-03T08:00:00", "web", "US", "exp", "A"),
     ("u5", "e11", "exposure", "2026-11-03T08:05:00", "web", "US", "exp", None)]  # half tagged: assigns nothing
TAGGED = "user_id string, event_id string, event_name string, event_ts timestamp, platform string, country string, " \
         "experiment string, variant string"


def with_tagged_events(spark, job, rows) -> tuple:
    root, config = job
    write_tagged(spark, root, rows)
    config.write_text(config.read_text() + "experiments: {experiment_column: experiment, variant_column: variant}\n"
                      "sessionization: {non_interactive_events: [exposure]}\n")
    return root, config


def write_tagged(spark, root, rows):
    frame = spark.createDataFrame([(*r[:3], utc(r[3]), *r[4:]) for r in rows], TAGGED)
    frame.withColumn("event_date", F.to_date("event_ts")).write.mode("append").partitionBy("event_date").parquet(
        str(root / "events")
    )


def test_variants_read_off_event_columns_give_the_same_table_as_the_assignments_they_carry(spark, job, caplog):
    root, config = with_tagged_events(spark, job, TAGGED_MON_TUE)

    assert run(config, "--date", "2026-11-02") == 0
    assert run(config, "--date", "2026-11-03") == 0  # daily runs: Tuesday's needs Monday's stored assignments

    # As test_a_run_writes_each_variants_cumulative_windows_with_their_statistics, whose assignments these events
    # carry: u3's assignment at 12:00 and u4's at 10:00 still precede none of their sessions' ends.
    assertDataFrameEqual(
        table(spark, root, "experiments").where("dimension = 'all'").select(
            "variant", "window_end", "excluded_users", "users", "sessions", "actions"
        ),
        [Row(variant="A", window_end=MON, excluded_users=0, users=2, sessions=3, actions=4),
         Row(variant="B", window_end=MON, excluded_users=0, users=1, sessions=1, actions=2),
         Row(variant="A", window_end=TUE, excluded_users=0, users=3, sessions=4, actions=5),
         Row(variant="B", window_end=TUE, excluded_users=0, users=2, sessions=2, actions=4)],
    )
    assertDataFrameEqual(
        table(spark, root, "assignments").select("user_id", "variant", "assigned_at", "event_date"),
        [Row(user_id="u1", variant="A", assigned_at=utc("2026-11-02T10:00"), event_date=MON),
         Row(user_id="u1", variant="A", assigned_at=utc("2026-11-03T10:00"), event_date=TUE),
         Row(user_id="u2", variant="B", assigned_at=utc("2026-11-02T09:00"), event_date=MON),
         Row(user_id="u3", variant="A", assigned_at=utc("2026-11-02T12:00"), event_date=MON),
         Row(user_id="u4", variant="B", assigned_at=utc("2026-11-03T10:00"), event_date=TUE),
         Row(user_id="u5", variant="A", assigned_at=utc("2026-11-03T08:00"), event_date=TUE)],
    )
    assert "1 valid events of partitions 2026-11-03..2026-11-03 have only one of experiments.experiment and " \
           "variant" in caplog.text


def test_a_late_event_in_another_variant_excludes_its_user_once_its_day_is_run_again(spark, job):
    root, config = with_tagged_events(spark, job, TAGGED_MON_TUE)
    assert run(config, "--from", "2026-11-02", "--to", "2026-11-03") == 0
    write_tagged(spark, root, [("u2", "e12", "view", "2026-11-02T09:10:00", "web", "BR", "exp", "A")])

    assert run(config, "--date", "2026-11-02") == 0

    # u2 saw A too: out of the experiment, so B holds only u4 (1 session, 2 actions) and no one on Monday. Monday's
    # rerun replaced its partition's assignments: u2's B row is there once, beside the new A row.
    assertDataFrameEqual(
        table(spark, root, "experiments").where("dimension = 'all'").select(
            "variant", "window_end", "excluded_users", "users", "sessions", "actions"
        ),
        [Row(variant="A", window_end=MON, excluded_users=1, users=2, sessions=3, actions=4),
         Row(variant="B", window_end=MON, excluded_users=1, users=0, sessions=0, actions=0),
         Row(variant="A", window_end=TUE, excluded_users=1, users=3, sessions=4, actions=5),
         Row(variant="B", window_end=TUE, excluded_users=1, users=1, sessions=1, actions=2)],
    )
    assert sorted(row["variant"] for row in table(spark, root, "assignments").where("user_id = 'u2'").collect()) == [
        "A", "B"
    ]


def test_an_experiment_column_missing_from_the_input_is_an_error_naming_the_key(spark, job, capsys):
    root, config = job
    write_events(spark, root / "events", EVENTS_MON_TUE)  # no experiment or variant column
    config.write_text(config.read_text() + "experiments: {experiment_column: experiment, variant_column: variant}\n")

    assert run(config, "--date", "2026-11-02") == 1

    assert "has no column experiment, variant; experiments names experiment, variant" in capsys.readouterr().err
    assert not (root / "out" / "sessions").exists()


def test_the_experiments_command_prints_a_window_and_names_the_known_experiments_for_an_unknown_one(
    spark, job, capsys
):
    # Besides TAGGED_MON_TUE's users, u6: seen on Monday, assigned to B on Tuesday, so a returning user.
    u6 = [("u6", "e20", "view", "2026-11-02T15:00:00", "web", "US", None, None),
          ("u6", "e21", "view", "2026-11-03T15:00:00", "web", "US", "exp", "B")]
    root, config = with_tagged_events(spark, job, TAGGED_MON_TUE + u6)
    assert run(config, "--from", "2026-11-02", "--to", "2026-11-03") == 0
    assert "experiments: exp; `sessionlake experiments --experiment ID` shows one" in capsys.readouterr().out

    def printed(*flags: str, where=("--config", str(config))) -> tuple[int, list[str], str]:
        code = main(["experiments", *where, "--experiment", *flags])
        out, err = capsys.readouterr()
        return code, out.splitlines(), err

    latest, monday = printed("exp"), printed("exp", "--date", "2026-11-02")
    by_user_type = printed("exp", "--by", "user_type")
    unknown = printed("checkout", where=("--output", str(root / "out")))  # the tables' folder, without a config
    no_window, no_breakdown = printed("exp", "--date", "2026-11-05"), printed("exp", "--by", "platform")

    # The counts of test_variants_read_off_event_columns_give_the_same_table_as_the_assignments_they_carry, with
    # u6 in B from Tuesday (1 session, 1 action).
    assert latest[0] == 0 and monday[0] == 0 and by_user_type[0] == 0
    assert latest[1][0] == "exp: 2026-11-02 to 2026-11-03 (the experiment to date), control: A"
    assert latest[1][4:6] == ["A                 3             4             5",
                              "B                 3             3             5"]
    assert monday[1][0] == "exp: 2026-11-02 to 2026-11-02, control: A"
    assert monday[1][4:6] == ["A                 2             3             4",
                              "B                 1             1             2"]
    # A table for new users, then one for returning users: u6 alone.
    titles = [line for line in by_user_type[1] if line.startswith("exp, user_type")]
    assert titles == ["exp, user_type new: 2026-11-02 to 2026-11-03 (the experiment to date), control: A",
                      "exp, user_type returning: 2026-11-02 to 2026-11-03 (the experiment to date), control: A"]
    returning = by_user_type[1][by_user_type[1].index(titles[1]):]
    assert returning[4:6] == ["A                 0             0             0",
                              "B                 1             1             1"]
    assert unknown[0] == 1 and (
        f"unknown experiment 'checkout' in '{root / 'out' / 'experiments'}'; the experiments there: exp" in unknown[2]
    )
    assert no_window[0] == 1 and (
        "experiment 'exp' has no window ending 2026-11-05: its windows end 2026-11-02 to 2026-11-03" in no_window[2]
    )
    assert no_breakdown[0] == 1 and "experiment 'exp' has no breakdown by 'platform'; its breakdowns: user_type" in (
        no_breakdown[2]
    )
