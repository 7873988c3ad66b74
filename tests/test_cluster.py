"""The job as data engineers submit it: the built wheel on a real Spark standalone cluster (master and worker on
127.0.0.1, from the pyspark installation), giving the same tables as a local-mode run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pyspark.find_spark_home import _find_spark_home
from pyspark.testing import assertDataFrameEqual

from jobs import pipeline
from jobs.config import Table, load_config
from jobs.sample import generate_events, write_sample

ROOT = Path(__file__).resolve().parents[1]
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"
FIRST, LAST = date(2026, 11, 1), date(2026, 11, 2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    # Its own process group, so stopping it also stops what it started (a worker's executors).
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_DAEMON_MEMORY": "512m"}
    spark_class = Path(_find_spark_home()) / "bin" / "spark-class"
    with log.open("w") as out:
        return subprocess.Popen([str(spark_class), *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
            return json.load(response)["aliveworkers"]
    except OSError:
        return 0


@pytest.fixture(scope="module")
def standalone_master(tmp_path_factory) -> Iterator[str]:
    """The URL of a running standalone master with one worker (2 cores, 2g); both are stopped whatever happens."""
    logs = tmp_path_factory.mktemp("standalone")
    port, ui_port = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    started = []
    try:
        started.append(_start(
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(ui_port)],
            logs / "master.log",
        ))
        started.append(_start(
            ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
             "--webui-port", str(_free_port()), "--work-dir", str(logs / "work"), url],
            logs / "worker.log",
        ))
        deadline = time.monotonic() + 120
        while _alive_workers(ui_port) < 1:
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                pytest.fail(f"the standalone cluster did not start: see {logs}/master.log and worker.log")
            time.sleep(1)
        yield url
    finally:
        for process in reversed(started):
            _stop(process)


def _submit(master: str, wheel: Path, config: Path, workdir: Path) -> subprocess.CompletedProcess:
    # From a folder outside the repository, so `jobs` can only come from the wheel given as --py-files.
    spark_submit = Path(_find_spark_home()) / "bin" / "spark-submit"
    command = [
        str(spark_submit), "--master", master, "--packages", DELTA_PACKAGE, "--py-files", str(wheel),
        "--conf", "spark.sql.shuffle.partitions=3", "--conf", "spark.executor.memory=1g",
        "--conf", "spark.sql.session.timeZone=UTC",
        str(ROOT / "scripts" / "spark_submit_entry.py"),
        "run", "--config", str(config), "--from", FIRST.isoformat(), "--to", LAST.isoformat(),
    ]
    env = {key: value for key, value in os.environ.items() if key not in ("PYSPARK_SUBMIT_ARGS", "PYTHONPATH")}
    env |= {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)


def test_spark_submit_on_a_standalone_cluster_writes_the_tables_a_local_run_writes(
    spark, standalone_master, wheel, tmp_path
):
    write_sample(generate_events(spark, users=120, days=2, first_day=FIRST), str(tmp_path / "events"))
    for name in ("cluster", "local"):
        (tmp_path / f"{name}.yaml").write_text(
            f"input: {{path: {tmp_path / 'events'}}}\noutput: {{path: {tmp_path / name}}}\n"
        )

    done = _submit(standalone_master, wheel, tmp_path / "cluster.yaml", tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    pipeline.run(spark, load_config(tmp_path / "local.yaml"), FIRST, LAST)

    # The driver ran the wheel's code on the cluster, with the settings given to spark-submit left as they were.
    # (spark-submit passes the Python driver's stderr, where the job logs, to its own stdout.)
    assert f"jobs from {wheel}" in done.stdout
    assert f"master {standalone_master}" in done.stdout
    assert "shuffle partitions 3" in done.stdout
    assert "rows read" in done.stdout
    # A line per stage, with its day range, row counts, seconds and costs.
    costs = r"Spark jobs \d+, Delta reads \d+, Delta commits \d+"
    merge_line = rf"\({FIRST}\.\.{LAST}\): merge users: new \d+, updated 0, deleted 0 \(\d+\.\d s; {costs}\)"
    assert re.search(merge_line, done.stdout)
    for table in (Table.SESSIONS, Table.USERS, Table.KPIS, Table.ACTION_KPIS, Table.QUARANTINE):
        cluster = spark.read.format("delta").load(str(tmp_path / "cluster" / table.value)).drop("run_id")
        local = spark.read.format("delta").load(str(tmp_path / "local" / table.value)).drop("run_id")
        assert local.count() > 0
        assertDataFrameEqual(cluster, local)
