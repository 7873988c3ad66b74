"""Text for a terminal from rows of the tables: the `experiments` command's per-variant table (plain Python)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from jobs.config import ALL
from jobs.inference import SRM_ALARM

_METRICS = (("spu", "SPU, sessions per user"), ("aps", "APS, actions per session"))


def experiment_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of one experiment's window and dimension value in the experiments table (any order) as a terminal
    table, titled with the dimension value unless it is all users: counts, then
    SPU and APS per variant with their 95% intervals and, beside each non-control variant, the lift over control,
    its interval and p-value. The control comes first, then the variants by name."""
    ordered = sorted(rows, key=lambda row: (not row["is_control"], row["variant"]))
    first = ordered[0]
    segment = "" if first["dimension"] == ALL else f", {first['dimension']} {first['dimension_value']}"
    lines = [
        f"{first['experiment_id']}{segment}: {first['window_start']} to {first['window_end']}"
        f"{' (the experiment to date)' if first['is_latest'] else ''}, control: {first['control_variant']}",
        f"users excluded from the experiment (seen in two variants): {first['excluded_users']:,}; "
        f"sample ratio mismatch: "
        f"{_p_value(first['srm_p_value'])} (users per variant against the expected split)",
    ]
    srm = first["srm_p_value"]
    if srm is not None and srm < SRM_ALARM:
        lines.append(f"WARNING: users per variant are far from the expected split (p < {SRM_ALARM}): the assignment "
                     "looks broken, so the lifts below cannot be trusted")
    width = max(len("variant"), *(len(row["variant"]) for row in ordered))
    lines += ["", f"{'variant':<{width}}  {'users':>10}  {'sessions':>12}  {'actions':>12}"]
    lines += [f"{row['variant']:<{width}}  {row['users']:>10,}  {row['sessions']:>12,}  {row['actions']:>12,}"
              for row in ordered]
    for metric, title in _METRICS:
        lines += ["", title, f"{'variant':<{width}}  {'value':>8}  {'95% CI':<18}  {'lift':>7}  {'95% CI of lift':<18}  "
                             f"{'p':>7}"]
        for row in ordered:
            estimate = f"{row['variant']:<{width}}  {_number(row[metric]):>8}  {_interval(row, metric, _number):<18}"
            lift = "" if row["is_control"] else (
                f"  {_percent(row[f'{metric}_lift']):>7}  {_interval(row, f'{metric}_lift', _percent):<18}"
                f"  {_p_value(row[f'{metric}_p_value']):>7}"
            )
            lines.append((estimate + lift).rstrip())
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def _p_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _interval(row: Mapping[str, Any], column: str, shown: Callable[[float | None], str]) -> str:
    low, high = row[f"{column}_ci_low"], row[f"{column}_ci_high"]
    return "n/a" if low is None or high is None else f"[{shown(low)}, {shown(high)}]"
