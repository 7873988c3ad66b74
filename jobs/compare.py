"""Two outputs' tables -> the rows that differ between them: how a change for speed proves the results stayed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import reduce
from operator import and_

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, FloatType, MapType, StructType

from jobs.config import Table
from jobs.read import read_table

log = logging.getLogger(__name__)

# The tables whose rows are results; quarantine and runs carry run ids and times, which differ between any two runs.
COMPARED = (Table.SESSIONS, Table.USERS, Table.KPIS, Table.ACTION_KPIS, Table.ASSIGNMENTS, Table.EXPERIMENTS)
# Doubles are equal within this relative difference: a sum in another order differs in its last bits.
RELATIVE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class TableDifference:
    """How one table differs between outputs A and B: a schema or presence problem, or rows only in one of them."""

    table: str
    problem: str | None  # the table is missing from one side, or its columns differ
    only_in_a: DataFrame | None = None
    only_in_b: DataFrame | None = None


def _comparable(frame: DataFrame) -> DataFrame:
    # Set operations refuse maps; a map's entries in key order compare the same way.
    return frame.select(*[
        F.array_sort(F.map_entries(field.name)).alias(field.name) if isinstance(field.dataType, MapType)
        else F.col(field.name)
        for field in frame.schema.fields
    ])


def _is_double(field) -> bool:
    return isinstance(field.dataType, (DoubleType, FloatType))


def _has_double_inside(field) -> bool:
    return isinstance(field.dataType, (ArrayType, StructType, MapType)) and "double" in field.dataType.simpleString()


def _close(a: Column, b: Column) -> Column:
    # Both null, both NaN, or within the tolerance of the larger magnitude.
    within = F.abs(a - b) <= F.lit(RELATIVE_TOLERANCE) * F.greatest(F.abs(a), F.abs(b))
    return (a.isNull() & b.isNull()) | (F.isnan(a) & F.isnan(b)) | F.coalesce(within, F.lit(False))


def rows_only_in(a: DataFrame, b: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(rows of `a` not in `b`, rows of `b` not in `a`), counting copies (EXCEPT ALL both ways).

    Non-double columns must be equal (nulls equal nulls); a row that differs from one of the other side's only in
    top-level doubles within RELATIVE_TOLERANCE is not a difference. `b` is read in `a`'s column order.
    """
    a, b = _comparable(a), _comparable(b.select(*a.columns))
    only_a, only_b = a.exceptAll(b), b.exceptAll(a)
    doubles = [field.name for field in a.schema.fields if _is_double(field)]
    if not doubles:
        return only_a, only_b
    exact = [name for name in a.columns if name not in doubles]

    def matched(left: DataFrame, right: DataFrame) -> Column:
        same = [left[name].eqNullSafe(right[name]) for name in exact]
        return reduce(and_, same + [_close(left[name], right[name]) for name in doubles])

    # The differences are few rows: each side's are matched against the other side's only.
    left, right = only_a.alias("left"), only_b.alias("right")
    return (
        left.join(right, on=matched(left, right), how="left_anti"),
        right.join(left, on=matched(right, left), how="left_anti"),
    )


def compare_outputs(spark: SparkSession, output_a: str, output_b: str) -> list[TableDifference]:
    """Every difference between the result tables (COMPARED) of the outputs in folders `output_a` and `output_b`;
    empty when they hold the same rows. A table absent from both is not compared."""
    differences = []
    for table in COMPARED:
        path_a, path_b = f"{output_a.rstrip('/')}/{table.value}", f"{output_b.rstrip('/')}/{table.value}"
        a, b = read_table(spark, path_a), read_table(spark, path_b)
        if a is None and b is None:
            continue
        if a is None or b is None:
            differences.append(TableDifference(table.value, f"only in {'B' if a is None else 'A'}"))
            continue
        columns_a = {field.name: field.dataType.simpleString() for field in a.schema.fields}
        columns_b = {field.name: field.dataType.simpleString() for field in b.schema.fields}
        if columns_a != columns_b:
            differing = sorted(set(columns_a.items()) ^ set(columns_b.items()))
            differences.append(TableDifference(table.value, f"columns differ: {differing}"))
            continue
        if any(_has_double_inside(field) for field in a.schema.fields):
            log.warning("%s: doubles inside nested columns are compared exactly", table.value)
        only_a, only_b = rows_only_in(a, b)
        if not only_a.isEmpty() or not only_b.isEmpty():
            differences.append(TableDifference(table.value, None, only_a, only_b))
    return differences

