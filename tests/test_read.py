from datetime import date

import pytest
from delta.tables import DeltaTable
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.config import InputFormat, InputSpec
from jobs.errors import InputError
from jobs.read import InputFile, InputListing, WriterStart, list_input, read_events, writer_start
from jobs.write import tagged_commits
from tests.helpers import utc


def write_parquet(spark, path, rows, schema):
    spark.createDataFrame(rows, schema).write.partitionBy("event_date").parquet(str(path / "events"))


def test_numeric_ids_and_segments_are_read_as_text(spark, tmp_path):
    write_parquet(
        spark, tmp_path,
        [(42, 7, "view", utc("2026-11-02T10:00:00"), 3, date(2026, 11, 2))],
        "user_id long, event_id long, event_name string, event_ts timestamp, platform int, event_date date",
    )

    events = read_events(spark, InputSpec(path=str(tmp_path / "events")), ("platform",), date(2026, 11, 2), date(2026, 11, 2))

    assertDataFrameEqual(
        events.select("user_id", "event_id", "platform"), [Row(user_id="42", event_id="7", platform="3")]
    )


def test_only_partitions_in_the_range_and_undated_ones_are_read(spark, tmp_path):
    schema = "user_id string, event_id string, event_name string, event_ts timestamp, event_date date"
    write_parquet(
        spark, tmp_path,
        [("u1", "e1", "view", utc("2026-11-01T10:00:00"), date(2026, 11, 1)),
         ("u1", "e2", "view", utc("2026-11-02T10:00:00"), date(2026, 11, 2)),
         ("u1", "e3", "view", utc("2026-11-03T10:00:00"), date(2026, 11, 3)),
         ("u1", "e4", "view", None, None)],
        schema,
    )

    events = read_events(spark, InputSpec(path=str(tmp_path / "events")), (), date(2026, 11, 2), date(2026, 11, 2))

    assert sorted(r["event_id"] for r in events.collect()) == ["e2", "e4"]


def test_partitions_outside_the_range_are_not_read_at_all(spark, tmp_path):
    # A CSV file whose header differs from the others fails any read of it: reading 1 November must not touch it.
    for day, header in (("2026-11-01", "user_id,event_id,event_name,event_ts"), ("2026-11-05", "uid,eid,name,ts")):
        (tmp_path / "events" / f"event_date={day}").mkdir(parents=True)
        (tmp_path / "events" / f"event_date={day}" / "part.csv").write_text(f"{header}\nu1,e1,view,{day}T10:00:00Z\n")
    spec = InputSpec(path=str(tmp_path / "events"), format=InputFormat.CSV)

    events = read_events(spark, spec, (), date(2026, 11, 1), date(2026, 11, 1))

    assert [(r["user_id"], r["event_id"]) for r in events.collect()] == [("u1", "e1")]


def test_partition_fingerprints_come_from_the_file_listing_and_change_with_a_new_file(spark, tmp_path):
    schema = "user_id string, event_id string, event_name string, event_ts timestamp, event_date date"
    write_parquet(
        spark, tmp_path,
        [("u1", "e1", "view", utc("2026-11-01T10:00:00"), date(2026, 11, 1)),
         ("u1", "e3", "view", utc("2026-11-03T10:00:00"), date(2026, 11, 3)),
         ("u1", "e4", "view", None, None)],
        schema,
    )
    spec = InputSpec(path=str(tmp_path / "events"))
    before = list_input(spark, spec).fingerprints()

    late_file = spark.createDataFrame([("u2", "e5", "view", utc("2026-11-03T11:00:00"), date(2026, 11, 3))], schema)
    late_file.write.mode("append").partitionBy("event_date").parquet(str(tmp_path / "events"))
    after = list_input(spark, spec).fingerprints()

    # The undated folder (event_date=__HIVE_DEFAULT_PARTITION__) is not a partition date.
    assert set(before) == set(after) == {date(2026, 11, 1), date(2026, 11, 3)}
    assert after[date(2026, 11, 1)] == before[date(2026, 11, 1)]
    assert after[date(2026, 11, 3)] != before[date(2026, 11, 3)]


def test_a_partition_value_that_is_not_a_full_date_is_no_date(spark, tmp_path):
    # Partition discovery keeps these folders as text; a lenient cast would read "2026-11" as 1 November.
    schema = "user_id string, event_id string, event_name string, event_ts timestamp, event_date string"
    write_parquet(
        spark, tmp_path,
        [("u1", "e1", "view", utc("2026-11-01T10:00:00"), "2026-11-01"),
         ("u1", "e2", "view", utc("2026-11-01T11:00:00"), "2026-11")],
        schema,
    )

    events = read_events(spark, InputSpec(path=str(tmp_path / "events")), (), date(2026, 11, 1), date(2026, 11, 1))

    assertDataFrameEqual(
        events.select("event_id", "event_date"),
        [Row(event_id="e1", event_date=date(2026, 11, 1)), Row(event_id="e2", event_date=None)],
    )


def test_a_missing_input_path_is_an_input_error(spark, tmp_path):
    with pytest.raises(InputError, match="does not exist or holds no parquet input"):
        read_events(spark, InputSpec(path=str(tmp_path / "nope")), (), date(2026, 11, 2), date(2026, 11, 2))


def test_a_writers_start_is_the_version_before_its_first_tagged_commit(spark, tmp_path):
    path, row = str(tmp_path / "table"), spark.createDataFrame([(1,)], "x int")
    for tag in ("first", None, "a", "b", "a"):  # versions 0 to 4
        if tag is None:
            row.write.format("delta").mode("append").save(path)
        else:
            with tagged_commits(spark, tag):
                row.write.format("delta").mode("append").save(path)

    assert writer_start(spark, path, "a") == WriterStart(first_commit=2, version_read=1)
    assert writer_start(spark, path, "b") == WriterStart(first_commit=3, version_read=2)
    # A writer that created the table read no table; one that never committed read the latest version.
    assert writer_start(spark, path, "first") == WriterStart(first_commit=0, version_read=None)
    assert writer_start(spark, path, "never") == WriterStart(first_commit=None, version_read=4)
    assert writer_start(spark, str(tmp_path / "none"), "a") == WriterStart(first_commit=None, version_read=None)
    # A MERGE is tagged too (repairs rely on every write of a run carrying its id).
    with tagged_commits(spark, "merge"):
        (DeltaTable.forPath(spark, path).alias("t").merge(row.alias("r"), "t.x = r.x").whenMatchedUpdateAll().execute())
    assert writer_start(spark, path, "merge") == WriterStart(first_commit=5, version_read=4)
    # The tag lasts the block only: a commit after it is untagged.
    row.write.format("delta").mode("append").save(path)
    assert spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["userMetadata"] is None


def test_a_listing_reads_only_full_real_dates_as_partitions():
    listing = InputListing("event_date", (
        InputFile("file:/in/event_date=2026-11-01/a.parquet", "10", "1"),
        InputFile("file:/in/event_date=2026-11-03/b.parquet", "10", "1"),
        InputFile("file:/in/event_date=2026-11-03/b2.parquet", "10", "1"),
        InputFile("file:/in/event_date=2026-13-45/c.parquet", "10", "1"),  # not a real date
        InputFile("file:/in/event_date=2026-11/d.parquet", "10", "1"),  # not a full date
        InputFile("file:/in/e.parquet", "10", "1"),  # no date folder
    ))

    assert set(listing.fingerprints()) == {date(2026, 11, 1), date(2026, 11, 3)}
    # A run reads its partitions' folders and every file without a date, whose rows it quarantines.
    assert listing.paths_between(date(2026, 11, 2), date(2026, 11, 3)) == [
        "file:/in/event_date=2026-11-03",
        "file:/in/event_date=2026-13-45/c.parquet",
        "file:/in/event_date=2026-11/d.parquet",
        "file:/in/e.parquet",
    ]


def test_a_range_whose_partitions_hold_no_data_reads_one_data_file_for_the_columns():
    listing = InputListing("event_date", (
        InputFile("file:/in/event_date=2026-11-01/a.parquet", "10", "1"),
        InputFile("file:/in/event_date=2026-11-01/b.parquet", "10", "1"),
        InputFile("file:/in/event_date=2026-11-02/part-0.parquet", "0", ""),  # a quiet day's zero-byte file
    ))

    # Not the zero-byte file (no parquet footer), and not all of 1 November: one file gives the columns, and its
    # rows lie outside the day read.
    assert listing.paths_between(date(2026, 11, 2), date(2026, 11, 2)) == ["file:/in/event_date=2026-11-01/b.parquet"]


def test_a_partition_fingerprint_matches_the_ones_earlier_versions_stored(spark):
    # The runs table stores these fingerprints. Versions before 0.1.0's single listing computed them in Spark, as
    # sha2 over the sorted "path|size|modified" texts joined by commas; a changed formula would redo every day.
    listing = InputListing("event_date", (
        InputFile("file:/in/event_date=2026-11-01/b.parquet", "20", "7"),
        InputFile("file:/in/event_date=2026-11-01/a.parquet", "10", "5"),
        InputFile("file:/in/event_date=2026-11-01/é.parquet", "30", "9"),
    ))
    stored = spark.createDataFrame([(f.path, f.size, f.modified) for f in listing.files], "path string, size string, modified string")
    (earlier,) = stored.agg(
        F.sha2(F.concat_ws(",", F.array_sort(F.collect_list(F.concat_ws("|", "path", "size", "modified")))), 256)
    ).first()

    assert listing.fingerprints() == {date(2026, 11, 1): earlier}
