"""Time sessionlake's full job against hand-written Spark SQL, Spark's session_window and DuckDB, on the same events.

    .venv/bin/python scripts/benchmark.py --events 1000000,10000000

For each size, generates the events once (seeded, heavy-tailed activity, under --workdir), then runs each contender
in its own process, --rounds times in alternating order, on the same files and cores:
  1. sessionlake: read, validate, dedup, sessionize, sessions/quarantine/users/KPI Delta writes (day, week, month);
  2. spark_sql: the hand-written baseline: lag + running sum over a user window, group by session, daily APS/SPU,
     written as Parquet;
  3. session_window: Spark's built-in session_window grouping (30 minutes), the same daily APS/SPU, Parquet;
  4. duckdb: the spark_sql baseline's SQL in DuckDB with as many threads as Spark has cores (a single-node
     reference), Parquet.
Each process reports the seconds of its work (JVM start excluded) and its session count; the parent polls the peak
memory (RSS) of the process and everything it started (the JVM included). Prints a table per size (events,
seconds, events/second, peak memory, ratio to sessionlake) and writes --workdir/results-<events>.json.

    .venv/bin/python scripts/benchmark.py --events 5000000 --skew 5000000

measures skew instead: sessionlake on the --events events plus one user sending --skew events in one day (a bot
never pausing), against the same total volume spread over ordinary users; writes --workdir/skew.json. With
--max-session-duration 1h, the heavy user's day is cut into 24 capped sessions: the costly case, where the times
of its possible cuts are gathered into one list to find them (writes --workdir/skew-cap-1h.json).

    .venv/bin/python scripts/benchmark.py --events 6000000 --incremental 60

measures the incremental model's cost over a table's life: --events events over 60 days, a daily run of day 1,
then of day 2 (timed), a backfill of days 3..59, a daily run of day 60 (timed), and a rerun of each timed day;
writes --workdir/incremental.json with day 60's median time over day 2's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

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


def _spark_sql(spark: SparkSession, events_path: str, out: Path) -> None:
    spark.read.parquet(events_path).createOrReplaceTempView("events")
    spark.sql(BASELINE_SQL).write.mode("overwrite").parquet(str(out / "sessions"))
    _daily(spark, out)


def _session_window(spark: SparkSession, events_path: str, out: Path) -> None:
    # Spark's own sessionization: a session window closes 30 minutes after its last event.
    events = spark.read.parquet(events_path).where(F.col("user_id").isNotNull() & F.col("event_ts").isNotNull())
    (
        events.groupBy("user_id", F.session_window("event_ts", "30 minutes").alias("window"))
        .agg(F.count(F.lit(1)).alias("actions"))
        .select("user_id", F.col("window.start").alias("session_start"), "actions")
        .write.mode("overwrite").parquet(str(out / "sessions"))
    )
    _daily(spark, out)


def _daily(spark: SparkSession, out: Path) -> None:
    spark.read.parquet(str(out / "sessions")).createOrReplaceTempView("baseline_sessions")
    spark.sql(BASELINE_DAILY_SQL).write.mode("overwrite").parquet(str(out / "daily"))


def _duckdb(events_path: str, out: Path, threads: int) -> int:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect()
    connection.execute(f"SET threads = {threads}")
    connection.execute(
        f"CREATE VIEW events AS SELECT * FROM read_parquet('{events_path}/*/*.parquet', hive_partitioning = true)"
    )
    # The Spark baseline's SQL; only the seconds between two timestamps and a timestamp's date are spelled otherwise.
    sessions_sql = BASELINE_SQL.replace("unix_seconds(event_ts) - unix_seconds(lag(event_ts) OVER w)",
                                        "epoch(event_ts) - epoch(lag(event_ts) OVER w)")
    connection.execute(f"COPY ({sessions_sql}) TO '{out / 'sessions.parquet'}' (FORMAT parquet)")
    connection.execute(f"CREATE VIEW baseline_sessions AS SELECT * FROM read_parquet('{out / 'sessions.parquet'}')")
    daily_sql = BASELINE_DAILY_SQL.replace("to_date(session_start)", "CAST(session_start AS DATE)")
    connection.execute(f"COPY ({daily_sql}) TO '{out / 'daily.parquet'}' (FORMAT parquet)")
    return connection.execute("SELECT count(*) FROM baseline_sessions").fetchone()[0]


def _sessionlake(spark: SparkSession, events_path: str, out: Path, days: int) -> None:
    # The sample's config: purchase converts. A --baseline-rev older than the metrics section runs without it.
    rules = {"metrics": {"conversion_events": ["purchase"]}} if "metrics" in JobConfig.model_fields else {}
    config = JobConfig.model_validate({"input": {"path": events_path}, "output": {"path": str(out)}, **rules})
    pipeline.run(spark, config, FIRST_DAY, FIRST_DAY + timedelta(days=days - 1))


CONTENDERS = ("sessionlake", "spark_sql", "session_window", "duckdb")


def _contender(args: argparse.Namespace) -> None:
    """Child process: run one contender on the events; print its seconds and session count as one JSON line."""
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    if args.contender == "duckdb":
        started = time.perf_counter()
        sessions = _duckdb(args.events_path, out, args.threads)
        seconds = time.perf_counter() - started
    else:
        spark = get_spark(f"benchmark-{args.contender}")
        work = {
            "sessionlake": lambda: _sessionlake(spark, args.events_path, out, args.days),
            "spark_sql": lambda: _spark_sql(spark, args.events_path, out),
            "session_window": lambda: _session_window(spark, args.events_path, out),
        }[args.contender]
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
        stored = spark.read.format("delta") if args.contender == "sessionlake" else spark.read.format("parquet")
        sessions = stored.load(str(out / "sessions")).count()
    print(json.dumps({"seconds": seconds, "sessions": sessions}), flush=True)


def _process_tree_rss(root: int) -> int:
    """Resident bytes of process `root` and all its descendants (the JVM a PySpark process starts)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: the parent pid
            rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # fields[21]: resident pages
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while listed
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += rss.get(pid, 0)
        pending.extend(children.get(pid, []))
    return total


def _measure(command: list[str], env: dict[str, str] | None = None) -> dict:
    """Run a contender's process: its JSON report, plus the peak RSS of its process tree (polled every 0.2 s)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _process_tree_rss(process.pid))
        time.sleep(0.2)
    output = process.stdout.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
    return json.loads(output.strip().splitlines()[-1]) | {"peak_rss_bytes": peak}


def _generate(args: argparse.Namespace, events: int) -> Path:
    path = args.workdir / f"events-{events}-{args.days}d"
    if args.regenerate or not path.exists():
        command = [sys.executable, str(Path(__file__).resolve()), "--generate", str(events), "--days", str(args.days),
                   "--events-path", str(path)]
        subprocess.run(command, check=True)  # its own JVM, gone before the contenders start
    return path


def _compare(args: argparse.Namespace, events_path: Path) -> dict[str, list[dict]]:
    script = [sys.executable, str(Path(__file__).resolve())]
    common = ["--days", str(args.days), "--threads", str(args.threads), "--events-path", str(events_path)]
    contenders = [c for c in CONTENDERS if c in args.contenders.split(",")]
    envs = {name: None for name in contenders}
    if args.baseline_rev:
        envs[f"sessionlake@{args.baseline_rev}"] = os.environ | {"PYTHONPATH": str(_export(args, args.baseline_rev))}
    runs: dict[str, list[dict]] = {name: [] for name in envs}
    for round_number in range(args.rounds):
        order = list(envs) if round_number % 2 == 0 else list(reversed(envs))
        for name in order:
            out = args.workdir / "out" / name
            contender = name.split("@")[0]
            report = _measure([*script, "--contender", contender, "--out", str(out), *common], envs[name])
            print(f"round {round_number + 1}: {name}: {report['seconds']:.1f} s, "
                  f"peak {report['peak_rss_bytes'] / 2**30:.2f} GiB, {report['sessions']:,} sessions", flush=True)
            runs[name].append(report)
    return runs


def _export(args: argparse.Namespace, rev: str) -> Path:
    """The `jobs` package of git revision `rev`, exported under --workdir: a child process with PYTHONPATH set to
    the returned folder imports it instead of the working tree's (PYTHONPATH comes before the editable install)."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", rev], check=True, capture_output=True,
                            text=True).stdout.strip()
    folder = (args.workdir / f"rev-{commit}").resolve()
    if not (folder / "jobs").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(root), "archive", commit, "jobs"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="10000000", help="about how many events; several sizes: 1000000,10000000")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("bench"))
    parser.add_argument("--regenerate", action="store_true", help="generate the events even if present")
    parser.add_argument("--rounds", type=int, default=1, help="timed runs of each contender, alternating the order")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="DuckDB's threads (Spark: local[*])")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="which to run, comma-separated")
    parser.add_argument("--skew", type=int, default=0, help="measure skew: one user with this many events in a day")
    parser.add_argument("--max-session-duration", help="with --skew: sessionization.max_session_duration (e.g. 1h), "
                        "so that the heavy user's day is cut into capped sessions")
    parser.add_argument("--bot-max-events-per-day", type=int, help="with --skew: validation.bot_max_events_per_day, "
                        "which quarantines the heavy user's day")
    parser.add_argument("--baseline-rev", help="also run sessionlake with the code of this git revision (e.g. the "
                        "commit before a feature), as the contender sessionlake@REV")
    parser.add_argument("--incremental", type=int, default=0,
                        help="measure a daily run on day 2 against day N of history (N days of --events events)")
    # A child process's work:
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--events-path", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if (args.max_session_duration or args.bot_max_events_per_day) and not args.skew:
        parser.error("--max-session-duration and --bot-max-events-per-day apply to --skew only")
    logging.basicConfig(level=logging.WARNING)
    if args.contender:
        _contender(args)
        return
    if args.generate:
        users = _users_for(args.generate, args.days)
        _timed(f"generate {users:,} users' events", lambda: write_sample(
            generate_events(get_spark("benchmark-generate"), users=users, days=args.days, first_day=FIRST_DAY),
            args.events_path,
        ))
        return
    if args.skew or args.incremental:
        if "," in args.events:
            parser.error("--skew and --incremental take one size of --events")
        args.events = int(args.events)
        (_skew if args.skew else _incremental)(get_spark("sessionlake-benchmark"), args)
        return

    for events in (int(size) for size in args.events.split(",")):
        events_path = _generate(args, events)
        results = _summary(events_path, _compare(args, events_path), args)
        print(_table(results), flush=True)
        (args.workdir / f"results-{events}.json").write_text(json.dumps(results, indent=2) + "\n")


def _summary(events_path: Path, runs: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    import pyarrow.parquet as pq

    events = sum(pq.ParquetFile(f).metadata.num_rows for f in events_path.glob("*/*.parquet"))  # footers only
    medians = {name: statistics.median(r["seconds"] for r in reports) for name, reports in runs.items()}
    reference = medians.get("sessionlake")
    return {
        "events": events,
        "days": args.days,
        "threads": args.threads,
        "rounds": args.rounds,
        "contenders": {
            name: {
                "seconds": [round(r["seconds"], 1) for r in reports],
                "median_seconds": round(medians[name], 1),
                "events_per_second": round(events / medians[name]),
                "peak_rss_gib": round(max(r["peak_rss_bytes"] for r in reports) / 2**30, 2),
                "sessions": reports[-1]["sessions"],
                # Above 1: this contender takes longer than sessionlake.
                "time_over_sessionlake": round(medians[name] / reference, 2) if reference else None,
            }
            for name, reports in runs.items()
        },
    }


def _table(results: dict) -> str:
    lines = [
        f"{results['events']:,} events, {results['threads']} threads, median of {results['rounds']} round(s)",
        f"{'contender':<15} {'seconds':>8} {'events/s':>11} {'peak GiB':>9} {'time/sessionlake':>17} {'sessions':>11}",
    ]
    for name, figures in results["contenders"].items():
        ratio = figures["time_over_sessionlake"]
        lines.append(
            f"{name:<15} {figures['median_seconds']:>8.1f} {figures['events_per_second']:>11,} "
            f"{figures['peak_rss_gib']:>9.2f} {'' if ratio is None else f'{ratio:.2f}':>17} {figures['sessions']:>11,}"
        )
    return "\n".join(lines)


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
    settings: dict[str, object] = {}
    if args.max_session_duration:
        settings["sessionization"] = {"max_session_duration": args.max_session_duration}
        results["max_session_duration"] = args.max_session_duration
    if args.bot_max_events_per_day:
        settings["validation"] = {"bot_max_events_per_day": args.bot_max_events_per_day}
        results["bot_max_events_per_day"] = args.bot_max_events_per_day
    for name, path in inputs.items():
        out = args.workdir / "out" / name
        shutil.rmtree(out, ignore_errors=True)
        config = JobConfig.model_validate({"input": {"path": str(path)}, "output": {"path": str(out)}, **settings})
        seconds = _timed(f"sessionlake on {name}", lambda: pipeline.run(spark, config, FIRST_DAY, last_day))
        results[f"{name}_events"] = spark.read.parquet(str(path)).count()
        results[f"{name}_seconds"] = round(seconds, 1)
    results["skewed_over_spread_time"] = round(results["skewed_seconds"] / results["spread_seconds"], 2)
    print(json.dumps(results, indent=2))
    cap = f"-cap-{args.max_session_duration}" if args.max_session_duration else ""
    bot = f"-bot-{args.bot_max_events_per_day}" if args.bot_max_events_per_day else ""
    (args.workdir / f"skew{cap}{bot}.json").write_text(json.dumps(results, indent=2) + "\n")


def _incremental(spark: SparkSession, args: argparse.Namespace) -> None:
    """Day 2 against day N of history: the same daily run, early and late in a table's life."""
    days, last_day = args.incremental, FIRST_DAY + timedelta(days=args.incremental - 1)
    path = args.workdir / f"history-{args.events}-{days}d"
    if args.regenerate or not path.exists():
        _timed(f"generate {days} days of events", lambda: write_sample(
            generate_events(spark, users=_users_for(args.events, days), days=days, first_day=FIRST_DAY), str(path)
        ))
    out = args.workdir / "out" / "incremental"
    shutil.rmtree(out, ignore_errors=True)
    config = JobConfig.model_validate({"input": {"path": str(path)}, "output": {"path": str(out)}})

    def daily(day: date) -> float:
        return _timed(f"daily run of {day}", lambda: pipeline.run(spark, config, day, day))

    daily(FIRST_DAY)  # a first run creates the tables, and warms the JVM up
    early = [daily(FIRST_DAY + timedelta(days=1))]
    _timed(f"backfill {FIRST_DAY + timedelta(days=2)}..{last_day - timedelta(days=1)}", lambda: pipeline.run(
        spark, config, FIRST_DAY + timedelta(days=2), last_day - timedelta(days=1)
    ))
    late = [daily(last_day)]
    # Reruns replace their day with the same work: a second figure for each, taken in the same, warm JVM.
    early.append(daily(FIRST_DAY + timedelta(days=1)))
    late.append(daily(last_day))
    day_events = spark.read.parquet(str(path)).where(F.col("event_date") == F.lit(last_day)).count()
    results = {
        "days": days,
        "events": spark.read.parquet(str(path)).count(),
        "events_on_last_day": day_events,
        "day_2_seconds": [round(s, 1) for s in early],
        f"day_{days}_seconds": [round(s, 1) for s in late],
        f"day_{days}_over_day_2_time": round(statistics.median(late) / statistics.median(early), 2),
    }
    print(json.dumps(results, indent=2))
    (args.workdir / "incremental.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
