"""A/B test statistics from a handful of per-variant moments (plain Python on the driver).

The randomization unit is the user, so every variance here is taken over users, never over sessions. Each variant
arrives as `Moments`: its user count and the sums of each user's sessions S and actions A, of their squares and of
their product, computed in Spark from per-user sums (no event-sized data leaves the executors).

- SPU is a per-user mean, mean(S), with the variance of a mean.
- APS is a ratio of per-user means, mean(A) / mean(S); its variance comes from the delta method over users
  (Deng, Knoblich and Lu 2018, "Applying the Delta Method in Metric Analytics"):
  Var(APS) = (var(A) / mS^2 - 2 mA cov(A, S) / mS^3 + mA^2 var(S) / mS^4) / n.
- The relative lift of a variant over control, t / c - 1, is a ratio of two independent estimates; its variance is
  the delta method again: Var(t / c) = Var(t) / c^2 + t^2 Var(c) / c^4. Its confidence interval and the two-sided
  p-value come from that one standard error, so an interval that excludes zero always has p < 0.05.
- Sample ratio mismatch: a chi-square test of the users per variant against the expected split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from statistics import NormalDist

CONFIDENCE = 0.95
_Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.959964...


@dataclass(frozen=True)
class Moments:
    """One variant's users reduced to sums over users of S, A, S^2, A^2 and A x S (S sessions, A actions)."""

    users: int
    sessions: float
    actions: float
    sessions_squared: float
    actions_squared: float
    actions_times_sessions: float


# Moments' fields in order: the columns jobs.experiments.variant_moments names (its MOMENTS).
_MOMENT_FIELDS = tuple(field.name for field in fields(Moments))


@dataclass(frozen=True)
class Estimate:
    """A metric's value with its standard error and 95% confidence interval (normal approximation)."""

    value: float
    standard_error: float

    @property
    def ci_low(self) -> float:
        return self.value - _Z * self.standard_error

    @property
    def ci_high(self) -> float:
        return self.value + _Z * self.standard_error


@dataclass(frozen=True)
class Lift(Estimate):
    """A variant's relative change against control (0.05 = +5%), its 95% interval and two-sided p-value."""

    p_value: float


def _sample_covariance(users: int, sum_xy: float, sum_x: float, sum_y: float) -> float:
    """Unbiased covariance over users (n - 1 in the denominator) from sums; the variance when x is y."""
    return (sum_xy - sum_x * sum_y / users) / (users - 1)


def spu(moments: Moments) -> Estimate:
    """Sessions per user: the mean of S over users, with the standard error of a mean. Needs 2 users or more."""
    n = moments.users
    variance = _sample_covariance(n, moments.sessions_squared, moments.sessions, moments.sessions)
    return Estimate(moments.sessions / n, math.sqrt(max(variance, 0.0) / n))


def aps(moments: Moments) -> Estimate:
    """Actions per session: sum A / sum S, with the delta method's standard error over users (module docstring).
    Needs 2 users or more and at least one session."""
    n = moments.users
    mean_s, mean_a = moments.sessions / n, moments.actions / n
    var_s = _sample_covariance(n, moments.sessions_squared, moments.sessions, moments.sessions)
    var_a = _sample_covariance(n, moments.actions_squared, moments.actions, moments.actions)
    cov_as = _sample_covariance(n, moments.actions_times_sessions, moments.actions, moments.sessions)
    variance = (var_a / mean_s**2 - 2 * mean_a * cov_as / mean_s**3 + mean_a**2 * var_s / mean_s**4) / n
    return Estimate(mean_a / mean_s, math.sqrt(max(variance, 0.0)))


def lift(treatment: Estimate, control: Estimate) -> Lift:
    """treatment / control - 1, its delta-method standard error and the two-sided p-value of no change."""
    ratio = treatment.value / control.value
    variance = (treatment.standard_error / control.value) ** 2 + (
        ratio * control.standard_error / control.value
    ) ** 2
    standard_error = math.sqrt(variance)
    if standard_error == 0:
        p_value = 1.0 if ratio == 1 else 0.0
    else:
        p_value = 2 * NormalDist().cdf(-abs(ratio - 1) / standard_error)
    return Lift(ratio - 1, standard_error, p_value)


def sample_ratio_p_value(users: Sequence[int], expected_split: Sequence[float]) -> float:
    """The chi-square test's p-value of the users per variant against the expected split (any positive weights,
    normalized): a small value says assignment is broken, whatever the metrics show."""
    if len(users) != len(expected_split) or len(users) < 2:
        raise ValueError("sample ratio test: one expected share per variant, two variants or more")
    total, weight = sum(users), sum(expected_split)
    expected = [total * share / weight for share in expected_split]
    statistic = sum((seen - want) ** 2 / want for seen, want in zip(users, expected, strict=True))
    # Imported here: the command line imports this module for its errors, and scipy takes a second to import.
    from scipy.stats import chi2

    return float(chi2.sf(statistic, len(users) - 1))


class ExperimentError(ValueError):
    """An experiment's settings that its data contradict (a control or a variant missing); names the experiment."""


# Pearson's chi-square is an approximation that needs enough users: below this many expected in some variant, the
# sample-ratio test gives no p-value (as in an experiment's first hours).
MIN_EXPECTED_USERS = 5
# Below this sample-ratio p-value the assignment looks broken and the lifts cannot be trusted: the experiments
# command and the report warn (a common threshold: with many experiments watched daily, 0.05 would cry wolf).
SRM_ALARM = 0.001

_NO_USERS = Moments(0, 0, 0, 0, 0, 0)


def control_of(experiment_id: str, variants: Sequence[str], configured: str | None) -> str:
    """The control variant: the configured one (which must be among `variants`), else the one named "control", else
    the first in sorted order."""
    if configured is None:
        return "control" if "control" in variants else sorted(variants)[0]
    if configured not in variants:
        raise ExperimentError(f"experiment {experiment_id!r}: control {configured!r} has no users; its variants are "
                              f"{', '.join(sorted(variants))} (experiments.settings.{experiment_id}.control)")
    return configured


def _metric(estimate: Estimate | None, lifted: Lift | None, name: str) -> dict[str, float | None]:
    """A metric's output columns: value, standard error, interval, then its lift's; None where there is none."""
    return {
        name: estimate.value if estimate else None,
        f"{name}_se": estimate.standard_error if estimate else None,
        f"{name}_ci_low": estimate.ci_low if estimate else None,
        f"{name}_ci_high": estimate.ci_high if estimate else None,
        f"{name}_lift": lifted.value if lifted else None,
        f"{name}_lift_ci_low": lifted.ci_low if lifted else None,
        f"{name}_lift_ci_high": lifted.ci_high if lifted else None,
        f"{name}_p_value": lifted.p_value if lifted else None,
    }


def _sample_ratio(window: dict[str, Moments], split: dict[str, float]) -> float | None:
    users = [window[variant].users for variant in split]
    total, weight = sum(users), sum(split.values())
    if min(total * share / weight for share in split.values()) < MIN_EXPECTED_USERS:
        return None
    return sample_ratio_p_value(users, list(split.values()))


def window_results(
    window: dict[str, Moments], control: str, expected_split: dict[str, float]
) -> dict[str, dict[str, object]]:
    """Each variant's statistics for one analysis window, from its moments (every variant of `expected_split`
    present): SPU and APS with their standard errors and intervals, their lift against `control` (none for
    control itself), and the window's sample-ratio p-value against `expected_split` (none below
    MIN_EXPECTED_USERS expected in a variant). A variant with fewer than 2 users, or without sessions for APS,
    gets no estimate; a lift needs the control's estimate too."""

    def estimates(moments: Moments) -> tuple[Estimate | None, Estimate | None]:
        if moments.users < 2:
            return None, None
        return spu(moments), aps(moments) if moments.sessions > 0 else None

    def lift_over_control(estimate: Estimate | None, of_control: Estimate | None, is_control: bool) -> Lift | None:
        if is_control or estimate is None or of_control is None or of_control.value == 0:
            return None
        return lift(estimate, of_control)

    srm = _sample_ratio(window, expected_split)
    control_spu, control_aps = estimates(window[control])
    results = {}
    for variant in sorted(window):
        variant_spu, variant_aps = estimates(window[variant])
        is_control = variant == control
        results[variant] = {
            "is_control": is_control,
            **_metric(variant_spu, lift_over_control(variant_spu, control_spu, is_control), "spu"),
            **_metric(variant_aps, lift_over_control(variant_aps, control_aps, is_control), "aps"),
            "srm_p_value": srm,
        }
    return results


def _expected_split(experiment_id: str, variants: set[str], configured: dict[str, float] | None) -> dict[str, float]:
    if configured is None:
        return {variant: 1.0 for variant in sorted(variants)}
    unexpected = sorted(variants - set(configured))
    if unexpected:
        raise ExperimentError(f"experiment {experiment_id!r}: variant {', '.join(unexpected)} has users but no share "
                              f"in experiments.settings.{experiment_id}.split")
    return dict(configured)


_STATISTICS = ("spu", "aps")
_STATISTIC_SUFFIXES = ("", "_se", "_ci_low", "_ci_high", "_lift", "_lift_ci_low", "_lift_ci_high", "_p_value")

# The experiments table's columns, as experiment_rows fills them (a Spark DDL schema).
EXPERIMENTS_SCHEMA = ", ".join([
    "experiment_id string", "dimension string", "dimension_value string", "variant string", "window_start date", "window_end date", "is_latest boolean",
    "control_variant string", "is_control boolean", "excluded_users long",
    *(f"{name} long" for name in _MOMENT_FIELDS),
    *(f"{statistic}{suffix} double" for statistic in _STATISTICS for suffix in _STATISTIC_SUFFIXES),
    "srm_p_value double",
])


def experiment_rows(
    moment_rows: Sequence[dict[str, object]],
    excluded: dict[str, int],
    controls: dict[str, str],
    splits: dict[str, dict[str, float]],
) -> list[dict[str, object]]:
    """The experiments table's rows (EXPERIMENTS_SCHEMA) from variant_moments' rows (experiment_id, variant,
    dimension, dimension_value, window_end and the moments): per experiment, dimension value, variant and window,
    the counts, the moments and window_results' statistics (each dimension value's users compared on their own), with the experiment's first day, whether the window is its latest (the experiment to date), its
    control and its excluded users. `controls` and `splits` hold the configured ones by
    experiment id; a configured variant without users gets rows of zeros. ExperimentError when the data
    contradict them."""
    windows: dict[tuple[str, str, str, object], dict[str, Moments]] = {}
    for row in moment_rows:
        key = (row["experiment_id"], row["dimension"], row["dimension_value"], row["window_end"])
        windows.setdefault(key, {})[row["variant"]] = Moments(*(row[name] for name in _MOMENT_FIELDS))
    variants_of: dict[str, set[str]] = {}
    ends = {}
    for (experiment_id, _, _, window_end), window in windows.items():
        variants_of.setdefault(experiment_id, set()).update(window)
        ends.setdefault(experiment_id, []).append(window_end)
    rows = []
    for (experiment_id, dimension, dimension_value, window_end), window in sorted(windows.items()):
        split = _expected_split(experiment_id, variants_of[experiment_id], splits.get(experiment_id))
        window = {variant: window.get(variant, _NO_USERS) for variant in split}
        control = control_of(experiment_id, sorted(variants_of[experiment_id]), controls.get(experiment_id))
        results = window_results(window, control, split)
        for variant, moments in sorted(window.items()):
            rows.append({
                "experiment_id": experiment_id,
                "dimension": dimension,
                "dimension_value": dimension_value,
                "variant": variant,
                "window_start": min(ends[experiment_id]),
                "window_end": window_end,
                "is_latest": window_end == max(ends[experiment_id]),
                "control_variant": control,
                "excluded_users": excluded.get(experiment_id, 0),
                **{name: getattr(moments, name) for name in _MOMENT_FIELDS},
                **results[variant],
            })
    return rows
