"""Shared test helpers."""

import shlex
import shutil
from datetime import datetime
from pathlib import Path

# Spark settings for test-sized data, shared by the test session and the jobs tests start as their own process.
SPARK_SETTINGS = {
    # The whole suite shares one JVM, and Delta keeps each table's state cached: some 150 test tables outgrow the
    # default 1g heap (a broadcast late in the run failed for want of memory).
    "spark.driver.memory": "3g",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.databricks.delta.snapshotPartitions": "2",
    # Test frames hold a few rows and each query is planned once: compiling generated Java code for a query costs
    # more than running it interpreted (one pipeline run: 16 s instead of 26 s). Results are the same either way;
    # the benchmark script measures Spark's default, compiled mode.
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}


def spark_submit_args() -> str:
    """PYSPARK_SUBMIT_ARGS giving a job started as its own process the test settings (pyspark adds them to the
    spark-submit command line that starts its JVM)."""
    confs = " ".join(f"--conf {shlex.quote(f'{key}={value}')}" for key, value in SPARK_SETTINGS.items())
    return f"{confs} pyspark-shell"


def utc(text: str) -> datetime:
    """The UTC instant 'YYYY-MM-DDTHH:MM[:SS[.fff]]' as Spark collects it: a naive datetime in this UTC process."""
    return datetime.fromisoformat(text)


def job_config(root: Path, events: Path, settings: str = "") -> Path:
    """root/job.yaml: a job reading the parquet events under `events` and writing its tables under root/out;
    `settings`: the rest of the config, in YAML."""
    config = root / "job.yaml"
    config.write_text(f"input: {{path: {events}}}\noutput: {{path: {root / 'out'}}}\n{settings}")
    return config


def continued(shared: Path, root: Path, settings: str = "") -> Path:
    """root/job.yaml, whose output starts as a copy of `shared`'s tables (shared/out) and whose input is `shared`'s
    events, read in place (so their listing is the one the shared run recorded, fingerprints and all) and never
    changed: a run with it continues the shared run as the next run of that output would. `settings`: the rest of
    the config, in YAML, as the shared run had it."""
    shutil.copytree(shared / "out", root / "out")
    return job_config(root, shared / "events", settings)
