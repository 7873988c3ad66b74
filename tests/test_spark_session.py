"""What the job adds to a session spark-submit was given: Delta's two SQL settings, only where absent."""

from pyspark import SparkConf

from jobs.spark_session import delta_settings

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
