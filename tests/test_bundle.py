"""The Databricks Asset Bundle cannot be deployed here: these tests check what a deploy would rely on. The bundle
parses, its wheel tasks name a package and entry point that the built wheel has, and the parameters they pass
are accepted by the command line."""

from __future__ import annotations

import re
import zipfile
from datetime import date
from email.parser import Parser
from pathlib import Path

import pytest
import yaml

from jobs.cli import parse_args
from jobs.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TRIGGER_DATE = "2026-11-25"


def _bundle() -> dict:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    jobs = {}
    for pattern in bundle["include"]:
        for path in sorted(ROOT.glob(pattern)):
            for name, job in yaml.safe_load(path.read_text())["resources"]["jobs"].items():
                jobs[name] = (path, job)
    assert jobs, "the bundle includes no job"
    bundle["jobs"] = jobs
    return bundle


def _wheel_tasks():
    return [
        (name, path, job, task)
        for name, (path, job) in _bundle()["jobs"].items()
        for task in job["tasks"]
        if "python_wheel_task" in task
    ]


def _resolve(text: str, bundle: dict, job: dict) -> str:
    # What Databricks substitutes: bundle variables and paths at deploy, dynamic values when the job runs.
    variables = {name: str(spec["default"]) for name, spec in bundle["variables"].items() if "default" in spec}
    job_parameters = {p["name"]: p["default"] for p in job.get("parameters", [])}
    text = text.replace("${workspace.file_path}", str(ROOT))  # the bundle's files, synced to the workspace
    text = re.sub(r"\$\{var\.(\w+)\}", lambda m: _resolve(variables[m.group(1)], bundle, job), text)
    text = text.replace("{{job.trigger.time.iso_date}}", TRIGGER_DATE)
    text = re.sub(r"\{\{job\.parameters\.(\w+)\}\}", lambda m: job_parameters[m.group(1)], text)
    assert "${" not in text and "{{" not in text, f"an unresolved reference in {text!r}"
    return text


def _metadata(wheel: Path) -> tuple[dict, str]:
    with zipfile.ZipFile(wheel) as archive:
        info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        entry_points = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        return Parser().parsestr(archive.read(info).decode()), archive.read(entry_points).decode()


def test_the_bundle_defines_a_scheduled_daily_job_and_a_backfill_job():
    jobs = _bundle()["jobs"]

    assert set(jobs) == {"sessionlake_daily", "sessionlake_backfill"}
    assert jobs["sessionlake_daily"][1]["schedule"]["quartz_cron_expression"]
    assert "schedule" not in jobs["sessionlake_backfill"][1]
    assert all(job["max_concurrent_runs"] == 1 for _, job in jobs.values())


@pytest.mark.parametrize("name, path, job, task", _wheel_tasks(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_wheel_task_runs_an_entry_point_of_the_built_wheel(wheel, name, path, job, task):
    bundle = _bundle()
    metadata, entry_points = _metadata(wheel)
    wheel_task = task["python_wheel_task"]

    assert wheel_task["package_name"] == metadata["Name"]
    assert re.search(rf"^{re.escape(wheel_task['entry_point'])} = jobs\.cli:entry_point$", entry_points, re.MULTILINE)
    # The task installs the wheel the bundle's artifact builds, with the build the test suite uses.
    artifact = bundle["artifacts"]["sessionlake"]
    assert (artifact["type"], artifact["build"], artifact["path"]) == ("whl", "python -m build --wheel", ".")
    (library,) = [lib["whl"] for lib in task["libraries"]]
    assert (path.parent / library).resolve().parent == ROOT / "dist"
    assert wheel.match(Path(library).name)


def test_installing_the_wheel_on_a_cluster_leaves_its_spark_and_delta_alone(wheel):
    metadata, _ = _metadata(wheel)
    required = metadata.get_all("Requires-Dist")

    unconditional = {re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in required if "extra ==" not in r}
    assert unconditional == {"pyyaml", "pydantic"}
    assert any(r.startswith("pyspark==4.2.0") and 'extra == "spark"' in r for r in required)


@pytest.mark.parametrize(
    "name, days",
    [
        ("sessionlake_daily", (date(2026, 11, 24), date(2026, 11, 24))),  # the day before the trigger's date
        ("sessionlake_backfill", (date(2026, 11, 1), date(2026, 11, 7))),  # the job parameters' defaults
    ],
)
def test_a_task_passes_parameters_the_command_line_accepts_with_a_valid_config(name, days):
    bundle = _bundle()
    _, job = bundle["jobs"][name]
    (task,) = job["tasks"]
    parameters = [_resolve(p, bundle, job) for p in task["python_wheel_task"]["parameters"]]

    args = parse_args(parameters)

    assert args.command == "run"
    assert (args.first_day, args.last_day) == days
    config = load_config(args.config)
    assert config.output.catalog == "main.analytics"
