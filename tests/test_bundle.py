"""The Databricks Asset Bundle cannot be deployed here: these tests check what a deploy would rely on. The bundle
parses, its wheel tasks name a package and entry point that the built wheel has, and the parameters they pass
are accepted by the command line."""

from __future__ import annotations

import re
import tomllib
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


def _resolve(text: str, bundle: dict, job: dict, given: dict[str, str] | None = None) -> str:
    # What Databricks substitutes: bundle variables and paths at deploy, dynamic values when the job runs (job
    # parameters: their defaults, or the values a run is given).
    variables = {name: str(spec["default"]) for name, spec in bundle["variables"].items()}
    job_parameters = {p["name"]: p["default"] for p in job.get("parameters", [])} | (given or {})
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
    assert (artifact["type"], artifact["build"], artifact["path"]) == ("whl", "rm -rf dist && python -m build --wheel", ".")
    (library,) = [lib["whl"] for lib in task["libraries"] if "whl" in lib]
    assert (path.parent / library).resolve().parent == ROOT / "dist"
    assert wheel.match(Path(library).name)


def test_installing_the_wheel_on_a_cluster_leaves_its_spark_and_delta_alone(wheel):
    metadata, _ = _metadata(wheel)
    required = metadata.get_all("Requires-Dist")

    unconditional = {re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in required if "extra ==" not in r}
    assert unconditional == {"pyyaml", "pydantic", "scipy"}
    assert any(r.startswith("pyspark==4.2.0") and 'extra == "spark"' in r for r in required)


def _task(bundle: dict, name: str, key: str = "sessionize") -> dict:
    _, job = bundle["jobs"][name]
    (task,) = [task for task in job["tasks"] if task["task_key"] == key]
    return task


def _task_parameters(name: str, given: dict[str, str] | None = None, key: str = "sessionize") -> list[str]:
    bundle = _bundle()
    _, job = bundle["jobs"][name]
    return [_resolve(p, bundle, job, given) for p in _task(bundle, name, key)["python_wheel_task"]["parameters"]]


@pytest.mark.parametrize(
    "name, given, days, complete_through",
    [
        # The day before the trigger's; the partitions it waited for have landed, up to that day.
        ("sessionlake_daily", None, (date(2026, 11, 24), date(2026, 11, 24)), date(2026, 11, 24)),
        ("sessionlake_backfill", {"from": "2026-10-01", "to": "2026-10-31"}, (date(2026, 10, 1), date(2026, 10, 31)),
         None),
    ],
)
def test_a_task_passes_parameters_the_command_line_accepts_with_a_valid_config(name, given, days, complete_through):
    parameters = _task_parameters(name, given)

    args = parse_args(parameters)

    assert args.command == "run"
    assert (args.first_day, args.last_day) == days
    assert args.complete_through == complete_through
    config = load_config(args.config)
    assert config.output.catalog == "main.analytics"


def test_a_backfill_run_without_its_range_is_refused(capsys):
    # Run now without parameters must not silently reprocess some default week.
    with pytest.raises(SystemExit) as stopped:
        parse_args(_task_parameters("sessionlake_backfill"))
    assert stopped.value.code == 2
    assert "argument --from: '' is not a date" in capsys.readouterr().err


def test_the_daily_job_writes_the_report_next_to_the_tables_once_they_are_up_to_date():
    task = _task(_bundle(), "sessionlake_daily", "report")

    args = parse_args(_task_parameters("sessionlake_daily", key="report"))

    assert task["depends_on"] == [{"task_key": "sessionize"}]
    assert args.command == "report" and str(args.html).startswith("/Volumes/main/analytics/")
    assert load_config(args.config).output.catalog == "main.analytics"  # read through Spark: no deltalake needed
    # The charting packages it installs are those of the report extra, at the same versions.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = {re.split(r"[<>=]", r)[0]: r for r in project["optional-dependencies"]["report"]}
    installed = [lib["pypi"]["package"] for lib in task["libraries"] if "pypi" in lib]
    assert installed == [extra["altair"], extra["vl-convert-python"]]
