"""A run killed half way, or two runs started together, still leave the tables an uninterrupted run leaves.

These start the job as its own process (`python -m jobs run`), as a scheduler would, so it can be SIGKILLed.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.testing import assertDataFrameEqual

from tests.helpers import spark_submit_args
from tests.test_incremental_runs import TABLES, event, job
from tests.test_pipeline import run, table, write_events

ROOT = Path(__file__).resolve().parent.parent
HISTORY = [event("u1", "e1", "2026-11-02T10:00:00"), event("u1", "e2", "2026-11-02T23:50:00"),
           event("u2", "e3", "2026-11-02T12:00:00")]
# Tuesday continues u1's Monday session and adds sessions, so every table changes when Tuesday runs.
TUESDAY = [event("u1", "e4", "2026-11-03T00:10:00"), event("u1", "e5", "2026-11-03T09:00:00"),
           event("u2", "e6", "2026-11-03T12:00:00"), event("u3", "e7", "2026-11-03T13:00:00")]


def start_job(config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jobs", "run", "--config", str(config), "--date", "2026-11-03"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "SESSIONLAKE_DRIVER_MEMORY": "1g", "PYSPARK_SUBMIT_ARGS": spark_submit_args()},
    )


def kill_after(process: subprocess.Popen, marker: str) -> str | None:
    """SIGKILL the job as soon as it logs a line containing `marker` while processing its own days (after any
    repair of an earlier run); its output if it finished first."""
    lines, own_days = [], False
    for line in process.stdout:
        lines.append(line)
        own_days = own_days or "stored sessions v" in line  # logged when the run starts on its own days
        if own_days and marker in line:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return None
    process.wait()
    return "".join(lines[-40:])


def prepared(spark, root: Path) -> Path:
    config = job(root)
    write_events(spark, root / "events", HISTORY + TUESDAY)
    assert run(config, "--date", "2026-11-02") == 0
    return config


@pytest.fixture(scope="module")
def uninterrupted(spark, tmp_path_factory) -> Path:
    """The tables Monday then Tuesday leave when nothing goes wrong: the reference for both tests."""
    root = tmp_path_factory.mktemp("uninterrupted")
    assert run(prepared(spark, root), "--date", "2026-11-03") == 0
    return root


def assert_same_tables(spark, root: Path, expected_root: Path) -> None:
    for name in TABLES:
        assertDataFrameEqual(table(spark, root, name), table(spark, expected_root, name))


def test_a_run_killed_at_several_points_then_rerun_equals_an_uninterrupted_run(spark, tmp_path, uninterrupted):
    config = prepared(spark, tmp_path / "killed")

    # Killed after its sessions write; the rerun repairs it, then is killed after its own users write; the next
    # repairs that one and is killed after its kpis write, before its runs row is closed. The last rerun, which
    # nothing kills, runs in this process: it finds the killed run's row as a scheduler's next run would.
    for marker in ("write sessions: sessions written", "merge users: new", "compute and write KPIs: periods"):
        finished_output = kill_after(start_job(config), marker)
        assert finished_output is None, f"the job finished before logging {marker!r}:\n{finished_output}"
    assert run(config, "--date", "2026-11-03") == 0

    assert_same_tables(spark, tmp_path / "killed", uninterrupted)
    statuses = [r.status for r in table(spark, tmp_path / "killed", "runs").orderBy("started_at").collect()]
    assert statuses.count("repaired") == 3 and statuses[-1] == "succeeded"


def test_two_runs_of_the_same_day_started_together_leave_correct_tables(spark, tmp_path, uninterrupted):
    config = prepared(spark, tmp_path / "concurrent")

    first, second = start_job(config), start_job(config)
    outputs = [process.communicate()[0] for process in (first, second)]

    codes = sorted([first.returncode, second.returncode])
    # Either both succeed (one after the other), or one stops with the conflict error and writes nothing.
    assert codes in ([0, 0], [0, 3]), outputs
    if codes == [0, 3]:
        assert any("is writing to" in output and "this run stopped before writing its days" in output
                   for output in outputs)
    assert_same_tables(spark, tmp_path / "concurrent", uninterrupted)
