"""The confusion matrix as a PNG (a run's confusion.png, the report's Fig. 4).

Stage: counts -> figure, drawn with matplotlib's Agg backend (no display needed). A leaf
module: campaign summaries and reports both draw through it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def draw_confusion(fig, ax, cm: np.ndarray, class_names: Sequence[str], title: str = "") -> None:
    """Row-normalised confusion matrix on ``ax`` of ``fig``, counts printed in the cells."""
    cm = np.asarray(cm, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class; cells: % (count)", fontsize=8)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=10)
    for i in ticks:
        for j in ticks:
            ax.text(j, i, f"{100 * frac[i, j]:.0f}\n({int(cm[i, j])})", ha="center",
                    va="center", fontsize=7, color="white" if frac[i, j] > 0.5 else "black")


def figure(width: float, height: float):
    """A matplotlib Figure on the Agg backend (no display needed, no pyplot state)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120)


def save_confusion_png(cm: np.ndarray, class_names: Sequence[str],
                       path: str | os.PathLike, title: str = "") -> None:
    """Row-normalised confusion matrix as a PNG, counts printed in the cells."""
    fig = figure(5.5, 5.0 if title.count("\n") > 1 else 4.8)
    draw_confusion(fig, fig.add_subplot(), cm, class_names, title)
    fig.tight_layout()
    fig.savefig(path)
