"""Time `sessionlake report` over years of daily rows: synthetic tables shaped as the job writes them, written with
delta-rs (no Spark), then the report command in its own process, as a user runs it.

    .venv/bin/python scripts/benchmark_report.py --years 3 --countries 40

Writes --workdir/out/{kpis,action_kpis,runs} (kpis and action_kpis partitioned by period, as the job writes them,
one commit per month of rows: a few dozen files per table), then runs the report --rounds times and prints the
seconds (median, process start included) and the page's size.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from jobs.periods import Period, start_of

ROOT = Path(__file__).resolve().parents[1]


def _kpi_rows(days: list[date], segments: dict[str, list[str]], rng: np.random.Generator) -> pd.DataFrame:
    keys = [("all", "all")] + [(dimension, value) for dimension, values in segments.items() for value in values]
    rows = []
    for period in Period:
        starts = sorted({start_of(day, period) for day in days})
        for dimension, value in keys:
            n = len(starts)
            sessions = rng.integers(1_000, 100_000, n)
            users = (sessions / rng.uniform(1.5, 3.0, n)).astype(int)
            actions = (sessions * rng.uniform(6, 10, n)).astype(int)
            rows.append(pd.DataFrame({
                "period": period.value, "period_start": starts, "dimension": dimension, "dimension_value": value,
                "sessions": sessions, "users": users, "actions": actions, "aps": actions / sessions,
                "spu": sessions / users, "median_duration_seconds": rng.uniform(100, 300, n),
                "p90_duration_seconds": rng.uniform(900, 1800, n), "bounce_rate": rng.uniform(0.1, 0.15, n),
                "engagement_rate": rng.uniform(0.8, 0.9, n), "conversion_rate": rng.uniform(0.05, 0.1, n),
                "is_complete": [period is Period.DAY or start <= days[-1] - timedelta(days=31) for start in starts],
            }))
    return pd.concat(rows, ignore_index=True)


def _action_rows(kpis: pd.DataFrame, names: int, rng: np.random.Generator) -> pd.DataFrame:
    frames = []
    for n in range(names):
        share = 0.5 / (n + 1)
        frames.append(kpis[["period", "period_start", "dimension", "dimension_value", "sessions", "is_complete"]].assign(
            event_name=f"action_{n:02d}", share_of_actions=share,
            actions=(kpis["actions"] * share).astype(int), sessions_with_action=(kpis["sessions"] * 0.5).astype(int),
            users_with_action=(kpis["users"] * 0.6).astype(int), total_actions=kpis["actions"],
        ))
    return pd.concat(frames, ignore_index=True)


def _runs(days: list[date]) -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": [f"run-{n}" for n in range(len(days))],
        "started_at": [pd.Timestamp(day + timedelta(days=1), tz="UTC") + pd.Timedelta(hours=4) for day in days],
        "first_day": days, "last_day": days, "status": "succeeded", "rows_read": 10_000_000,
        "rows_deduplicated": 1_000, "rows_quarantined": 50,
        "quarantine_reasons": [[("missing_user_id", 30), ("missing_event_ts", 20)]] * len(days),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--countries", type=int, default=40)
    parser.add_argument("--actions", type=int, default=30, help="event names")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "report")
    args = parser.parse_args()

    rng = np.random.default_rng(20261206)
    last = date(2026, 11, 30)
    days = [last - timedelta(days=n) for n in range(365 * args.years)][::-1]
    segments = {"platform": ["web", "ios", "android"], "country": [f"c{n:02d}" for n in range(args.countries)],
                "user_type": ["new", "returning"]}
    kpis = _kpi_rows(days, segments, rng)
    action_kpis = _action_rows(kpis, args.actions, rng)
    out = args.workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    # A commit per month of rows. A daily job leaves a commit a day (years of log, with Delta's checkpoints):
    # not measured here.
    for table, rows in (("kpis", kpis), ("action_kpis", action_kpis)):
        by_month = rows.groupby(pd.to_datetime(rows["period_start"]).dt.to_period("M"))
        for _, month in by_month:
            write_deltalake(str(out / table), month, mode="append", partition_by=["period"])
    runs = _runs(days)
    reasons = pa.array(runs.pop("quarantine_reasons").tolist(), type=pa.map_(pa.string(), pa.int64()))
    write_deltalake(str(out / "runs"), pa.Table.from_pandas(runs, preserve_index=False).append_column(
        "quarantine_reasons", reasons))
    print(f"wrote {len(kpis):,} kpis rows and {len(action_kpis):,} action_kpis rows over {len(days):,} days "
          f"in {time.perf_counter() - started:.0f} s", flush=True)

    page = args.workdir / "report.html"
    seconds = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jobs", "report", "--output", str(out), "--html", str(page)],
                       check=True, cwd=ROOT)
        seconds.append(time.perf_counter() - started)
    print(f"report: {statistics.median(seconds):.1f} s (median of {args.rounds}; process start included), "
          f"page {page.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
