"""A campaign's summary (or fer3d-eval's result) as terminal text.

Stage: summary JSON -> what fer3d-train, fer3d-eval and --summarize print (numpy only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def format_confusion(cm: np.ndarray, class_names: Sequence[str]) -> str:
    """Counts as a text table, rows true, columns predicted (names cut to 4 letters)."""
    short = [n[:4] for n in class_names]
    width = max(5, len(str(int(np.max(cm)))) + 1 if np.size(cm) else 5)
    lines = ["true\\pred " + "".join(f"{s:>{width}}" for s in short)]
    for name, row in zip(class_names, np.asarray(cm)):
        lines.append(f"{name[:9]:<10}" + "".join(f"{int(v):>{width}d}" for v in row))
    return "\n".join(lines)


def _sequence_lines(summary: dict) -> list[str]:
    """The accuracy of the per-sequence votes, when the summary has them."""
    if "sequence_accuracy_mean" in summary:
        return [f"sequence accuracy ({summary['n_sequences']} votes: one per sequence or "
                f"lone scan): {100 * summary['sequence_accuracy_mean']:.2f} ± "
                f"{100 * summary['sequence_accuracy_std']:.2f} %"]
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
                     f"folds: {100 * summary['accuracy_mean']:.2f} ± "
                     f"{100 * summary['accuracy_std']:.2f} %")
    else:
        lines.append(f"{what}: {100 * summary['accuracy']:.2f} % "
                     f"({len(summary['labels'])} samples)")
    lines += sequences
    lines.append("per-class accuracy:")
    for name in names:
        acc = summary["per_class_accuracy"][name]
        lines.append(f"  {name:<10} {'n/a' if acc != acc else f'{100 * acc:6.2f} %'}")
    lines.append("confusion matrix (pooled):")
    lines.append(format_confusion(np.array(summary["confusion_matrix"]), names))
    return "\n".join(lines)
