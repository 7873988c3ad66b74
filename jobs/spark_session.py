"""The SparkSession: the platform's when there is one, else a local one with Delta configured."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark import SparkConf
from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
_DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

# Local mode only: settings for a laptop-sized JVM. A cluster's own settings are never overridden.
_LOCAL_SETTINGS = {
    "spark.driver.memory": os.environ.get("SESSIONLAKE_DRIVER_MEMORY", "4g"),
    # Delta rebuilds table state with this many tasks; its default of 50 is slow for local tables.
    "spark.databricks.delta.snapshotPartitions": "4",
}


def get_spark(app_name: str = "sessionlake", spark_log_level: str | None = None) -> SparkSession:
    """The session to run in: the active one (Databricks, a notebook) as it is; under spark-submit, one built from
    spark-submit's settings with Delta's two SQL settings added where absent; otherwise a local[*] session with
    Delta (its jars fetched from Maven Central on first use).

    Under spark-submit and on a platform, master, memory, shuffle partitions and the app name are the platform's:
    the job sets nothing else. The Delta jar must be on the classpath there (spark-submit --packages). Spark's own
    log lines below `spark_log_level` are dropped; by default, below ERROR locally and below WARN under
    spark-submit (a cluster's warnings, lost executors or spills, matter). An active platform session keeps its own.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # spark-submit started this Python with a gateway into its JVM
        spark, default_level = _submitted_session(), "WARN"
    else:
        spark, default_level = _local_session(app_name), "ERROR"
    spark.sparkContext.setLogLevel(spark_log_level or default_level)
    _log_settings(spark)
    return spark


def delta_settings(submitted: SparkConf) -> dict[str, str]:
    """The Delta settings a session built from `submitted` lacks: the SQL extension (appended to any others) and
    the catalog (only when no catalog is set: another catalog implementation is the platform's choice)."""
    missing = {}
    extensions = [e.strip() for e in (submitted.get("spark.sql.extensions") or "").split(",") if e.strip()]
    if _DELTA_EXTENSION not in extensions:
        missing["spark.sql.extensions"] = ",".join([*extensions, _DELTA_EXTENSION])
    if submitted.get("spark.sql.catalog.spark_catalog") is None:
        missing["spark.sql.catalog.spark_catalog"] = _DELTA_CATALOG
    return missing


def _submitted_session() -> SparkSession:
    builder = SparkSession.builder
    for key, value in delta_settings(SparkConf()).items():  # SparkConf() holds what spark-submit was given
        log.info("spark-submit: %s not set, using %s", key, value)
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _local_session(app_name: str) -> SparkSession:
    from delta import configure_spark_with_delta_pip

    builder = SparkSession.builder.master("local[*]").appName(app_name)
    settings = {
        "spark.sql.extensions": _DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": _DELTA_CATALOG,
        # Spark's progress bar of stages and tasks, for a person watching a long run; never in logs or pipes.
        "spark.ui.showConsoleProgress": str(sys.stderr.isatty()).lower(),
    }
    for key, value in {**settings, **_LOCAL_SETTINGS}.items():
        builder = builder.config(key, value)
    return configure_spark_with_delta_pip(builder).getOrCreate()


def _log_settings(spark: SparkSession) -> None:
    conf = spark.sparkContext.getConf()
    log.info(
        "Spark %s: master %s, app %s, %d cores, driver memory %s, shuffle partitions %s",
        spark.version, conf.get("spark.master"), conf.get("spark.app.name"),
        spark.sparkContext.defaultParallelism, conf.get("spark.driver.memory", "default"),
        spark.conf.get("spark.sql.shuffle.partitions"),
    )


_SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"
_SPARK_DEFAULT_SHUFFLE_PARTITIONS = "200"
# Input bytes per shuffle partition: a partition of events this size (compressed parquet) sorts in memory in
# seconds, and the sessions made from it fill a file of useful size.
TARGET_INPUT_BYTES_PER_PARTITION = 64 * 2**20


def shuffle_partitions_for(input_bytes: int, parallelism: int) -> int:
    """Shuffle partitions for a run reading `input_bytes` of input: one per TARGET_INPUT_BYTES_PER_PARTITION, and
    at least one per core."""
    return max(parallelism, -(-input_bytes // TARGET_INPUT_BYTES_PER_PARTITION))


@contextmanager
def shuffles_sized_for(spark: SparkSession, input_bytes: int | None) -> Iterator[None]:
    """Within the block, shuffle into shuffle_partitions_for(input_bytes) partitions, unless the session's shuffle
    partitions were set by whoever started it (or the input's size is unknown): then nothing changes.

    Spark's default of 200 partitions costs a task per partition in every stage after a shuffle, which dominates
    on small inputs. Adaptive execution coalesces partitions, but not where a result is cached, as a run's sessions
    are, nor where a join meets an input already partitioned by user.
    """
    chosen = spark.sparkContext.getConf().contains(_SHUFFLE_PARTITIONS) or (
        spark.conf.get(_SHUFFLE_PARTITIONS) != _SPARK_DEFAULT_SHUFFLE_PARTITIONS
    )
    if chosen or input_bytes is None:
        yield
        return
    previous = spark.conf.get(_SHUFFLE_PARTITIONS)
    partitions = shuffle_partitions_for(input_bytes, spark.sparkContext.defaultParallelism)
    log.debug("shuffle partitions %d for %.1f MiB of input", partitions, input_bytes / 2**20)
    spark.conf.set(_SHUFFLE_PARTITIONS, str(partitions))
    try:
        yield
    finally:
        spark.conf.set(_SHUFFLE_PARTITIONS, previous)
