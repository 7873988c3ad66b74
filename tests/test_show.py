"""The experiments command's table: what a terminal shows of one experiment's window (plain Python, no Spark)."""

from datetime import date

from jobs.show import experiment_table


def variant(name, is_control, users, sessions, actions, spu, aps, srm=0.5):
    """A row of the experiments table; each estimate's interval is ±0.1, each lift's ±0.05, for the eye."""
    row = {
        "experiment_id": "tips", "dimension": "all", "dimension_value": "all", "variant": name, "window_start": date(2026, 11, 2), "window_end": date(2026, 11, 8),
        "is_latest": True, "control_variant": "old", "is_control": is_control, "excluded_users": 3,
        "users": users, "sessions": sessions, "actions": actions, "srm_p_value": srm,
    }
    for metric, value, lift, p in (("spu", spu, spu / 2.0 - 1, 0.0004), ("aps", aps, aps / 5.0 - 1, 0.2126)):
        row |= {metric: value, f"{metric}_ci_low": value - 0.1, f"{metric}_ci_high": value + 0.1}
        row |= {f"{metric}_lift": None, f"{metric}_lift_ci_low": None, f"{metric}_lift_ci_high": None,
                f"{metric}_p_value": None} if is_control else {
            f"{metric}_lift": lift, f"{metric}_lift_ci_low": lift - 0.05, f"{metric}_lift_ci_high": lift + 0.05,
            f"{metric}_p_value": p}
    return row


def test_the_control_comes_first_then_each_variant_with_its_lift_interval_and_p_value():
    rows = [variant("new", False, 1_010, 2_222, 12_221, 2.2, 5.5), variant("old", True, 990, 1_980, 9_900, 2.0, 5.0)]

    assert experiment_table(rows) == "\n".join([
        "tips: 2026-11-02 to 2026-11-08 (the experiment to date), control: old",
        "users excluded from the experiment (seen in two variants): 3; sample ratio mismatch: 0.500 (users per "
        "variant against the expected split)",
        "",
        "variant       users      sessions       actions",
        "old             990         1,980         9,900",
        "new           1,010         2,222        12,221",
        "",
        "SPU, sessions per user",
        "variant     value  95% CI                 lift  95% CI of lift            p",
        "old         2.000  [1.900, 2.100]",
        "new         2.200  [2.100, 2.300]       +10.0%  [+5.0%, +15.0%]      <0.001",
        "",
        "APS, actions per session",
        "variant     value  95% CI                 lift  95% CI of lift            p",
        "old         5.000  [4.900, 5.100]",
        "new         5.500  [5.400, 5.600]       +10.0%  [+5.0%, +15.0%]       0.213",
    ])


def test_a_sample_ratio_mismatch_is_a_warning_above_the_numbers():
    rows = [variant("old", True, 990, 1_980, 9_900, 2.0, 5.0, srm=0.0002),
            variant("new", False, 1_200, 2_400, 12_000, 2.0, 5.0, srm=0.0002)]

    lines = experiment_table(rows).splitlines()

    assert lines[1].endswith("sample ratio mismatch: <0.001 (users per variant against the expected split)")
    assert lines[2].startswith("WARNING: users per variant are far from the expected split (p < 0.001)")


def test_a_statistic_without_a_value_shows_as_n_a():
    rows = [variant("old", True, 1, 0, 0, 0.0, 5.0), variant("new", False, 1, 0, 0, 0.0, 5.0)]
    for row in rows:
        row |= {"aps": None, "aps_ci_low": None, "aps_ci_high": None, "aps_lift": None, "aps_lift_ci_low": None,
                "aps_lift_ci_high": None, "aps_p_value": None, "srm_p_value": None}

    assert experiment_table(rows).splitlines()[-1] == "new           n/a  n/a                     n/a  n/a                     n/a"


def test_a_segment_values_table_is_titled_with_it():
    rows = [variant("old", True, 990, 1_980, 9_900, 2.0, 5.0), variant("new", False, 1_010, 2_222, 12_221, 2.2, 5.5)]
    for row in rows:
        row |= {"dimension": "user_type", "dimension_value": "returning"}

    assert experiment_table(rows).splitlines()[0] == (
        "tips, user_type returning: 2026-11-02 to 2026-11-08 (the experiment to date), control: old"
    )
