"""The HTML report (issue 11, in progress): headline tiles, trend charts, and a page built from the job's tables."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from jobs.cli import main
from jobs.report import (
    ReportTables,
    action_mix_chart,
    Tile,
    build_report,
    format_change,
    headline_tiles,
    interval_chart,
    trend_chart,
)
from tests.test_experiments import TAGGED_MON_TUE, with_tagged_events
from tests.test_pipeline import run

CHROMIUM = "/usr/bin/chromium"
# Vega's items of data: the points, the lines and the error bars (not axes, grid lines or legends).
DATA_MARKS = "g.mark-symbol.role-mark > path, g.mark-line.role-mark > path, g.mark-rule.role-mark > line"

KPI_COLUMNS = ["period", "period_start", "dimension", "dimension_value", "sessions", "users", "actions", "aps", "spu",
               "is_complete"]
ENGAGEMENT = {"median_duration_seconds": 60.0, "p90_duration_seconds": 600.0, "bounce_rate": 0.1,
              "engagement_rate": 0.8, "conversion_rate": 0.05}


def kpis(rows) -> pd.DataFrame:
    """(period, start, sessions, users, actions, is_complete) rows of dimension `all`, with aps and spu (and the
    same engagement figures everywhere)."""
    return pd.DataFrame(
        [(period, start, "all", "all", sessions, users, actions, actions / sessions, sessions / users, complete)
         for period, start, sessions, users, actions, complete in rows],
        columns=KPI_COLUMNS,
    ).assign(**ENGAGEMENT)


NOV = [
    ("day", date(2026, 11, 1), 10, 5, 16, True),   # APS 1.6, SPU 2.0
    ("day", date(2026, 11, 2), 12, 4, 24, True),   # APS 2.0, SPU 3.0
    ("week", date(2026, 10, 26), 10, 5, 16, True),
    ("week", date(2026, 11, 2), 12, 4, 24, False),  # not complete: not a headline
    ("month", date(2026, 11, 1), 22, 7, 40, False),
]


def test_headline_tiles_show_the_latest_complete_period_of_each_kind_and_its_change_on_the_one_before():
    tiles = headline_tiles(kpis(NOV))

    # Day 2 against day 1: APS 2.0 / 1.6 = +25%, SPU 3.0 / 2.0 = +50%, sessions 12 / 10 = +20%, users 4 / 5 = -20%.
    # The only complete week has no week before it; no month is complete.
    assert tiles == [
        Tile("day", date(2026, 11, 2), "APS", 2.0, pytest.approx(0.25)),
        Tile("day", date(2026, 11, 2), "SPU", 3.0, pytest.approx(0.5)),
        Tile("day", date(2026, 11, 2), "Sessions", 12.0, pytest.approx(0.2)),
        Tile("day", date(2026, 11, 2), "Users", 4.0, pytest.approx(-0.2)),
        Tile("week", date(2026, 10, 26), "APS", 1.6, None),
        Tile("week", date(2026, 10, 26), "SPU", 2.0, None),
        Tile("week", date(2026, 10, 26), "Sessions", 10.0, None),
        Tile("week", date(2026, 10, 26), "Users", 5.0, None),
    ]


def test_a_change_is_only_against_the_period_just_before():
    tiles = headline_tiles(kpis([("day", date(2026, 11, 1), 10, 5, 16, True), ("day", date(2026, 11, 3), 12, 4, 24, True)]))

    assert {tile.period_start for tile in tiles} == {date(2026, 11, 3)}
    assert all(tile.change is None for tile in tiles)  # 2 November was never run: no change to show


def test_incomplete_periods_are_marked_in_the_trend_data():
    spec = trend_chart(kpis(NOV), "week", "aps", "APS").to_dict()

    values = next(iter(spec["datasets"].values()))
    assert values == [
        {"period_start": "2026-10-26", "dimension": "all", "dimension_value": "all", "value": 1.6, "status": "complete"},
        {"period_start": "2026-11-02", "dimension": "all", "dimension_value": "all", "value": 2.0,
         "status": "incomplete"},
    ]


def test_the_reader_picks_the_breakdown_from_the_kpis_dimensions_all_users_first():
    rows = kpis(NOV)
    by_platform = rows.assign(dimension="platform", dimension_value="ios")
    by_type = rows.assign(dimension="user_type", dimension_value="new")
    spec = trend_chart(pd.concat([by_type, rows, by_platform]), "day", "spu", "SPU").to_dict()

    (picker,) = spec["params"]
    assert (picker["value"], picker["bind"]["options"]) == ("all", ["all", "platform", "user_type"])
    # Each layer shows the rows of the picked dimension only, a line per value.
    for layer in spec["layer"]:
        assert {"filter": "(datum.dimension === breakdown)"} in layer["transform"]
    assert len(next(iter(spec["datasets"].values()))) == 3 * 2  # the days of all three dimensions


def test_the_page_shows_the_tiles_for_people_and_inlines_every_script():
    page = build_report(ReportTables(kpis=kpis(NOV)), "sessionlake: test", date(2026, 11, 3), "/* vega bundle */")

    assert '<div class="value">2.00</div><div class="change up">+25.0% on the period before</div>' in page
    assert '<div class="value">4</div><div class="change down">-20.0% on the period before</div>' in page
    assert page.count('<div class="chart" id="trend-') == 6  # APS and SPU by day, week and month
    assert page.count('<div class="chart" id="engagement-') == 5  # duration median and p90, three rates
    assert page.count("vegaEmbed(") == 11
    assert "/* vega bundle */" in page
    assert not re.search(r"<(script|link)[^>]*(src|href)=", page)  # nothing fetched: opens from disk offline


def test_a_missing_kpis_table_is_a_note_not_an_error():
    page = build_report(ReportTables(kpis=None), "sessionlake: test", date(2026, 11, 3), "")

    assert "no kpis table yet: run the job first" in page
    assert "vegaEmbed(" not in page


def test_changes_are_written_for_people():
    assert (format_change(0.0512), format_change(-0.2), format_change(None)) == (
        "+5.1% on the period before", "-20.0% on the period before", "no previous period"
    )


@pytest.fixture(scope="module")
def job_report(spark, tmp_path_factory) -> Path:
    """The job's tables for Monday and Tuesday, with an experiment read off the events, and the report of them:
    the tables' folder, with report.html beside it."""
    root = tmp_path_factory.mktemp("report")
    config = root / "job.yaml"
    config.write_text(f"input: {{path: {root / 'events'}}}\noutput: {{path: {root / 'out'}}}\n"
                      "reporting: {segments: [platform, country]}\n")
    with_tagged_events(spark, (root, config), TAGGED_MON_TUE)
    assert run(config, "--from", "2026-11-02", "--to", "2026-11-03") == 0
    assert main(["report", "--config", str(config), "--out", str(root / "report.html")]) == 0
    return root


def test_a_report_of_the_jobs_tables_shows_their_numbers(spark, job_report):
    page = (job_report / "report.html").read_text()
    days = {row["period_start"]: row for row in spark.read.format("delta").load(str(job_report / "out" / "kpis"))
            .where("period = 'day' AND dimension = 'all'").collect()}
    tuesday, monday = days[date(2026, 11, 3)], days[date(2026, 11, 2)]

    assert "<h3>Day of 2026-11-03</h3>" in page  # the latest complete day, against Monday
    for label, column, shown in (("APS", "aps", "{:,.2f}"), ("SPU", "spu", "{:,.2f}"), ("Sessions", "sessions", "{:,}"),
                                 ("Users", "users", "{:,}")):
        change = format_change(tuesday[column] / monday[column] - 1)
        assert f'<div class="label">{label}</div><div class="value">{shown.format(tuesday[column])}</div>' in page
        assert change in page
    assert "<h3>exp: 2026-11-02 to 2026-11-03, control A</h3>" in page
    assert "vegaEmbed" in page and len(page) > 500_000  # the real vega bundle is inlined


def test_the_report_renders_every_chart_in_a_headless_browser_without_errors(job_report):
    # Debian's chromium, which .ci/run installs when it is absent; playwright drives it (it downloads no browser).
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            errors = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto((job_report / "report.html").as_uri())
            page.wait_for_function("[...document.querySelectorAll('.chart')].every(c => c.querySelector('svg'))",
                                   timeout=30_000)
            marks = dict(page.evaluate(f"[...document.querySelectorAll('.chart')].map(c => [c.id, "
                                       f"c.querySelectorAll({json.dumps(DATA_MARKS)}).length])"))
            page.screenshot(path=str(job_report / "report.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.screenshot(path=str(job_report / "report-phone.png"))
            wider = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        finally:
            browser.close()

    assert errors == []
    assert len(marks) == 6 + 5 + 1 + 2 and all(count > 0 for count in marks.values()), marks
    # Two days: two points and their line for all users; two variants: a point and an error bar each.
    assert marks["trend-aps-day"] == 2 + 1
    assert marks["experiment-0-aps"] == 2 + 2
    assert not wider  # nothing wider than a phone's screen but the tables' own scrolling boxes
    assert (job_report / "report.png").stat().st_size > 10_000


def variant(name, is_control, users, spu, aps, lift=None, srm=0.5):
    """A latest, all-users row of the experiments table: intervals ±0.1, the lift's ±0.05, its p 0.04."""
    row = {"experiment_id": "tips", "dimension": "all", "dimension_value": "all", "variant": name,
           "window_start": date(2026, 11, 2), "window_end": date(2026, 11, 8), "is_latest": True,
           "control_variant": "old", "is_control": is_control, "users": users, "sessions": int(users * spu),
           "srm_p_value": srm}
    for metric, value in (("spu", spu), ("aps", aps)):
        row |= {metric: value, f"{metric}_ci_low": value - 0.1, f"{metric}_ci_high": value + 0.1,
                f"{metric}_lift": lift, f"{metric}_lift_ci_low": None if lift is None else lift - 0.05,
                f"{metric}_lift_ci_high": None if lift is None else lift + 0.05,
                f"{metric}_p_value": None if lift is None else 0.04}
    return row


def experiments(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_each_experiment_shows_its_variants_lifts_and_intervals():
    page = build_report(
        ReportTables(kpis=None, experiments=experiments(variant("new", False, 1_010, 2.2, 5.5, lift=0.1),
                                                        variant("old", True, 990, 2.0, 5.0))),
        "t", date(2026, 11, 9), "",
    )

    assert "<h3>tips: 2026-11-02 to 2026-11-08, control old</h3>" in page
    # The control first; the other variant with its lift, the lift's interval and p-value, for SPU then APS.
    assert ("<tr><td>old</td><td>990</td><td>1,980</td><td>2.00</td><td>control</td><td></td><td>5.00</td>"
            "<td>control</td><td></td></tr>") in page
    assert ("<tr><td>new</td><td>1,010</td><td>2,222</td><td>2.20</td><td>+10.0% [+5.0%, +15.0%]</td><td>0.040</td>"
            "<td>5.50</td><td>+10.0% [+5.0%, +15.0%]</td><td>0.040</td></tr>") in page
    assert page.count('id="experiment-0-') == 2 and "sample ratio" not in page


def test_a_sample_ratio_mismatch_is_a_warning_on_the_experiment():
    page = build_report(
        ReportTables(kpis=None, experiments=experiments(variant("new", False, 1_200, 2.2, 5.5, 0.1, srm=0.0002),
                                                        variant("old", True, 990, 2.0, 5.0, srm=0.0002))),
        "t", date(2026, 11, 9), "",
    )

    assert "Users per variant are far from the expected split (sample ratio p = 0.0002)" in page


def test_the_interval_chart_draws_each_variants_estimate_and_interval():
    spec = interval_chart(experiments(variant("old", True, 990, 2.0, 5.0), variant("new", False, 1_010, 2.2, 5.5)),
                          "aps", "APS").to_dict()

    assert next(iter(spec["datasets"].values())) == [
        {"variant": "new", "value": 5.5, "low": 5.4, "high": 5.6},
        {"variant": "old", "value": 5.0, "low": 4.9, "high": 5.1},
    ]
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["errorbar", "point"]


def test_a_missing_experiments_table_is_a_note():
    page = build_report(ReportTables(kpis=None, experiments=None), "t", date(2026, 11, 9), "")

    assert "no experiments table: experiments are not configured" in page


def test_the_action_mix_is_each_names_share_of_the_days_actions():
    rows = pd.DataFrame(
        [("day", date(2026, 11, 1), "all", "all", "view", 0.75, True), ("day", date(2026, 11, 1), "all", "all", "buy",
                                                                        0.25, True),
         ("day", date(2026, 11, 1), "platform", "ios", "view", 1.0, True)],  # a breakdown: not in this chart
        columns=["period", "period_start", "dimension", "dimension_value", "event_name", "share_of_actions",
                 "is_complete"],
    )

    assert next(iter(action_mix_chart(rows).to_dict()["datasets"].values())) == [
        {"period_start": "2026-11-01", "event_name": "buy", "share": 0.25},
        {"period_start": "2026-11-01", "event_name": "view", "share": 0.75},
    ]


def test_data_quality_lists_the_latest_runs_with_where_their_rows_went():
    runs = pd.DataFrame([
        {"started_at": pd.Timestamp("2026-11-03 02:00", tz="UTC"), "first_day": date(2026, 11, 2),
         "last_day": date(2026, 11, 2), "status": "succeeded", "rows_read": 12_345, "rows_deduplicated": 12,
         "rows_quarantined": 3, "quarantine_reasons": [("missing_user_id", 2), ("bad_event_ts", 1)]},
        {"started_at": pd.Timestamp("2026-11-02 02:00", tz="UTC"), "first_day": date(2026, 11, 1),
         "last_day": date(2026, 11, 1), "status": "failed", "rows_read": 0, "rows_deduplicated": 0,
         "rows_quarantined": 0, "quarantine_reasons": []},
    ])

    page = build_report(ReportTables(kpis=None, runs=runs), "t", date(2026, 11, 9), "")

    newest, older = (page.index("2026-11-03 02:00"), page.index("2026-11-02 02:00"))
    assert newest < older
    assert ("<td>2026-11-02 to 2026-11-02</td><td>succeeded</td><td>12,345</td><td>12</td><td>3</td>"
            "<td>missing_user_id 2, bad_event_ts 1</td>") in page
    assert "<td>failed</td><td>0</td><td>0</td><td>0</td><td>none</td>" in page


def test_values_from_the_data_cannot_close_the_pages_script():
    rows = kpis(NOV).assign(dimension="platform", dimension_value="</script><script>alert(1)//")

    page = build_report(ReportTables(kpis=pd.concat([kpis(NOV), rows])), "t", date(2026, 11, 9), "")

    assert "</script><script>alert(1)" not in page
    assert "\\u003c/script>\\u003cscript>alert(1)//" in page  # the value, escaped inside the chart's JSON


def test_years_of_daily_rows_by_segment_make_a_page():
    days = pd.date_range("2024-01-01", periods=3 * 365).date
    rows = pd.concat([kpis([("day", day, 10, 5, 16, True) for day in days]).assign(dimension="country",
                                                                                      dimension_value=f"c{n}")
                      for n in range(6)])

    page = build_report(ReportTables(kpis=rows), "t", date(2027, 1, 1), "")  # 6,570 rows: past Altair's 5,000

    assert page.count("vegaEmbed(") == 11


def test_counts_are_whole_numbers_even_when_read_as_floats_and_a_period_after_a_null_has_no_change():
    runs = pd.DataFrame([{"started_at": pd.Timestamp("2026-11-03 02:00", tz="UTC"), "first_day": date(2026, 11, 2),
                          "last_day": date(2026, 11, 2), "status": "running", "rows_read": float("nan"),
                          "rows_deduplicated": 1234.0, "rows_quarantined": float("nan"), "quarantine_reasons": None}])
    page = build_report(ReportTables(kpis=None, runs=runs), "t", date(2026, 11, 9), "")

    assert "<td>running</td><td>n/a</td><td>1,234</td><td>n/a</td><td>none</td>" in page
    assert format_change(float("nan")) == "no previous period"


def test_a_range_without_periods_is_a_note():
    page = build_report(ReportTables(kpis=kpis(NOV).iloc[0:0]), "t", date(2026, 11, 9), "")

    assert "no period starts in the days asked" in page
