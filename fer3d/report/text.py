"""A campaign's summary (or fer3d-eval's result) as terminal text.

Stage: summary JSON -> what fer3d-train, fer3d-eval and --summarize print (numpy only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Scores beside accuracy (fer3d.metrics.scores), as printed.
OTHER_SCORES = (("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro-F1"))


def _percent(value) -> str:
    """A fraction as a percentage; n/a when absent (a summary of an older run) or NaN."""
    return "n/a" if value is None or value != value else f"{100 * value:.2f}"


def format_confusion(cm: np.ndarray, class_names: Sequence[str]) -> str:
    """Counts as a text table, rows true, columns predicted (names cut to 4 letters)."""
    short = [n[:4] for n in class_names]
    width = max(5, len(str(int(np.max(cm)))) + 1 if np.size(cm) else 5)
    lines = ["true\\pred " + "".join(f"{s:>{width}}" for s in short)]
    for name, row in zip(class_names, np.asarray(cm)):
        lines.append(f"{name[:9]:<10}" + "".join(f"{int(v):>{width}d}" for v in row))
    return "\n".join(lines)


def format_accuracy(mean: float, spread: float | None, name: str) -> str:
    """``93.75 ± 8.84 % (std over folds)``: percentages, the spread named as summary.json
    names it (:func:`fer3d.campaign.summary.accuracy_spread`); n/a for a single value."""
    return f"{mean:.2f} ± {'n/a' if spread is None else f'{spread:.2f}'} % ({name})"


def _campaign_accuracy(summary: dict, name: str = "accuracy") -> str:
    """A summary's ``{name}_mean`` and spread as :func:`format_accuracy` writes them."""
    spread = summary[f"{name}_spread"]
    # a summary written before balanced accuracy and macro-F1 had their own spread names
    label = summary.get(f"{name}_spread_name", summary["accuracy_spread_name"])
    return format_accuracy(100 * summary[f"{name}_mean"], None if spread is None else
                           100 * spread, label)


def _sequence_lines(summary: dict) -> list[str]:
    """The accuracy of the per-sequence votes, when the summary has them."""
    if "sequence_accuracy_mean" in summary:
        return [f"sequence accuracy ({summary['n_sequences']} votes: one per sequence or "
                "lone scan): " + _campaign_accuracy(summary, "sequence_accuracy")]
    if "sequence_accuracy" in summary:
        return [f"sequence accuracy: {100 * summary['sequence_accuracy']:.2f} % "
                f"({len(summary['sequence_ids'])} sequences and lone scans)"]
    return []


def format_summary(summary: dict) -> str:
    """The summary.json of a campaign (or fer3d-eval's result) as printable text; "frame
    accuracy" beside the sequence accuracy when there is one."""
    names = summary["class_names"]
    sequences = _sequence_lines(summary)
    what = "frame accuracy" if sequences else "accuracy"
    lines = []
    if "accuracy_mean" in summary:
        lines.append(f"{what} over {summary['repeats']} repeat(s) x {summary['folds']} "
                     "folds: " + _campaign_accuracy(summary))
        lines += [f"{title}: " + _campaign_accuracy(summary, key) for key, title in OTHER_SCORES
                  if f"{key}_mean" in summary]  # absent from a run summarised before them
    else:
        lines.append(f"{what}: {100 * summary['accuracy']:.2f} % "
                     f"({len(summary['labels'])} samples)")
        lines += [f"{title}: {_percent(summary.get(key))} %" for key, title in OTHER_SCORES]
    lines += sequences
    lines.append("per-class accuracy (recall):")
    for name in names:
        acc = summary["per_class_accuracy"][name]
        lines.append(f"  {name:<10} {'n/a' if acc != acc else f'{100 * acc:6.2f} %'}")
    lines.append("confusion matrix (pooled):")
    lines.append(format_confusion(np.array(summary["confusion_matrix"]), names))
    return "\n".join(lines)
