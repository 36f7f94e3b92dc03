"""Micro/macro Dice, aggregated DSC, the paired t-test (and its t distribution) and the Table-1 outputs,
on hand-computed examples."""

from __future__ import annotations

import csv
import io
import math
import statistics

import pytest

from DualDINOv3Lib.evaluation import (
    CONVENTIONS,
    CaseMetrics,
    cases_csv,
    compare_configurations,
    hecktor_csv,
    macro_dice,
    micro_dice,
    paired_t_test,
    pvalues_csv,
    pvalues_markdown,
    regularized_incomplete_beta,
    report_markdown,
    stratum_of,
    student_t_cdf,
    student_t_two_sided_p,
    summarize_configuration,
    table1_csv,
    table1_markdown,
)

NAN = math.nan


def case(name, dice, truth, pred, inter, hd95=NAN, class_name="GTVp") -> CaseMetrics:
    label = 1 if class_name == "GTVp" else 2
    return CaseMetrics(name, label, class_name, dice, hd95, truth, pred, inter, stratum_of(truth))


def config_a() -> list[CaseMetrics]:
    """GTVp: three small, one medium, one large (missed) subject, one false positive, one both-empty."""
    cases = [
        case("c1", 0.5, 2.0, 2.0, 1.0, 2.0),
        case("c2", 0.7, 3.0, 2.0, 1.75, 4.0),
        case("c3", 0.9, 4.0, 4.0, 3.6, 1.0),
        case("c4", 0.6, 10.0, 10.0, 6.0, 3.0),
        case("c5", 0.0, 0.0, 1.0, 0.0),  # class absent in the truth, predicted: false positive
        case("c6", 1.0, 0.0, 0.0, 0.0),  # both empty
        case("c7", 0.0, 20.0, 0.0, 0.0),  # large tumour, nothing predicted
    ]
    cases.append(case("c1", 0.8, 6.0, 6.0, 4.8, 1.5, class_name="GTVn"))
    cases += [case(f"c{i}", 1.0, 0.0, 0.0, 0.0, class_name="GTVn") for i in range(2, 8)]
    return cases


def config_b() -> list[CaseMetrics]:
    """Same subjects (same truth volumes), other Dice."""
    dice = {"c1": 0.4, "c2": 0.5, "c3": 0.6, "c4": 0.6, "c5": 0.0, "c6": 1.0, "c7": 0.1}
    return [
        case(c.case, dice[c.case] if c.class_name == "GTVp" else 0.7, c.truth_cm3, c.truth_cm3, 0.5 * c.truth_cm3)
        if c.class_name == "GTVp"
        else case(c.case, 0.7 if c.truth_cm3 else 1.0, c.truth_cm3, c.truth_cm3, 0.0, class_name="GTVn")
        for c in config_a()
    ]


# --- micro, macro, aggregated DSC -----------------------------------------------------------------------


def test_micro_and_macro_dice_by_hand():
    mean, sd = micro_dice([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7) and sd == pytest.approx(0.2)
    assert macro_dice([0.5, 0.7, 0.9], [2.0, 3.0, 4.0]) == pytest.approx((1.0 + 2.1 + 3.6) / 9)
    assert math.isnan(micro_dice([0.3])[1]) and all(math.isnan(v) for v in micro_dice([]))
    assert math.isnan(macro_dice([], []))
    with pytest.raises(ValueError, match="one volume per subject"):
        macro_dice([0.5], [1.0, 2.0])


def test_configuration_summary_by_hand():
    s = summarize_configuration("A", config_a())
    assert s.n_cases == 7
    small = s.stratum("GTVp", "small")
    assert (small.n, small.n_hd95, small.n_missed) == (3, 3, 0)
    assert small.micro_dice == pytest.approx(0.7) and small.micro_sd == pytest.approx(0.2)
    assert small.macro_dice == pytest.approx(6.7 / 9)
    assert small.aggregated_dsc == pytest.approx(2 * (1 + 1.75 + 3.6) / (4 + 5 + 8))
    assert small.hd95_median_mm == 2.0 and small.hd95_mean_mm == pytest.approx(7 / 3)
    medium = s.stratum("GTVp", "medium")
    assert (medium.n, medium.micro_dice, medium.macro_dice) == (1, 0.6, 0.6) and math.isnan(medium.micro_sd)
    large = s.stratum("GTVp", "large")
    assert (large.n, large.micro_dice, large.n_missed, large.n_hd95) == (1, 0.0, 1, 0)
    assert math.isnan(large.hd95_median_mm)
    # "all": the 5 subjects with GTVp in the truth; the false positive and the both-empty case are left out
    every = s.stratum("GTVp", "all")
    assert every.n == 5
    assert every.micro_dice == pytest.approx(2.7 / 5)
    assert every.micro_sd == pytest.approx(statistics.stdev([0.5, 0.7, 0.9, 0.6, 0.0]))
    assert every.macro_dice == pytest.approx(12.7 / 39)
    # HECKTOR aggregated DSC over every subject: the false positive's 1 cm3 enters the denominator
    assert s.aggregated_dsc["GTVp"] == pytest.approx(2 * 12.35 / 58)
    assert s.aggregated_dsc["GTVn"] == pytest.approx(0.8)
    assert s.aggregated_dsc_mean == pytest.approx((2 * 12.35 / 58 + 0.8) / 2)
    assert s.n_absent == {"GTVp": 2, "GTVn": 6} and s.n_false_positive == {"GTVp": 1, "GTVn": 0}
    assert s.stratum("GTVn", "small").n == 0 and math.isnan(s.stratum("GTVn", "small").micro_dice)
    with pytest.raises(KeyError, match="no summary"):
        s.stratum("GTVx", "small")


def test_a_case_listed_twice_is_refused():
    with pytest.raises(ValueError, match="listed twice"):
        summarize_configuration("A", [*config_a(), case("c1", 0.1, 2.0, 2.0, 0.2)])


# --- t distribution and paired t-test -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [
        (1.0, 1, 0.5),  # Cauchy: P(|T| > 1) = 1/2
        (3.0, 1, 1 - 2 / math.pi * math.atan(3.0)),
        (2.0, 2, 1 - 2 / math.sqrt(6.0)),  # df 2: P(|T| > t) = 1 - t / sqrt(2 + t^2)
        (3.4641016151377544, 2, 1 - 3.4641016151377544 / math.sqrt(14.0)),
        (3.873, 3, 1 - 2 / math.pi * (math.atan(3.873 / math.sqrt(3)) + 3.873 / math.sqrt(3) / (1 + 3.873**2 / 3))),
        (2.2621571628, 9, 0.05),  # tabulated two-sided 5% critical values
        (3.1692726726, 10, 0.01),
        # large df: the normal tail plus its first-order correction 2 phi(t) (t^3 + t) / (4 df)
        (1.9599639845, 10**5, 0.05 + 2 * 0.05844507 * (1.9599639845**3 + 1.9599639845) / 4e5),
        (0.0, 5, 1.0),
        (math.inf, 4, 0.0),
    ],
)
def test_student_t_two_sided_p(t, df, p):
    assert student_t_two_sided_p(t, df) == pytest.approx(p, rel=1e-8, abs=1e-12)
    assert student_t_two_sided_p(-t, df) == pytest.approx(p, rel=1e-8, abs=1e-12)


def test_tabulated_two_decimal_critical_value_and_cdf():
    assert student_t_two_sided_p(2.262, 9) == pytest.approx(0.05, abs=5e-5)
    assert student_t_two_sided_p(1.96, 10**6) == pytest.approx(0.05, abs=5e-5)
    assert student_t_cdf(1.8331129327, 9) == pytest.approx(0.95, rel=1e-8)
    assert student_t_cdf(-1.8331129327, 9) == pytest.approx(0.05, rel=1e-8)


def test_incomplete_beta_identities():
    for a, b, x in [(0.5, 0.5, 0.3), (2.0, 7.5, 0.2), (200.0, 3.0, 0.99), (0.7, 40.0, 0.05)]:
        assert regularized_incomplete_beta(a, b, x) == pytest.approx(1 - regularized_incomplete_beta(b, a, 1 - x))
    assert regularized_incomplete_beta(0.5, 0.5, 0.3) == pytest.approx(2 / math.pi * math.asin(math.sqrt(0.3)))
    assert regularized_incomplete_beta(3.0, 1.0, 0.4) == pytest.approx(0.4**3)
    assert regularized_incomplete_beta(1.0, 4.0, 0.4) == pytest.approx(1 - 0.6**4)
    assert regularized_incomplete_beta(7.0, 7.0, 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        regularized_incomplete_beta(0.0, 1.0, 0.5)
    with pytest.raises(ValueError):
        regularized_incomplete_beta(1.0, 1.0, 1.5)


def test_t_distribution_against_scipy_when_installed():
    import scipy.stats as stats  # test extra: the reference t distribution

    for df in (1, 2, 3, 7, 30, 1000):
        for t in (0.1, 0.9, 2.5, 6.0):
            assert student_t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)


def test_paired_t_test_by_hand_and_degenerate_cases():
    r = paired_t_test([1, 2, 3, 4], [0, 0, 0, 0])  # differences 1..4: mean 2.5, sd 1.2910, t = 3.8730, df 3
    assert (r.n, r.df, r.mean_difference) == (4, 3, 2.5)
    assert r.t == pytest.approx(2.5 / (math.sqrt(5 / 3) / 2))
    tt = r.t / math.sqrt(3)
    assert r.p == pytest.approx(1 - 2 / math.pi * (math.atan(tt) + tt / (1 + tt * tt)), rel=1e-10)
    same = paired_t_test([0.5, 0.6], [0.5, 0.6])
    assert math.isnan(same.t) and math.isnan(same.p) and "every difference is 0" in same.note
    shifted = paired_t_test([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert shifted.t == math.inf and shifted.p == 0.0 and "zero variance" in shifted.note
    for first, second in (([0.5], [0.4]), ([], [])):
        r = paired_t_test(first, second)
        assert math.isnan(r.t) and math.isnan(r.p) and "need >= 2" in r.note
    with pytest.raises(ValueError, match="equally many"):
        paired_t_test([1, 2], [1])
    with pytest.raises(ValueError, match="finite"):
        paired_t_test([1, NAN], [1, 2])


def test_compare_configurations_pairs_subjects_by_case():
    tests = {(c.class_name, c.stratum): c.test for c in compare_configurations({"A": config_a(), "B": config_b()})}
    small = tests[("GTVp", "small")]  # differences 0.1, 0.2, 0.3: t = 0.2 / (0.1 / sqrt 3), df 2
    assert (small.n, small.df) == (3, 2) and small.mean_difference == pytest.approx(0.2)
    assert small.t == pytest.approx(2 * math.sqrt(3))
    assert small.p == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), rel=1e-9)
    assert tests[("GTVp", "all")].n == 5 and tests[("GTVp", "medium")].n == 1
    assert math.isnan(tests[("GTVp", "medium")].p) and tests[("GTVn", "small")].n == 0

    # C did not predict c3: only the subjects both evaluated are paired (c1, c2: differences 0.1, 0.2, df 1)
    c = [x for x in config_b() if x.case != "c3"]
    small = {(t.class_name, t.stratum): t.test for t in compare_configurations({"A": config_a(), "C": c})}
    small = small[("GTVp", "small")]
    assert small.n == 2 and small.t == pytest.approx(3.0)
    assert small.p == pytest.approx(1 - 2 / math.pi * math.atan(3.0), rel=1e-9)

    other_truth = [case("c1", 0.5, 9.0, 9.0, 4.5), *config_a()[1:]]
    with pytest.raises(ValueError, match="different truth"):
        compare_configurations({"A": config_a(), "D": other_truth})
    with pytest.raises(KeyError, match="no results"):
        compare_configurations({"A": config_a()}, pairs=[("A", "Z")])


# --- tables ------------------------------------------------------------------------------------------------


def _markdown_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]


def test_table1_markdown_is_laid_out_like_the_paper():
    summaries = [summarize_configuration("A", config_a()), summarize_configuration("B", config_b())]
    text = table1_markdown(summaries)
    rows = _markdown_rows(text)
    assert rows[0] == ["Model", "Volume", "GTVp Micro Dice", "GTVp Macro Dice", "GTVn Micro Dice", "GTVn Macro Dice"]
    assert set(rows[1]) == {"---"}
    body = rows[2:]
    assert len(body) == 2 * 4 and all(len(r) == 6 for r in body)
    assert [r[0] for r in body] == ["A", "", "", "", "B", "", "", ""]
    assert [r[1] for r in body[:4]] == ["Small (<5 cm³)", "Medium (5–15 cm³)", "Large (>15 cm³)", "All"]
    assert body[0][2:] == ["0.7000 (0.2000)", f"{6.7 / 9:.4f}", "n/a (n/a)", "n/a"]
    assert body[1][2:] == ["0.6000 (n/a)", "0.6000", "0.8000 (n/a)", "0.8000"]
    assert body[4][2] == f"{0.5:.4f} ({0.1:.4f})"  # B small: 0.4, 0.5, 0.6
    assert "small: GTVp n=3, GTVn n=0; medium: GTVp n=1, GTVn n=1; large: GTVp n=1, GTVn n=0" in text


def test_table1_csv_holds_the_unrounded_numbers():
    summaries = [summarize_configuration("A", config_a()), summarize_configuration("B", config_b())]
    rows = list(csv.DictReader(io.StringIO(table1_csv(summaries))))
    assert [(r["configuration"], r["stratum"]) for r in rows] == [
        (n, s) for n in "AB" for s in ("small", "medium", "large", "all")
    ]
    for row in rows:
        summary = summaries["AB".index(row["configuration"])]
        for name in ("GTVp", "GTVn"):
            s = summary.stratum(name, row["stratum"])
            assert int(row[f"{name}_n"]) == s.n
            for field in ("micro_dice", "micro_sd", "macro_dice", "aggregated_dsc", "hd95_median_mm"):
                value, expected = float(row[f"{name}_{field}"]), getattr(s, field)
                assert value == expected or (math.isnan(value) and math.isnan(expected))


def test_hecktor_pvalue_and_case_tables():
    a, b = config_a(), config_b()
    summaries = [summarize_configuration("A", a), summarize_configuration("B", b)]
    hecktor = list(csv.DictReader(io.StringIO(hecktor_csv(summaries))))
    assert float(hecktor[0]["GTVp_aggregated_dsc"]) == pytest.approx(2 * 12.35 / 58)
    assert float(hecktor[0]["mean_aggregated_dsc"]) == summaries[0].aggregated_dsc_mean
    assert (hecktor[0]["GTVp_absent"], hecktor[0]["GTVp_false_positive"], hecktor[0]["n_cases"]) == ("2", "1", "7")

    comparisons = compare_configurations({"A": a, "B": b})
    rows = list(csv.DictReader(io.StringIO(pvalues_csv(comparisons))))
    assert len(rows) == 2 * 4 and {(r["first"], r["second"]) for r in rows} == {("A", "B")}
    small = next(r for r in rows if (r["class"], r["stratum"]) == ("GTVp", "small"))
    assert float(small["p"]) == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), rel=1e-9)
    table = _markdown_rows(pvalues_markdown(comparisons))
    assert table[0][0] == "Pair" and len(table[0]) == 1 + 8 and table[2][0] == "A vs B"
    assert table[2][1] == f"{small_p_text()} (Δ +0.200)"

    cases = list(csv.DictReader(io.StringIO(cases_csv({"A": a}))))
    assert len(cases) == len(a)
    fp = next(r for r in cases if r["case"] == "c5" and r["class"] == "GTVp")
    assert fp["stratum"] == "" and float(fp["pred_cm3"]) == 1.0 and fp["hd95_mm"] == "nan"

    report = report_markdown(summaries, comparisons)
    for part in ("Table 1:", "HECKTOR 2022", "Paired t-tests", CONVENTIONS):
        assert part in report


def small_p_text() -> str:
    return f"{1 - 2 * math.sqrt(3) / math.sqrt(14):.3g}"
