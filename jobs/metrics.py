"""Sessions + users' first_seen -> KPIs by period (day, week, month) and segment (KPI_COLUMNS: APS, SPU,
duration, bounces, engagement, conversions) and the action mix (ACTION_KPI_COLUMNS)."""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.config import ALL, USER_TYPE
from jobs.dates import local_date
from jobs.periods import Period, Periods

NEW_USER = "new"
RETURNING_USER = "returning"

# The kpis table's columns; is_complete is added by with_completeness, from the runs ledger. Every rate sits
# beside its numerator and denominator, so a BI tool can add counts up and divide, never average rates.
KPI_COLUMNS = (
    "period", "period_start", "dimension", "dimension_value",
    "sessions", "users", "actions", "aps", "spu",
    "total_duration_seconds", "avg_duration_seconds", "median_duration_seconds", "p90_duration_seconds",
    "bounces", "bounce_rate", "engaged_sessions", "engagement_rate",
    "converting_sessions", "conversion_rate", "converting_users", "user_conversion_rate",
)
GROUP = ("period", "period_start", "dimension", "dimension_value")
# The KPI columns that count (0 in a period without sessions); the others are ratios and statistics of them.
KPI_COUNTS = ("sessions", "users", "actions", "total_duration_seconds", "bounces", "engaged_sessions",
              "converting_sessions", "converting_users")


def period_start(day: Column, period: Period) -> Column:
    """The first day of the period that contains `day` (a date column)."""
    if period is Period.DAY:
        return day
    return F.trunc(day, period.value)


def in_periods(periods: Periods) -> Column:
    """True for a kpis row that belongs to one of `periods`."""
    condition = F.lit(False)
    for period, starts in periods.items():
        if starts:
            is_one = (F.col("period") == period.value) & F.col("period_start").isin([F.lit(s) for s in sorted(starts)])
            condition = condition | is_one
    return condition


def with_completeness(kpis: DataFrame, complete: Periods) -> DataFrame:
    """Add is_complete: true when every day of the row's period has been processed."""
    return kpis.withColumn("is_complete", in_periods(complete))


# The sessions' columns the KPIs read (session_start tells a user's sessions apart), besides the segments.
_READ = ("user_id", "session_start", "session_date", "actions", "duration_seconds", "is_bounce", "is_engaged",
         "converted", "action_counts")


def with_first_seen_day(sessions: DataFrame, users: DataFrame, segments: tuple[str, ...], timezone: str) -> DataFrame:
    """The sessions' columns the KPIs read, with first_seen_day (the `timezone` date of the user's first-ever
    session, from `users`: user_id, first_seen), repartitioned by user_id: the input of kpis_by_period,
    ranked_actions and action_kpis_by_period, whose per-user steps then need no shuffle of their own."""
    first_seen = users.select("user_id", local_date(F.col("first_seen"), timezone).alias("first_seen_day"))
    return (
        sessions
        .select(*_READ, *segments)
        .repartition("user_id")
        .join(first_seen, on="user_id", how="left")
    )


# Distinct counts (users, converting users, users with an action) become sums: a row is flagged as the first of
# its user (and event name) in each period and segment value, and the flags add up across days and values the
# way sessions do. A flag column per period kind and "family": all (which also serves user_type: a user's type
# is the same on every row of one period) or a segment.
_CELL = ("session_date", "first_seen_day")


def _flag(measure: str, period: Period, family: int) -> str:
    return f"{measure}_{period.value}_{family}"


def _families(segments: tuple[str, ...]) -> list[tuple[int, str | None]]:
    # (family number, the segment it splits by): 0 is all and user_type.
    return [(0, None), *enumerate(segments, start=1)]


def _with_first_flags(rows: DataFrame, keys: list[str], segments: tuple[str, ...], measure: str,
                      converting: str | None = None) -> DataFrame:
    # rows: partitioned by user_id, at least one per key, day and segment values. Adds, for each period kind and
    # family, `measure` flags (1 on the first row of each key, period and family value, by date, else 0) and, with
    # `converting`, converting flags (1 on the first such row where that boolean column holds).
    flags = {}
    for family, segment in _families(segments):
        timeline = Window.partitionBy(*keys, *([segment] if segment else [])).orderBy("session_date")
        earlier = timeline.rowsBetween(Window.unboundedPreceding, -1)
        for period in Period:
            start = period_start(F.col("session_date"), period)
            # Rows of one period are next to each other in date order: the first has a new period before it.
            is_first = F.coalesce(F.lag(start).over(timeline) != start, F.lit(True))
            flags[_flag(measure, period, family)] = is_first.cast("long")
            if converting:
                # Dates only grow: the latest earlier converting row tells whether this period already had one.
                converted_before = F.max(F.when(F.col(converting), start)).over(earlier)
                is_first_converting = F.col(converting) & F.coalesce(converted_before != start, F.lit(True))
                flags[_flag(f"converting_{measure}", period, family)] = is_first_converting.cast("long")
    return rows.withColumns(flags)


def _groups(segments: tuple[str, ...], flagged: Iterable[str] = ()) -> Column:
    # A generator of a cell's rows' groups: each row once per period kind and dimension (the session's day, week
    # and month; all, each segment and user_type), with GROUP's columns and, for each of `flagged`, its flag of
    # that period kind and family.
    groups = []
    for period in Period:
        start = period_start(F.col("session_date"), period)
        # A user is new in a period when their first-ever session starts in it, else returning.
        is_new = period_start(F.col("first_seen_day"), period) == start
        user_type = F.when(is_new, F.lit(NEW_USER)).otherwise(F.lit(RETURNING_USER))
        dimensions = [(ALL, F.lit(ALL), 0), *[(s, F.col(s), f) for f, s in _families(segments)[1:]],
                      (USER_TYPE, user_type, 0)]
        for dimension, value, family in dimensions:
            groups.append(F.struct(
                F.lit(period.value).alias("period"), start.alias("period_start"), F.lit(dimension).alias("dimension"),
                value.alias("dimension_value"), *[F.col(_flag(m, period, family)).alias(m) for m in flagged],
            ))
    return F.inline(F.array(*groups))


def _in_groups(cells: DataFrame, segments: tuple[str, ...], keys: list[str], sums: list[str],
               flagged: list[str] = ()) -> DataFrame:
    # cells: one row per day, first_seen_day, segment values and `keys` -> one row per group (GROUP) and `keys`:
    # each of `sums` summed, and each of `flagged` summed from its flags of the group's period kind and family.
    return (
        cells
        .select(*keys, *sums, _groups(segments, flagged))
        .groupBy(*GROUP, *keys)
        .agg(*[F.sum(c).alias(c) for c in (*sums, *flagged)])
    )


def _cells(rows: DataFrame, segments: tuple[str, ...], keys: list[str], sums: list[str],
           flagged: list[str]) -> DataFrame:
    # Flagged rows -> one row per day, first_seen_day, segment values and `keys`, everything summed.
    flags = [_flag(m, period, family) for m in flagged for period in Period for family, _ in _families(segments)]
    return rows.groupBy(*_CELL, *segments, *keys).agg(*[F.sum(c).alias(c) for c in (*sums, *flags)])


# Exact percentiles in two passes over the durations, never sorting them all: count each group's durations by
# bucket (2^23 us, about 8.4 s) to find the buckets that hold the ranks a percentile needs, then sort only the
# durations in those buckets. The result is the one Spark's `percentile` gives (see _interpolated).
_BUCKET_BITS = 23
QUANTILES = {"median_duration_seconds": 0.5, "p90_duration_seconds": 0.9}


def _duration_percentiles(dated: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    # One row per group: median_duration_seconds and p90_duration_seconds.
    duration_us = F.round(F.col("duration_seconds") * 1_000_000).cast("long")
    cell = [*_CELL, *segments]
    durations = dated.select(*cell, duration_us.alias("duration_us")).withColumn(
        "bucket", F.shiftright("duration_us", _BUCKET_BITS)
    )
    # Pass 1: sessions per cell (day, first_seen_day, segment values) and bucket, then per group and bucket.
    bucket_cells = durations.groupBy(*cell, "bucket").agg(F.count(F.lit(1)).alias("sessions"))
    group = Window.partitionBy(*GROUP)
    before = F.sum("sessions").over(group.orderBy("bucket").rowsBetween(Window.unboundedPreceding, -1))
    located = bucket_cells.transform(_in_groups, segments, ["bucket"], ["sessions"]).withColumns(
        {"group_sessions": F.sum("sessions").over(group), "before": F.coalesce(before, F.lit(0))}
    )
    # The ranks (0-based) each percentile reads: floor and ceil of its position (n - 1) x q; the bucket holding each.
    position = {name: (F.col("group_sessions") - 1) * F.lit(q) for name, q in QUANTILES.items()}
    ranks = F.array(*[
        F.struct(F.lit(name).alias("quantile"), F.lit(side).alias("side"), rank(position[name]).cast("long").alias("rank"))
        for name in QUANTILES for side, rank in (("lower", F.floor), ("higher", F.ceil))
    ])
    targets = (
        located
        .select(*GROUP, "bucket", "before", "sessions", "group_sessions", F.inline(ranks))
        .where((F.col("rank") >= F.col("before")) & (F.col("rank") < F.col("before") + F.col("sessions")))
        .select(*GROUP, "bucket", "quantile", "side", "group_sessions",
                (F.col("rank") - F.col("before")).alias("rank_in_bucket"))
    )
    # Pass 2: each cell's buckets that one of its groups wants (a few per group), with that group's target; only
    # the durations in them go on, each once per target it may be.
    wanted = (
        bucket_cells
        .select(*cell, "bucket", _groups(segments))
        .join(targets, on=[*GROUP, "bucket"], how="inner")
        .select(*[F.col(c).alias(f"wanted_{c}") for c in cell], F.col("bucket").alias("wanted_bucket"), *GROUP,
                "quantile", "side", "group_sessions", "rank_in_bucket")
    )
    # Null-safe: a session whose user has no first_seen_day still counts.
    in_wanted = F.col("bucket") == F.col("wanted_bucket")
    for c in cell:
        in_wanted = in_wanted & F.col(c).eqNullSafe(F.col(f"wanted_{c}"))
    target = [*GROUP, "quantile", "side", "group_sessions", "rank_in_bucket"]
    in_order = Window.partitionBy(*target).orderBy("duration_us")
    found = (
        durations
        .join(F.broadcast(wanted), in_wanted, how="inner")
        .groupBy(*target, "duration_us").agg(F.count(F.lit(1)).alias("sessions"))
        .withColumn("before", F.coalesce(
            F.sum("sessions").over(in_order.rowsBetween(Window.unboundedPreceding, -1)), F.lit(0)
        ))
        .where((F.col("rank_in_bucket") >= F.col("before"))
               & (F.col("rank_in_bucket") < F.col("before") + F.col("sessions")))
    )

    def value(name: str, side: str) -> Column:
        return F.max(F.when((F.col("quantile") == name) & (F.col("side") == side), F.col("duration_us")))

    return (
        found
        .groupBy(*GROUP)
        .agg(F.max("group_sessions").alias("n"),
             *[value(name, side).alias(f"{name}_{side}") for name in QUANTILES for side in ("lower", "higher")])
        .select(*GROUP, *[_interpolated(name, q).alias(name) for name, q in QUANTILES.items()])
    )


def _interpolated(name: str, q: float) -> Column:
    # Spark's percentile: at position p = (n - 1) x q, between the values at ranks floor(p) and ceil(p):
    # (ceil(p) - p) x lower + (p - floor(p)) x higher, in seconds, the lower value alone when the two ranks or
    # values are equal.
    position = (F.col("n") - 1) * F.lit(q)
    lower_rank, higher_rank = F.floor(position), F.ceil(position)
    lower, higher = F.col(f"{name}_lower") / 1_000_000, F.col(f"{name}_higher") / 1_000_000
    interpolated = (higher_rank - position) * lower + (position - lower_rank) * higher
    return F.when((lower_rank == higher_rank) | (lower == higher), lower).otherwise(interpolated)


# Summed per user and day, then per cell, then per group.
_SUMMED = ("sessions", "actions", "duration_us", "bounces", "engaged_sessions", "converting_sessions")


def kpis_by_period(dated: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    """One row per period, period_start, dimension and value with KPI_COLUMNS (is_complete is left to
    `with_completeness`), from `dated` sessions (see with_first_seen_day).

    Each session counts in the day, ISO week and month of its session_date. `users` (distinct users) and
    `converting_users` (distinct users with a converting session) are counted over the whole period and segment
    value, never summed from days; aps = actions / sessions and spu = sessions / users. Durations: their total and
    mean, and the exact median and 90th percentile interpolated between ranks (as Spark's percentile). Rates are
    bounces, engaged sessions and converting sessions over sessions, and converting users over users. A user is
    new in the periods that contain their first_seen_day, else returning.
    """
    def count_of(flag: str) -> Column:
        return F.count_if(F.col(flag))

    def ratio(numerator: str, denominator: str) -> Column:
        return F.col(numerator) / F.col(denominator)

    # Durations add up as whole microseconds: exact, in any order.
    duration_us = F.round(F.col("duration_seconds") * 1_000_000).cast("long")
    user_days = dated.groupBy("user_id", *_CELL, *segments).agg(  # on the user partitioning: no shuffle
        F.count(F.lit(1)).alias("sessions"),
        F.sum("actions").alias("actions"),
        F.sum(duration_us).alias("duration_us"),
        count_of("is_bounce").alias("bounces"),
        count_of("is_engaged").alias("engaged_sessions"),
        count_of("converted").alias("converting_sessions"),
        F.max("converted").alias("converted"),
    )
    groups = (
        user_days
        .transform(_with_first_flags, ["user_id"], segments, "users", converting="converted")
        .transform(_cells, segments, [], list(_SUMMED), ["users", "converting_users"])
        .transform(_in_groups, segments, [], list(_SUMMED), ["users", "converting_users"])
    )
    return (
        groups
        .join(_duration_percentiles(dated, segments), on=list(GROUP), how="left")
        .withColumns(
            {
                "aps": ratio("actions", "sessions"),
                "spu": ratio("sessions", "users"),
                "total_duration_seconds": F.col("duration_us") / 1_000_000,
                "avg_duration_seconds": F.col("duration_us") / 1_000_000 / F.col("sessions"),
                "bounce_rate": ratio("bounces", "sessions"),
                "engagement_rate": ratio("engaged_sessions", "sessions"),
                "conversion_rate": ratio("converting_sessions", "sessions"),
                "user_conversion_rate": ratio("converting_users", "users"),
            }
        )
        .select(*KPI_COLUMNS)
    )


def with_empty_periods(kpis: DataFrame, periods: DataFrame) -> DataFrame:
    """Add the row of dimension all for each of `periods` (period, period_start) that has no row in `kpis`.

    A processed period without a session is a fact worth a row: 0 sessions, users, actions and counts, a total
    duration of 0, and null ratios and duration statistics (0 / 0 has no value). Segment values have no rows there,
    as in any period where they have no session.
    """
    is_filler, rank = "_is_empty_period", "_rank_in_group"
    types = {field.name: field.dataType for field in kpis.schema.fields}
    empty = periods.select(
        "period", "period_start", F.lit(ALL).alias("dimension"), F.lit(ALL).alias("dimension_value"),
        *[F.lit(0 if name in KPI_COUNTS else None).cast(types[name]).alias(name)
          for name in KPI_COLUMNS if name not in GROUP],
    )
    # A few rows per period: which of the two to keep is decided per group, with no second pass over the sessions.
    first = Window.partitionBy(*GROUP).orderBy(is_filler)
    return (
        kpis.withColumn(is_filler, F.lit(False))
        .unionByName(empty.withColumn(is_filler, F.lit(True)))
        .withColumn(rank, F.row_number().over(first))
        .where(F.col(rank) == 1)
        .select(*kpis.columns)
    )


OTHER_ACTIONS = "(other)"

# The action_kpis table's columns; is_complete is added by with_completeness.
ACTION_KPI_COLUMNS = (
    "period", "period_start", "dimension", "dimension_value", "event_name",
    "actions", "sessions_with_action", "users_with_action", "sessions", "total_actions",
    "actions_per_session", "share_of_actions",
)


def _named(dated: DataFrame, segments: tuple[str, ...], *more: str) -> DataFrame:
    # One row per session and event name in it, with the session's actions of that name.
    return dated.select("user_id", *more, *_CELL, *segments, F.explode("action_counts").alias("event_name", "count"))


def ranked_actions(dated: DataFrame, segments: tuple[str, ...]) -> DataFrame:
    """One row per group (period, period_start, dimension, value) and event name, with actions,
    sessions_with_action, users_with_action and name_rank: 1 for the name with the most actions in the group
    (ties: the name first in alphabetical order), 2, ... An event really named OTHER_ACTIONS ranks last, so it is
    folded into the OTHER_ACTIONS row whenever there is one. `dated`: see with_first_seen_day."""
    # A session holds each name once in action_counts, so sessions with a name add up like sessions do.
    counts = ["actions", "sessions_with_action"]
    names = (
        _named(dated, segments)
        .groupBy("user_id", *_CELL, *segments, "event_name")  # on the user partitioning: no shuffle
        .agg(F.sum("count").alias("actions"), F.count(F.lit(1)).alias("sessions_with_action"))
        .transform(_with_first_flags, ["user_id", "event_name"], segments, "users_with_action")
        .transform(_cells, segments, ["event_name"], counts, ["users_with_action"])
        .transform(_in_groups, segments, ["event_name"], counts, ["users_with_action"])
    )
    by_rank = Window.partitionBy(*GROUP).orderBy(
        F.col("event_name") == OTHER_ACTIONS, F.col("actions").desc(), F.col("event_name")
    )
    return names.withColumn("name_rank", F.row_number().over(by_rank))


def has_folded_names(ranked: DataFrame, max_names: int) -> bool:
    """Whether any group of `ranked` (see ranked_actions) has more than `max_names` names."""
    return not ranked.where(F.col("name_rank") > max_names).isEmpty()


def folded_name_count(ranked: DataFrame, max_names: int) -> int:
    """How many distinct event names are past `max_names` in some group of `ranked`."""
    return ranked.where(F.col("name_rank") > max_names).select("event_name").distinct().count()


def action_kpis_by_period(
    dated: DataFrame,
    segments: tuple[str, ...],
    ranked: DataFrame,
    max_names: int,
    fold: bool = True,
) -> DataFrame:
    """One row per group and event name (ACTION_KPI_COLUMNS): the action mix, from sessions' action_counts.

    `ranked` is ranked_actions of the same `dated` sessions (see with_first_seen_day). In each group the
    `max_names` names with the most actions keep their own row; the rest are summed into one row named
    OTHER_ACTIONS, whose sessions and users are those with any of the folded names, each counted once. `fold=False` says no group has more than `max_names` names
    (has_folded_names is false), so the sessions need not be read again to find them. actions_per_session =
    actions / all sessions of the group, share_of_actions = actions / all actions of the group.
    """
    kept = ranked.where(F.col("name_rank") <= max_names).drop("name_rank")
    if fold:
        folding = ranked.where(F.col("name_rank") > max_names).select(*GROUP).distinct()  # a row per group
        kept = kept.unionByName(
            _other_actions(dated, segments, kept.select(*GROUP, "event_name"), folding)
        )
    totals = (
        dated
        .groupBy(*_CELL, *segments)
        .agg(F.count(F.lit(1)).alias("sessions"), F.sum("actions").alias("total_actions"))
        .transform(_in_groups, segments, [], ["sessions", "total_actions"])
    )
    return (
        kept
        .join(totals, on=list(GROUP), how="inner")
        .withColumns(
            {
                "actions_per_session": F.col("actions") / F.col("sessions"),
                "share_of_actions": F.col("actions") / F.col("total_actions"),
            }
        )
        .select(*ACTION_KPI_COLUMNS)
    )


def _other_actions(dated: DataFrame, segments: tuple[str, ...], kept: DataFrame, folding: DataFrame) -> DataFrame:
    # Sessions and users with several folded names count once in (other): this needs each session, not sums. In
    # each group of `folding` (those with names past the cap), every name not kept is folded; the kept names are at
    # most max_names per group, the folded ones may be millions of free-text names.
    per_session = (
        _named(dated, segments, "session_start")  # a user's sessions start at different instants
        .transform(_in_groups, segments, ["user_id", "session_start", "event_name"], ["count"])
        .join(folding, on=list(GROUP), how="left_semi")
        .join(kept, on=[*GROUP, "event_name"], how="left_anti")
        .groupBy(*GROUP, "user_id", "session_start")
        .agg(F.sum("count").alias("actions"))
    )
    return (
        per_session
        .groupBy(*GROUP)
        .agg(
            F.sum("actions").alias("actions"),
            F.count(F.lit(1)).alias("sessions_with_action"),
            F.countDistinct("user_id").alias("users_with_action"),
        )
        .withColumn("event_name", F.lit(OTHER_ACTIONS))
    )
