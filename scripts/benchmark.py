"""Time sessionlake's full job against the same work by hand, hand-written Spark SQL, session_window and DuckDB.

    .venv/bin/python scripts/benchmark.py --events 1000000,10000000 --rounds 3

For each size and shape (--shapes, default both), writes the events once under --workdir, then runs each
contender in its own process, --rounds times in alternating order, on the same files and cores:
  1. sessionlake: read, validate, dedup, sessionize, sessions/quarantine/users/KPI Delta writes (day, week, month);
  2. by_hand: the same tables written by hand in one plain PySpark script (scripts/by_hand.py): quarantine,
     earliest-copy dedup, 30-minute sessions, users, KPIs and the action mix with exact distinct users and
     percentiles, as Delta; a full recompute, without the 24-hour cap and the runs ledger;
  3. reference: another engineer's script of that work (--reference-script), run unchanged;
  4. spark_sql: the hand-written baseline: lag + running sum over a user window, group by session, daily APS/SPU,
     written as Parquet;
  5. session_window: Spark's built-in session_window grouping (30 minutes), the same daily APS/SPU, Parquet;
  6. duckdb: the spark_sql baseline's SQL in DuckDB with as many threads as Spark has cores (a single-node
     reference), Parquet.
The shapes: `generator`, the project's sample generator (jobs/sample.py: seeded, heavy-tailed activity per user);
`duckdb`, events written by DuckDB's Parquet writer (event_ts a TIMESTAMP without time zone, which Spark reads as
TIMESTAMP_NTZ), in sessions of 1-15 events 30 s to 5 min apart, about 6 sessions per user a week, users' sessions
spread evenly over the days (see DUCKDB_EVENTS_SQL).

Each process's whole life is timed (wall seconds, interpreter and JVM start included), beside the seconds of work
it reports itself (its JVM's start excluded); the parent polls the peak memory (RSS) of the process and everything
it started (the JVM included). After the rounds, by_hand's sessions and daily KPIs are checked against
sessionlake's (see _check_same_results): the run fails when they differ. Prints a table per size and shape
(whole-process and work seconds, medians; whole-process time over sessionlake's; peak memory; sessions) and writes
--workdir/results-<shape>-<events>.json.

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
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs import pipeline
from jobs.compare import rows_only_in
from jobs.config import JobConfig, Sessionization
from jobs.sample import SAMPLE_EXPERIMENT, generate_events, heavy_user_events, write_sample
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


def _read_events(spark: SparkSession, events_path: str):
    # A timestamp without time zone (TIMESTAMP_NTZ: DuckDB's TIMESTAMP) as an instant in the session's time zone,
    # for unix_seconds, which takes instants only; the gaps between a user's events stay the same.
    return spark.read.parquet(events_path).withColumn("event_ts", F.col("event_ts").cast("timestamp"))


def _spark_sql(spark: SparkSession, events_path: str, out: Path) -> None:
    _read_events(spark, events_path).createOrReplaceTempView("events")
    spark.sql(BASELINE_SQL).write.mode("overwrite").parquet(str(out / "sessions"))
    _daily(spark, out)


def _session_window(spark: SparkSession, events_path: str, out: Path) -> None:
    # Spark's own sessionization: a session window closes 30 minutes after its last event.
    events = _read_events(spark, events_path).where(F.col("user_id").isNotNull() & F.col("event_ts").isNotNull())
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


# The contenders a child process of this script runs (--contender); by_hand and reference are scripts of their own.
CHILD_CONTENDERS = ("sessionlake", "spark_sql", "session_window", "duckdb")
CONTENDERS = ("sessionlake", "by_hand", "reference", "spark_sql", "session_window", "duckdb")
BY_HAND_SCRIPT = Path(__file__).resolve().parent / "by_hand.py"
REFERENCE_SCRIPT = Path("/work/shared/bench/same_work_by_hand.py")
# The reference's last line: its seconds of work (JVM start excluded) and its sessions.
REFERENCE_REPORT = re.compile(r"fair seconds ([0-9.]+) sessions ([0-9]+)")
SHAPES = ("generator", "duckdb")


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


# The DuckDB shape. Pseudo-random numbers are hashes of the row's keys, a stream number and the seed, scaled to
# [0, 1): the same seed gives the same events. Each user's sessions sit on a circle as long as the run, one in each
# of SESSIONS_PER_USER_WEEK x days / 7 equal arcs after a phase of the user's own, with at least 40 minutes between
# one session's last event and the next one's first: every session of the shape is one session of the job (the
# circle is cut at the run's end, so a session may end in the day after, as the generator's do).
DUCKDB_SEED = 11
SESSIONS_PER_USER_WEEK = 6
MAX_SESSION_EVENTS = 15  # 1 to 15 events, 8 on average
EVENT_STEP_SECONDS = 165  # gaps of 165 s +- 67 s: 30 s to 5 minutes
EVENT_JITTER_SECONDS = 134
LONGEST_SESSION_SECONDS = (MAX_SESSION_EVENTS - 1) * EVENT_STEP_SECONDS + EVENT_JITTER_SECONDS
SESSION_SPACING_SECONDS = LONGEST_SESSION_SECONDS + 40 * 60
# (value, cumulative probability), drawn by comparing one uniform number with each threshold in turn.
DUCKDB_EVENT_NAMES = (("view", 0.40), ("click", 0.65), ("scroll", 0.80), ("search", 0.88), ("like", 0.94),
                      ("add_to_cart", 0.97), ("comment", 0.99), ("purchase", 1.0))
DUCKDB_PLATFORMS = (("ios", 0.4), ("android", 0.8), ("web", 1.0))
DUCKDB_COUNTRIES = (("US", 0.30), ("IN", 0.48), ("DE", 0.60), ("BR", 0.72), ("GB", 0.82), ("FR", 0.90),
                    ("JP", 1.0))
DUCKDB_VARIANTS = (("control", 0.5), ("treatment", 1.0))

DUCKDB_EVENTS_SQL = """
WITH users AS (
  SELECT u, 'u' || lpad(u::VARCHAR, 8, '0') AS user_id, {user_phase} * {run_seconds} AS phase_seconds,
         {platform} AS platform, {country} AS country, {variant} AS variant
  FROM range({users}) AS t(u)
),
sessions AS (
  SELECT user_id, platform, country, variant, u * {sessions_per_user} + k AS s, k, phase_seconds
  FROM users, range({sessions_per_user}) AS t(k)
),
placed AS (
  SELECT user_id, platform, country, variant, s,
         (phase_seconds + k * {arc_seconds} + {start_draw} * ({arc_seconds} - {spacing_seconds})) % {run_seconds}
           AS start_seconds,
         (1 + floor({length_draw} * {max_events}))::BIGINT AS events_in_session
  FROM sessions
),
events AS (
  SELECT user_id, platform, country, variant, s, i,
         round(({first_midnight} + start_seconds + i * {step_seconds} + {jitter_draw} * {jitter_seconds}) * 1e6)
           ::BIGINT AS event_us
  FROM (SELECT *, unnest(range(events_in_session)) AS i FROM placed)
),
sent AS (
  SELECT *, 0 AS copy FROM events
  UNION ALL
  -- 0.5% are sent again 2 s later, with the same event_id.
  SELECT * REPLACE (event_us + 2000000 AS event_us), 1 AS copy FROM events WHERE {resend_draw} < 0.005
),
drawn AS (SELECT *, {flaw_draw} AS flaw, {name_draw} AS name_draw FROM sent)
SELECT
  -- 0.2% lack a user id, 0.1% a timestamp.
  CASE WHEN flaw >= 0.002 THEN user_id END AS user_id,
  'e' || s || '-' || i AS event_id,
  {event_name} AS event_name,
  CASE WHEN flaw < 0.002 OR flaw >= 0.003 THEN make_timestamp(event_us) END AS event_ts,
  platform,
  country,
  CASE WHEN event_us >= {second_midnight_us} THEN '{experiment}' END AS experiment,
  CASE WHEN event_us >= {second_midnight_us} THEN variant END AS variant,
  CAST(make_timestamp(event_us) AS DATE) AS event_date
FROM drawn
"""


def _draw(*keys: object) -> str:
    # A uniform number in [0, 1) from the keys (columns or stream numbers) and the seed, as DuckDB SQL.
    return f"(hash({', '.join(str(key) for key in keys)}, {DUCKDB_SEED}) / 18446744073709551616.0)"


def _duckdb_pick(draw: str, choices: tuple[tuple[str, float], ...]) -> str:
    cases = " ".join(f"WHEN {draw} < {threshold} THEN '{value}'" for value, threshold in choices[:-1])
    return f"CASE {cases} ELSE '{choices[-1][0]}' END"


def duckdb_events_sql(events: int, days: int) -> str:
    """DUCKDB_EVENTS_SQL for about `events` events over `days` days from FIRST_DAY."""
    sessions_per_user = max(1, round(SESSIONS_PER_USER_WEEK * days / 7))
    run_seconds = days * 86_400
    first_midnight = int(datetime.combine(FIRST_DAY, datetime.min.time(), timezone.utc).timestamp())
    return DUCKDB_EVENTS_SQL.format(
        users=max(1, round(events / ((1 + MAX_SESSION_EVENTS) / 2) / sessions_per_user)),
        sessions_per_user=sessions_per_user,
        run_seconds=run_seconds,
        arc_seconds=run_seconds / sessions_per_user,
        spacing_seconds=SESSION_SPACING_SECONDS,
        max_events=MAX_SESSION_EVENTS,
        step_seconds=EVENT_STEP_SECONDS,
        jitter_seconds=EVENT_JITTER_SECONDS,
        first_midnight=first_midnight,
        second_midnight_us=(first_midnight + 86_400) * 1_000_000,
        experiment=SAMPLE_EXPERIMENT,
        user_phase=_draw("u", 1),
        platform=_duckdb_pick(_draw("u", 2), DUCKDB_PLATFORMS),
        country=_duckdb_pick(_draw("u", 4), DUCKDB_COUNTRIES),
        variant=_duckdb_pick(_draw("u", 5), DUCKDB_VARIANTS),
        length_draw=_draw("s", 3),
        start_draw=_draw("s", 6),
        jitter_draw=_draw("s", "i", 7),
        resend_draw=_draw("s", "i", 8),
        flaw_draw=_draw("s", "i", "copy", 9),
        name_draw=_draw("s", "i", 10),
        event_name=_duckdb_pick("name_draw", DUCKDB_EVENT_NAMES),
    )


def write_duckdb_events(path: Path, events: int, days: int, threads: int) -> None:
    """Write the DuckDB shape's events as Parquet under `path`, in event_date=YYYY-MM-DD folders, replacing it."""
    import duckdb

    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    connection = duckdb.connect()
    connection.execute(f"SET threads = {threads}")
    connection.execute(f"COPY ({duckdb_events_sql(events, days)}) TO '{partial}' "
                       "(FORMAT parquet, PARTITION_BY (event_date))")
    connection.close()
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)


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


def _measure(name: str, command: list[str], env: dict[str, str] | None = None) -> dict:
    """Run a contender's process: its own report (seconds of work, sessions), the wall seconds of the whole process
    (process_seconds) and the peak RSS of its process tree (polled every 0.2 s, beside the wait)."""
    peak, done = [0], threading.Event()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)

    def poll_rss() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _process_tree_rss(process.pid))

    poller = threading.Thread(target=poll_rss, daemon=True)
    poller.start()
    output, _ = process.communicate()
    process_seconds = time.perf_counter() - started
    done.set()
    poller.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
    return _report(name, output) | {"process_seconds": process_seconds, "peak_rss_bytes": peak[0]}


def _report(name: str, output: str) -> dict:
    # The reference prints "fair seconds S sessions N"; the others one JSON line, last.
    if name == "reference":
        found = REFERENCE_REPORT.search(output)
        if found is None:
            raise RuntimeError(f"the reference printed no 'fair seconds S sessions N' line: {output[-500:]!r}")
        return {"seconds": float(found[1]), "sessions": int(found[2])}
    return json.loads(output.strip().splitlines()[-1])


def _events_path(args: argparse.Namespace, events: int, shape: str) -> Path:
    prefix = "events" if shape == "generator" else f"{shape}-events"
    return args.workdir / f"{prefix}-{events}-{args.days}d"


def _generate(args: argparse.Namespace, events: int, shape: str) -> Path:
    path = _events_path(args, events, shape)
    if args.regenerate or not path.exists():
        if shape == "duckdb":
            _timed(f"generate about {events:,} events in DuckDB",
                   lambda: write_duckdb_events(path, events, args.days, args.threads))
        else:
            command = [sys.executable, str(Path(__file__).resolve()), "--generate", str(events), "--days",
                       str(args.days), "--events-path", str(path)]
            subprocess.run(command, check=True)  # its own JVM, gone before the contenders start
    return path


def _command(args: argparse.Namespace, name: str, events_path: Path, out: Path) -> list[str]:
    if name == "by_hand":
        return [sys.executable, str(BY_HAND_SCRIPT), str(events_path), str(out)]
    if name == "reference":
        return [sys.executable, str(args.reference_script), str(events_path), str(out)]
    return [sys.executable, str(Path(__file__).resolve()), "--contender", name.split("@")[0], "--out", str(out),
            "--days", str(args.days), "--threads", str(args.threads), "--events-path", str(events_path)]


def _outputs(args: argparse.Namespace, shape: str) -> Path:
    return args.workdir / "out" / shape


def _compare(args: argparse.Namespace, events_path: Path, shape: str) -> dict[str, list[dict]]:
    contenders = [c for c in CONTENDERS if c in args.contenders.split(",")]
    envs = {name: None for name in contenders}
    if args.baseline_rev:
        envs[f"sessionlake@{args.baseline_rev}"] = os.environ | {"PYTHONPATH": str(_export(args, args.baseline_rev))}
    runs: dict[str, list[dict]] = {name: [] for name in envs}
    for round_number in range(args.rounds):
        order = list(envs) if round_number % 2 == 0 else list(reversed(envs))
        for name in order:
            out = _outputs(args, shape) / name
            shutil.rmtree(out, ignore_errors=True)  # the scripts overwrite their tables; no table is left over
            report = _measure(name, _command(args, name, events_path, out), envs[name])
            print(f"round {round_number + 1}: {name}: {report['process_seconds']:.1f} s whole, "
                  f"{report['seconds']:.1f} s work, peak {report['peak_rss_bytes'] / 2**30:.2f} GiB, "
                  f"{report['sessions']:,} sessions", flush=True)
            runs[name].append(report)
    return runs


def _check(args: argparse.Namespace, shape: str) -> dict:
    """by_hand's results against sessionlake's (see _check_same_results), in a child process with its own JVM."""
    outputs = _outputs(args, shape)
    command = [sys.executable, str(Path(__file__).resolve()), "--check", str(outputs / "sessionlake"),
               str(outputs / "by_hand"), "--days", str(args.days)]
    lines = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
    for line in lines[:-1]:  # the first differing rows, if any
        print(line, flush=True)
    return json.loads(lines[-1])


def _check_same_results(spark: SparkSession, sessionlake_out: str, by_hand_out: str, days: int) -> dict:
    """Compare by_hand's sessions (user_id, session_start, session_end, actions) and its daily KPIs of all users
    (sessions, users, actions, aps, spu) with sessionlake's, over the sessions that start in the days sessionlake
    processed (the events' last partition holds the ends of the last day's sessions). The users of a by_hand
    session lasting as long as sessionlake's cap (max_session_duration, 24 hours) or more are left out of the
    session check, and the KPIs then go unchecked: sessionlake cuts such sessions. Returns the counts compared and
    found differing; prints the first differing rows."""
    first_day, last_day = FIRST_DAY, FIRST_DAY + timedelta(days=days - 1)
    cap_seconds = Sessionization().max_session_duration.total_seconds()

    def table(out: str, name: str):
        return spark.read.format("delta").load(f"{out}/{name}")

    capped_users = (
        table(by_hand_out, "sessions").where(F.col("duration_seconds") >= cap_seconds).select("user_id").distinct()
    )

    def sessions(out: str):
        in_days = F.col("session_date").between(F.lit(first_day), F.lit(last_day))
        return (
            table(out, "sessions").where(in_days).join(capped_users, on="user_id", how="left_anti")
            .select("user_id", "session_start", "session_end", "actions")
        )

    def daily_kpis(out: str):
        is_day_of_all = (F.col("period") == "day") & (F.col("dimension") == "all")
        in_days = F.col("period_start").between(F.lit(first_day), F.lit(last_day))
        return table(out, "kpis").where(is_day_of_all & in_days).select(
            "period_start", "sessions", "users", "actions", "aps", "spu"
        )

    capped = capped_users.count()
    result = {"capped_users_left_out": capped, "sessions_compared": sessions(sessionlake_out).count()}
    checks = {"sessions": (sessions(sessionlake_out), sessions(by_hand_out))}
    if not capped:
        checks["daily_kpis"] = (daily_kpis(sessionlake_out), daily_kpis(by_hand_out))
        result["daily_kpi_rows_compared"] = checks["daily_kpis"][0].count()
    for name, (ours, theirs) in checks.items():
        for side, rows in zip(("sessionlake", "by_hand"), rows_only_in(ours, theirs)):
            rows = rows.persist()
            result[f"{name}_only_in_{side}"] = rows.count()
            if result[f"{name}_only_in_{side}"]:
                print(f"{name} only in {side}:", flush=True)
                rows.show(10, truncate=False)
            rows.unpersist()
    result["equal"] = all(v == 0 for k, v in result.items() if "_only_in_" in k)
    return result


def _check_line(check: dict) -> str:
    sessions = (f"{check['sessions_compared']:,} sessions"
                + (f" ({check['capped_users_left_out']:,} capped users left out)" if check["capped_users_left_out"]
                   else ""))
    kpis = (f"{check['daily_kpi_rows_compared']} daily KPI rows" if "daily_kpi_rows_compared" in check
            else "daily KPIs not compared (capped users)")
    verdict = "equal" if check["equal"] else "DIFFER (rows above)"
    return f"by_hand against sessionlake: {sessions}, {kpis}: {verdict}"


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
    parser.add_argument("--shapes", "--shape", default=",".join(SHAPES),
                        help="the events' shapes, comma-separated: generator (jobs/sample.py), duckdb (DuckDB SQL)")
    parser.add_argument("--reference-script", type=Path, default=REFERENCE_SCRIPT,
                        help="the reference contender's script (run as: python SCRIPT EVENTS_DIR OUT_DIR)")
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
    parser.add_argument("--contender", choices=CHILD_CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--check", nargs=2, metavar=("SESSIONLAKE_OUT", "BY_HAND_OUT"), help=argparse.SUPPRESS)
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
    if args.check:
        result = _check_same_results(get_spark("benchmark-check"), *args.check, args.days)
        print(json.dumps(result), flush=True)
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

    contenders, shapes = args.contenders.split(","), args.shapes.split(",")
    unknown = sorted(set(contenders) - set(CONTENDERS)) + sorted(set(shapes) - set(SHAPES))
    if unknown:
        parser.error(f"unknown contender or shape: {', '.join(unknown)} (contenders: {', '.join(CONTENDERS)}; "
                     f"shapes: {', '.join(SHAPES)})")
    if "reference" in contenders and not args.reference_script.is_file():
        parser.error(f"--reference-script {args.reference_script}: no such file; give the reference's script or "
                     "leave reference out of --contenders")
    failed = []
    for events in (int(size) for size in args.events.split(",")):
        for shape in shapes:
            events_path = _generate(args, events, shape)
            results = _summary(events_path, _compare(args, events_path, shape), args) | {"shape": shape}
            if {"sessionlake", "by_hand"} <= set(contenders):
                results["check"] = _check(args, shape)
            print(_table(results), flush=True)
            (args.workdir / f"results-{shape}-{events}.json").write_text(json.dumps(results, indent=2) + "\n")
            if not results.get("check", {"equal": True})["equal"]:
                failed.append(f"{events:,} events, {shape} shape")
    if failed:
        sys.exit(f"by_hand's sessions or daily KPIs differ from sessionlake's: {'; '.join(failed)}")


def _summary(events_path: Path, runs: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    import pyarrow.parquet as pq

    events = sum(pq.ParquetFile(f).metadata.num_rows for f in events_path.glob("*/*.parquet"))  # footers only

    def median(reports: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in reports)

    reference = median(runs["sessionlake"], "process_seconds") if "sessionlake" in runs else None
    return {
        "events": events,
        "days": args.days,
        "threads": args.threads,
        "rounds": args.rounds,
        "contenders": {
            name: {
                # The whole process: interpreter, JVM start, work and exit.
                "process_seconds": [round(r["process_seconds"], 1) for r in reports],
                "median_process_seconds": round(median(reports, "process_seconds"), 1),
                # The work, as the process reports it (its JVM's start excluded).
                "seconds": [round(r["seconds"], 1) for r in reports],
                "median_seconds": round(median(reports, "seconds"), 1),
                "events_per_second": round(events / median(reports, "process_seconds")),  # of the whole process
                "peak_rss_gib": round(max(r["peak_rss_bytes"] for r in reports) / 2**30, 2),
                "sessions": reports[-1]["sessions"],
                # Above 1: this contender's whole process takes longer than sessionlake's.
                "time_over_sessionlake": (
                    round(median(reports, "process_seconds") / reference, 2) if reference else None
                ),
            }
            for name, reports in runs.items()
        },
    }


def _table(results: dict) -> str:
    lines = [
        f"{results['events']:,} events ({results['shape']} shape), {results['threads']} threads, "
        f"median of {results['rounds']} round(s)",
        f"{'contender':<15} {'process s':>10} {'work s':>8} {'process/sessionlake':>20} {'peak GiB':>9} "
        f"{'sessions':>11}",
    ]
    for name, figures in results["contenders"].items():
        ratio = figures["time_over_sessionlake"]
        lines.append(
            f"{name:<15} {figures['median_process_seconds']:>10.1f} {figures['median_seconds']:>8.1f} "
            f"{'' if ratio is None else f'{ratio:.2f}':>20} {figures['peak_rss_gib']:>9.2f} {figures['sessions']:>11,}"
        )
    if "check" in results:
        lines.append(_check_line(results["check"]))
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
