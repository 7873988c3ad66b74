from datetime import date

from pyspark.sql import functions as F

from jobs.dates import local_date
from tests.helpers import utc


def test_the_local_date_ignores_the_session_time_zone_even_in_its_repeated_hour(spark):
    # 06:30 UTC on 1 Nov 2026 is the second 01:30 in New York (summer time ends) and 00:30 on 1 Nov in Mexico City
    # (UTC-6 all year). Read through a New York session zone, the repeated hour could be taken as 05:30 UTC, i.e.
    # 23:30 on 31 Oct in Mexico City.
    instants = spark.createDataFrame([(utc("2026-11-01T06:30:00"),), (utc("2026-11-01T05:30:00"),)], "ts timestamp")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        days = [r["day"] for r in instants.select(local_date(F.col("ts"), "America/Mexico_City").alias("day")).collect()]
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")

    assert days == [date(2026, 11, 1), date(2026, 10, 31)]


def test_the_local_date_before_the_epoch_rounds_down(spark):
    instants = spark.createDataFrame([(utc("1969-12-31T23:59:59"),)], "ts timestamp")

    assert instants.select(local_date(F.col("ts"), "UTC")).first()[0] == date(1969, 12, 31)
