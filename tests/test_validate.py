import json
from datetime import date

from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.validate import to_quarantine, valid_events, with_reject_reason
from tests.helpers import utc

TEXT_EVENTS = "user_id string, event_id string, event_name string, event_ts string, event_date date"
TYPED_EVENTS = "user_id string, event_id string, event_name string, event_ts timestamp, event_date date"
DAY = date(2026, 11, 2)


def checked(spark, rows, schema=TEXT_EVENTS):
    events = spark.createDataFrame(rows, schema)
    # As read.py delivers them: the row as read travels along for quarantine.
    return (
        events.withColumn("source_row", F.struct(*events.columns[:-1]))
        .withColumn("read_problem", F.lit(None).cast("string"))
        .transform(with_reject_reason)
    )


def reasons(frame):
    return frame.select("event_id", "reject_reason")


def test_a_row_without_user_id_or_with_a_blank_one_is_rejected(spark):
    rows = [
        (None, "e1", "view", "2026-11-02T10:00:00Z", DAY),
        ("  ", "e2", "view", "2026-11-02T10:00:00Z", DAY),
        ("u1", "e3", "view", "2026-11-02T10:00:00Z", DAY),
    ]

    assertDataFrameEqual(
        reasons(checked(spark, rows)),
        [Row(event_id="e1", reject_reason="missing_user_id"), Row(event_id="e2", reject_reason="missing_user_id"),
         Row(event_id="e3", reject_reason=None)],
    )


def test_a_row_without_event_id_is_rejected(spark):
    rows = [("u1", None, "view", "2026-11-02T10:00:00Z", DAY)]

    assert checked(spark, rows).first()["reject_reason"] == "missing_event_id"


def test_a_row_without_event_name_is_rejected_after_the_ids(spark):
    rows = [("u1", "e1", None, "2026-11-02T10:00:00Z", DAY), ("u1", "e2", " ", "2026-11-02T10:00:00Z", DAY),
            ("u1", None, None, "2026-11-02T10:00:00Z", DAY)]

    assertDataFrameEqual(
        reasons(checked(spark, rows)),
        [Row(event_id="e1", reject_reason="missing_event_name"), Row(event_id="e2", reject_reason="missing_event_name"),
         Row(event_id=None, reject_reason="missing_event_id")],
    )


def test_a_missing_timestamp_and_an_unparseable_one_get_their_own_reasons(spark):
    rows = [
        ("u1", "e1", "view", None, DAY),
        ("u1", "e2", "view", "", DAY),
        ("u1", "e3", "view", "yesterday at noon", DAY),
        ("u1", "e4", "view", "2026-13-45T10:00:00Z", DAY),
    ]

    assertDataFrameEqual(
        reasons(checked(spark, rows)),
        [Row(event_id="e1", reject_reason="missing_event_ts"), Row(event_id="e2", reject_reason="missing_event_ts"),
         Row(event_id="e3", reject_reason="unparseable_event_ts"),
         Row(event_id="e4", reject_reason="unparseable_event_ts")],
    )


def test_iso_text_with_an_offset_is_read_as_that_instant(spark):
    rows = [
        ("u1", "e1", "view", "2026-11-02T10:00:00+01:00", DAY),
        ("u1", "e2", "view", "2026-11-02T10:00:00.250-05:30", DAY),
        ("u1", "e3", "view", "2026-11-02T10:00:00Z", DAY),
        ("u1", "e4", "view", "2026-11-02T10:00:00-0530", DAY),
        ("u1", "e5", "view", "2026-11-02 10:00:00 UTC", DAY),
    ]

    assertDataFrameEqual(
        checked(spark, rows).select("event_id", "event_ts"),
        [Row(event_id="e1", event_ts=utc("2026-11-02T09:00:00")),
         Row(event_id="e2", event_ts=utc("2026-11-02T15:30:00.250")),
         Row(event_id="e3", event_ts=utc("2026-11-02T10:00:00")),
         Row(event_id="e4", event_ts=utc("2026-11-02T15:30:00")),
         Row(event_id="e5", event_ts=utc("2026-11-02T10:00:00"))],
    )


def test_a_date_without_a_time_is_not_an_event_timestamp(spark):
    # "-02" at the end of a date is not an offset: the text is unparseable, not a session-zone midnight.
    rows = [("u1", "e1", "view", "2026-11-02", DAY)]

    assert checked(spark, rows).first()["reject_reason"] == "unparseable_event_ts"


def test_a_row_in_a_partition_that_is_not_a_date_is_rejected(spark):
    rows = [("u1", "e1", "view", "2026-11-02T10:00:00Z", None)]

    assert checked(spark, rows).first()["reject_reason"] == "missing_event_date"


def test_an_event_filed_under_another_utc_date_is_rejected(spark):
    # 23:30 on 2 Nov in New York is 04:30 UTC on 3 Nov: the partition must be 2026-11-03.
    rows = [
        ("u1", "e1", "view", "2026-11-02T23:30:00-05:00", DAY),
        ("u1", "e2", "view", "2026-11-02T23:30:00-05:00", date(2026, 11, 3)),
        ("u1", "e3", "view", "2026-11-02T00:00:00Z", DAY),
    ]

    assertDataFrameEqual(
        reasons(checked(spark, rows)),
        [Row(event_id="e1", reject_reason="event_date_mismatch"), Row(event_id="e2", reject_reason=None),
         Row(event_id="e3", reject_reason=None)],
    )


def test_iso_text_without_an_offset_is_utc_whatever_the_session_time_zone(spark):
    rows = [("u1", "e1", "view", "2026-11-02 10:00:00", DAY)]
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        instant = checked(spark, rows).selectExpr("unix_seconds(event_ts) AS s").first()["s"]
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")

    assert instant == int(utc("2026-11-02T10:00:00").timestamp())


def test_a_typed_timestamp_passes_through_unchanged(spark):
    rows = [("u1", "e1", "view", utc("2026-11-02T10:00:00"), DAY)]

    result = checked(spark, rows, TYPED_EVENTS).first()

    assert (result["event_ts"], result["reject_reason"]) == (utc("2026-11-02T10:00:00"), None)


def test_valid_events_drop_rejected_rows_and_bookkeeping_columns(spark):
    rows = [("u1", "e1", "view", "2026-11-02T10:00:00Z", DAY), (None, "e2", "view", "2026-11-02T10:00:00Z", DAY)]

    valid = valid_events(checked(spark, rows))

    assert valid.columns == ["user_id", "event_id", "event_name", "event_ts", "event_date"]
    assert [r["event_id"] for r in valid.collect()] == ["e1"]


def test_a_quarantined_row_keeps_the_row_as_read_its_reason_and_the_run(spark):
    rows = [(None, "e2", "click", "not a time", DAY)]

    quarantined = to_quarantine(checked(spark, rows), run_id="run-1").collect()

    assert len(quarantined) == 1
    row = quarantined[0]
    assert (row["event_date"], row["reject_reason"], row["run_id"]) == (DAY, "missing_user_id", "run-1")
    assert json.loads(row["raw_row"]) == {
        "user_id": None, "event_id": "e2", "event_name": "click", "event_ts": "not a time"
    }
