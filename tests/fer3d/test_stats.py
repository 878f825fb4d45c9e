"""fer3d.report.stats: the corrected resampled t-test (Nadeau and Bengio, 2003) on a worked
example computed by hand, its edge cases, and the unpaired (Welch) form."""

from __future__ import annotations

import math

import pytest

from fer3d.report.stats import corrected_paired, corrected_unpaired, format_p


def _t3_two_sided_p(t: float) -> float:
    """Student's t with 3 degrees of freedom has a closed-form CDF:
    F(t) = 1/2 + (x / (1 + x²) + arctan x) / π with x = t / √3."""
    x = t / math.sqrt(3)
    return 2 * (1 - (0.5 + (x / (1 + x * x) + math.atan(x)) / math.pi))


def test_worked_example_by_hand():
    """R = 2 repeats of 2-fold CV (J = 4, n_test / n_train = 1), differences 2, 4, 0, 6.

    mean = 3; s² = (1 + 1 + 9 + 9) / 3 = 20/3; corrected variance (1/4 + 1) · 20/3 = 25/3,
    se = 5/√3 = 2.886751; t = 3√3/5 = 1.039230, df = 3; t(0.975, 3) = 3.182446 (table), so
    the interval is 3 ± 9.186931; x = t/√3 = 0.6: p = 0.375097. The plain t-test divides
    s² by J alone: se = √(5/3) = 1.290994, t = 2.323790, x = 3/√5: p = 0.102728.
    """
    r = corrected_paired([2.0, 4.0, 0.0, 6.0], test_train_ratio=1.0)
    assert (r.mean, r.df, r.n) == (3.0, 3, 4)
    assert r.t == pytest.approx(1.039230, abs=1e-6)
    assert (r.low, r.high) == pytest.approx((3 - 9.186931, 3 + 9.186931), abs=1e-5)
    assert r.p == pytest.approx(0.375097, abs=1e-6)
    assert r.p == pytest.approx(_t3_two_sided_p(3 * math.sqrt(3) / 5), abs=1e-12)
    assert r.naive_p == pytest.approx(0.102728, abs=1e-6)
    assert r.naive_p == pytest.approx(_t3_two_sided_p(3 / math.sqrt(5 / 3)), abs=1e-12)


def test_the_correction_widens_with_the_test_share():
    """n_test / n_train = 0 is the plain t-test; 10-fold CV (1/9) already widens it."""
    diffs = [1.0, 2.0, 0.5, 1.5, 3.0, -0.5, 1.0, 2.5, 0.0, 1.0]
    plain, tenfold = corrected_paired(diffs, 0.0), corrected_paired(diffs, 1 / 9)
    assert plain.p == pytest.approx(plain.naive_p)
    assert tenfold.p > plain.p and tenfold.high - tenfold.low > plain.high - plain.low
    # the variance grows by (1/10 + 1/9) / (1/10): the interval by its square root
    ratio = (tenfold.high - tenfold.low) / (plain.high - plain.low)
    assert ratio == pytest.approx(math.sqrt((0.1 + 1 / 9) / 0.1))


def test_one_fold_gives_its_difference_and_no_test():
    r = corrected_paired([2.5], 1 / 9)
    assert (r.mean, r.low, r.high, r.p, r.t) == (2.5, None, None, None, None)
    assert "one fold-level difference" in r.note
    assert format_p(r.p) == "–"


def test_zero_variance_is_degenerate_and_said_so():
    same = corrected_paired([0.0, 0.0, 0.0], 1 / 9)
    assert (same.mean, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)
    assert "do not vary" in same.note
    shifted = corrected_paired([1.5, 1.5, 1.5, 1.5], 1 / 9)
    assert (shifted.low, shifted.high, shifted.p) == (1.5, 1.5, 0.0)


def test_cells_without_a_score_are_left_out():
    assert corrected_paired([2.0, float("nan"), 4.0, 0.0, 6.0], 1.0).n == 4
    with pytest.raises(ValueError, match="no fold-level difference"):
        corrected_paired([float("nan")], 1.0)


def test_unpaired_welch_form():
    """Two runs of J = 4 each, n_test/n_train = 1: a = 1, 3, 5, 7 (mean 4, s² = 20/3),
    b = 0, 0, 2, 2 (mean 1, s² = 4/3). Corrected variances 1.25 · 20/3 = 25/3 and
    1.25 · 4/3 = 5/3, sum 10; t = 3/√10 = 0.948683; Welch df = 100 / ((25/3)²/3 + (5/3)²/3)
    = 100 / (650/27) = 4.153846."""
    r = corrected_unpaired([1.0, 3.0, 5.0, 7.0], [0.0, 0.0, 2.0, 2.0], 1.0, 1.0)
    assert r.mean == 3.0 and r.naive_p is None
    assert r.t == pytest.approx(3 / math.sqrt(10))
    assert r.df == pytest.approx(100 / (650 / 27))
    lone = corrected_unpaired([0.9], [0.8, 0.7], 1.0, 1.0)
    assert lone.p is None and lone.mean == pytest.approx(0.15)


def test_p_values_are_printed_readably():
    assert (format_p(0.03412), format_p(0.0004), format_p(1.0)) == ("0.034", "< 0.001", "1.000")
