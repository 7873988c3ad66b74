"""The tables' rows -> one self-contained HTML page for product managers (pure: no Spark, no files).

Charts are Vega-Lite specs built with Altair and drawn in the browser by vega-embed, whose JavaScript is inlined
once (vl-convert's bundle), so the page opens from disk with no network. The rules: README, "The report".
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import altair as alt
import pandas as pd

from jobs.config import ALL, Table
from jobs.inference import SRM_ALARM
from jobs.periods import Period, next_start

PERIODS = tuple(period.value for period in Period)
# A breakdown draws at most this many lines: its values with the most sessions over the days of the range; the
# action mix chart, its names with the most actions.
MAX_LINES = 8
# Past this many periods on a chart, points would hide the lines: only the incomplete periods' (hollow) are drawn.
MAX_POINTS = 90
# How many event names the action mix's table of changes lists.
MIX_TABLE_NAMES = 10
# How many runs the data-quality table lists, newest first.
LATEST_RUNS = 10
# The headline tiles: column, label.
_TILE_METRICS = (("aps", "APS"), ("spu", "SPU"), ("sessions", "Sessions"), ("users", "Users"))

_PERIOD_KEY = ("period", "period_start", "dimension", "dimension_value")
_STATISTICS = tuple(f"{metric}{suffix}" for metric in ("spu", "aps")
                    for suffix in ("", "_ci_low", "_ci_high", "_lift", "_lift_ci_low", "_lift_ci_high", "_p_value"))
# The columns of each table the page draws: all that the reading edge reads.
PAGE_COLUMNS = {
    Table.KPIS: (*_PERIOD_KEY, "sessions", "users", "aps", "spu", "median_duration_seconds", "p90_duration_seconds",
                 "bounce_rate", "engagement_rate", "conversion_rate", "is_complete"),
    Table.ACTION_KPIS: (*_PERIOD_KEY, "event_name", "actions", "sessions_with_action", "users_with_action", "sessions",
                        "share_of_actions", "is_complete"),
    Table.EXPERIMENTS: ("experiment_id", "dimension", "dimension_value", "variant", "window_start", "window_end",
                        "is_latest", "control_variant", "is_control", "users", "sessions", "srm_p_value", *_STATISTICS),
    Table.RUNS: ("started_at", "first_day", "last_day", "status", "rows_read", "rows_deduplicated", "rows_quarantined",
                 "quarantine_reasons"),
}


@dataclass(frozen=True)
class ReportTables:
    """The rows the page is built from; None for a table that does not exist (its section says so)."""

    kpis: pd.DataFrame | None
    experiments: pd.DataFrame | None = None
    action_kpis: pd.DataFrame | None = None
    runs: pd.DataFrame | None = None
    # Kpis rows of all users for the periods just before a report's range: what the first tiles change from.
    kpis_before: pd.DataFrame | None = None


@dataclass(frozen=True)
class Tile:
    """A headline number: a metric of the latest complete period of a kind, and its change on the period before."""

    period: str
    period_start: date
    label: str
    value: float  # NaN for a ratio of a period without sessions
    change: float | None  # relative: 0.05 is +5%; None without a previous period (or with a zero one)
    # Why there is no change although there is a period before: no sessions in one of the two, or a zero base.
    note: str | None = None


def headline_tiles(kpis: pd.DataFrame, before: pd.DataFrame | None = None) -> list[Tile]:
    """For each period kind, the latest complete period of dimension `all` in `kpis`: APS, SPU, sessions and users,
    each with its relative change on the period just before (complete too), found in `kpis` or in `before` (the
    rows before a report's range). Kinds without a complete period in `kpis` have no tiles."""
    overall = _complete_of_all_users(kpis)
    earlier = overall if before is None else pd.concat([_complete_of_all_users(before), overall])
    tiles = []
    for period in PERIODS:
        rows = overall[overall["period"] == period].sort_values("period_start")
        if rows.empty:
            continue
        latest = rows.iloc[-1]
        candidates = earlier[(earlier["period"] == period) & (earlier["period_start"] < latest["period_start"])]
        previous = candidates.sort_values("period_start").iloc[-1] if not candidates.empty else None
        if previous is not None and not _follows(period, previous["period_start"], latest["period_start"]):
            previous = None
        for column, label in _TILE_METRICS:
            value, base = latest[column], None if previous is None else previous[column]
            # None and NaN alike: a column of pandas holds a null ratio as either, by its dtype.
            missing = _is_missing(value) or _is_missing(base) or base == 0
            change = None if missing else value / base - 1
            tiles.append(Tile(period, latest["period_start"], label, math.nan if _is_missing(value) else float(value),
                              change, _no_change_note(period, value, base, previous is not None)))
    return tiles


def _no_change_note(period: str, value: object, base: object, has_previous: bool) -> str | None:
    # A processed period without sessions has 0 counts and no ratios (0 / 0): a change from or to it is not a number.
    if not has_previous:
        return None
    if _is_missing(value):
        return "no sessions"
    if _is_missing(base):
        return f"no sessions on the {period} before"
    if base == 0:
        return f"from 0 on the {period} before"
    return None


def _complete_of_all_users(kpis: pd.DataFrame) -> pd.DataFrame:
    return kpis[(kpis["dimension"] == ALL) & kpis["is_complete"].astype(bool)]


def _follows(period: str, earlier: date, later: date) -> bool:
    # The period before, not just an earlier one: a gap (days never run) has no change to show.
    return next_start(earlier, Period(period)) == later


class _Engagement(NamedTuple):
    """An engagement trend: its column in the trend rows, from a kpis column divided by `per`."""

    column: str
    source: str
    per: float
    title: str
    value_format: str  # d3-format
    from_zero: bool  # rates: their axis starts at 0, so 8.3% to 7.4% does not look like a collapse


_ENGAGEMENT = (
    _Engagement("median_duration_minutes", "median_duration_seconds", 60, "median session duration, minutes", ".1f",
                False),
    _Engagement("p90_duration_minutes", "p90_duration_seconds", 60, "90th percentile of session duration, minutes",
                ".1f", False),
    _Engagement("bounce_rate", "bounce_rate", 1, "bounce rate", ".1%", True),
    _Engagement("engagement_rate", "engagement_rate", 1, "engagement rate", ".1%", True),
    _Engagement("conversion_rate", "conversion_rate", 1, "conversion rate", ".1%", True),
)
# The smallest step each number format shows. Vega's tickMinStep can still halve it, so ticks are kept at least
# twice this apart: closer, they would repeat a label (8.89, 8.89, 8.90).
_SMALLEST_SHOWN = {".2f": 0.01, ".1f": 0.1, ".1%": 0.001}
# The page's one copy of the kpis rows that every trend chart draws from (in the page: `DATA`, see _PAGE).
TRENDS = "trends"


def trend_rows(kpis: pd.DataFrame, max_lines: int = MAX_LINES) -> pd.DataFrame:
    """The kpis rows the trend charts draw: for each dimension, its `max_lines` values with the most sessions over
    the days (over the finest period kind present; ties by name), with `status` (complete or incomplete),
    `period_label` (the start, with ' (incomplete)' after it for a period not yet complete) and
    `complete_stretch`, which numbers each line's runs of complete periods that follow each other with no period
    missing between them: its solid parts."""
    finest = next(period for period in PERIODS if (kpis["period"] == period).any())
    # Sessions over one period kind: days, weeks and months each count every session once.
    volume = kpis[kpis["period"] == finest].groupby(["dimension", "dimension_value"], as_index=False)["sessions"].sum()
    volume = volume.sort_values(["dimension", "sessions", "dimension_value"], ascending=[True, False, True])
    kept = volume.groupby("dimension").head(max_lines)[["dimension", "dimension_value"]]
    rows = kpis.merge(kept, on=["dimension", "dimension_value"]).sort_values(
        ["period", "dimension", "dimension_value", "period_start"]).reset_index(drop=True)
    series = [rows["period"], rows["dimension"], rows["dimension_value"]]
    start = pd.to_datetime(rows["period_start"]).dt.strftime("%Y-%m-%d")
    incomplete = ~rows["is_complete"].astype(bool)
    # A stretch ends at an incomplete period and where periods are missing (days never run, or a segment value
    # without sessions that day): the line is dashed there, never drawn solid across what is not there.
    previous = rows["period_start"].groupby(series).shift()
    after_a_gap = pd.Series([
        not pd.isna(before) and not _follows(period, before, this)
        for period, before, this in zip(rows["period"], previous, rows["period_start"])
    ], index=rows.index, dtype=bool)
    return pd.DataFrame({
        "period": rows["period"],
        "period_start": start,
        "period_label": start.where(~incomplete, start + " (incomplete)"),
        "dimension": rows["dimension"],
        "dimension_value": rows["dimension_value"],
        "status": incomplete.map({False: "complete", True: "incomplete"}),
        "complete_stretch": (incomplete | after_a_gap).astype(int).groupby(series).cumsum(),
        **{column: rows[column].astype(float) for column in ("sessions", "users", "aps", "spu")},
        **{trend.column: rows[trend.source].astype(float) / trend.per
           for trend in _ENGAGEMENT if trend.source in rows.columns},
    })


def capped_breakdowns(kpis: pd.DataFrame, max_lines: int = MAX_LINES) -> dict[str, int]:
    """The dimensions with more values than a chart draws lines for, and how many values each has."""
    values = kpis.groupby("dimension")["dimension_value"].nunique()
    return {dimension: int(count) for dimension, count in values.items() if count > max_lines}


def trend_chart(
    period: str, metric: str, title: str, dimensions: list[str], value_format: str = ".2f", period_count: int = 0,
    from_zero: bool = False, any_complete: bool = True,
) -> alt.LayerChart:
    """`metric` (a column of trend_rows) by period, a line per value of the breakdown the reader picks from a list
    under the chart (`all` first, then `dimensions`). A line is solid between complete periods and dashed into an
    incomplete one, whose point is hollow and whose date says so, so a half-finished week is not read as a drop.
    Over more than MAX_POINTS periods (`period_count`), only the incomplete periods have points. Without
    `any_complete` period, the chart has no solid layer (an empty one makes Vega warn of an infinite extent)."""
    breakdown = alt.param(name="breakdown", value=ALL,
                          bind=alt.binding_select(options=[ALL, *sorted(set(dimensions) - {ALL})], name="Breakdown "))
    base = alt.Chart(alt.NamedData(TRENDS)).transform_filter(
        (alt.datum.period == period) & (alt.datum.dimension == breakdown)
    ).encode(
        # Ordinal: one tick per period, labelled by its first day (a time axis would tick at noons and weekdays).
        # Years of days: labels that would overlap are left out (greedy), not drawn over each other.
        x=alt.X("period_label:O", title=f"{period} starting",
                axis=alt.Axis(labelAngle=-45, labelOverlap="greedy", ticks=period_count <= MAX_POINTS)),
        y=alt.Y(f"{metric}:Q", title=title, scale=alt.Scale(zero=from_zero),
                axis=alt.Axis(format=value_format, tickMinStep=2 * _SMALLEST_SHOWN[value_format])),
        tooltip=[alt.Tooltip("period_label:O", title=period), alt.Tooltip("dimension_value:N", title="segment"),
                 alt.Tooltip(f"{metric}:Q", title=title, format=value_format),
                 alt.Tooltip("sessions:Q", format=",.0f"), alt.Tooltip("users:Q", format=",.0f")],
    )
    # The whole line dashed, under the complete stretches drawn solid: what stays dashed leads to or from an
    # incomplete period.
    line_color = alt.Color("dimension_value:N", title=None)
    dashed = base.mark_line(strokeDash=[5, 4]).encode(color=line_color)
    solid = base.transform_filter(alt.datum.status == "complete").mark_line().encode(
        color=line_color, detail="complete_stretch:N")
    # Outlined in the value's colour, filled with it when complete: one legend, the line's.
    pointed = base.transform_filter(alt.datum.status == "incomplete") if period_count > MAX_POINTS else base
    points = pointed.mark_point(size=70, filled=True, strokeWidth=1.5).encode(
        stroke=alt.Stroke("dimension_value:N", legend=None),
        fill=alt.condition(alt.datum.status == "complete", alt.Fill("dimension_value:N", legend=None),
                           alt.value("white")),
    )
    layers = (dashed, solid, points) if any_complete else (dashed, points)
    return alt.layer(*layers).add_params(breakdown).properties(
        width="container", height=240, title=f"{title}, by {period}"
    )


def build_report(
    tables: ReportTables, title: str, generated_on: date, vega_bundle: str,
    first_day: date | None = None, last_day: date | None = None,
) -> str:
    """The page: headline tiles, trends, engagement, the action mix, data quality and experiments; a section whose
    table is missing or empty is a one-line note. [first_day, last_day], the range the tables were read for, is
    stated under the title. `vega_bundle` is the JavaScript that defines vegaEmbed
    (vl_convert.javascript_bundle())."""
    sections, charts, datasets = [], [], {}
    if tables.kpis is None:
        sections.append(_note("KPIs", "no kpis table yet: run the job first"))
    elif tables.kpis.empty:
        sections.append(_note("KPIs", "no kpis rows for the days asked"))
    else:
        sections.append(_tiles_section(headline_tiles(tables.kpis, tables.kpis_before)))
        datasets[TRENDS] = trend_rows(tables.kpis)
        dimensions = sorted(set(datasets[TRENDS]["dimension"]))
        period_counts = datasets[TRENDS].groupby("period")["period_start"].nunique().to_dict()
        # Completeness is the period's, the same in every dimension: a kind without a complete period has none.
        with_complete = set(datasets[TRENDS].loc[datasets[TRENDS]["status"] == "complete", "period"])
        trends = [(f"trend-{metric}-{period}",
                   trend_chart(period, metric, name, dimensions, period_count=period_counts.get(period, 0),
                               any_complete=period in with_complete))
                  for metric, name in (("aps", "APS, actions per session"), ("spu", "SPU, sessions per user"))
                  for period in PERIODS]
        capped = "".join(f" {html.escape(str(dimension))}: the {MAX_LINES} of its {count} values with the most "
                         "sessions." for dimension, count in capped_breakdowns(tables.kpis).items())
        sections.append(
            "<section><h2>Trends</h2><p class=\"hint\">A line is dashed into a period not yet complete, whose point "
            "is hollow and whose date says (incomplete), and across periods with no row (days never run). SPU "
            "counts each user once per period, so a week's is larger than a day's."
            f"{capped}</p>{_chart_divs(trends)}</section>"
        )
        engagement = [(f"engagement-{trend.source}",
                       trend_chart("day", trend.column, trend.title, dimensions, trend.value_format,
                                   period_counts.get("day", 0), trend.from_zero))
                      for trend in _ENGAGEMENT if trend.column in datasets[TRENDS].columns]
        sections.append("<section><h2>Engagement, by day</h2>" + _chart_divs(engagement) + "</section>")
        charts.extend(trends + engagement)
    if tables.action_kpis is None:
        sections.append(_note("Action mix", "no action_kpis table yet"))
    elif tables.action_kpis.empty:
        sections.append(_note("Action mix", "no action_kpis rows for the days asked"))
    else:
        charts.append(("action-mix", action_mix_chart(tables.action_kpis)))
        sections.append(_action_mix_section(tables.action_kpis))
    sections.append(_note("Data quality", "no runs table yet") if tables.runs is None else _runs_section(tables.runs))
    if tables.experiments is None:
        sections.append(_note("Experiments", "no experiments table: experiments are not configured"))
    else:
        section, experiment_charts = _experiments_section(tables.experiments)
        sections.append(section)
        charts.extend(experiment_charts)
    with alt.data_transformers.disable_max_rows():  # years of daily rows x segment values pass Altair's 5,000
        embeds = "".join(f"draw({_script_json('#' + chart_id)}, {_script_safe(chart.to_json(indent=None))});\n"
                         for chart_id, chart in charts)
    # Columns and rows, not an object per row: the shared rows are the bulk of a page over years.
    data = "{" + ",".join(f"{_script_json(name)}: {_script_safe(rows.to_json(orient='split', index=False))}"
                          for name, rows in datasets.items()) + "}"
    return _PAGE.format(
        title=html.escape(title), generated=generated_on.isoformat(), scope=_scope(first_day, last_day),
        body="\n".join(sections),
        bundle=vega_bundle.replace("</script", "<\\/script"), data=data, embeds=embeds,
    )


def _scope(first_day: date | None, last_day: date | None) -> str:
    if first_day is None and last_day is None:
        return "Every period in the tables."
    if last_day is None:
        span = f"from {first_day}"
    elif first_day is None:
        span = f"up to {last_day}"
    else:
        span = f"from {first_day} to {last_day}"
    return f"Periods with a day {span}; weeks and months are shown whole."


def _chart_divs(charts: list[tuple[str, alt.TopLevelMixin]]) -> str:
    return "".join(f'<div class="chart" id="{chart_id}"></div>' for chart_id, _ in charts)


def action_mix_chart(action_kpis: pd.DataFrame, max_lines: int = MAX_LINES) -> alt.Chart:
    """The share of all actions by day (dimension all) of the `max_lines` event names with the most actions in the
    range: a line per name, the most common first in the legend."""
    overall = action_kpis[(action_kpis["period"] == "day") & (action_kpis["dimension"] == ALL)]
    top = overall.groupby("event_name")["actions"].sum().reset_index().sort_values(
        ["actions", "event_name"], ascending=[False, True]).head(max_lines)["event_name"]
    rows = overall[overall["event_name"].isin(top)].sort_values(["event_name", "period_start"])
    data = pd.DataFrame({
        "period_start": pd.to_datetime(rows["period_start"]).dt.strftime("%Y-%m-%d"),
        "event_name": rows["event_name"],
        "share": rows["share_of_actions"].astype(float),
    })
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("period_start:O", title="day", axis=alt.Axis(labelAngle=-45, labelOverlap="greedy")),
        y=alt.Y("share:Q", title="share of actions", axis=alt.Axis(format=".0%")),
        color=alt.Color("event_name:N", title=None, sort=alt.EncodingSortField("share", op="mean", order="descending")),
        tooltip=["period_start:O", "event_name:N", alt.Tooltip("share:Q", format=".1%")],
    ).properties(width="container", height=260, title="Action mix, by day")


@dataclass(frozen=True)
class MixChange:
    """An event name's place in the mix of the latest complete period and its move since the period before."""

    event_name: str
    share: float  # of all actions in the latest period; 0.0 when the name had none
    change_points: float | None  # share minus the previous period's, in percentage points; None without one
    session_reach: float  # the share of the latest period's sessions with the action
    users: int  # distinct users with the action in the latest period


def action_mix_changes(
    action_kpis: pd.DataFrame, top: int = MIX_TABLE_NAMES
) -> tuple[str, date, list[MixChange]] | None:
    """How the mix moved: the latest complete week (the latest complete day without one) of dimension all against
    the period just before, for the `top` names with the largest share in either, largest latest share first (ties
    by name). A name missing from one period has a share of 0 there. None without a complete day."""
    overall = action_kpis[(action_kpis["dimension"] == ALL) & action_kpis["is_complete"]]
    for period in ("week", "day"):
        rows = overall[overall["period"] == period]
        if not rows.empty:
            break
    else:
        return None
    starts = sorted(set(rows["period_start"]))
    latest = rows[rows["period_start"] == starts[-1]].set_index("event_name")
    has_previous = len(starts) > 1 and _follows(period, starts[-2], starts[-1])
    previous = rows[rows["period_start"] == starts[-2]].set_index("event_name") if has_previous else latest.iloc[0:0]
    names = sorted(set(latest.index) | set(previous.index),
                   key=lambda name: (-max(_share(latest, name), _share(previous, name)), name))[:top]
    names.sort(key=lambda name: (-_share(latest, name), name))  # shown largest share first
    sessions = float(latest["sessions"].iloc[0]) if not latest.empty else 0.0
    changes = [
        MixChange(
            event_name=name,
            share=_share(latest, name),
            change_points=(100 * (_share(latest, name) - _share(previous, name))) if has_previous else None,
            session_reach=(float(latest.at[name, "sessions_with_action"]) / sessions
                           if name in latest.index and sessions else 0.0),
            users=int(latest.at[name, "users_with_action"]) if name in latest.index else 0,
        )
        for name in names
    ]
    return period, starts[-1], changes


def _share(rows: pd.DataFrame, name: str) -> float:
    return float(rows.at[name, "share_of_actions"]) if name in rows.index else 0.0


def _action_mix_section(action_kpis: pd.DataFrame) -> str:
    moved = action_mix_changes(action_kpis)
    if moved is None:
        table = '<p class="note">No complete day yet to compare.</p>'
    else:
        period, start, changes = moved
        head = ("<tr><th>action</th><th>share of actions</th><th>change</th><th>sessions with it</th>"
                "<th>users with it</th></tr>")
        rows = "".join(
            f"<tr><td>{html.escape(str(change.event_name))}</td><td>{change.share:.1%}</td>"
            f"<td>{'n/a' if change.change_points is None else _signed(change.change_points) + ' pts'}</td>"
            f"<td>{change.session_reach:.1%}</td><td>{change.users:,}</td></tr>"
            for change in changes
        )
        table = (f"<h3>{period.capitalize()} of {start.isoformat()}, against the {period} before</h3>"
                 f'<div class="scroll"><table class="names">{head}{rows}</table></div>')
    return ('<section><h2>Action mix</h2><p class="hint">Each action\'s share of all actions, by day, for the '
            f"{MAX_LINES} names with the most actions (names past metrics.max_action_names are folded into "
            f'(other)).</p><div class="chart" id="action-mix"></div>{table}</section>')


def _runs_section(runs: pd.DataFrame) -> str:
    """The latest runs, newest first: days, status, and where their rows went."""
    latest = runs.sort_values("started_at", ascending=False).head(LATEST_RUNS)
    head = ("<tr><th>started (UTC)</th><th>days</th><th>status</th><th>rows read</th><th>deduplicated</th>"
            "<th>quarantined</th><th>by reason</th></tr>")
    rows = []
    for _, run in latest.iterrows():
        reasons = ", ".join(f"{html.escape(str(reason))} {_count(count)}"
                            for reason, count in _pairs(run.get("quarantine_reasons")))
        cells = [
            pd.Timestamp(run["started_at"]).strftime("%Y-%m-%d %H:%M"), f"{run['first_day']} to {run['last_day']}",
            html.escape(str(run["status"])), _count(run.get("rows_read")), _count(run.get("rows_deduplicated")),
            _count(run.get("rows_quarantined")), reasons or "none",
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return (f"<section><h2>Data quality</h2><p class=\"hint\">The latest {LATEST_RUNS} runs, newest first.</p>"
            f'<div class="scroll"><table class="runs">{head}{"".join(rows)}</table></div></section>')


def interval_chart(variants: pd.DataFrame, metric: str, title: str) -> alt.LayerChart:
    """`metric` (aps or spu) of each variant (rows of one experiment window) as a point with its 95% confidence
    interval as an error bar; variants without an estimate are left out."""
    rows = variants[variants[metric].notna()].sort_values("variant")
    data = pd.DataFrame({
        "variant": rows["variant"],
        "value": rows[metric].astype(float),
        "low": rows[f"{metric}_ci_low"].astype(float),
        "high": rows[f"{metric}_ci_high"].astype(float),
    })
    base = alt.Chart(data).encode(y=alt.Y("variant:N", title=None))
    bars = base.mark_errorbar(ticks=True).encode(
        x=alt.X("low:Q", title=f"{title} (95% interval)", scale=alt.Scale(zero=False)), x2="high:Q"
    )
    points = base.mark_point(filled=True, size=80).encode(
        x="value:Q", tooltip=[alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                              alt.Tooltip("high:Q", format=".3f")],
    )
    return alt.layer(bars, points).properties(width="container", height=40 + 30 * len(data), title=title)


def _experiments_section(experiments: pd.DataFrame) -> tuple[str, list[tuple[str, alt.TopLevelMixin]]]:
    """Each experiment to date (all users): a table of its variants with the lifts over control, a warning when the
    sample ratio is off, and SPU and APS with their intervals as error bars."""
    latest = experiments[experiments["is_latest"] & (experiments["dimension"] == ALL)]
    if latest.empty:
        return _note("Experiments", "no experiment has assigned users yet"), []
    parts = ['<section><h2>Experiments</h2><p class="hint">Each experiment to date, all users. A lift whose 95% '
             "interval contains 0% cannot be told apart from no effect.</p>"]
    charts = []
    for number, (experiment_id, variants) in enumerate(sorted(latest.groupby("experiment_id"), key=lambda g: g[0])):
        variants = variants.sort_values(["is_control", "variant"], ascending=[False, True])
        first = variants.iloc[0]
        parts.append(f"<h3>{html.escape(str(experiment_id))}: {first['window_start']} to {first['window_end']}, "
                     f"control variant: {html.escape(str(first['control_variant']))}</h3>")
        srm = first["srm_p_value"]
        if srm is not None and not pd.isna(srm) and srm < SRM_ALARM:
            parts.append(f'<p class="warning">Users per variant are far from the expected split (sample ratio '
                         f'p = {srm:.2g}): the assignment looks broken, so the lifts cannot be trusted.</p>')
        parts.append(_variant_table(variants))
        for metric, name in (("spu", "SPU, sessions per user"), ("aps", "APS, actions per session")):
            chart_id = f"experiment-{number}-{metric}"
            charts.append((chart_id, interval_chart(variants, metric, name)))
            parts.append(f'<div class="chart" id="{chart_id}"></div>')
    parts.append("</section>")
    return "".join(parts), charts


def _variant_table(variants: pd.DataFrame) -> str:
    head = ("<tr><th>variant</th><th>users</th><th>sessions</th><th>SPU</th><th>SPU lift</th><th>p</th>"
            "<th>APS</th><th>APS lift</th><th>p</th></tr>")
    rows = []
    for _, row in variants.iterrows():
        cells = [html.escape(str(row["variant"])), _count(row["users"]), _count(row["sessions"])]
        for metric in ("spu", "aps"):
            cells.append(_maybe(row[metric], "{:.2f}"))
            if row["is_control"]:
                cells += ["control", ""]
            else:
                lift = _maybe(row[f"{metric}_lift"], "{:+.1%}")
                interval = (f" [{_maybe(row[f'{metric}_lift_ci_low'], '{:+.1%}')}, "
                            f"{_maybe(row[f'{metric}_lift_ci_high'], '{:+.1%}')}]")
                cells += [lift + (interval if lift != "n/a" else ""), _maybe(row[f"{metric}_p_value"], "{:.3f}")]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'


def _maybe(value: object, pattern: str) -> str:
    return "n/a" if _is_missing(value) else pattern.format(value)


def _count(value: object) -> str:
    # delta-rs reads a long column with nulls (a run still running) as floats: counts are shown whole.
    return "n/a" if _is_missing(value) else f"{int(value):,}"


def _is_missing(value: object) -> bool:
    return value is None or (not isinstance(value, (list, tuple, dict)) and bool(pd.isna(value)))


def _pairs(value: object) -> list:
    # A map column (reason -> rows): a list of pairs from delta-rs, a dict from Spark, or null in a row without it.
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    return list(value.items()) if isinstance(value, dict) else list(value)


def _script_json(value: object) -> str:
    return _script_safe(json.dumps(value))


def _script_safe(text: str) -> str:
    """JSON placed in a <script>: '<' escaped, so a value from the data (a segment value, an event name) cannot
    close the script; the two line separators JavaScript reads as line ends, escaped too."""
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _tiles_section(tiles: list[Tile]) -> str:
    if not tiles:
        return _note("Headline", "no complete day yet")
    rows = []
    for period in PERIODS:
        of_period = [tile for tile in tiles if tile.period == period]
        if not of_period:
            continue
        cells = "".join(
            f'<div class="tile"><div class="label">{html.escape(tile.label)}</div>'
            f'<div class="value">{format_number(tile.label, tile.value)}</div>'
            f'<div class="change {_direction(tile.change)}">'
            f'{html.escape(tile.note or format_change(tile.change, tile.period))}</div></div>'
            for tile in of_period
        )
        rows.append(f'<h3>{period.capitalize()} of {of_period[0].period_start.isoformat()}</h3>'
                    f'<div class="tiles">{cells}</div>')
    return "<section><h2>Latest complete periods</h2>" + "".join(rows) + "</section>"


def format_number(label: str, value: float) -> str:
    """Ratios with two decimals, counts whole with thousands separators; n/a for a ratio without sessions."""
    if _is_missing(value):
        return "n/a"
    return f"{value:,.2f}" if label in ("APS", "SPU") else f"{value:,.0f}"


def format_change(change: float | None, period: str) -> str:
    """A relative change on the `period` (day, week or month) before, for people: '+5.0% on the day before',
    '0.0% ...' for one that rounds to nothing (no '-0.0%'), or 'no day before to compare' without one (None or
    NaN, from a null in the table)."""
    if _is_missing(change):
        return f"no {period} before to compare"
    return f"{_signed(100 * change)}% on the {period} before"


def _signed(value: float) -> str:
    # One decimal with its sign, and a plain 0.0 where the decimal rounds to nothing: -0.04 is no fall.
    return "0.0" if round(value, 1) == 0 else f"{value:+.1f}"


def _direction(change: float | None) -> str:
    if _is_missing(change) or round(100 * change, 1) == 0:
        return "flat"
    return "up" if change > 0 else "down"


def _note(section: str, text: str) -> str:
    return f'<section><h2>{html.escape(section)}</h2><p class="note">{html.escape(text)}</p></section>'


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem; color: #222; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.2rem; border-bottom: 1px solid #ddd; }} h3 {{ font-size: 1rem; }}
.tiles {{ display: flex; flex-wrap: wrap; gap: 0.75rem; }}
.tile {{ flex: 1 1 9rem; box-sizing: border-box; border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.8rem; }}
.tile .label {{ color: #555; font-size: 0.85rem; }} .tile .value {{ font-size: 1.6rem; font-weight: 600; }}
.change {{ font-size: 0.85rem; }} .up {{ color: #17803d; }} .down {{ color: #b42318; }} .flat {{ color: #555; }}
.chart {{ width: 100%; margin: 1rem 0; }} .note, .hint {{ color: #555; }} .warning {{ color: #b42318; }}
.scroll {{ overflow-x: auto; }} table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ padding: 0.25rem 0.6rem; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; }}
table.runs td:last-child, table.runs th:last-child {{ white-space: normal; text-align: left; }}
table.names td:first-child, table.names th:first-child {{ text-align: left; white-space: normal; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="hint">Generated {generated} (UTC) from the sessionlake tables. {scope}</p>
{body}
<script>{bundle}</script>
<script>
// The shared datasets, as columns and rows; each chart gets its own row objects (Vega writes into the rows it
// is given), looked up by the name its spec's data carries.
const DATA = {data};
function rows(name) {{
  const table = DATA[name];
  return table.data.map(row => Object.fromEntries(table.columns.map((column, i) => [column, row[i]])));
}}
function draw(id, spec) {{
  const name = spec.data && spec.data.name;
  if (name in DATA) spec.datasets = {{...spec.datasets, [name]: rows(name)}};
  return vegaEmbed(id, spec, {{actions: false}}).then(result => {{
    // A new breakdown brings other legend labels: lay the chart out again, or they are cut to the old width.
    if ((spec.params || []).some(param => param.name === "breakdown")) {{
      result.view.addSignalListener("breakdown", () => result.view.resize().runAsync());
    }}
  }}).catch(console.error);
}}
{embeds}</script>
</body>
</html>
"""
