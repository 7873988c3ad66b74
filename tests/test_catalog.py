"""Catalog tables: input read from a table name, output written as managed Delta tables in a schema (here the
session's spark_catalog, with a temporary warehouse)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable as DeltaRsTable
from pyspark.testing import assertDataFrameEqual

from jobs import pipeline
from jobs.cli import main
from jobs.config import OutputSpec, Table, TableName, load_config
from jobs.errors import OutputError
from jobs.read import WriterStart, read_table, writer_start
from jobs.report_read import read_report_tables
from jobs.sample import generate_events, write_sample
from jobs.write import restore_table

DAY = date(2026, 11, 2)


@pytest.fixture
def schema(spark):
    """A new, empty schema in the session's catalog, dropped with its tables afterwards."""
    name = f"analytics_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE SCHEMA {name}")
    yield name
    spark.sql(f"DROP SCHEMA {name} CASCADE")


def test_catalog_tables_hold_the_rows_that_path_tables_hold(spark, schema, tmp_path):
    events = generate_events(spark, users=40, days=2, first_day=DAY)  # its experiment starts on the second day
    write_sample(events, str(tmp_path / "events"))
    events.write.format("delta").partitionBy("event_date").saveAsTable(f"{schema}.events")
    # The sample's events carry an experiment: every table is written, the experiments' two included.
    experiments = "experiments: {experiment_column: experiment, variant_column: variant}\n"
    (tmp_path / "catalog.yaml").write_text(
        f"input: {{table: {schema}.events}}\noutput: {{catalog: {schema}}}\n{experiments}"
    )
    (tmp_path / "paths.yaml").write_text(
        f"input: {{path: {tmp_path / 'events'}}}\noutput: {{path: {tmp_path / 'out'}}}\n{experiments}"
    )

    pipeline.run(spark, load_config(tmp_path / "catalog.yaml"), DAY, DAY + timedelta(days=1))
    pipeline.run(spark, load_config(tmp_path / "paths.yaml"), DAY, DAY + timedelta(days=1))

    for table in Table:
        name = f"spark_catalog.{schema}.{table.value}"
        assert spark.catalog.getTable(name).tableType == "MANAGED"
        detail = spark.sql(f"DESCRIBE DETAIL {name}").first()
        assert detail["format"] == "delta"
        if table is Table.RUNS:
            continue  # one row per run: ids and times differ
        in_catalog = spark.read.table(name).drop("run_id")
        assertDataFrameEqual(in_catalog, spark.read.format("delta").load(str(tmp_path / "out" / table.value)).drop("run_id"))
        # A managed table is a Delta table in the warehouse: other Delta readers read it from its location.
        assert DeltaRsTable(detail["location"]).to_pyarrow_table().num_rows == in_catalog.count() > 0


def test_the_report_reads_catalog_tables_through_spark_as_delta_rs_reads_their_files(spark, schema, tmp_path):
    write_sample(generate_events(spark, users=20, days=2, first_day=DAY), str(tmp_path / "events"))
    (tmp_path / "job.yaml").write_text(
        f"input: {{path: {tmp_path / 'events'}}}\noutput: {{catalog: {schema}}}\n"
        "experiments: {experiment_column: experiment, variant_column: variant}\n"
    )
    pipeline.run(spark, load_config(tmp_path / "job.yaml"), DAY, DAY + timedelta(days=1))

    # In a session zone other than UTC: the runs' start times must still come out in UTC, as delta-rs gives them.
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
    try:
        through_spark = read_report_tables(OutputSpec(catalog=schema), DAY + timedelta(days=1), None, spark)
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    # The managed tables' files, in the schema's folder of the warehouse, read with delta-rs.
    folder = Path(spark.sql(f"DESCRIBE DETAIL {schema}.kpis").first()["location"].removeprefix("file:")).parent
    of_files = read_report_tables(OutputSpec(path=str(folder)), DAY + timedelta(days=1))

    for name in ("kpis", "action_kpis", "experiments", "runs"):
        spark_rows, files_rows = getattr(through_spark, name), getattr(of_files, name)
        assert len(spark_rows) > 0, name
        key = [c for c in spark_rows.columns if c not in ("quarantine_reasons",)]
        pd.testing.assert_frame_equal(spark_rows.sort_values(key).reset_index(drop=True)[key],
                                      files_rows.sort_values(key).reset_index(drop=True)[key], check_dtype=False)
    assert main(["report", "--config", str(tmp_path / "job.yaml"), "--html", str(tmp_path / "report.html")]) == 0
    assert f"sessionlake: {schema}" in (tmp_path / "report.html").read_text()


def test_a_rerun_into_catalog_tables_replaces_its_day(spark, schema, tmp_path):
    write_sample(generate_events(spark, users=20, days=1, first_day=DAY), str(tmp_path / "events"))
    (tmp_path / "job.yaml").write_text(f"input: {{path: {tmp_path / 'events'}}}\noutput: {{catalog: {schema}}}\n")
    config = load_config(tmp_path / "job.yaml")

    (first_run,) = pipeline.run(spark, config, DAY, DAY)
    first = spark.read.table(f"{schema}.sessions").collect()
    (second_run,) = pipeline.run(spark, config, DAY, DAY)

    assertDataFrameEqual(spark.read.table(f"{schema}.sessions"), first)
    assert spark.read.table(f"{schema}.runs").count() == 2
    # What a repair and an undo rely on works on a catalog table: the first tagged commit of a run (the table's
    # creation, for the first run), the version before it, reading that version, and restoring it.
    sessions = TableName(f"{schema}.sessions")
    assert writer_start(spark, sessions, first_run.run_id) == WriterStart(0, None)
    second = writer_start(spark, sessions, second_run.run_id)
    assert second.first_commit > second.version_read > 0
    assertDataFrameEqual(read_table(spark, sessions, second.version_read), first)
    spark.sql(f"DELETE FROM {sessions}")
    restore_table(spark, sessions, second.version_read)
    assertDataFrameEqual(spark.read.table(sessions), first)


def test_a_missing_output_schema_is_an_error_before_anything_is_written(spark, tmp_path):
    write_sample(generate_events(spark, users=5, days=1, first_day=DAY), str(tmp_path / "events"))
    (tmp_path / "job.yaml").write_text(f"input: {{path: {tmp_path / 'events'}}}\noutput: {{catalog: no_such_schema}}\n")

    with pytest.raises(OutputError, match=r"output.catalog 'no_such_schema': no such schema.*\(CREATE SCHEMA no_such_schema\)"):
        pipeline.run(spark, load_config(tmp_path / "job.yaml"), DAY, DAY)
    # Nothing was written anywhere: no schema was created, and no table went to a folder named like the table.
    assert not spark.catalog.databaseExists("no_such_schema")
    assert not list(Path.cwd().glob("no_such_schema*"))
