"""fer3d.metrics, the one place scores are computed: accuracy, balanced accuracy, macro-F1
and per-class recall agree with scikit-learn's definitions, and reach the summary, the
printed summary and the report."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_runs import write_run

from fer3d import metrics
from fer3d.campaign.summary import summarise
from fer3d.report import load_run
from fer3d.report.tables import scores_table
from fer3d.report.text import format_summary


def test_scores_agree_with_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for n in (1, 7, 60):
        labels = rng.integers(0, 5, n)  # class 5 never shown, sometimes predicted
        preds = rng.integers(0, 6, n)
        cm = metrics.confusion_matrix(labels, preds, 6)
        got = metrics.scores(cm)
        assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, preds))
        with warnings.catch_warnings():  # sklearn warns of a class predicted, never shown
            warnings.simplefilter("ignore")
            assert got["balanced_accuracy"] == pytest.approx(
                sk.balanced_accuracy_score(labels, preds))
            assert got["macro_f1"] == pytest.approx(sk.f1_score(labels, preds, average="macro"))
        recall = metrics.per_class_accuracy(cm)
        for c in range(6):
            shown = labels == c
            assert (np.isnan(recall[c]) if not shown.any()
                    else recall[c] == pytest.approx((preds[shown] == c).mean()))


def test_summary_has_the_scores_per_repeat_and_over_repeats():
    recs = [{"repeat": r, "fold": f, "variant": "v", "labels": [0, 1, 1, 1],
             "predictions": [0, 1, 1, 0] if r == 0 else [1, 1, 1, 1], "correct": 3, "total": 4}
            for r in range(2) for f in range(2)]
    s = summarise(recs, 2, ["no", "yes"])
    # repeat 0: recall (1, 2/3) -> 5/6; F1 (2/3, 4/5); repeat 1: recall (0, 1); F1 (0, 6/7)
    assert s["repeat_balanced_accuracy"] == pytest.approx([5 / 6, 0.5])
    assert s["repeat_macro_f1"] == pytest.approx([(2 / 3 + 4 / 5) / 2, 3 / 7])
    assert s["balanced_accuracy_mean"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert s["balanced_accuracy_spread"] == pytest.approx(np.std([5 / 6, 0.5], ddof=1))
    assert s["accuracy_mean"] == 0.75
    text = format_summary(s)
    assert "balanced accuracy: 66.67 ± 23.57 % (std over repeats)" in text and "macro-F1: " in text
    assert "per-class accuracy (recall):" in text


def test_report_has_a_scores_table(tmp_path):
    write_run(tmp_path / "run", "afnet_m")
    run = load_run(tmp_path / "run")
    table = scores_table([run])
    row = dict(zip(table.columns, table.rows[0]))
    assert row["balanced accuracy (%)"] == pytest.approx(100 * run.summary[
        "balanced_accuracy_mean"])
    assert row["macro-F1 ±"] == pytest.approx(100 * run.summary["macro_f1_spread"])
