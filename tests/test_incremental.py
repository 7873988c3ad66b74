"""The incremental model's pure steps: anchors, resume points, numbering across runs, users' state."""

from datetime import date, timedelta

from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.incremental import (
    anchor_fingerprint,
    anchor_fingerprints,
    counts_before,
    latest_sessions_before,
    numbered,
    renumbered_later,
    resume_points,
    user_updates,
)
from jobs.sessionize import sessionize
from tests.helpers import utc
from tests.test_sessionize import ONE_DAY, SEGMENTS, THIRTY_MINUTES, events

STORED = "session_id string, user_id string, session_start timestamp, session_number long, session_date date"
USERS = "user_id string, first_seen timestamp, sessions long"


def stored(spark, *rows):
    """Rows of (session_id, user_id, 'YYYY-MM-DDTHH:MM:SS', session_number); session_date is the UTC date."""
    return spark.createDataFrame([(i, u, utc(t), n, utc(t).date()) for i, u, t, n in rows], STORED)


def test_the_anchor_is_each_users_latest_stored_session_in_the_lookback(spark):
    sessions = stored(
        spark,
        ("s1", "u1", "2026-11-01T08:00:00", 1),
        ("s2", "u1", "2026-11-01T22:00:00", 2),
        ("s3", "u1", "2026-11-02T01:00:00", 3),  # on the run's day: not an anchor
        ("s4", "u2", "2026-10-29T22:00:00", 1),  # before the lookback
    )

    anchors = latest_sessions_before(sessions, utc("2026-10-31T00:00:00"), utc("2026-11-02T00:00:00"))

    assertDataFrameEqual(anchors.select("session_id"), [Row(session_id="s2")])


def test_each_days_anchor_fingerprint_covers_exactly_that_days_anchors(spark):
    sessions = spark.createDataFrame(
        [("s1", "u1", utc("2026-11-01T10:00:00"), utc("2026-11-01T10:05:00"), 2),
         ("s2", "u1", utc("2026-11-01T20:00:00"), utc("2026-11-01T20:00:00"), 1),
         ("s3", "u2", utc("2026-11-02T05:00:00"), utc("2026-11-02T05:30:00"), 3)],
        "session_id string, user_id string, session_start timestamp, session_end timestamp, actions long",
    )
    windows = spark.createDataFrame(
        [(date(2026, 11, 2), utc("2026-10-31T00:00:00"), utc("2026-11-02T00:00:00")),
         (date(2026, 11, 3), utc("2026-11-01T00:00:00"), utc("2026-11-03T00:00:00")),
         (date(2026, 11, 9), utc("2026-11-07T00:00:00"), utc("2026-11-09T00:00:00"))],
        "window_day date, window_since timestamp, window_until timestamp",
    )

    by_day = {r["day"]: r["fingerprint"] for r in anchor_fingerprints(sessions, windows).collect()}

    # 2 Nov: u1's latest session before midnight (s2); 3 Nov: s2 and u2's s3; 9 Nov: none, so no row.
    def fingerprint_of(*ids):
        return sessions.where(F.col("session_id").isin(*ids)).agg(anchor_fingerprint().alias("f")).first()["f"]

    assert by_day == {date(2026, 11, 2): fingerprint_of("s2"), date(2026, 11, 3): fingerprint_of("s2", "s3")}
    assert by_day[date(2026, 11, 2)].startswith("1:") and by_day[date(2026, 11, 3)].startswith("2:")


def test_an_anchor_that_may_still_be_open_resumes_at_its_start_an_older_one_at_the_first_instant(spark):
    # The run starts at 2 Nov 00:00 with a 24h cap: a session started 1 Nov 22:00 may continue past midnight; one
    # started 31 Oct 22:00 ended before 1 Nov 22:00, so the user's next event opens a session.
    anchors = stored(spark, ("s1", "u1", "2026-11-01T22:00:00", 4), ("s2", "u2", "2026-10-31T22:00:00", 1))

    points = resume_points(anchors, utc("2026-11-01T00:00:00"), utc("2026-11-02T00:00:00"))

    assertDataFrameEqual(
        points,
        [Row(user_id="u1", resume_from=utc("2026-11-01T22:00:00")),
         Row(user_id="u2", resume_from=utc("2026-11-02T00:00:00"))],
    )


def test_sessionizing_from_a_resume_point_counts_the_cap_from_it(spark):
    # A bot sends an event every 20 minutes from 1 Nov 00:00 to 3 Nov 00:00, never pausing. Counted from its
    # first event the cap cuts at 2 Nov 00:00 and 3 Nov 00:00; a stored session starting at 1 Nov 10:00 (a cut
    # made from earlier history) moves the cuts to 1 Nov 10:00 and 2 Nov 10:00. u2 has no resume point.
    start = utc("2026-11-01T00:00:00")
    bot = [("u1", f"e{n:03d}", (start + timedelta(minutes=20 * n)).isoformat()) for n in range(145)]
    frame = events(spark, *bot, ("u2", "x1", "2026-11-01T09:00:00"))
    points = spark.createDataFrame([("u1", utc("2026-11-01T10:00:00"))], "user_id string, resume_from timestamp")

    sessions = sessionize(frame, THIRTY_MINUTES, ONE_DAY, SEGMENTS, "UTC", points)

    # 10:00 on 1 Nov to 09:40 on 2 Nov is 72 events; 10:00 on 2 Nov to 00:00 on 3 Nov is 43.
    assertDataFrameEqual(
        sessions.select("user_id", "session_start", "session_end", "actions"),
        [Row(user_id="u1", session_start=utc("2026-11-01T10:00:00"), session_end=utc("2026-11-02T09:40:00"), actions=72),
         Row(user_id="u1", session_start=utc("2026-11-02T10:00:00"), session_end=utc("2026-11-03T00:00:00"), actions=43),
         Row(user_id="u2", session_start=utc("2026-11-01T09:00:00"), session_end=utc("2026-11-01T09:00:00"), actions=1)],
    )


def test_a_copy_before_the_resume_point_still_hides_a_later_copy(spark):
    # e1 was counted in the stored session that starts at 09:00; its resent copy at 10:05 must not count again.
    frame = events(spark, ("u1", "e1", "2026-11-01T09:00:00"), ("u1", "e1", "2026-11-01T10:05:00"),
                   ("u1", "e2", "2026-11-01T10:10:00"))
    points = spark.createDataFrame([("u1", utc("2026-11-01T10:00:00"))], "user_id string, resume_from timestamp")

    sessions = sessionize(frame, THIRTY_MINUTES, ONE_DAY, SEGMENTS, "UTC", points)

    assertDataFrameEqual(
        sessions.select("session_start", "actions"), [Row(session_start=utc("2026-11-01T10:10:00"), actions=1)]
    )


def test_sessions_are_numbered_after_the_users_stored_sessions_before_the_run(spark):
    # u1 has 5 stored sessions, 2 of them on or after the run's first day (being replaced or later): 3 before.
    users = spark.createDataFrame([("u1", utc("2026-10-01T10:00:00"), 5)], USERS)
    from_first_day = stored(spark, ("s4", "u1", "2026-11-02T10:00:00", 4), ("s5", "u1", "2026-11-05T10:00:00", 5))
    run = stored(spark, ("n1", "u1", "2026-11-02T12:00:00", 0), ("n2", "u1", "2026-11-02T09:00:00", 0),
                 ("n3", "u2", "2026-11-02T09:00:00", 0))

    result = numbered(run.drop("session_number"), counts_before(users, from_first_day))

    assertDataFrameEqual(
        result.select("session_id", "session_number"),
        [Row(session_id="n2", session_number=4), Row(session_id="n1", session_number=5),
         Row(session_id="n3", session_number=1)],
    )


def test_later_sessions_are_renumbered_after_a_backfill_and_only_changed_rows_returned(spark):
    # A backfill adds 2 sessions for u1 before its stored later sessions (numbered 1 and 2); u2's later session
    # keeps number 2 because it had 1 session before and none in the backfill.
    before = spark.createDataFrame([("u1", 0), ("u2", 1)], "user_id string, sessions_before long")
    run = stored(spark, ("n1", "u1", "2026-11-01T09:00:00", 1), ("n2", "u1", "2026-11-01T11:00:00", 2))
    later = stored(spark, ("s1", "u1", "2026-11-03T09:00:00", 1), ("s2", "u1", "2026-11-04T09:00:00", 2),
                   ("s3", "u2", "2026-11-03T09:00:00", 2))

    assertDataFrameEqual(
        renumbered_later(later, before, run).select("session_id", "session_number"),
        [Row(session_id="s1", session_number=3), Row(session_id="s2", session_number=4)],
    )


def test_users_first_seen_and_session_count_follow_the_replaced_days(spark):
    # u1 was first seen 3 Nov with 2 sessions; a backfill of 1 Nov gives it 1 session there: first seen 1 Nov, 3.
    # u2 had its only session on the run's day and now has none there (merged into the day before): 0, no first.
    users = spark.createDataFrame(
        [("u1", utc("2026-11-03T09:00:00"), 2), ("u2", utc("2026-11-01T00:10:00"), 1)], USERS
    )
    old_run = stored(spark, ("o1", "u2", "2026-11-01T00:10:00", 1))
    run = stored(spark, ("n1", "u1", "2026-11-01T09:00:00", 1))
    later = stored(spark, ("s1", "u1", "2026-11-03T09:00:00", 2), ("s2", "u1", "2026-11-04T09:00:00", 3))

    updates = user_updates(users, old_run, run, later, utc("2026-11-01T00:00:00"))

    assertDataFrameEqual(
        updates,
        [Row(user_id="u1", first_seen=utc("2026-11-01T09:00:00"), sessions=3),
         Row(user_id="u2", first_seen=None, sessions=0)],
    )
