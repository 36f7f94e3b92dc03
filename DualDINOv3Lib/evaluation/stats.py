"""Paired Student t-test between configurations, with the t distribution computed here (no scipy).

The two-sided p-value of t with ``df`` degrees of freedom is ``I_x(df/2, 1/2)`` with ``x = df / (df + t^2)``,
where ``I_x(a, b)`` is the regularised incomplete beta function, evaluated by its continued fraction (modified
Lentz algorithm) on the side of ``x`` where the fraction converges fast, and ``1 - I_{1-x}(b, a)`` on the other.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..domain import TUMOUR_CLASSES
from .aggregate import STRATA_AND_ALL, in_stratum
from .metrics import CaseMetrics

_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 100_000


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b)`` for a, b > 0 and 0 <= x <= 1 (the CDF of a Beta(a, b) variable at x)."""
    if not (a > 0 and b > 0):
        raise ValueError(f"incomplete beta needs a > 0 and b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"incomplete beta needs 0 <= x <= 1, got x={x}")
    if x == 0.0 or x == 1.0:
        return x
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - regularized_incomplete_beta(b, a, 1.0 - x)
    log_front = a * math.log(x) + b * math.log1p(-x) - math.log(a) - _log_beta(a, b)
    return math.exp(log_front) * _beta_continued_fraction(a, b, x)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """``1 / (1 + d1 / (1 + d2 / (1 + ...)))`` with the incomplete beta's coefficients d_k (modified Lentz)."""
    value, c, d = _TINY, _TINY, 0.0
    for k in range(_MAX_TERMS):
        numerator = 1.0 if k == 0 else _beta_term(a, b, x, k)
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + numerator / c
        c = c if abs(c) > _TINY else _TINY
        step = c * d
        value *= step
        if abs(step - 1.0) < _EPS:
            return value
    raise ArithmeticError(f"incomplete beta continued fraction did not converge for a={a}, b={b}, x={x}")


def _beta_term(a: float, b: float, x: float, k: int) -> float:
    """The k-th partial numerator d_k (k >= 1): odd k = 2m+1 and even k = 2m take different forms."""
    m = k // 2
    if k % 2:
        return -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
    return m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` > 0 degrees of freedom (t = +-inf -> 0; NaN -> NaN)."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return min(1.0, regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t)))


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom."""
    tail = student_t_two_sided_p(t, df) / 2.0
    return tail if t < 0 else 1.0 - tail


@dataclass(frozen=True)
class TTestResult:
    """A paired t-test: ``t`` of the mean difference (first - second), ``df`` = n - 1, two-sided ``p``.

    ``t`` and ``p`` are NaN when the test is undefined (fewer than 2 pairs, or every difference 0); ``note``
    then says why. Equal non-zero differences (zero variance) give t = +-inf and p = 0.
    """

    n: int
    mean_difference: float
    sd_difference: float
    t: float
    df: int
    p: float
    note: str = ""


def paired_t_test(first: Sequence[float], second: Sequence[float]) -> TTestResult:
    """Two-sided paired Student t-test of ``first`` against ``second`` (same subjects, same order)."""
    if len(first) != len(second):
        raise ValueError(f"a paired test needs equally many values, got {len(first)} and {len(second)}")
    differences = [float(x) - float(y) for x, y in zip(first, second, strict=True)]
    if any(not math.isfinite(v) for v in differences):
        raise ValueError("paired t-test values must be finite numbers (got NaN or inf)")
    n = len(differences)
    if n < 2:
        mean = differences[0] if n else math.nan
        return TTestResult(n, mean, math.nan, math.nan, max(n - 1, 0), math.nan, f"undefined: {n} pair(s), need >= 2")
    mean = math.fsum(differences) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in differences) / (n - 1))
    if sd == 0.0 or sd <= 1e-12 * abs(mean):
        if mean == 0.0:
            return TTestResult(n, 0.0, 0.0, math.nan, n - 1, math.nan, "undefined: every difference is 0")
        return TTestResult(
            n, mean, sd, math.copysign(math.inf, mean), n - 1, 0.0, "every difference is equal (zero variance)"
        )
    t = mean / (sd / math.sqrt(n))
    return TTestResult(n, mean, sd, t, n - 1, student_t_two_sided_p(t, n - 1))


@dataclass(frozen=True)
class PairedComparison:
    """Paired t-test of subject Dice between configurations ``first`` and ``second`` in one class and stratum."""

    first: str
    second: str
    class_name: str
    stratum: str
    test: TTestResult


def compare_configurations(
    cases_by_configuration: Mapping[str, Sequence[CaseMetrics]],
    pairs: Sequence[tuple[str, str]] | None = None,
    class_names: Sequence[str] | None = None,
    strata: Sequence[str] = STRATA_AND_ALL,
) -> list[PairedComparison]:
    """Paired t-tests of subject Dice for each pair of configurations, class and stratum.

    ``pairs``: default every pair in the mapping's order. Subjects are paired by case name; only subjects
    evaluated in both configurations enter a test. A subject's stratum comes from its truth volume, so it
    must be the same in both (ValueError otherwise: the configurations were scored against different truths).
    """
    names = list(cases_by_configuration)
    pairs = list(pairs) if pairs is not None else list(itertools.combinations(names, 2))
    class_names = list(class_names) if class_names is not None else list(TUMOUR_CLASSES.values())
    out = []
    for first, second in pairs:
        for name in (first, second):
            if name not in cases_by_configuration:
                raise KeyError(f"no results for configuration {name!r}; known: {names}")
        for class_name in class_names:
            _check_same_strata(cases_by_configuration[first], cases_by_configuration[second], class_name)
            for stratum in strata:
                a = {c.case: c.dice for c in in_stratum(cases_by_configuration[first], class_name, stratum)}
                b = {c.case: c.dice for c in in_stratum(cases_by_configuration[second], class_name, stratum)}
                common = [case for case in a if case in b]
                test = paired_t_test([a[case] for case in common], [b[case] for case in common])
                out.append(PairedComparison(first, second, class_name, stratum, test))
    return out


def _check_same_strata(first: Sequence[CaseMetrics], second: Sequence[CaseMetrics], class_name: str) -> None:
    strata = {c.case: c.stratum for c in first if c.class_name == class_name}
    for c in second:
        if c.class_name == class_name and c.case in strata and strata[c.case] != c.stratum:
            raise ValueError(
                f"case {c.case!r} ({class_name}) is {strata[c.case]!r} in one configuration and {c.stratum!r} in "
                "the other: they were evaluated against different truth labels; evaluate both against the same"
            )
