"""A/B statistics from per-variant moments: a hand-worked example, then calibration and power on simulated users
(no Spark: the statistics take per-user sums, so simulations feed them directly)."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import date
from statistics import NormalDist

import numpy as np
import pytest

from jobs.experiments import MOMENTS
from jobs.inference import (
    Estimate,
    ExperimentError,
    Moments,
    aps,
    control_of,
    experiment_rows,
    lift,
    sample_ratio_p_value,
    spu,
    window_results,
)

Z95 = NormalDist().inv_cdf(0.975)
MON, TUE = date(2026, 11, 2), date(2026, 11, 3)


def moments(sessions: list[float], actions: list[float]) -> Moments:
    """The sums the Spark side computes, written out for a few users."""
    return Moments(
        users=len(sessions),
        sessions=sum(sessions),
        actions=sum(actions),
        sessions_squared=sum(s * s for s in sessions),
        actions_squared=sum(a * a for a in actions),
        actions_times_sessions=sum(a * s for a, s in zip(actions, sessions, strict=True)),
    )


# Control: 3 users with (sessions, actions) (1, 2), (2, 2), (3, 6). Treatment: 2 users, (2, 4) and (4, 10).
# Control by hand: mean S = 2, mean A = 10/3, var S = 1, var A = 16/3, cov(A, S) = 2 (n - 1 = 2).
# Treatment: mean S = 3, mean A = 7, var S = 2, var A = 18, cov(A, S) = 6 (n - 1 = 1).
CONTROL = moments([1, 2, 3], [2, 2, 6])
TREATMENT = moments([2, 4], [4, 10])


def test_spu_is_the_mean_of_sessions_over_users_with_the_standard_error_of_a_mean():
    assert spu(CONTROL).value == pytest.approx(2.0)
    assert spu(CONTROL).standard_error == pytest.approx(math.sqrt(1 / 3))  # sqrt(var S / n)
    assert spu(TREATMENT).value == pytest.approx(3.0)
    assert spu(TREATMENT).standard_error == pytest.approx(1.0)  # sqrt(2 / 2)


def test_aps_is_total_actions_over_total_sessions_with_the_delta_method_variance_over_users():
    # Control: (16/3 / 4 - 2 x 10/3 x 2 / 8 + (100/9) x 1 / 16) / 3 = (4/3 - 5/3 + 25/36) / 3 = 13/108.
    assert aps(CONTROL).value == pytest.approx(5 / 3)
    assert aps(CONTROL).standard_error == pytest.approx(math.sqrt(13 / 108))
    # Treatment: (18/9 - 2 x 7 x 6 / 27 + 49 x 2 / 81) / 2 = (162 - 252 + 98) / 81 / 2 = 4/81.
    assert aps(TREATMENT).value == pytest.approx(7 / 3)
    assert aps(TREATMENT).standard_error == pytest.approx(2 / 9)


def test_the_confidence_interval_is_the_estimate_plus_or_minus_1_96_standard_errors():
    estimate = Estimate(value=4.0, standard_error=0.5)
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx((4.0 - 0.5 * Z95, 4.0 + 0.5 * Z95))
    assert Z95 == pytest.approx(1.959964, abs=1e-6)


def test_lift_is_the_relative_change_with_a_delta_method_interval_and_its_p_value():
    # APS 7/3 against 5/3: ratio 1.4, lift +40%. Var = (2/9 / (5/3))^2 + (1.4 x sqrt(13/108) / (5/3))^2
    # = 4/225 + 0.84^2 x 13/108.
    result = lift(aps(TREATMENT), aps(CONTROL))
    standard_error = math.sqrt(4 / 225 + 0.84**2 * 13 / 108)
    assert result.value == pytest.approx(0.4)
    assert result.standard_error == pytest.approx(standard_error)
    assert result.p_value == pytest.approx(2 * (1 - NormalDist().cdf(0.4 / standard_error)))
    assert (result.ci_low, result.ci_high) == pytest.approx((0.4 - Z95 * standard_error, 0.4 + Z95 * standard_error))


def test_an_interval_that_excludes_zero_lift_comes_with_a_p_value_under_5_percent():
    just_in = lift(Estimate(1.0 + 1.95 * 0.01, 0.01), Estimate(1.0, 0.0))
    just_out = lift(Estimate(1.0 + 1.97 * 0.01, 0.01), Estimate(1.0, 0.0))
    assert just_in.ci_low < 0 and just_in.p_value > 0.05
    assert just_out.ci_low > 0 and just_out.p_value < 0.05


def test_sample_ratio_mismatch_is_a_chi_square_test_of_users_against_the_expected_split():
    # 3 against 2 users for 50/50: chi-square 0.2 with 1 degree of freedom, P(chi2_1 > x) = 2 P(Z > sqrt(x)).
    assert sample_ratio_p_value([3, 2], [0.5, 0.5]) == pytest.approx(2 * NormalDist().cdf(-math.sqrt(0.2)))
    # 100 users each against a 1:1:2 split: expected 75, 75, 150, chi-square 100/3; 2 degrees: P = exp(-x / 2).
    assert sample_ratio_p_value([100, 100, 100], [1, 1, 2]) == pytest.approx(math.exp(-50 / 3))
    assert sample_ratio_p_value([500, 500], [50, 50]) == pytest.approx(1.0)


def test_sample_ratio_needs_one_expected_share_per_variant():
    with pytest.raises(ValueError, match="one expected share per variant"):
        sample_ratio_p_value([10, 10, 10], [0.5, 0.5])


# Simulated users: heavy-tailed session counts (1 + floor of a lognormal), and actions correlated within a user: each
# user has a propensity drawn from a gamma distribution, and each of their sessions has 1 + Poisson(propensity)
# actions. Sessions of one user are alike, which is what a per-session test ignores.


def simulate_users(rng: np.random.Generator, users: int, uplift: float = 0.0):
    """(S, A, A2): per user, sessions, actions and the sum of squared actions per session."""
    sessions = 1 + np.floor(rng.lognormal(mean=0.3, sigma=1.0, size=users)).astype(np.int64)
    propensity = rng.gamma(shape=1.5, scale=2.0, size=users) * (1 + uplift)
    per_session = 1 + rng.poisson(np.repeat(propensity, sessions))
    owner = np.repeat(np.arange(users), sessions)
    actions = np.bincount(owner, weights=per_session, minlength=users)
    actions_squared = np.bincount(owner, weights=per_session.astype(np.float64) ** 2, minlength=users)
    return sessions.astype(np.float64), actions, actions_squared


def sums(sessions, actions) -> Moments:
    return Moments(
        users=len(sessions),
        sessions=float(sessions.sum()),
        actions=float(actions.sum()),
        sessions_squared=float((sessions * sessions).sum()),
        actions_squared=float((actions * actions).sum()),
        actions_times_sessions=float((actions * sessions).sum()),
    )


def naive_aps(sessions, actions, actions_squared) -> Estimate:
    """The interval a per-session t-test gives: every session an independent draw (what sessionlake does not do)."""
    count, total = sessions.sum(), actions.sum()
    variance = (actions_squared.sum() - total * total / count) / (count - 1)
    return Estimate(total / count, math.sqrt(variance / count))


def covers_zero(result) -> bool:
    return result.ci_low <= 0 <= result.ci_high


def a_a_tests(seed: int, tests: int, users: int):
    rng = np.random.default_rng(seed)
    for _ in range(tests):
        yield simulate_users(rng, users), simulate_users(rng, users)


def test_a_a_intervals_of_aps_and_spu_cover_zero_lift_95_percent_of_the_time_and_the_per_session_ones_do_not():
    covered = {"aps": 0, "spu": 0, "naive_aps": 0}
    tests = 1000
    for control, treatment in a_a_tests(seed=20261206, tests=tests, users=1000):
        c, t = sums(*control[:2]), sums(*treatment[:2])
        covered["aps"] += covers_zero(lift(aps(t), aps(c)))
        covered["spu"] += covers_zero(lift(spu(t), spu(c)))
        covered["naive_aps"] += covers_zero(lift(naive_aps(*treatment), naive_aps(*control)))
    coverage = {name: count / tests for name, count in covered.items()}
    assert 0.935 <= coverage["aps"] <= 0.965, coverage
    assert 0.935 <= coverage["spu"] <= 0.965, coverage
    assert coverage["naive_aps"] < 0.90, coverage


def test_a_five_percent_aps_effect_is_detected_at_the_power_the_formula_predicts():
    rng = np.random.default_rng(61206)
    tests, detected, standard_errors = 1000, 0, []
    for _ in range(tests):
        control, treatment = simulate_users(rng, 2000), simulate_users(rng, 2000, uplift=0.05 * 4.0 / 3.0)
        result = lift(aps(sums(*treatment[:2])), aps(sums(*control[:2])))
        detected += result.p_value < 0.05
        standard_errors.append(result.standard_error)
    # True APS = 1 + mean propensity = 1 + 1.5 x 2 = 4; propensity x (1 + 0.05 x 4/3) makes it 4.2: +5%.
    effect, standard_error = 0.05, float(np.mean(standard_errors))
    predicted = NormalDist().cdf(effect / standard_error - Z95) + NormalDist().cdf(-effect / standard_error - Z95)
    assert 0.3 < predicted < 0.9  # a power the test can tell apart from 0 and 1
    assert detected / tests == pytest.approx(predicted, abs=0.04)


def test_the_control_is_the_configured_variant_else_the_one_named_control_else_the_first_by_name():
    assert control_of("exp", ["b", "control"], configured="b") == "b"
    assert control_of("exp", ["treatment", "control"], configured=None) == "control"
    assert control_of("exp", ["v2", "v1"], configured=None) == "v1"


def test_a_configured_control_without_users_is_an_error_naming_the_experiment():
    with pytest.raises(ExperimentError, match="experiment 'exp': control 'old' has no users; its variants are a, b"):
        control_of("exp", ["a", "b"], configured="old")


def test_a_windows_results_give_each_variant_its_estimates_and_each_non_control_its_lift_over_control():
    results = window_results({"A": CONTROL, "B": TREATMENT}, control="A", expected_split={"A": 1.0, "B": 1.0})

    assert results["A"]["is_control"] and not results["B"]["is_control"]
    assert results["A"]["aps"] == pytest.approx(5 / 3) and results["A"]["aps_lift"] is None
    assert results["A"]["spu_se"] == pytest.approx(math.sqrt(1 / 3))
    assert results["B"]["aps_lift"] == pytest.approx(0.4)
    assert results["B"]["aps_lift_ci_high"] == pytest.approx(0.4 + Z95 * math.sqrt(4 / 225 + 0.84**2 * 13 / 108))
    assert results["B"]["spu_lift"] == pytest.approx(0.5)  # SPU 3 against 2
    # 5 users, 2.5 expected per variant: too few for the chi-square approximation, so no sample-ratio p-value.
    assert results["A"]["srm_p_value"] is None and results["B"]["srm_p_value"] is None


def test_a_variant_with_fewer_than_two_users_gets_no_estimate_and_no_lift():
    results = window_results({"A": CONTROL, "B": moments([3], [9])}, control="A", expected_split={"A": 1, "B": 1})
    assert results["B"]["spu"] is None and results["B"]["aps_lift"] is None and results["B"]["aps_p_value"] is None
    assert results["A"]["spu"] == pytest.approx(2.0)


TEN_USERS = Moments(users=10, sessions=20, actions=40, sessions_squared=50, actions_squared=200,
                    actions_times_sessions=90)


def row(variant: str, window_end: date, m: Moments, dimension=("all", "all")) -> dict:
    """A row as variant_moments gives it."""
    return {"experiment_id": "exp", "variant": variant, "dimension": dimension[0], "dimension_value": dimension[1],
            "window_end": window_end, **{name: getattr(m, name) for name in MOMENTS}}


def test_the_experiments_rows_carry_each_windows_moments_statistics_control_and_excluded_users():
    no_users = Moments(0, 0, 0, 0, 0, 0)
    rows = experiment_rows(
        [row("B", TUE, TREATMENT), row("A", TUE, CONTROL), row("A", MON, moments([1, 2], [2, 2])),
         row("B", MON, no_users)],
        excluded={"exp": 1}, controls={}, splits={},
    )

    assert [(r["window_end"], r["variant"]) for r in rows] == [(MON, "A"), (MON, "B"), (TUE, "A"), (TUE, "B")]
    # On Monday B has no users yet: A is the control (first by name), B gets no estimate and no lift.
    assert rows[0]["control_variant"] == "A" and rows[0]["spu"] == pytest.approx(1.5)
    assert rows[1]["users"] == 0 and rows[1]["spu"] is None and rows[1]["spu_lift"] is None
    assert rows[3]["aps_lift"] == pytest.approx(0.4) and rows[3]["excluded_users"] == 1
    assert (rows[3]["users"], rows[3]["sessions"], rows[3]["actions_times_sessions"]) == (2, 6, 48)


def test_a_configured_variant_without_users_counts_as_zero_users_in_the_sample_ratio_test():
    rows = experiment_rows(
        [row("A", MON, TEN_USERS), row("B", MON, TEN_USERS)],
        excluded={}, controls={}, splits={"exp": {"A": 1, "B": 1, "C": 1}},
    )
    # 10, 10 and 0 users against 20/3 each: chi-square (10/3)^2 / (20/3) x 2 + 20/3 = 10, 2 degrees: exp(-10 / 2).
    assert [r["variant"] for r in rows] == ["A", "B", "C"]
    assert rows[2]["users"] == 0
    assert rows[0]["srm_p_value"] == pytest.approx(math.exp(-5))


def test_a_variant_with_users_but_no_configured_share_is_an_error_naming_it():
    with pytest.raises(ExperimentError, match="variant B has users but no share in experiments.settings.exp.split"):
        experiment_rows([row("A", MON, TEN_USERS), row("B", MON, TEN_USERS)], excluded={}, controls={},
                        splits={"exp": {"A": 1, "C": 1}})


def test_each_segment_values_variants_are_compared_on_their_own_with_the_experiments_control():
    new, returning = ("user_type", "new"), ("user_type", "returning")
    rows = experiment_rows(
        [row("A", MON, CONTROL), row("B", MON, TREATMENT), row("A", MON, TEN_USERS, new),
         row("B", MON, moments([1, 2, 3], [3, 6, 9]), new), row("A", MON, TEN_USERS, returning)],
        excluded={}, controls={}, splits={},
    )

    by_key = {(r["dimension"], r["dimension_value"], r["variant"]): r for r in rows}
    assert sorted(by_key) == [("all", "all", "A"), ("all", "all", "B"), ("user_type", "new", "A"),
                              ("user_type", "new", "B"), ("user_type", "returning", "A"),
                              ("user_type", "returning", "B")]
    # The hand-worked lift of +40% holds for all users; new users' B (APS 18 / 6 = 3) against new users' A (APS
    # 40 / 20 = 2): +50%.
    assert by_key[("all", "all", "B")]["aps_lift"] == pytest.approx(0.4)
    assert by_key[("user_type", "new", "B")]["aps_lift"] == pytest.approx(0.5)
    # No returning user in B: zeros, no estimate, and the worst sample ratio for that segment (10 against 0).
    assert by_key[("user_type", "returning", "B")]["users"] == 0
    assert by_key[("user_type", "returning", "B")]["aps"] is None
    assert by_key[("user_type", "returning", "A")]["srm_p_value"] == pytest.approx(math.erfc(math.sqrt(10 / 2)))


def test_the_moments_the_spark_side_names_are_the_ones_the_statistics_take():
    assert MOMENTS == tuple(field.name for field in fields(Moments))
