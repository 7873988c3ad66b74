"""A daily run's fixed cost in a warm process: a tiny output (two users, three days), then reruns of its last day.

    .venv/bin/python scripts/warm_reruns.py --reruns 4

Runs days 2026-11-02 and 2026-11-03, then reruns 2026-11-04 --reruns times in the same process, with the test
suite's Spark settings (tests/helpers.py), and prints each rerun's seconds and the last one's costs per stage
(Spark jobs, Delta reads, Delta commits). On a few rows a run is all fixed cost: this is the figure that cutting
Spark jobs and Delta operations moves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delta import configure_spark_with_delta_pip  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from jobs.cli import main  # noqa: E402
from tests.helpers import SPARK_SETTINGS, job_config  # noqa: E402
from tests.test_costs import EVENTS  # noqa: E402
from tests.test_pipeline import SEGMENTS, write_events  # noqa: E402


def _spark() -> SparkSession:
    builder = (
        SparkSession.builder.master("local[2]").appName("warm-reruns")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
    )
    for key, value in SPARK_SETTINGS.items():
        builder = builder.config(key, value)
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def measure() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=4)
    args = parser.parse_args()
    spark = _spark()
    root = Path(tempfile.mkdtemp(prefix="warm-reruns-"))
    write_events(spark, root / "events", EVENTS)
    config = job_config(root, root / "events", SEGMENTS)

    def run(day: str) -> float:
        started = time.perf_counter()
        assert main(["run", "--config", str(config), "--date", day]) == 0
        return time.perf_counter() - started

    run("2026-11-02")
    run("2026-11-03")
    seconds = [run("2026-11-04") for _ in range(args.reruns)]
    last = spark.read.format("delta").load(str(root / "out" / "runs")).orderBy(F.col("started_at").desc()).first()
    print(f"reruns of 2026-11-04: {', '.join(f'{s:.1f}' for s in seconds)} s; median {statistics.median(seconds):.1f} s")
    for stage, costs in last.costs.items():
        print(f"  {stage}: Spark jobs {costs.spark_jobs}, Delta reads {costs.delta_reads}, "
              f"Delta commits {costs.delta_commits}")


if __name__ == "__main__":
    measure()
