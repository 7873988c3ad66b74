"""How the job's Delta writes lay out their files."""

from datetime import date

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from jobs.write import replace_quarantine


def test_a_replaced_range_is_written_as_one_file_per_day_whatever_the_frames_partitioning(spark, tmp_path):
    # Optimized writes: without them each of the frame's 4 partitions would write a file for each day it holds (8).
    rows = [(date(2026, 11, 1 + n % 2), "missing_user_id", f'{{"n": {n}}}', "run-1") for n in range(40)]
    quarantine = spark.createDataFrame(rows, "event_date date, reject_reason string, raw_row string, run_id string")
    path = str(tmp_path / "quarantine")

    written = replace_quarantine(quarantine.repartition(4, F.col("raw_row")), path, date(2026, 11, 1), date(2026, 11, 2))

    assert written == 40
    assert DeltaTable.forPath(spark, path).detail().first()["numFiles"] == 2
