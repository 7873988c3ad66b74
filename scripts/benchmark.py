"""Time sessionlake's full job against the hand-written Spark SQL a data engineer would write, on the same events.

    .venv/bin/python scripts/benchmark.py --events 10000000

Generates the events once (seeded, under --workdir), then runs, in one local Spark:
  1. sessionlake: read, validate, dedup, sessionize, sessions/quarantine/users/KPI Delta writes (day, week, month);
  2. baseline: lag + running sum over a user window, group by session, daily APS/SPU, written as Parquet.
Prints events/second for both and their ratio, and writes the figures as JSON to --workdir/results.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from jobs import pipeline
from jobs.config import JobConfig
from jobs.sample import generate_events, write_sample
from jobs.spark_session import get_spark

# Events per user over 7 days in the generator's activity model (measured: ~270k events for 3,000 users).
EVENTS_PER_USER_WEEK = 90
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    spark = get_spark("sessionlake-benchmark")
    events_path = args.workdir / f"events-{args.events}-{args.days}d"
    last_day = FIRST_DAY + timedelta(days=args.days - 1)
    if args.regenerate or not events_path.exists():
        users = max(100, round(args.events * 7 / args.days / EVENTS_PER_USER_WEEK))
        _timed(f"generate {users:,} users' events", lambda: write_sample(
            generate_events(spark, users=users, days=args.days, first_day=FIRST_DAY), str(events_path)
        ))
    events = spark.read.parquet(str(events_path)).count()  # parquet footers: no scan of the data
    print(f"events: {events:,} in {events_path}", flush=True)

    out = args.workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    config = JobConfig.model_validate(
        {"input": {"path": str(events_path)}, "output": {"path": str(out / "sessionlake")}}
    )
    baseline_s = _timed("baseline (hand-written SQL)", lambda: _baseline(spark, str(events_path), out / "baseline"))
    sessionlake_s = _timed("sessionlake (full job)", lambda: pipeline.run(spark, config, FIRST_DAY, last_day))

    results = {
        "events": events,
        "cores": spark.sparkContext.defaultParallelism,
        "spark": spark.version,
        "baseline_seconds": round(baseline_s, 1),
        "sessionlake_seconds": round(sessionlake_s, 1),
        "baseline_events_per_second": round(events / baseline_s),
        "sessionlake_events_per_second": round(events / sessionlake_s),
        "sessionlake_over_baseline_throughput": round(baseline_s / sessionlake_s, 2),
    }
    print(json.dumps(results, indent=2))
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
