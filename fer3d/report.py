"""Summaries of finished runs: confusion matrices, per-class accuracy, text tables, PNGs.

Stage: fold/summary JSON -> what a person reads. Pure numpy except the figure, drawn
with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """(N,) true codes, (N,) predicted codes -> (n_classes, n_classes) int64 counts,
    rows true, columns predicted."""
    labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
    if labels.shape != preds.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and preds {preds.shape} must be equal (N,)")
    if labels.size and (min(labels.min(), preds.min()) < 0
                        or max(labels.max(), preds.max()) >= n_classes):
        raise ValueError(f"class codes must lie in 0..{n_classes - 1}")
    return np.bincount(labels * n_classes + preds,
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(cm: np.ndarray) -> list[float]:
    """Recall of each class (diagonal / row sum); NaN for a class never shown."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(x) for x in np.where(rows > 0, np.diag(cm) / rows, np.nan)]


def format_confusion(cm: np.ndarray, class_names: Sequence[str]) -> str:
    """Counts as a text table, rows true, columns predicted (names cut to 4 letters)."""
    short = [n[:4] for n in class_names]
    width = max(5, len(str(int(np.max(cm)))) + 1 if np.size(cm) else 5)
    lines = ["true\\pred " + "".join(f"{s:>{width}}" for s in short)]
    for name, row in zip(class_names, np.asarray(cm)):
        lines.append(f"{name[:9]:<10}" + "".join(f"{int(v):>{width}d}" for v in row))
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    """The summary.json of a campaign (or fer3d-eval's result) as printable text."""
    names = summary["class_names"]
    lines = []
    if "accuracy_mean" in summary:
        lines.append(f"accuracy over {summary['repeats']} repeat(s) x {summary['folds']} "
                     f"folds: {100 * summary['accuracy_mean']:.2f} ± "
                     f"{100 * summary['accuracy_std']:.2f} %")
    else:
        lines.append(f"accuracy: {100 * summary['accuracy']:.2f} % "
                     f"({len(summary['labels'])} samples)")
    lines.append("per-class accuracy:")
    for name in names:
        acc = summary["per_class_accuracy"][name]
        lines.append(f"  {name:<10} {'n/a' if acc != acc else f'{100 * acc:6.2f} %'}")
    lines.append("confusion matrix (pooled):")
    lines.append(format_confusion(np.array(summary["confusion_matrix"]), names))
    return "\n".join(lines)


def save_confusion_png(cm: np.ndarray, class_names: Sequence[str],
                       path: str | os.PathLike, title: str = "") -> None:
    """Row-normalised confusion matrix as a PNG, counts printed in the cells."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    cm = np.asarray(cm, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    fig = Figure(figsize=(5.5, 5.0 if title.count("\n") > 1 else 4.8), dpi=120)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class; cells: % (count)", fontsize=8)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in ticks:
        for j in ticks:
            ax.text(j, i, f"{100 * frac[i, j]:.0f}\n({int(cm[i, j])})", ha="center",
                    va="center", fontsize=7, color="white" if frac[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path)
