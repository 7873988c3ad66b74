"""The table comparer: exact for every column but doubles, doubles within 1e-12 relative, copies counted."""

from datetime import date
from pathlib import Path

from jobs.compare import compare_outputs, rows_only_in

KPIS = "period string, period_start date, sessions long, aps double, action_counts map<string, long>"


def frame(spark, rows):
    return spark.createDataFrame(rows, KPIS)


def day(n: int, sessions: int = 10, aps: float = 1.5, counts=None):
    return ("day", date(2026, 11, n), sessions, aps, counts or {"view": 3, "click": 2})


def differences(spark, a_rows, b_rows) -> tuple[int, int]:
    only_a, only_b = rows_only_in(frame(spark, a_rows), frame(spark, b_rows))
    return only_a.count(), only_b.count()


def test_the_same_rows_in_another_order_with_maps_built_in_another_order_do_not_differ(spark):
    assert differences(spark, [day(1), day(2, counts={"click": 2, "view": 3})],
                       [day(2, counts={"view": 3, "click": 2}), day(1)]) == (0, 0)


def test_doubles_within_1e_12_relative_do_not_differ_and_beyond_it_do(spark):
    assert differences(spark, [day(1, aps=1.5)], [day(1, aps=1.5 * (1 + 5e-13))]) == (0, 0)
    assert differences(spark, [day(1, aps=1.5)], [day(1, aps=1.5 * (1 + 1e-9))]) == (1, 1)


def test_nulls_equal_nulls_and_a_null_differs_from_a_value(spark):
    assert differences(spark, [day(1, aps=None)], [day(1, aps=None)]) == (0, 0)
    assert differences(spark, [day(1, aps=None)], [day(1, aps=0.0)]) == (1, 1)


def test_a_count_that_differs_is_a_difference_even_with_equal_doubles(spark):
    assert differences(spark, [day(1, sessions=10)], [day(1, sessions=11)]) == (1, 1)


def test_a_row_written_twice_is_a_difference(spark):
    assert differences(spark, [day(1), day(1)], [day(1)]) == (1, 0)


def test_outputs_differ_by_a_table_missing_from_one_or_by_its_columns(spark, tmp_path: Path):
    frame(spark, [day(1)]).write.format("delta").save(str(tmp_path / "a" / "kpis"))
    frame(spark, [day(1)]).write.format("delta").save(str(tmp_path / "b" / "kpis"))
    frame(spark, [day(1)]).write.format("delta").save(str(tmp_path / "a" / "users"))
    frame(spark, [day(1)]).drop("aps").write.format("delta").save(str(tmp_path / "a" / "sessions"))
    frame(spark, [day(1)]).write.format("delta").save(str(tmp_path / "b" / "sessions"))

    found = {d.table: d.problem for d in compare_outputs(spark, str(tmp_path / "a"), str(tmp_path / "b"))}

    assert found == {"users": "only in A", "sessions": "columns differ: [('aps', 'double')]"}
