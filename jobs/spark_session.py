"""The SparkSession: the platform's when there is one, else a local one with Delta configured."""

from __future__ import annotations

import logging
import os
import sys

from pyspark import SparkConf
from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
_DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

# Local mode only: settings for a laptop-sized JVM. A cluster's own settings are never overridden.
_LOCAL_SETTINGS = {
    "spark.driver.memory": os.environ.get("SESSIONLAKE_DRIVER_MEMORY", "4g"),
    # Two shuffle partitions per core: every stage after a shuffle runs a task per partition, and Spark's default
    # of 200 tasks costs more than the work on a laptop's data. Adaptive execution does not coalesce them where a
    # result is cached (the run's sessions) or where a join meets the events already partitioned by user.
    "spark.sql.shuffle.partitions": str(2 * (os.cpu_count() or 1)),
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

