"""One Delta-enabled local Spark for the whole test run."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from delta import configure_spark_with_delta_pip
from pyspark.sql import SparkSession

from tests.helpers import SPARK_SETTINGS

# Spark hands timestamps to Python as naive local datetimes; pinning this process to UTC makes a collected
# 10:00 mean 10:00 UTC on every machine, so expected values below are naive UTC datetimes.
os.environ["TZ"] = "UTC"
time.tzset()


@contextmanager
def _exclusive(name: str) -> Iterator[None]:
    """Hold a lock shared by the suite's parallel workers (pytest-xdist runs one process per worker)."""
    with open(Path(tempfile.gettempdir()) / f"sessionlake-tests-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def spark(tmp_path_factory) -> Iterator[SparkSession]:
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("sessionlake-tests")
        # Managed (catalog) tables go to a temporary warehouse, in the session's in-memory catalog.
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("warehouse")))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
    )
    for key, value in SPARK_SETTINGS.items():
        builder = builder.config(key, value)
    # Each worker starts its own JVM; two at once must not resolve Delta's jars into the shared Ivy cache together.
    with _exclusive("ivy"):
        session = configure_spark_with_delta_pip(builder).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The package built as users build it (python -m build), once per test run."""
    out = tmp_path_factory.mktemp("dist")
    root = Path(__file__).resolve().parents[1]
    # setuptools builds in the source tree (build/, *.egg-info): one worker at a time.
    with _exclusive("build"):
        subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(root)], check=True,
                       capture_output=True)
    (built,) = out.glob("sessionlake-*.whl")
    return built


@pytest.fixture
def job(tmp_path) -> tuple[Path, Path]:
    """(root, config): a job reading parquet events under root/events and writing its tables under root/out."""
    config = tmp_path / "job.yaml"
    config.write_text(
        f"input: {{path: {tmp_path / 'events'}}}\n"
        f"output: {{path: {tmp_path / 'out'}}}\n"
        "reporting: {segments: [platform, country]}\n"
    )
    return tmp_path, config
