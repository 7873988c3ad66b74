"""What the job sets on a session: Delta's two SQL settings where spark-submit left them out, and shuffles sized
for a run's input."""

from pyspark import SparkConf

from jobs.spark_session import delta_settings, shuffle_partitions_for, shuffles_sized_for

EXTENSIONS, CATALOG = "spark.sql.extensions", "spark.sql.catalog.spark_catalog"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def submitted(settings: dict[str, str]) -> SparkConf:
    return SparkConf(loadDefaults=False).setAll(list(settings.items()))


def test_a_session_submitted_without_delta_gets_its_extension_and_catalog():
    assert delta_settings(submitted({})) == {EXTENSIONS: DELTA_EXTENSION, CATALOG: DELTA_CATALOG}


def test_delta_extension_is_appended_to_the_submitted_extensions_and_a_submitted_catalog_is_kept():
    conf = submitted({EXTENSIONS: "com.example.Ext", CATALOG: "com.example.Catalog"})

    assert delta_settings(conf) == {EXTENSIONS: f"com.example.Ext,{DELTA_EXTENSION}"}


def test_a_session_submitted_with_delta_gets_nothing():
    assert delta_settings(submitted({EXTENSIONS: f"com.example.Ext, {DELTA_EXTENSION}", CATALOG: DELTA_CATALOG})) == {}


def test_shuffle_partitions_are_one_per_64_mib_of_input_and_at_least_one_per_core():
    mib = 2**20
    assert shuffle_partitions_for(10 * mib, parallelism=2) == 2  # small input: one per core
    assert shuffle_partitions_for(64 * mib, parallelism=2) == 2
    assert shuffle_partitions_for(430 * mib, parallelism=2) == 7  # 430 / 64 = 6.7, rounded up
    assert shuffle_partitions_for(2150 * mib, parallelism=2) == 34
    assert shuffle_partitions_for(430 * mib, parallelism=16) == 16


def test_shuffle_partitions_set_when_the_session_started_are_kept_during_a_run(spark):
    # The test session is started with spark.sql.shuffle.partitions=2: a run must not size its shuffles over it.
    with shuffles_sized_for(spark, 100 * 2**30):
        assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
