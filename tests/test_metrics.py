from datetime import date, timedelta

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from jobs.metrics import Period, complete_periods, in_periods, kpis_by_period, periods_of
from tests.helpers import utc

SESSIONS = "user_id string, actions long, session_date date, platform string"
USERS = "user_id string, first_seen timestamp"
SEGMENTS = ("platform",)


def kpis(spark, sessions, users, timezone="UTC"):
    return kpis_by_period(
        spark.createDataFrame(sessions, SESSIONS), spark.createDataFrame(users, USERS), SEGMENTS, timezone
    )


def row(frame, period, start, dimension="all", value="all"):
    rows = frame.where(
        (frame.period == period) & (frame.period_start == start)
        & (frame.dimension == dimension) & (frame.dimension_value == value)
    ).collect()
    assert len(rows) == 1, f"expected one {period} {start} {dimension}={value} row, got {rows}"
    return rows[0]


MON, TUE = date(2026, 11, 2), date(2026, 11, 3)


def test_aps_is_actions_over_sessions_and_spu_is_sessions_over_distinct_users(spark):
    # Day: u1 has 2 sessions (3 + 5 actions), u2 one (1 action): 3 sessions, 2 users, 9 actions.
    frame = kpis(
        spark,
        [("u1", 3, MON, "ios"), ("u1", 5, MON, "ios"), ("u2", 1, MON, "web")],
        [("u1", utc("2026-10-01T00:00:00")), ("u2", utc("2026-10-01T00:00:00"))],
    )

    day = row(frame, "day", MON)
    assert (day.sessions, day.users, day.actions) == (3, 2, 9)
    assert day.aps == pytest.approx(3.0)
    assert day.spu == pytest.approx(1.5)


def test_users_are_distinct_over_the_week_not_summed_from_days(spark):
    # u1 on Monday and Tuesday, u2 on Tuesday: days have 1 and 2 users, the week has 2 (not 3).
    frame = kpis(
        spark,
        [("u1", 2, MON, "ios"), ("u1", 4, TUE, "ios"), ("u2", 6, TUE, "web")],
        [("u1", utc("2026-10-01T00:00:00")), ("u2", utc("2026-10-01T00:00:00"))],
    )

    assert [row(frame, "day", d).users for d in (MON, TUE)] == [1, 2]
    week = row(frame, "week", MON)
    assert (week.sessions, week.users, week.actions) == (3, 2, 12)
    assert week.spu == pytest.approx(1.5)  # the mean of the daily SPUs would be 1.0
    assert week.aps == pytest.approx(4.0)


def test_a_monthly_spu_is_not_the_mean_of_daily_spus(spark):
    # u1 has one session on each of 3 days in November: each day's SPU is 1, the month's is 3.
    days = [date(2026, 11, 2), date(2026, 11, 15), date(2026, 11, 30)]
    frame = kpis(spark, [("u1", 1, d, "ios") for d in days], [("u1", utc("2026-10-01T00:00:00"))])

    month = row(frame, "month", date(2026, 11, 1))
    assert (month.sessions, month.users, month.spu) == (3, 1, pytest.approx(3.0))


def test_weeks_start_on_monday_and_months_on_the_first(spark):
    # Sunday 1 Nov 2026 is in the ISO week of Monday 26 Oct; Monday 2 Nov starts the next week. Both are November.
    frame = kpis(
        spark,
        [("u1", 1, date(2026, 11, 1), "ios"), ("u2", 1, MON, "ios")],
        [("u1", utc("2026-10-01T00:00:00")), ("u2", utc("2026-10-01T00:00:00"))],
    )

    all_rows = frame.where("dimension = 'all'").select("period", "period_start", "sessions")
    assertDataFrameEqual(
        all_rows,
        [Row(period="day", period_start=date(2026, 11, 1), sessions=1),
         Row(period="day", period_start=MON, sessions=1),
         Row(period="week", period_start=date(2026, 10, 26), sessions=1),
         Row(period="week", period_start=MON, sessions=1),
         Row(period="month", period_start=date(2026, 11, 1), sessions=2)],
    )


def test_each_segment_value_gets_its_own_rows_with_distinct_users(spark):
    frame = kpis(
        spark,
        [("u1", 2, MON, "ios"), ("u1", 4, MON, "web"), ("u2", 3, MON, "ios")],
        [("u1", utc("2026-10-01T00:00:00")), ("u2", utc("2026-10-01T00:00:00"))],
    )

    day_platform = frame.where("period = 'day' AND dimension = 'platform'").select(
        "dimension_value", "sessions", "users", "actions"
    )
    assertDataFrameEqual(
        day_platform,
        [Row(dimension_value="ios", sessions=2, users=2, actions=5),
         Row(dimension_value="web", sessions=1, users=1, actions=4)],
    )


def test_a_user_is_new_in_the_periods_containing_their_first_session_and_returning_after(spark):
    # u1's first-ever session is on Monday 2 Nov: new on Monday, returning on Tuesday's day row, new all week
    # and all month. u2 was first seen in October: returning everywhere in November.
    frame = kpis(
        spark,
        [("u1", 1, MON, "ios"), ("u1", 1, TUE, "ios"), ("u2", 1, TUE, "ios")],
        [("u1", utc("2026-11-02T08:00:00")), ("u2", utc("2026-10-20T08:00:00"))],
    )

    user_types = frame.where("dimension = 'user_type'").select("period", "period_start", "dimension_value", "users")
    assertDataFrameEqual(
        user_types,
        [Row(period="day", period_start=MON, dimension_value="new", users=1),
         Row(period="day", period_start=TUE, dimension_value="returning", users=2),
         Row(period="week", period_start=MON, dimension_value="new", users=1),
         Row(period="week", period_start=MON, dimension_value="returning", users=1),
         Row(period="month", period_start=date(2026, 11, 1), dimension_value="new", users=1),
         Row(period="month", period_start=date(2026, 11, 1), dimension_value="returning", users=1)],
    )


def test_new_versus_returning_uses_the_first_session_date_in_the_reporting_time_zone(spark):
    # First seen 23:30 UTC on Sunday 1 Nov = 00:30 Monday 2 Nov in Berlin: new on Monday in Berlin.
    frame = kpis(spark, [("u1", 1, MON, "ios")], [("u1", utc("2026-11-01T23:30:00"))], timezone="Europe/Berlin")

    assert row(frame, "day", MON, "user_type", "new").sessions == 1


def test_a_run_touches_its_days_and_every_week_and_month_containing_one():
    touched = periods_of([date(2026, 11, 29), date(2026, 11, 30), date(2026, 12, 2)])

    assert touched == {
        Period.DAY: {date(2026, 11, 29), date(2026, 11, 30), date(2026, 12, 2)},
        Period.WEEK: {date(2026, 11, 23), date(2026, 11, 30)},
        Period.MONTH: {date(2026, 11, 1), date(2026, 12, 1)},
    }


def test_a_period_is_complete_only_when_every_one_of_its_days_is_processed():
    # Week of Mon 2 Nov: Mon-Sat processed, Sunday 8 Nov not; month November: only 2-7 Nov processed.
    processed = {date(2026, 11, 2) + timedelta(days=n) for n in range(6)}
    periods = periods_of([date(2026, 11, 2), date(2026, 11, 7)])

    assert complete_periods(periods, processed) == {
        Period.DAY: {date(2026, 11, 2), date(2026, 11, 7)},
        Period.WEEK: set(),
        Period.MONTH: set(),
    }
    assert complete_periods(periods, processed | {date(2026, 11, 8)})[Period.WEEK] == {date(2026, 11, 2)}


def test_in_periods_keeps_only_the_touched_rows(spark):
    rows = spark.createDataFrame(
        [("day", date(2026, 11, 2)), ("day", date(2026, 11, 4)), ("week", date(2026, 11, 2)),
         ("week", date(2026, 10, 26)), ("month", date(2026, 11, 1))],
        "period string, period_start date",
    )

    kept = rows.where(in_periods(periods_of([MON, TUE])))

    assertDataFrameEqual(
        kept,
        [Row(period="day", period_start=MON), Row(period="week", period_start=MON),
         Row(period="month", period_start=date(2026, 11, 1))],
    )
