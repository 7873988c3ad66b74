"""The SparkSession: the platform's when there is one, else a local one with Delta configured."""

from __future__ import annotations

import logging
import os

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_DELTA_SETTINGS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

# Local mode only: settings for a laptop-sized JVM. A cluster's own settings are never overridden.
_LOCAL_SETTINGS = {
    "spark.driver.memory": os.environ.get("SESSIONLAKE_DRIVER_MEMORY", "4g"),
    "spark.ui.showConsoleProgress": "false",
    # Delta rebuilds table state with this many tasks; its default of 50 is slow for local tables.
    "spark.databricks.delta.snapshotPartitions": "4",
}


def _on_a_platform() -> bool:
    # spark-submit starts Python with a gateway into its JVM; Databricks and notebooks have an active session.
    return "PYSPARK_GATEWAY_PORT" in os.environ or SparkSession.getActiveSession() is not None


def get_spark(app_name: str = "sessionlake") -> SparkSession:
    """The platform's session under spark-submit or Databricks; otherwise a local[*] session with Delta.

    On a platform only the app name is set: master, memory, shuffle partitions and Delta's configuration
    are the platform's (it must load Delta, e.g. with spark-submit --packages).
    """
    if _on_a_platform():
        return SparkSession.builder.appName(app_name).getOrCreate()
    from delta import configure_spark_with_delta_pip

    builder = SparkSession.builder.master("local[*]").appName(app_name)
    for key, value in {**_DELTA_SETTINGS, **_LOCAL_SETTINGS}.items():
        builder = builder.config(key, value)
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    log.info("local Spark %s with Delta, %d cores", spark.version, spark.sparkContext.defaultParallelism)
    return spark
