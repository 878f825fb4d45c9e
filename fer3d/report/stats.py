"""Is a difference between two models more than fold-to-fold noise? The corrected resampled
t-test of Nadeau and Bengio (2003).

Stage: fold-level accuracies -> a mean difference, its 95 % interval and p-value (numpy
and scipy only). Repeated k-fold cross-validation gives J = R x k scores that are not
independent: the training sets of any two cells overlap, so the scores co-vary, and the
plain t-test's variance s²/J is far too small (its p-values are too small, its intervals
too narrow). Nadeau and Bengio's correction replaces 1/J by (1/J + n_test/n_train)::

    t = mean(d) / sqrt((1/J + n_test/n_train) * s²),   J − 1 degrees of freedom

where d are the J fold-level differences (paired: the two models tested on the same
folds) and s² their sample variance (ddof 1). :func:`corrected_unpaired` extends the same
correction to two runs on different folds (Welch's form); docs/reproduce.md explains both.

>>> r = corrected_paired([2.0, 4.0, 0.0, 6.0], test_train_ratio=1.0)
>>> round(r.mean, 2), round(r.t, 4), r.df
(3.0, 1.0392, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # the interval's coverage


@dataclass(frozen=True)
class Difference:
    """A difference (same unit as the scores) with its ``LEVEL`` interval and two-sided
    p-value; ``low``, ``high``, ``p`` and ``t`` are None where no test is possible (``note``
    says why). ``naive_p`` is what the uncorrected t-test would claim, for contrast."""

    mean: float
    low: float | None
    high: float | None
    p: float | None
    t: float | None
    df: float
    n: int
    naive_p: float | None = None
    note: str = ""


def _test(mean: float, var: float, naive_var: float | None, df: float, n: int,
          note: str = "") -> Difference:
    """Interval and p of ``mean`` with variance ``var`` under Student's t with ``df``;
    ``naive_var`` is the uncorrected variance (None: no naive p)."""
    if var == 0.0:  # the scores do not vary: t is 0/0 or ±inf
        p = 1.0 if mean == 0.0 else 0.0
        return Difference(mean, mean, mean, p, None, df, n, p,
                          note or "the differences do not vary: the test is degenerate")
    se = math.sqrt(var)
    t = mean / se
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * se
    naive = None if naive_var is None else float(
        2 * stats.t.sf(abs(mean) / math.sqrt(naive_var), df))
    return Difference(mean, mean - half, mean + half, float(2 * stats.t.sf(abs(t), df)),
                      t, df, n, naive, note)


def _clean(scores: Sequence[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    return values[np.isfinite(values)]


def corrected_paired(diffs: Sequence[float], test_train_ratio: float) -> Difference:
    """The corrected resampled t-test on J fold-level differences ``diffs`` (model A minus
    model B on the same test fold); ``test_train_ratio`` is n_test / n_train of a fold.

    One difference gives its value and no test; equal differences give a degenerate test
    (p = 1 when they are all 0, else 0) and say so.
    """
    d = _clean(diffs)
    if len(d) == 0:
        raise ValueError("no fold-level difference to test")
    if len(d) == 1:
        return Difference(float(d[0]), None, None, None, None, 0, 1,
                          note="one fold-level difference: no variance, no test")
    j, var = len(d), float(np.var(d, ddof=1))
    return _test(float(d.mean()), (1 / j + test_train_ratio) * var, var / j, j - 1, j)


def corrected_unpaired(a: Sequence[float], b: Sequence[float], ratio_a: float,
                       ratio_b: float) -> Difference:
    """mean(a) − mean(b) for fold scores of two runs on different folds: each mean's
    variance corrected as in :func:`corrected_paired`, combined as in Welch's test
    (Welch–Satterthwaite degrees of freedom). The positive correlation of two runs on the
    same data is ignored, which makes this test conservative."""
    a, b = _clean(a), _clean(b)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("no fold score to test")
    mean = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return Difference(mean, None, None, None, None, 0, len(a) + len(b),
                          note="a run with one fold score: no variance, no test")
    sa, sb = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    va, vb = (1 / len(a) + ratio_a) * sa, (1 / len(b) + ratio_b) * sb
    denom = va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)
    df = (va + vb) ** 2 / denom if denom else float(len(a) + len(b) - 2)
    return _test(mean, va + vb, None, df, len(a) + len(b))


def format_p(p: float | None) -> str:
    """``0.034``, ``< 0.001`` or ``–`` (no test)."""
    if p is None:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
