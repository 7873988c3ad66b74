"""Time sessionlake's full job against the hand-written Spark SQL a data engineer would write, on the same events.

    .venv/bin/python scripts/benchmark.py --events 10000000

Generates the events once (seeded, under --workdir), then runs, in one local Spark and alternating which goes
first (--rounds times, fresh outputs each time):
  1. sessionlake: read, validate, dedup, sessionize, sessions/quarantine/users/KPI Delta writes (day, week, month);
  2. baseline: lag + running sum over a user window, group by session, daily APS/SPU, written as Parquet.
Prints each round, the median seconds and events/second of both, their ratio, and both session counts (they
differ slightly: the baseline neither dedups nor caps sessions); writes the figures to --workdir/results.json.

    .venv/bin/python scripts/benchmark.py --events 5000000 --skew 5000000

measures skew instead: sessionlake on the --events events plus one user sending --skew events in one day (a bot
never pausing), against the same total volume spread over ordinary users; writes --workdir/skew.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from jobs import pipeline
from jobs.config import JobConfig
from jobs.sample import generate_events, heavy_user_events, write_sample
from jobs.spark_session import get_spark

# Events per user over 7 days in the generator's activity model (measured: ~295k events for 3,000 users).
EVENTS_PER_USER_WEEK = 98
FIRST_DAY = date(2026, 11, 1)

BASELINE_SQL = """
WITH valid AS (
  SELECT user_id, event_ts FROM events WHERE user_id IS NOT NULL AND event_ts IS NOT NULL
),
gaps AS (
  SELECT user_id, event_ts,
         CASE WHEN lag(event_ts) OVER w IS NULL
                OR unix_seconds(event_ts) - unix_seconds(lag(event_ts) OVER w) > 1800 THEN 1 ELSE 0 END AS is_new
  FROM valid WINDOW w AS (PARTITION BY user_id ORDER BY event_ts)
),
numbered AS (
  SELECT user_id, event_ts, sum(is_new) OVER (PARTITION BY user_id ORDER BY event_ts) AS session_number FROM gaps
)
SELECT user_id, session_number, min(event_ts) AS session_start, max(event_ts) AS session_end, count(*) AS actions
FROM numbered GROUP BY user_id, session_number
"""

BASELINE_DAILY_SQL = """
SELECT to_date(session_start) AS day, count(*) AS sessions, count(DISTINCT user_id) AS users, sum(actions) AS actions,
       sum(actions) / count(*) AS aps, count(*) / count(DISTINCT user_id) AS spu
FROM baseline_sessions GROUP BY to_date(session_start)
"""


def _timed(label: str, work) -> float:
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s", flush=True)
    return seconds


def _baseline(spark: SparkSession, events_path: str, out: Path) -> None:
    spark.read.parquet(events_path).createOrReplaceTempView("events")
    sessions = spark.sql(BASELINE_SQL)
    sessions.write.mode("overwrite").parquet(str(out / "sessions"))
    spark.read.parquet(str(out / "sessions")).createOrReplaceTempView("baseline_sessions")
    spark.sql(BASELINE_DAILY_SQL).write.mode("overwrite").parquet(str(out / "daily"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="about how many events to generate")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("bench"))
    parser.add_argument("--regenerate", action="store_true", help="generate the events even if present")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each job, alternating the order")
    parser.add_argument("--skew", type=int, default=0, help="measure skew: one user with this many events in a day")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    spark = get_spark("sessionlake-benchmark")
    if args.skew:
        _skew(spark, args)
        return
    events_path = args.workdir / f"events-{args.events}-{args.days}d"
    last_day = FIRST_DAY + timedelta(days=args.days - 1)
    if args.regenerate or not events_path.exists():
        users = _users_for(args.events, args.days)
        _timed(f"generate {users:,} users' events", lambda: write_sample(
            generate_events(spark, users=users, days=args.days, first_day=FIRST_DAY), str(events_path)
        ))
    events = spark.read.parquet(str(events_path)).count()  # parquet footers: no scan of the data
    print(f"events: {events:,} in {events_path}", flush=True)

    out = args.workdir / "out"
    config = JobConfig.model_validate(
        {"input": {"path": str(events_path)}, "output": {"path": str(out / "sessionlake")}}
    )
    jobs = {
        "baseline": lambda: _baseline(spark, str(events_path), out / "baseline"),
        "sessionlake": lambda: pipeline.run(spark, config, FIRST_DAY, last_day),
    }
    seconds: dict[str, list[float]] = {name: [] for name in jobs}
    for round_number in range(args.rounds):
        order = list(jobs) if round_number % 2 == 0 else list(reversed(jobs))
        shutil.rmtree(out, ignore_errors=True)  # every round writes fresh tables
        for name in order:
            seconds[name].append(_timed(f"round {round_number + 1}: {name}", jobs[name]))
    baseline_s = statistics.median(seconds["baseline"])
    sessionlake_s = statistics.median(seconds["sessionlake"])

    results = {
        "events": events,
        "cores": spark.sparkContext.defaultParallelism,
        "spark": spark.version,
        "rounds": args.rounds,
        "baseline_seconds": [round(x, 1) for x in seconds["baseline"]],
        "sessionlake_seconds": [round(x, 1) for x in seconds["sessionlake"]],
        "baseline_median_seconds": round(baseline_s, 1),
        "sessionlake_median_seconds": round(sessionlake_s, 1),
        "baseline_events_per_second": round(events / baseline_s),
        "sessionlake_events_per_second": round(events / sessionlake_s),
        "sessionlake_over_baseline_throughput": round(baseline_s / sessionlake_s, 2),
        "baseline_sessions": spark.read.parquet(str(out / "baseline" / "sessions")).count(),
        "sessionlake_sessions": spark.read.format("delta").load(str(out / "sessionlake" / "sessions")).count(),
    }
    print(json.dumps(results, indent=2))
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def _users_for(events: int, days: int) -> int:
    return max(100, round(events * 7 / days / EVENTS_PER_USER_WEEK))


def _skew(spark: SparkSession, args: argparse.Namespace) -> None:
    last_day = FIRST_DAY + timedelta(days=args.days - 1)
    heavy_day = FIRST_DAY + timedelta(days=args.days // 2)
    inputs = {
        "spread": args.workdir / f"spread-{args.events + args.skew}-{args.days}d",
        "skewed": args.workdir / f"skewed-{args.events}+{args.skew}-{args.days}d",
    }
    if args.regenerate or not all(path.exists() for path in inputs.values()):
        _timed("generate the spread input", lambda: write_sample(
            generate_events(spark, users=_users_for(args.events + args.skew, args.days), days=args.days,
                            first_day=FIRST_DAY), str(inputs["spread"])
        ))
        _timed("generate the skewed input", lambda: write_sample(
            generate_events(spark, users=_users_for(args.events, args.days), days=args.days, first_day=FIRST_DAY)
            .unionByName(heavy_user_events(spark, args.skew, heavy_day)), str(inputs["skewed"])
        ))
    results: dict[str, object] = {"heavy_user_events": args.skew, "heavy_day": heavy_day.isoformat()}
    for name, path in inputs.items():
        out = args.workdir / "out" / name
        shutil.rmtree(out, ignore_errors=True)
        config = JobConfig.model_validate({"input": {"path": str(path)}, "output": {"path": str(out)}})
        seconds = _timed(f"sessionlake on {name}", lambda: pipeline.run(spark, config, FIRST_DAY, last_day))
        results[f"{name}_events"] = spark.read.parquet(str(path)).count()
        results[f"{name}_seconds"] = round(seconds, 1)
    results["skewed_over_spread_time"] = round(results["skewed_seconds"] / results["spread_seconds"], 2)
    print(json.dumps(results, indent=2))
    (args.workdir / "skew.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
