"""How the job's Delta writes lay out their files and count their rows."""

from datetime import date

from delta.tables import DeltaTable
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.config import Table
from jobs.write import MergeCounts, _last_commit, _write_metrics, merge_users, replace_quarantine
from tests.helpers import utc


def test_a_replaced_range_is_written_as_one_file_per_day_whatever_the_frames_partitioning(spark, tmp_path):
    # Optimized writes: without them each of the frame's 4 partitions would write a file for each day it holds (8).
    rows = [(date(2026, 11, 1 + n % 2), "missing_user_id", f'{{"n": {n}}}', "run-1") for n in range(40)]
    quarantine = spark.createDataFrame(rows, "event_date date, reject_reason string, raw_row string, run_id string")
    path = str(tmp_path / "quarantine")

    written = replace_quarantine(quarantine.repartition(4, F.col("raw_row")), path, date(2026, 11, 1), date(2026, 11, 2))

    assert written == 40
    assert DeltaTable.forPath(spark, path).detail().first()["numFiles"] == 2


USERS = "user_id string, first_seen timestamp, sessions long"


def test_merging_users_counts_the_rows_it_inserted_updated_and_deleted(spark, tmp_path):
    path = str(tmp_path / "users")
    first = [("u1", utc("2026-11-01T10:00:00"), 2), ("u2", utc("2026-11-01T11:00:00"), 1)]
    assert merge_users(spark.createDataFrame(first, USERS), path) == MergeCounts(inserted=2, updated=0, deleted=0)
    assert merge_users(spark.createDataFrame(first, USERS), path) == MergeCounts(inserted=0, updated=0, deleted=0)

    # u1 gains a session, u2 has none left, u3 is new.
    later = [("u1", utc("2026-11-01T10:00:00"), 3), ("u2", utc("2026-11-01T11:00:00"), 0),
             ("u3", utc("2026-11-02T08:00:00"), 1)]
    assert merge_users(spark.createDataFrame(later, USERS), path) == MergeCounts(inserted=1, updated=1, deleted=1)
    assertDataFrameEqual(
        spark.read.format("delta").load(path),
        [Row(user_id="u1", first_seen=utc("2026-11-01T10:00:00"), sessions=3),
         Row(user_id="u3", first_seen=utc("2026-11-02T08:00:00"), sessions=1)],
    )


def test_a_writes_row_count_is_its_own_commits_even_when_another_commit_follows_it(spark, tmp_path):
    # A platform may commit right after the job's write (Databricks' auto compaction): the count stays the write's.
    path = str(tmp_path / "users")
    spark.createDataFrame([("u1", utc("2026-11-01T10:00:00"), 1)], USERS).write.format("delta").save(path)
    stored = DeltaTable.forPath(spark, path)  # made before the commits below: its history still shows them
    before = _last_commit(stored)
    spark.createDataFrame([("u2", utc("2026-11-01T11:00:00"), 1), ("u3", utc("2026-11-01T12:00:00"), 1)], USERS
                          ).write.format("delta").mode("append").save(path)
    spark.createDataFrame([("u4", utc("2026-11-01T13:00:00"), 1)], USERS).write.format("delta").mode("append").save(path)

    assert _write_metrics(stored, Table.USERS, before)["numOutputRows"] == "2"
