"""Compare the result tables of two sessionlake outputs: sessions, users, kpis, action_kpis, assignments, experiments.

    .venv/bin/python scripts/compare_outputs.py OUT_A OUT_B [--show 20]

Non-double columns must be equal, doubles within 1e-12 relative; rows are compared both ways with their copies
(EXCEPT ALL). Prints each table's differences (a missing table, other columns, or rows only in one output, the
first --show of each) and exits 1 if there is any, 0 when the outputs hold the same rows.
"""

from __future__ import annotations

import argparse
import sys

from jobs.compare import COMPARED, compare_outputs
from jobs.spark_session import get_spark


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("output_a", help="an output folder (output.path)")
    parser.add_argument("output_b", help="the output folder to compare it with")
    parser.add_argument("--show", type=int, default=20, help="rows shown of each side's differences")
    args = parser.parse_args()
    spark = get_spark("sessionlake-compare")
    differences = compare_outputs(spark, args.output_a, args.output_b)
    for difference in differences:
        if difference.problem:
            print(f"{difference.table}: {difference.problem}")
            continue
        for side, rows in (("A", difference.only_in_a), ("B", difference.only_in_b)):
            count = rows.count()  # the differences only: few rows when the outputs agree almost everywhere
            if count:
                print(f"{difference.table}: {count:,} rows only in {side}")
                rows.show(args.show, truncate=False, vertical=False)
    compared = ", ".join(table.value for table in COMPARED)
    print(f"{len(differences)} of the tables differ ({compared})" if differences else f"no difference ({compared})")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
