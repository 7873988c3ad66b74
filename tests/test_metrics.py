import math
import random
from datetime import date, datetime, time, timedelta

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from jobs.metrics import (
    action_kpis_by_period,
    has_folded_names,
    in_periods,
    kpis_by_period,
    ranked_actions,
    with_empty_periods,
    with_first_seen_day,
)
from jobs.periods import Period, complete_periods, periods_of
from tests.helpers import utc

SESSIONS = (
    "session_id string, user_id string, actions long, session_date date, platform string, duration_seconds double, "
    "is_bounce boolean, is_engaged boolean, converted boolean, action_counts map<string, bigint>, "
    "session_start timestamp"
)
USERS = "user_id string, first_seen timestamp"
SEGMENTS = ("platform",)
LONG_AGO = utc("2026-10-01T00:00:00")


def session(user, actions, day, platform="ios", duration=0.0, engaged=False, converted=False, counts=None):
    """A sessions row; action_counts defaults to all its actions being views."""
    return (None, user, actions, day, platform, duration, actions == 1, engaged, converted,
            counts or {"view": actions})


def sessions_frame(spark, sessions):
    rows = [session(*r) if len(r) == 4 else r for r in sessions]
    # Each session starts a minute after the one before it on its day, so a user's sessions start apart.
    numbered = [(f"s{n}", *r[1:], datetime.combine(r[3], time(10)) + timedelta(minutes=n)) for n, r in enumerate(rows)]
    return spark.createDataFrame(numbered, SESSIONS)


def dated(spark, sessions, users, timezone="UTC"):
    return with_first_seen_day(
        sessions_frame(spark, sessions), spark.createDataFrame(users, USERS), SEGMENTS, timezone
    )


def kpis(spark, sessions, users, timezone="UTC"):
    return kpis_by_period(dated(spark, sessions, users, timezone), SEGMENTS)


def action_kpis(spark, sessions, users, max_names=500):
    frame = dated(spark, sessions, users)
    ranked = ranked_actions(frame, SEGMENTS)
    return action_kpis_by_period(frame, SEGMENTS, ranked, max_names, fold=has_folded_names(ranked, max_names))


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


def test_a_period_without_sessions_gets_a_row_of_zero_sessions_and_null_ratios_and_others_are_left_alone(spark):
    monday, tuesday = date(2026, 11, 2), date(2026, 11, 3)
    computed = kpis(spark, [("u1", 2, monday, "ios")], [("u1", LONG_AGO)])
    periods = spark.createDataFrame([("day", monday), ("day", tuesday), ("week", monday)],
                                    "period string, period_start date")

    filled = with_empty_periods(computed.where(in_periods({Period.DAY: frozenset({monday, tuesday}),
                                                           Period.WEEK: frozenset({monday})})), periods)

    tuesday_rows = filled.where("period_start = DATE'2026-11-03'").collect()
    assert [r.asDict() for r in tuesday_rows] == [dict(
        period="day", period_start=tuesday, dimension="all", dimension_value="all", sessions=0, users=0, actions=0,
        aps=None, spu=None, total_duration_seconds=0.0, avg_duration_seconds=None, median_duration_seconds=None,
        p90_duration_seconds=None, bounces=0, bounce_rate=None, engaged_sessions=0, engagement_rate=None,
        converting_sessions=0, conversion_rate=None, converting_users=0, user_conversion_rate=None,
    )]
    # Monday's day and week rows (all, platform, user_type) are the computed ones, untouched and not doubled.
    assert filled.where("period_start = DATE'2026-11-02'").orderBy("period", "dimension").collect() == (
        computed.where("period_start = DATE'2026-11-02'").orderBy("period", "dimension").collect()
    )
    assert [(f.name, f.dataType) for f in filled.schema] == [(f.name, f.dataType) for f in computed.schema]


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


def test_duration_is_averaged_and_its_median_and_p90_are_exact_percentiles_interpolated_between_ranks(spark):
    # Durations 0, 10, 20 and 100 s: total 130, mean 32.5. Median at rank (4 - 1) x 0.5 = 1.5, halfway between
    # 10 and 20: 15. p90 at rank (4 - 1) x 0.9 = 2.7: 20 + 0.7 x (100 - 20) = 76.
    frame = kpis(
        spark,
        [session("u1", 1, MON), session("u1", 2, MON, duration=10.0), session("u2", 3, MON, duration=20.0),
         session("u2", 9, MON, duration=100.0)],
        [("u1", LONG_AGO), ("u2", LONG_AGO)],
    )

    day = row(frame, "day", MON)
    assert (day.total_duration_seconds, day.avg_duration_seconds) == (130.0, 32.5)
    assert day.median_duration_seconds == pytest.approx(15.0)
    assert day.p90_duration_seconds == pytest.approx(76.0)


def test_equal_durations_each_count_in_the_percentiles(spark):
    # Durations 0, 0, 0 and 100 s (three bounces, counted once each): the median at rank 1.5 is 0, the p90 at rank
    # 2.7 is 0 + 0.7 x 100 = 70. Were the three zeros one value, the median would be 50.
    frame = kpis(
        spark,
        [session("u1", 1, MON), session("u2", 1, MON), session("u3", 1, MON), session("u4", 5, MON, duration=100.0)],
        [(u, LONG_AGO) for u in ("u1", "u2", "u3", "u4")],
    )

    day = row(frame, "day", MON)
    assert (day.median_duration_seconds, day.p90_duration_seconds) == (0.0, pytest.approx(70.0))


def test_bounce_engagement_and_conversion_rates_sit_beside_their_counts(spark):
    # u1: a bounce that converts, and an engaged session; u2: a bounce; u3: an engaged session that converts.
    frame = kpis(
        spark,
        [session("u1", 1, MON, converted=True, engaged=True), session("u1", 4, MON, engaged=True),
         session("u2", 1, MON), session("u3", 5, MON, engaged=True, converted=True)],
        [("u1", LONG_AGO), ("u2", LONG_AGO), ("u3", LONG_AGO)],
    )

    day = row(frame, "day", MON)
    assert (day.sessions, day.bounces, day.engaged_sessions, day.converting_sessions) == (4, 2, 3, 2)
    assert (day.bounce_rate, day.engagement_rate, day.conversion_rate) == (0.5, 0.75, 0.5)
    assert (day.users, day.converting_users) == (3, 2)
    assert day.user_conversion_rate == pytest.approx(2 / 3)


def test_converting_users_are_distinct_over_the_week_not_summed_from_days(spark):
    # u1 converts on Monday and on Tuesday, u2 never: each day has 1 converting user, the week 1 of 2 (not 2 of 3).
    frame = kpis(
        spark,
        [session("u1", 2, MON, converted=True), session("u1", 2, TUE, converted=True), session("u2", 1, TUE)],
        [("u1", LONG_AGO), ("u2", LONG_AGO)],
    )

    week = row(frame, "week", MON)
    assert (week.converting_users, week.users, week.user_conversion_rate) == (1, 2, 0.5)
    assert (week.converting_sessions, week.sessions) == (2, 3)


MIX = [
    session("u1", 4, MON, counts={"view": 3, "search": 1}),
    session("u1", 1, MON, counts={"view": 1}),
    session("u2", 3, MON, counts={"search": 2, "buy": 1}),
]


def test_the_action_mix_counts_each_names_actions_sessions_and_users_over_all_sessions_and_actions(spark):
    # 3 sessions, 8 actions. view: 4 actions in 2 sessions of 1 user; search: 3 in 2 sessions of 2 users; buy: 1.
    frame = action_kpis(spark, MIX, [("u1", LONG_AGO), ("u2", LONG_AGO)])

    assertDataFrameEqual(
        frame.where("period = 'day' AND dimension = 'all'").select(
            "event_name", "actions", "sessions_with_action", "users_with_action", "sessions", "total_actions",
            "actions_per_session", "share_of_actions",
        ),
        [Row(event_name="view", actions=4, sessions_with_action=2, users_with_action=1, sessions=3, total_actions=8,
             actions_per_session=4 / 3, share_of_actions=0.5),
         Row(event_name="search", actions=3, sessions_with_action=2, users_with_action=2, sessions=3,
             total_actions=8, actions_per_session=1.0, share_of_actions=0.375),
         Row(event_name="buy", actions=1, sessions_with_action=1, users_with_action=1, sessions=3, total_actions=8,
             actions_per_session=1 / 3, share_of_actions=0.125)],
    )


def test_names_past_the_cap_fold_into_other_counting_each_session_and_user_once(spark):
    # Cap 1: view (4 actions) keeps its row; search and buy fold into (other): 4 actions, in 2 sessions (u2's
    # holds both names, counted once) of 2 users (summing the names' rows would say 3 and 3).
    frame = action_kpis(spark, MIX, [("u1", LONG_AGO), ("u2", LONG_AGO)], max_names=1)

    assertDataFrameEqual(
        frame.where("period = 'day' AND dimension = 'all'").select(
            "event_name", "actions", "sessions_with_action", "users_with_action", "share_of_actions"
        ),
        [Row(event_name="view", actions=4, sessions_with_action=2, users_with_action=1, share_of_actions=0.5),
         Row(event_name="(other)", actions=4, sessions_with_action=2, users_with_action=2, share_of_actions=0.5)],
    )


def test_names_tied_on_actions_are_kept_in_alphabetical_order(spark):
    frame = action_kpis(
        spark, [session("u1", 2, MON, counts={"zoom": 1, "add": 1})], [("u1", LONG_AGO)], max_names=1
    )

    names = frame.where("period = 'day' AND dimension = 'all'").select("event_name", "actions")
    assertDataFrameEqual(names, [Row(event_name="add", actions=1), Row(event_name="(other)", actions=1)])


def test_an_event_really_named_other_is_folded_with_the_names_past_the_cap(spark):
    # Cap 1: view (3) is kept; "(other)" (2, a real event name) ranks last and folds with like (1): one row.
    frame = action_kpis(
        spark, [session("u1", 6, MON, counts={"view": 3, "(other)": 2, "like": 1})], [("u1", LONG_AGO)], max_names=1
    )

    names = frame.where("period = 'day' AND dimension = 'all'").select("event_name", "actions")
    assertDataFrameEqual(names, [Row(event_name="view", actions=3), Row(event_name="(other)", actions=3)])


def test_only_groups_with_names_past_the_cap_get_an_other_row(spark):
    # Monday has 3 names (cap 1: search and buy fold); Tuesday only view: no (other) row on Tuesday.
    frame = action_kpis(
        spark, [*MIX, session("u1", 2, TUE, counts={"view": 2})], [("u1", LONG_AGO), ("u2", LONG_AGO)], max_names=1
    )

    days = frame.where("period = 'day' AND dimension = 'all'").select("period_start", "event_name", "actions")
    assertDataFrameEqual(
        days,
        [Row(period_start=MON, event_name="view", actions=4), Row(period_start=MON, event_name="(other)", actions=4),
         Row(period_start=TUE, event_name="view", actions=2)],
    )


# A random month of sessions for the reference tests below: users who switch platform between sessions, several
# sessions a day, weeks that cross into December, users first seen during the month.
REFERENCE_DAYS = [date(2026, 11, 1) + timedelta(days=n) for n in range(34)]
BUCKET_US = 2**23  # the duration buckets the percentiles are located in (jobs.metrics._BUCKET_BITS)


def random_sessions(seed, count=400):
    rng = random.Random(seed)
    users = [f"u{n}" for n in range(25)]
    first_seen = {u: rng.choice([LONG_AGO, *[datetime.combine(d, time(0)) for d in REFERENCE_DAYS[:10]]])
                  for u in users}
    rows = []
    for n in range(count):
        user = rng.choice(users)
        day = rng.choice([d for d in REFERENCE_DAYS if d >= first_seen[user].date()])
        # Durations at and around bucket edges, repeated values (bounces), long and very long sessions.
        duration_us = rng.choice([
            0, 0, rng.randrange(1, 3_600_000_000), BUCKET_US * rng.randrange(1, 40) + rng.choice([-1, 0, 1]),
            rng.randrange(0, 86_400_000_000), 1_000_000 * rng.randrange(0, 50),
        ])
        names = rng.sample(["view", "search", "like", "buy"], rng.randrange(1, 4))
        counts = {name: rng.randrange(1, 4) for name in names}
        rows.append((None, user, sum(counts.values()), day, rng.choice(["ios", "web", "android"]),
                     duration_us / 1_000_000, False, False, rng.random() < 0.3, counts))
    return rows, [(u, first_seen[u]) for u in users]


def groups_of(session_row, first_seen):
    """The (period, period_start, dimension, value) groups one session counts in: the rules in plain Python."""
    day, platform = session_row[3], session_row[4]
    first_day = first_seen[session_row[1]].date()
    starts = {"day": lambda d: d, "week": lambda d: d - timedelta(days=d.weekday()), "month": lambda d: d.replace(day=1)}
    for period, start_of in starts.items():
        start = start_of(day)
        user_type = "new" if start_of(first_day) == start else "returning"
        for dimension, value in (("all", "all"), ("platform", platform), ("user_type", user_type)):
            yield period, start, dimension, value


def spark_percentile(values, q):
    """Spark's percentile: rank (n - 1) x q, interpolated between the values at its floor and ceil."""
    values = sorted(values)
    position = (len(values) - 1) * q
    lower, higher = math.floor(position), math.ceil(position)
    if lower == higher or values[lower] == values[higher]:
        return values[lower]
    return (higher - position) * values[lower] + (position - lower) * values[higher]


def test_percentiles_equal_spark_percentile_of_each_group_wherever_its_ranks_fall_among_the_buckets(spark):
    rows, users = random_sessions(seed=3)
    first_seen = dict(users)
    durations = {}
    for r in rows:
        for group in groups_of(r, first_seen):
            durations.setdefault(group, []).append(r[5])

    frame = kpis(spark, rows, users)

    found = {(r.period, r.period_start, r.dimension, r.dimension_value): (r.median_duration_seconds,
                                                                          r.p90_duration_seconds)
             for r in frame.collect()}
    expected = {g: (spark_percentile(d, 0.5), spark_percentile(d, 0.9)) for g, d in durations.items()}
    assert found.keys() == expected.keys()
    for group, (median, p90) in expected.items():
        assert found[group] == (pytest.approx(median, rel=1e-12), pytest.approx(p90, rel=1e-12)), group


def test_distinct_users_converting_users_and_users_per_action_match_a_count_over_each_group(spark):
    rows, users = random_sessions(seed=5)
    first_seen = dict(users)
    members, converting, by_name = {}, {}, {}
    for r in rows:
        for group in groups_of(r, first_seen):
            members.setdefault(group, set()).add(r[1])
            if r[8]:
                converting.setdefault(group, set()).add(r[1])
            for name in r[9]:
                by_name.setdefault((*group, name), set()).add(r[1])

    kpi_rows = kpis(spark, rows, users).collect()
    action_rows = action_kpis(spark, rows, users).collect()

    assert {(r.period, r.period_start, r.dimension, r.dimension_value): (r.users, r.converting_users)
            for r in kpi_rows} == {g: (len(u), len(converting.get(g, ()))) for g, u in members.items()}
    assert {(r.period, r.period_start, r.dimension, r.dimension_value, r.event_name): r.users_with_action
            for r in action_rows} == {k: len(u) for k, u in by_name.items()}
