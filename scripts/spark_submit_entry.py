"""spark-submit's entry script: the `sessionlake` command, with the package from --py-files (the built wheel).

    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 --py-files dist/sessionlake-0.1.0-py3-none-any.whl \
        scripts/spark_submit_entry.py run --config conf/sessionlake.yaml --date 2026-11-01

The driver's Python needs the wheel's dependencies (pip install the wheel there); executors need nothing.
"""

from jobs.cli import entry_point

if __name__ == "__main__":
    entry_point()
