"""The incremental invariant, property-based: any order of daily runs, reruns, late files and a backfill leaves
`sessions`, `users` and `kpis` equal to one run over all the days.

Each generated example holds several users, each with its own history (bursts that cross midnight, a bot that
never pauses and hits the 24h cap, resent duplicates, events that arrive late), over the three Berlin days around
the switch to summer time (Sunday 29 March 2026 has 23 hours). A run costs seconds on local Spark, so an example
packs many independent histories into one dataset rather than running each alone.
SESSIONLAKE_PROPERTY_EXAMPLES sets how many examples (default 2); HYPOTHESIS_RANDOM=1 explores new ones instead
of the fixed, reproducible draw.
"""

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.testing import assertDataFrameEqual

from tests.test_pipeline import run, table, write_events

DAYS = ("2026-03-28", "2026-03-29", "2026-03-30")
START = datetime(2026, 3, 27, 23, 0)  # Saturday 28 March 00:00 in Berlin, in UTC
SPAN_MINUTES = (24 + 23 + 24) * 60  # the three Berlin days
GAPS = st.sampled_from([1, 5, 29, 30, 31, 45, 120, 600])  # minutes: around the 30m timeout, and longer
# One event per UTC date the runs need, so no run stops on a missing partition.
FILLER = [("filler", f"f{d}", "view", f"2026-03-{d}T23:30:00", "web", "PT") for d in (27, 28, 29, 30)]


@st.composite
def person(draw, user):
    minute = draw(st.integers(0, SPAN_MINUTES - 1))
    events = []
    for n in range(draw(st.integers(1, 8))):
        events.append((user, f"{user}-{n}", minute))
        minute += draw(GAPS)
    return events


@st.composite
def bot(draw, user):
    minute, every = draw(st.integers(0, 18 * 60)), draw(st.integers(10, 25))
    hours = draw(st.integers(26, 50))
    return [(user, f"{user}-{n}", minute + n * every) for n in range(hours * 60 // every)]


@st.composite
def event_sets(draw):
    users = []
    for n in range(draw(st.integers(3, 8))):
        kind = draw(st.sampled_from([person, person, person, bot]))
        users.extend(draw(kind(f"u{n}")))
    rows = [(u, e, "view", (START + timedelta(minutes=m)).isoformat(), "ios", "DE") for u, e, m in users
            if m < SPAN_MINUTES]
    resent = draw(st.lists(st.sampled_from(rows), max_size=4)) if rows else []
    delay = draw(st.integers(0, 5))
    copies = [(u, e, n, (datetime.fromisoformat(t) + timedelta(minutes=delay)).isoformat(), p, c)
              for u, e, n, t, p, c in resent]
    late = draw(st.lists(st.sampled_from(rows), max_size=5, unique=True)) if rows else []
    on_time = [r for r in rows if r not in late] + copies + FILLER
    return on_time, late


@st.composite
def schedules(draw):
    """Runs as (first_day, last_day), with the point where the late file lands; every day runs at least once."""
    order = draw(st.permutations(DAYS))
    steps = [(day, day) for day in order]
    for _ in range(draw(st.integers(0, 2))):  # reruns and a backfill range, anywhere
        first = draw(st.sampled_from(DAYS))
        last = draw(st.sampled_from([d for d in DAYS if d >= first]))
        steps.insert(draw(st.integers(0, len(steps))), (first, last))
    late_after = draw(st.integers(1, len(steps)))
    # The scheduler's next run comes after the late file: a run of the last day, which looks back for late input.
    return steps, late_after


def configure(root: Path) -> Path:
    root.mkdir(parents=True)
    config = root / "job.yaml"
    config.write_text(
        f"input: {{path: {root / 'events'}}}\noutput: {{path: {root / 'out'}}}\n"
        "reporting: {timezone: Europe/Berlin, segments: [platform, country]}\n"
    )
    return config


@settings(
    max_examples=int(os.environ.get("SESSIONLAKE_PROPERTY_EXAMPLES", "2")),
    deadline=None,
    derandomize=os.environ.get("HYPOTHESIS_RANDOM") != "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(data=event_sets(), schedule=schedules())
def test_any_order_of_daily_runs_reruns_late_files_and_backfills_equals_one_full_run(spark, data, schedule):
    on_time, late = data
    steps, late_after = schedule
    with tempfile.TemporaryDirectory() as folder:
        full = configure(Path(folder) / "full")
        write_events(spark, Path(folder) / "full" / "events", on_time + late)
        assert run(full, "--from", DAYS[0], "--to", DAYS[-1]) == 0

        daily = configure(Path(folder) / "daily")
        write_events(spark, Path(folder) / "daily" / "events", on_time)
        for number, (first, last) in enumerate(steps, start=1):
            assert run(daily, "--from", first, "--to", last) == 0
            if number == late_after and late:
                write_events(spark, Path(folder) / "daily" / "events", late)
        if late:
            assert run(daily, "--date", DAYS[-1]) == 0

        for name in ("sessions", "users", "kpis"):
            assertDataFrameEqual(
                table(spark, Path(folder) / "daily", name), table(spark, Path(folder) / "full", name)
            )
