"""The HTML report (issue 11, in progress): headline tiles, trend charts, and a page built from the job's tables."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from jobs.cli import main
from jobs.config import OutputSpec, Table
from jobs.report import (
    MAX_POINTS,
    PAGE_COLUMNS,
    MixChange,
    ReportTables,
    Tile,
    action_mix_changes,
    action_mix_chart,
    build_report,
    capped_breakdowns,
    format_change,
    headline_tiles,
    interval_chart,
    trend_chart,
    trend_rows,
)
from jobs.report_read import overlapping, read_report_tables
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


@pytest.mark.parametrize("null", [None, float("nan")])  # how pandas holds a null ratio depends on its dtype
def test_a_day_without_sessions_shows_zero_counts_no_ratios_and_says_why_there_is_no_change(null):
    # 1 November had 10 sessions; 2 and 3 November were processed without any (0 sessions, null APS and SPU).
    rows = kpis([("day", date(2026, 11, 1), 10, 5, 16, True)])
    empty = pd.DataFrame([("day", date(2026, 11, n), "all", "all", 0, 0, 0, null, null, True) for n in (2, 3)],
                         columns=KPI_COLUMNS)
    days = pd.concat([rows, empty])

    after_sessions = {tile.label: tile for tile in headline_tiles(days[days["period_start"] < date(2026, 11, 3)])}
    after_quiet_day = {tile.label: tile for tile in headline_tiles(days)}

    assert (after_sessions["APS"].note, after_sessions["APS"].change) == ("no sessions", None)
    assert after_sessions["Sessions"].change == pytest.approx(-1.0)  # 0 / 10 - 1
    assert after_quiet_day["APS"].note == "no sessions"
    assert after_quiet_day["Sessions"].note == "from 0 on the day before"
    page = build_report(ReportTables(kpis=days), "t", date(2026, 11, 4), "", None, None)
    tiles = page[page.index("Latest complete periods"):].split("</section>")[0]
    assert '<div class="value">n/a</div>' in tiles and "nan" not in tiles
    assert "from 0 on the day before" in tiles


def test_a_change_is_only_against_the_period_just_before():
    tiles = headline_tiles(kpis([("day", date(2026, 11, 1), 10, 5, 16, True),
                                 ("day", date(2026, 11, 3), 12, 4, 24, True)]))

    assert {tile.period_start for tile in tiles} == {date(2026, 11, 3)}
    assert all(tile.change is None for tile in tiles)  # 2 November was never run: no change to show


def test_the_first_tiles_of_a_range_change_from_the_period_just_before_it():
    in_range = kpis([("day", date(2026, 11, 2), 12, 4, 24, True), ("month", date(2027, 1, 1), 30, 10, 60, True)])
    before = kpis([("day", date(2026, 11, 1), 10, 5, 16, True), ("month", date(2026, 12, 1), 20, 10, 40, True),
                   ("week", date(2026, 10, 26), 10, 5, 16, True)])  # not in the range: no week tile

    tiles = {(tile.period, tile.label): tile for tile in headline_tiles(in_range, before)}

    # Day: APS 2.0 on 1.6 = +25%. Month: January after December, SPU 3.0 on 2.0 = +50%.
    assert tiles[("day", "APS")] == Tile("day", date(2026, 11, 2), "APS", 2.0, pytest.approx(0.25))
    assert tiles[("month", "SPU")] == Tile("month", date(2027, 1, 1), "SPU", 3.0, pytest.approx(0.5))
    assert {period for period, _ in tiles} == {"day", "month"}


def test_incomplete_periods_are_labelled_and_break_the_solid_stretches_of_a_line():
    weeks = [("week", date(2026, 10, 26), 10, 5, 16, False),  # the data starts on a Wednesday
             ("week", date(2026, 11, 2), 12, 4, 24, True),
             ("week", date(2026, 11, 9), 12, 4, 24, True),
             ("week", date(2026, 11, 16), 12, 4, 24, False),  # a day never run
             ("week", date(2026, 11, 23), 12, 4, 24, True)]

    rows = trend_rows(kpis(weeks))

    assert rows[["period_label", "status", "complete_stretch"]].values.tolist() == [
        ["2026-10-26 (incomplete)", "incomplete", 1],
        ["2026-11-02", "complete", 1],  # joined solid to the next week, not to the incomplete ones
        ["2026-11-09", "complete", 1],
        ["2026-11-16 (incomplete)", "incomplete", 2],
        ["2026-11-23", "complete", 2],  # alone: dashed to 16 November, joined to nothing solid
    ]


def test_a_missing_day_breaks_the_solid_stretch_of_a_line():
    days = [("day", date(2026, 11, 1), 10, 5, 16, True), ("day", date(2026, 11, 2), 10, 5, 16, True),
            ("day", date(2026, 11, 4), 10, 5, 16, True)]  # 3 November was never run

    assert trend_rows(kpis(days))["complete_stretch"].tolist() == [0, 0, 1]


def test_a_trend_line_is_solid_only_over_its_complete_stretches_and_dashed_elsewhere():
    spec = trend_chart("week", "aps", "APS", ["all"]).to_dict()

    dashed, solid, points = spec["layer"]
    assert dashed["mark"] == {"type": "line", "strokeDash": [5, 4]} and "detail" not in dashed["encoding"]
    assert solid["mark"] == {"type": "line"} and solid["encoding"]["detail"]["field"] == "complete_stretch"
    assert {"filter": "(datum.status === 'complete')"} in solid["transform"]
    assert points["encoding"]["fill"]["condition"]["test"] == "(datum.status === 'complete')"  # else hollow
    assert dashed["encoding"]["x"]["field"] == "period_label"  # the date, with (incomplete) after it when so


def test_a_chart_without_a_complete_period_has_no_solid_layer():
    layers = trend_chart("month", "aps", "APS", ["all"], any_complete=False).to_dict()["layer"]

    assert [layer["mark"].get("strokeDash") for layer in layers] == [[5, 4], None]  # the dashed line, the points
    assert layers[1]["mark"]["type"] == "point"


def test_over_years_of_days_only_incomplete_periods_keep_their_points():
    *_, points = trend_chart("day", "aps", "APS", ["all"], period_count=MAX_POINTS + 1).to_dict()["layer"]
    *_, all_points = trend_chart("day", "aps", "APS", ["all"], period_count=MAX_POINTS).to_dict()["layer"]

    assert {"filter": "(datum.status === 'incomplete')"} in points["transform"]
    assert {"filter": "(datum.status === 'incomplete')"} not in all_points["transform"]
    assert points["encoding"]["x"]["axis"]["labelOverlap"] == "greedy"  # and their dates do not overlap


def test_the_reader_picks_the_breakdown_from_the_kpis_dimensions_all_users_first():
    spec = trend_chart("day", "spu", "SPU", ["user_type", "all", "platform"]).to_dict()

    (picker,) = spec["params"]
    assert (picker["value"], picker["bind"]["options"]) == ("all", ["all", "platform", "user_type"])
    # Each layer shows the rows of the period and the picked dimension only, a line per value, from the page's
    # shared trend rows.
    assert spec["data"] == {"name": "trends"}
    for layer in spec["layer"]:
        assert {"filter": "((datum.period === 'day') && (datum.dimension === breakdown))"} in layer["transform"]
        assert (layer["encoding"].get("color") or layer["encoding"]["stroke"])["field"] == "dimension_value"


def test_a_breakdown_draws_the_values_with_the_most_sessions_up_to_the_cap():
    day = date(2026, 11, 2)
    rows = pd.concat([kpis([("day", day, sessions, 5, 16, True)]).assign(dimension="country", dimension_value=name)
                      for name, sessions in (("de", 30), ("fr", 10), ("at", 10), ("it", 20), ("es", 5))])

    kept = trend_rows(pd.concat([kpis([("day", day, 75, 20, 96, True)]), rows]), max_lines=3)

    # At 10 sessions, at and fr tie: at is kept by name.
    assert kept[["dimension", "dimension_value"]].values.tolist() == [["all", "all"], ["country", "at"],
                                                                      ["country", "de"], ["country", "it"]]
    assert capped_breakdowns(rows, max_lines=3) == {"country": 5}


def test_a_breakdowns_lines_are_ranked_on_the_sessions_of_the_days_not_on_whole_weeks_and_months():
    # In a range of one day: se has 1 session on it but 1,000 over its month (days outside the range); no 100.
    rows = pd.concat([
        kpis([("day", date(2026, 11, 10), 1, 1, 1, True), ("month", date(2026, 11, 1), 1_000, 10, 1_000, True)])
        .assign(dimension="country", dimension_value="se"),
        kpis([("day", date(2026, 11, 10), 100, 10, 100, True), ("month", date(2026, 11, 1), 100, 10, 100, True)])
        .assign(dimension="country", dimension_value="no"),
    ])

    assert set(trend_rows(rows, max_lines=1)["dimension_value"]) == {"no"}


def test_the_page_shows_the_tiles_for_people_and_inlines_every_script():
    page = build_report(ReportTables(kpis=kpis(NOV)), "sessionlake: test", date(2026, 11, 3), "/* vega bundle */")

    assert '<div class="value">2.00</div><div class="change up">+25.0% on the day before</div>' in page
    assert '<div class="value">4</div><div class="change down">-20.0% on the day before</div>' in page
    flat = build_report(ReportTables(kpis=kpis([("day", date(2026, 11, 1), 10_000, 5, 16, True),
                                                ("day", date(2026, 11, 2), 10_004, 5, 16, True)])), "t",
                        date(2026, 11, 3), "")
    assert '<div class="change flat">0.0% on the day before</div>' in flat  # +0.04%: not a rise in green
    assert page.count('<div class="chart" id="trend-') == 6  # APS and SPU by day, week and month
    assert page.count('<div class="chart" id="engagement-') == 5  # duration median and p90, three rates
    assert page.count('draw("#') == 11
    assert "/* vega bundle */" in page
    assert not re.search(r"<(script|link)[^>]*(src|href)=", page)  # nothing fetched: opens from disk offline


def test_a_missing_kpis_table_is_a_note_not_an_error():
    page = build_report(ReportTables(kpis=None), "sessionlake: test", date(2026, 11, 3), "")

    assert "no kpis table yet: run the job first" in page
    assert 'draw("#' not in page


def test_changes_are_written_for_people():
    assert (format_change(0.0512, "day"), format_change(-0.2, "week"), format_change(-0.0004, "month"),
            format_change(None, "week")) == (
        "+5.1% on the day before", "-20.0% on the week before", "0.0% on the month before", "no week before to compare"
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
    assert main(["report", "--config", str(config), "--html", str(root / "report.html")]) == 0
    return root


def test_a_report_of_the_jobs_tables_shows_their_numbers(spark, job_report):
    page = (job_report / "report.html").read_text()
    days = {row["period_start"]: row for row in spark.read.format("delta").load(str(job_report / "out" / "kpis"))
            .where("period = 'day' AND dimension = 'all'").collect()}
    tuesday, monday = days[date(2026, 11, 3)], days[date(2026, 11, 2)]

    assert "<h3>Day of 2026-11-03</h3>" in page  # the latest complete day, against Monday
    for label, column, shown in (("APS", "aps", "{:,.2f}"), ("SPU", "spu", "{:,.2f}"), ("Sessions", "sessions", "{:,}"),
                                 ("Users", "users", "{:,}")):
        change = 100 * (tuesday[column] / monday[column] - 1)
        # README rule 1: one decimal with its sign, a flat 0.0% when it rounds to nothing (APS: 1.50 both days).
        direction = "flat" if round(change, 1) == 0 else "up" if change > 0 else "down"
        text = "0.0" if direction == "flat" else f"{change:+.1f}"
        assert (f'<div class="label">{label}</div><div class="value">{shown.format(tuesday[column])}</div>'
                f'<div class="change {direction}">{text}% on the day before</div>') in page, label
    assert "<h3>Week of" not in page and "<h3>Month of" not in page  # two days: neither is complete
    # The charts' rows: every kpis row of the two days, all dimensions, with its APS and SPU.
    data = json.loads(re.search(r"^const DATA = (.*);$", page, re.MULTILINE).group(1))["trends"]
    charted = {(r["period"], r["dimension"], r["dimension_value"], r["period_start"]): (r["aps"], r["spu"])
               for r in (dict(zip(data["columns"], values)) for values in data["data"])}
    stored = {(r["period"], r["dimension"], r["dimension_value"], r["period_start"].isoformat()): (r["aps"], r["spu"])
              for r in spark.read.format("delta").load(str(job_report / "out" / "kpis")).collect()}
    assert charted.keys() == stored.keys()
    assert all(charted[key] == pytest.approx(stored[key]) for key in stored)
    # The variants as the experiments table has them, and the run as the runs table has it.
    assert "<h3>exp: 2026-11-02 to 2026-11-03, control variant: A</h3>" in page
    for variant in spark.read.format("delta").load(str(job_report / "out" / "experiments")).where(
            "is_latest AND dimension = 'all'").collect():
        assert (f"<tr><td>{variant['variant']}</td><td>{variant['users']:,}</td><td>{variant['sessions']:,}</td>"
                f"<td>{variant['spu']:.2f}</td>") in page
    (ledger,) = spark.read.format("delta").load(str(job_report / "out" / "runs")).collect()
    assert (f"<td>2026-11-02 to 2026-11-03</td><td>succeeded</td><td>{ledger['rows_read']:,}</td>"
            f"<td>{ledger['rows_deduplicated']:,}</td><td>{ledger['rows_quarantined']:,}</td>") in page
    assert "vegaEmbed" in page and len(page) > 500_000  # the real vega bundle is inlined


def test_the_reader_reads_the_columns_the_page_draws_and_the_periods_overlapping_the_range(job_report):
    # From Tuesday: Tuesday, and the week and month that hold it (both start before it), but not Monday.
    tables = read_report_tables(OutputSpec(path=str(job_report / "out")), first_day=date(2026, 11, 3))

    assert list(tables.kpis.columns) == list(PAGE_COLUMNS[Table.KPIS])
    assert set(zip(tables.kpis["period"], tables.kpis["period_start"])) == {
        ("day", date(2026, 11, 3)), ("week", date(2026, 11, 2)), ("month", date(2026, 11, 1))}
    assert set(tables.action_kpis["dimension"]) == {"all"}  # the page draws the mix of all users only
    # The experiment's latest window for all users: variants A and B.
    assert sorted(zip(tables.experiments["variant"], tables.experiments["window_end"])) == [
        ("A", date(2026, 11, 3)), ("B", date(2026, 11, 3))]
    assert set(tables.experiments["dimension"]) == {"all"}
    assert len(tables.runs) == 1


def test_a_range_from_the_last_day_of_a_month_reads_that_month_and_the_periods_before_for_the_tiles(tmp_path):
    from deltalake import write_deltalake

    rows = kpis([("month", date(2026, 9, 1), 10, 5, 16, True), ("month", date(2026, 10, 1), 12, 4, 24, True),
                 ("day", date(2026, 10, 30), 10, 5, 16, True), ("day", date(2026, 10, 31), 12, 4, 24, True)])
    write_deltalake(str(tmp_path / "kpis"), pd.concat([rows, rows.assign(dimension="platform", dimension_value="ios")]),
                    partition_by=["period"])

    tables = read_report_tables(OutputSpec(path=str(tmp_path)), first_day=date(2026, 10, 31))

    # October holds 31 October; September and 30 October are the periods just before, of all users only.
    assert sorted(zip(tables.kpis["period"], tables.kpis["dimension"], tables.kpis["period_start"])) == [
        ("day", "all", date(2026, 10, 31)), ("day", "platform", date(2026, 10, 31)),
        ("month", "all", date(2026, 10, 1)), ("month", "platform", date(2026, 10, 1))]
    assert sorted(zip(tables.kpis_before["period"], tables.kpis_before["period_start"])) == [
        ("day", date(2026, 10, 30)), ("month", date(2026, 9, 1))]
    assert set(tables.kpis_before["dimension"]) == {"all"}
    page = build_report(tables, "t", date(2026, 11, 1), "")
    # APS 2.0 on 1.6, for the day and for the month
    assert ("+25.0% on the day before", "+25.0% on the month before") == tuple(
        re.findall(r"\+25\.0% on the \w+ before", page))
    assert (tables.experiments, tables.action_kpis, tables.runs) == (None, None, None)  # tables never written


def test_the_report_without_deltalake_names_the_extra_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "deltalake", None)  # as where the report extra is not installed

    assert main(["report", "--output", str(tmp_path), "--html", str(tmp_path / "report.html")]) == 2

    assert ("needs the report extra (deltalake is missing): pip install 'sessionlake[report]'"
            in capsys.readouterr().err)


def test_a_mistyped_tables_folder_or_a_folder_for_the_page_is_an_error_not_a_page_of_notes(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"

    assert main(["report", "--output", str(missing), "--html", str(tmp_path / "report.html")]) == 1
    assert f"the tables' folder {missing} does not exist" in capsys.readouterr().err
    assert main(["report", "--output", str(tmp_path), "--html", str(tmp_path)]) == 2
    assert f"--html {tmp_path} is a folder" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_an_empty_tables_folder_makes_a_page_of_notes_and_prints_where_it_is(tmp_path, capsys):
    assert main(["report", "--output", str(tmp_path), "--html", str(tmp_path / "page" / "report.html")]) == 0

    assert capsys.readouterr().out == f"report: {(tmp_path / 'page' / 'report.html').as_uri()}\n"
    page = (tmp_path / "page" / "report.html").read_text()
    assert "no kpis table yet: run the job first" in page and "no runs table yet" in page


def test_the_report_of_a_folder_runs_where_pyspark_is_not_installed(job_report):
    # Its own interpreter: here pyspark is already imported. None in sys.modules makes `import pyspark` fail.
    script = ("import sys; sys.modules['pyspark'] = sys.modules['delta'] = None\n"
              "from jobs.cli import main\n"
              f"sys.exit(main(['report', '--output', {str(job_report / 'out')!r}, '--html', "
              f"{str(job_report / 'no-spark.html')!r}]))")

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert "<h3>Day of 2026-11-03</h3>" in (job_report / "no-spark.html").read_text()


def test_the_page_states_the_range_it_was_read_for_and_a_range_without_action_rows():
    empty_mix = actions([]).astype({"is_complete": bool})

    page = build_report(ReportTables(kpis=kpis(NOV), action_kpis=empty_mix), "t", date(2026, 11, 3), "",
                        first_day=date(2026, 11, 1), last_day=date(2026, 11, 2))

    assert "Periods with a day from 2026-11-01 to 2026-11-02; weeks and months are shown whole." in page
    assert "no action_kpis rows for the days asked" in page
    assert "Every period in the tables." in build_report(ReportTables(kpis=None), "t", date(2026, 11, 3), "")


def test_a_period_is_in_a_range_when_one_of_its_days_is():
    rows = pd.DataFrame([("day", date(2026, 11, 24)), ("day", date(2026, 11, 25)), ("week", date(2026, 11, 23)),
                         ("week", date(2026, 11, 30)), ("month", date(2026, 10, 1)), ("month", date(2026, 11, 1)),
                         ("month", date(2026, 12, 1))], columns=["period", "period_start"])

    # Wednesday 25 to Sunday 29 November: that week (from Monday 23) and November, not October or December.
    kept = overlapping(rows, date(2026, 11, 25), date(2026, 11, 29))

    assert kept.values.tolist() == [["day", date(2026, 11, 25)], ["week", date(2026, 11, 23)],
                                    ["month", date(2026, 11, 1)]]
    assert overlapping(rows, date(2026, 10, 31), None)["period_start"].tolist() == [
        date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 23), date(2026, 11, 30), date(2026, 10, 1),
        date(2026, 11, 1), date(2026, 12, 1)]  # 31 October is in October


def test_the_report_renders_every_chart_in_a_headless_browser_without_errors(job_report):
    # Debian's chromium, which .ci/run installs when it is absent; playwright drives it (it downloads no browser).
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            errors = []
            page.on("console", lambda message: errors.append(message.text)
                    if message.type in ("error", "warning") else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto((job_report / "report.html").as_uri())
            page.wait_for_function("[...document.querySelectorAll('.chart')].every(c => c.querySelector('svg'))",
                                   timeout=30_000)
            marks = dict(page.evaluate(f"[...document.querySelectorAll('.chart')].map(c => [c.id, "
                                       f"c.querySelectorAll({json.dumps(DATA_MARKS)}).length])"))
            week = page.evaluate("""(() => { const chart = document.querySelector('#trend-aps-week');
                return {labels: [...chart.querySelectorAll('text')].map(text => text.textContent),
                        dashes: [...chart.querySelectorAll('g.mark-line.role-mark > path')]
                                .map(line => line.getAttribute('stroke-dasharray')),
                        fills: [...chart.querySelectorAll('g.mark-symbol.role-mark > path')]
                               .map(point => point.getAttribute('fill'))}; })()""")
            page.screenshot(path=str(job_report / "report.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.screenshot(path=str(job_report / "report-phone.png"))
            wider = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        finally:
            browser.close()

    assert errors == []  # no warning either (an empty layer's "Infinite extent", say)
    assert len(marks) == 6 + 5 + 1 + 2 and all(count > 0 for count in marks.values()), marks
    # Two days: two points and their line for all users, drawn twice (dashed, and solid over it); two variants:
    # a point and an error bar each.
    assert marks["trend-aps-day"] == 2 + 2
    # Monday and Tuesday of a week: the week is incomplete, so it is labelled, dashed and hollow.
    assert "2026-11-02 (incomplete)" in week["labels"]
    assert (week["dashes"], week["fills"]) == (["5,4"], ["white"])
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

    assert "<h3>tips: 2026-11-02 to 2026-11-08, control variant: old</h3>" in page
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


ACTION_COLUMNS = ["period", "period_start", "dimension", "dimension_value", "event_name", "actions",
                  "sessions_with_action", "users_with_action", "sessions", "share_of_actions", "is_complete"]


def actions(rows) -> pd.DataFrame:
    """(period, start, event_name, actions, sessions_with_action, users_with_action, sessions, total_actions,
    is_complete) rows of dimension `all`, with share_of_actions."""
    return pd.DataFrame(
        [(period, start, "all", "all", name, count, with_action, users, sessions, count / total, complete)
         for period, start, name, count, with_action, users, sessions, total, complete in rows],
        columns=ACTION_COLUMNS,
    )


def test_the_action_mix_chart_draws_the_share_of_the_names_with_the_most_actions():
    rows = pd.concat([
        actions([("day", date(2026, 11, 1), "view", 6, 3, 2, 4, 8, True),
                 ("day", date(2026, 11, 1), "buy", 2, 2, 2, 4, 8, True),
                 ("day", date(2026, 11, 2), "view", 1, 1, 1, 2, 4, True),
                 ("day", date(2026, 11, 2), "like", 3, 2, 1, 2, 4, True)]),
        actions([("day", date(2026, 11, 1), "view", 6, 3, 2, 4, 6, True)]).assign(dimension="platform"),  # not drawn
    ])

    data = next(iter(action_mix_chart(rows, max_lines=2).to_dict()["datasets"].values()))

    # view has 7 actions, like 3, buy 2: buy is past the cap of two lines.
    assert data == [
        {"period_start": "2026-11-02", "event_name": "like", "share": 0.75},
        {"period_start": "2026-11-01", "event_name": "view", "share": 0.75},
        {"period_start": "2026-11-02", "event_name": "view", "share": 0.25},
    ]


def test_the_mix_changes_compare_the_latest_complete_week_with_the_week_before():
    # Week of 26 October: 10 actions in 5 sessions; week of 2 November: 20 actions in 8 sessions; the week of
    # 9 November is not complete, so it is not the latest.
    rows = actions([
        ("week", date(2026, 10, 26), "view", 6, 4, 3, 5, 10, True),
        ("week", date(2026, 10, 26), "buy", 4, 2, 2, 5, 10, True),
        ("week", date(2026, 11, 2), "view", 10, 6, 5, 8, 20, True),
        ("week", date(2026, 11, 2), "like", 10, 2, 1, 8, 20, True),
        ("week", date(2026, 11, 9), "view", 1, 1, 1, 1, 1, False),
        ("day", date(2026, 11, 8), "view", 1, 1, 1, 1, 1, True),
    ])

    period, start, changes = action_mix_changes(rows)

    # view 60% -> 50% (-10 points), in 6 of 8 sessions; like 0% -> 50%; buy 40% -> 0%, in no session now.
    assert (period, start) == ("week", date(2026, 11, 2))
    assert changes == [
        MixChange("like", 0.5, pytest.approx(50.0), 0.25, 1),
        MixChange("view", 0.5, pytest.approx(-10.0), 0.75, 5),
        MixChange("buy", 0.0, pytest.approx(-40.0), 0.0, 0),
    ]


def test_the_mix_changes_list_the_names_largest_in_either_period_and_so_keep_one_that_vanished():
    # Week of 26 October: one name with 80% of the 100 actions, gone the week after; ten names of 10% each then.
    earlier = [("week", date(2026, 10, 26), "gone", 80, 8, 8, 10, 100, True)] + [
        ("week", date(2026, 10, 26), f"n{n}", 2, 1, 1, 10, 100, True) for n in range(10)]
    latest = [("week", date(2026, 11, 2), f"n{n}", 10, 5, 5, 10, 100, True) for n in range(10)]

    _, _, changes = action_mix_changes(actions(earlier + latest), top=3)

    # gone (80% before) and the two first by name of n0..n9 (10% now): gone shows last, at 0% now, -80 points.
    assert [(change.event_name, change.share) for change in changes] == [("n0", 0.1), ("n1", 0.1), ("gone", 0.0)]
    assert changes[-1].change_points == pytest.approx(-80.0)


def test_the_mix_changes_fall_back_to_days_and_show_no_change_without_the_period_before():
    rows = actions([("week", date(2026, 11, 2), "view", 1, 1, 1, 1, 1, False),
                    ("day", date(2026, 11, 2), "view", 3, 2, 2, 2, 4, True),
                    ("day", date(2026, 11, 2), "buy", 1, 1, 1, 2, 4, True),
                    ("day", date(2026, 10, 31), "view", 1, 1, 1, 1, 1, True)])  # not the day before

    assert action_mix_changes(rows) == ("day", date(2026, 11, 2), [MixChange("view", 0.75, None, 1.0, 2),
                                                                    MixChange("buy", 0.25, None, 0.5, 1)])
    page = build_report(ReportTables(kpis=None, action_kpis=rows), "t", date(2026, 11, 3), "")
    assert "<h3>Day of 2026-11-02, against the day before</h3>" in page
    assert "<tr><td>view</td><td>75.0%</td><td>n/a</td><td>100.0%</td><td>2</td></tr>" in page


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


def test_quarantine_reasons_read_by_spark_as_a_dict_show_as_those_read_by_delta_rs():
    runs = pd.DataFrame([{"started_at": pd.Timestamp("2026-11-03 02:00", tz="UTC"), "first_day": date(2026, 11, 2),
                          "last_day": date(2026, 11, 2), "status": "succeeded", "rows_read": 10,
                          "rows_deduplicated": 0, "rows_quarantined": 3,
                          "quarantine_reasons": {"missing_user_id": 2, "bad_event_ts": 1}}])

    page = build_report(ReportTables(kpis=None, runs=runs), "t", date(2026, 11, 9), "")

    assert "<td>3</td><td>missing_user_id 2, bad_event_ts 1</td>" in page


def test_values_from_the_data_cannot_close_the_pages_script():
    rows = kpis(NOV).assign(dimension="platform", dimension_value="</script><script>alert(1)//")

    page = build_report(ReportTables(kpis=pd.concat([kpis(NOV), rows])), "t", date(2026, 11, 9), "")

    assert "</script><script>alert(1)" not in page
    assert "\\u003c\\/script>\\u003cscript>alert(1)\\/\\/" in page  # the value, escaped in the page's data


def test_event_variant_and_experiment_names_are_escaped_in_the_page():
    bad = "<b>x</b>"
    mix = actions([("day", date(2026, 11, 2), bad, 3, 2, 2, 2, 4, True)])
    variants = experiments(variant(bad, False, 1_010, 2.2, 5.5, lift=0.1), variant("old", True, 990, 2.0, 5.0))

    page = build_report(ReportTables(kpis=None, action_kpis=mix, experiments=variants.assign(experiment_id=bad)),
                        "t", date(2026, 11, 3), "")

    assert bad not in page
    assert "<tr><td>&lt;b&gt;x&lt;/b&gt;</td><td>75.0%</td>" in page  # the action
    assert "<h3>&lt;b&gt;x&lt;/b&gt;: 2026-11-02" in page  # the experiment
    assert "<tr><td>&lt;b&gt;x&lt;/b&gt;</td><td>1,010</td>" in page  # the variant


def test_the_page_holds_years_of_kpis_rows_once_for_all_its_charts():
    days = pd.date_range("2024-01-01", periods=3 * 365).date
    rows = pd.concat([kpis([("day", day, 10, 5, 16, True) for day in days]).assign(dimension="country",
                                                                                      dimension_value=f"c{n}")
                      for n in range(6)])

    page = build_report(ReportTables(kpis=rows), "t", date(2027, 1, 1), "")  # 6,570 rows: past Altair's 5,000

    assert page.count('draw("#') == 11
    # Eleven charts draw from one copy of the rows: a row is in the page once, and the page is about 150 bytes
    # a row, not eleven times that.
    assert page.count('["day","2025-06-01","2025-06-01","country","c5",') == 1
    assert len(page) < 6_570 * 200


def test_counts_are_whole_numbers_even_when_read_as_floats_and_a_period_after_a_null_has_no_change():
    runs = pd.DataFrame([{"started_at": pd.Timestamp("2026-11-03 02:00", tz="UTC"), "first_day": date(2026, 11, 2),
                          "last_day": date(2026, 11, 2), "status": "running", "rows_read": float("nan"),
                          "rows_deduplicated": 1234.0, "rows_quarantined": float("nan"), "quarantine_reasons": None}])
    page = build_report(ReportTables(kpis=None, runs=runs), "t", date(2026, 11, 9), "")

    assert "<td>running</td><td>n/a</td><td>1,234</td><td>n/a</td><td>none</td>" in page
    assert format_change(float("nan"), "day") == "no day before to compare"


def test_a_range_without_periods_is_a_note():
    page = build_report(ReportTables(kpis=kpis(NOV).iloc[0:0]), "t", date(2026, 11, 9), "")

    assert "no kpis rows for the days asked" in page
