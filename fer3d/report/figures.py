"""Figures of finished runs: titled confusion matrices, Fig. 4's panels (a)-(d), the
fusion-position plot (Fig. 5) and training curves from the cells' epochs.csv.

Stage: runs -> PNGs, drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import os

import numpy as np

from fer3d.paper.catalog import DATASET_TITLES, DATASETS, TARGETS, published_accuracy
from fer3d.report.confusion import draw_confusion, figure, save_confusion_png
from fer3d.report.runs import Run
from fer3d.report.text import format_accuracy


def confusion_title(run: Run) -> str:
    paper = published_accuracy(run.variant, run.dataset)
    beside = f"; paper {paper:.2f} %" if paper is not None else ""
    return (f"{run.title}\n{format_accuracy(*run.accuracy())}{beside}\n"
            f"{run.repeats} repeat(s) × {run.folds} folds, pooled")


def save_run_confusion(run: Run, path: str | os.PathLike) -> None:
    """The run's pooled confusion matrix with the paper's Fig. 4 title information."""
    save_confusion_png(np.array(run.summary["confusion_matrix"]),
                              run.summary["class_names"], path, title=confusion_title(run))


def save_fig4(runs: list[Run], path: str | os.PathLike) -> bool:
    """Fig. 4: (a), (b) AFNet-M on BU-3DFE and Bosphorus, (c), (d) without MA, the paper's
    layout; a panel without a run says so. False (nothing drawn) when no panel has a run."""
    rows = TARGETS["fig4"].rows
    found = {(r.variant, r.dataset): r for r in runs}
    if not any((v, d) in found for v, _ in rows for d in DATASETS):
        return False
    fig = figure(5.6 * len(DATASETS), 5.4 * len(rows))
    for i, (variant, label) in enumerate(rows):
        for j, dataset in enumerate(DATASETS):
            ax = fig.add_subplot(len(rows), len(DATASETS), i * len(DATASETS) + j + 1)
            head = f"({'abcd'[i * len(DATASETS) + j]}) {label}, {DATASET_TITLES[dataset]}"
            run = found.get((variant, dataset))
            if run is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{head}\nnot run", ha="center", va="center")
                continue
            draw_confusion(fig, ax, np.array(run.summary["confusion_matrix"]),
                           run.summary["class_names"],
                           f"{head}\n{format_accuracy(*run.accuracy())}, "
                           f"{run.repeats} repeat(s) × {run.folds} folds")
    fig.suptitle("Fig. 4: confusion matrices, pooled over repeats and folds; the paper "
                 "compares (c) with (a), (d) with (b)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    return True


def save_fusion_positions(runs: list[Run], path: str | os.PathLike) -> bool:
    """Fig. 5: accuracy per fusion position (AF without MA), one line per dataset.

    Returns False (and draws nothing) when no run of a Fig. 5 variant is given.
    """
    positions = TARGETS["fig5"].rows
    by_dataset: dict[str, list] = {}
    for run in runs:
        for i, (variant, _) in enumerate(positions):
            if run.variant == variant:
                by_dataset.setdefault(run.dataset, [None] * len(positions))[i] = run.accuracy()
    if not by_dataset:
        return False
    fig = figure(6.0, 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(positions))
    for dataset, points in sorted(by_dataset.items()):
        have = [i for i, p in enumerate(points) if p is not None]
        means = np.array([points[i][0] for i in have])
        stds = np.array([points[i][1] or 0.0 for i in have])
        line = ax.errorbar(x[have], means, yerr=stds, marker="o", capsize=4,
                           label=DATASET_TITLES.get(dataset, dataset))
        for i, m in zip(have, means):
            ax.annotate(f"{m:.1f}", (x[i], m), textcoords="offset points", xytext=(8, 4),
                        fontsize=8, color=line[0].get_color())
    spreads = {p[2] for pts in by_dataset.values() for p in pts if p is not None}
    ax.set_xticks(x, [f"AF after\n{label}" for _, label in positions])
    ax.set_xlim(-0.5, len(positions) - 0.5)
    ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]))
    ax.set_ylabel(f"accuracy (%), mean ± {' / '.join(sorted(spreads))}")
    ax.set_title("Fig. 5: fusion position, adaptive fusion without MA")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def save_training_curves(run: Run, path: str | os.PathLike) -> bool:
    """Loss and accuracy per epoch: mean over the run's cells, shaded min..max.

    Returns False when no cell has an epoch log.
    """
    logs = [rows for rows in run.epochs.values() if rows]
    if not logs:
        return False
    from matplotlib.ticker import MaxNLocator

    n = min(len(rows) for rows in logs)
    epochs = np.arange(1, n + 1)
    fig = figure(9.0, 3.6)
    panels = [("loss", "training loss (cross-entropy)", ["loss"]),
              ("accuracy", "accuracy (%)", ["train_acc", "val_acc"])]
    for k, (name, ylabel, keys) in enumerate(panels):
        ax = fig.add_subplot(1, 2, k + 1)
        for key in keys:
            if not all(key in rows[0] for rows in logs):
                continue
            scale = 100.0 if name == "accuracy" else 1.0
            values = scale * np.array([[row[key] for row in rows[:n]] for rows in logs])
            label = {"loss": "train", "train_acc": "train", "val_acc": "validation"}[key]
            ax.plot(epochs, values.mean(axis=0), marker="." if n < 15 else None, label=label)
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), alpha=0.2)
        if name == "accuracy":
            ax.axhline(run.accuracy()[0], color="0.3", linestyle="--",
                       label="test (the run's accuracy)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    paper = published_accuracy(run.variant, run.dataset)
    extra = f"; paper's test accuracy {paper:.2f} %" if paper is not None else ""
    fig.suptitle(f"{run.title}: mean over {len(logs)} cells, shaded min–max{extra}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return True
