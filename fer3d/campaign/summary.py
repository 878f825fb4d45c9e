"""A campaign's state and summary: which cells are done, running or missing, and the
accuracy over the finished ones.

Stage: run directory -> summary.json (torch-free). The summary is computed from the cells'
fold.json records alone, so any process (or ``fer3d-train --summarize``) can write it.
"""

from __future__ import annotations

import os

import numpy as np

from fer3d import metrics
from fer3d.campaign.claims import is_live, read_owner
from fer3d.campaign.rundir import RunDir
from fer3d.report.confusion import save_confusion_png


def accuracy_spread(repeat_accuracies: list[float], fold_accuracies: list[float],
                    name: str = "accuracy") -> dict:
    """The one figure of spread of a campaign's accuracy, with its name: the std (ddof 1)
    of the repeats' accuracies when there are several repeats, else of the folds' (one
    repeat's folds still vary); None when a single value is all there is. Keys
    ``{name}_spread`` and ``{name}_spread_name``."""
    over, values = (("repeats", repeat_accuracies) if len(repeat_accuracies) > 1
                    else ("folds", fold_accuracies))
    return {f"{name}_spread": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            f"{name}_spread_name": f"std over {over}"}


def _accuracy(records: list[dict], name: str, prefix: str = "") -> tuple[dict, list[float]]:
    """``{name}_mean`` over repeats (each repeat: correct / total over its folds) and its
    spread, and the per-repeat accuracies; ``prefix`` "sequence_": of the sequence votes."""
    per_repeat = []
    for r in sorted({x["repeat"] for x in records}):
        mine = [x for x in records if x["repeat"] == r]
        per_repeat.append(sum(x[prefix + "correct"] for x in mine)
                          / max(sum(x[prefix + "total"] for x in mine), 1))
    folds = [x[prefix + "correct"] / x[prefix + "total"] for x in records if x[prefix + "total"]]
    mean = float(np.mean(per_repeat)) if per_repeat else float("nan")
    return {f"{name}_mean": mean, **accuracy_spread(per_repeat, folds, name)}, per_repeat


def _scores(records: list[dict], n_classes: int) -> dict[str, float]:
    return metrics.scores(metrics.confusion_matrix(
        [y for x in records for y in x["labels"]],
        [p for x in records for p in x["predictions"]], n_classes))


def _other_scores(records: list[dict], n_classes: int) -> dict:
    """Balanced accuracy and macro-F1 (:func:`fer3d.metrics.scores`) of each repeat's pooled
    folds, their mean over repeats and their spread as accuracy's (:func:`accuracy_spread`)."""
    by_repeat = [_scores([x for x in records if x["repeat"] == r], n_classes)
                 for r in sorted({x["repeat"] for x in records})]
    by_fold = [_scores([x], n_classes) for x in records if x["total"]]
    out = {}
    for name in ("balanced_accuracy", "macro_f1"):
        values = [s[name] for s in by_repeat]
        out.update({f"{name}_mean": float(np.mean(values)) if values else float("nan"),
                    **accuracy_spread(values, [s[name] for s in by_fold], name),
                    f"repeat_{name}": values})
    return out


def summarise(records: list[dict], repeats: int, class_names: list[str]) -> dict:
    """Fold records -> accuracy mean over repeats and its spread (:func:`accuracy_spread`),
    balanced accuracy and macro-F1 likewise, per-class accuracy (recall), pooled confusion
    matrix (rows true, columns predicted) of ``class_names``; the same accuracy of the
    per-sequence votes when the records have them (``sequence_accuracy_*``,
    ``n_sequences``)."""
    labels = np.array([y for x in records for y in x["labels"]], dtype=np.int64)
    preds = np.array([p for x in records for p in x["predictions"]], dtype=np.int64)
    cm = metrics.confusion_matrix(labels, preds, len(class_names))
    accuracy, per_repeat = _accuracy(records, "accuracy")
    summary = {"variant": records[0]["variant"] if records else None,
               "repeats": repeats, "folds": len({x["fold"] for x in records}), **accuracy,
               "repeat_accuracies": [float(a) for a in per_repeat],
               **_other_scores(records, len(class_names)),
               "class_names": list(class_names),
               "per_class_accuracy": dict(zip(class_names, metrics.per_class_accuracy(cm))),
               "confusion_matrix": cm.tolist(), "n_predictions": len(labels)}
    if records and all("sequence_total" in x for x in records):
        summary.update(_accuracy(records, "sequence_accuracy", "sequence_")[0],
                       n_sequences=sum(x["sequence_total"] for x in records))
    return summary


def cell_status(run: RunDir, repeats: int, k: int, stale_after: float) -> dict:
    """Cells of ``run`` by state: done, running (live claim), missing."""
    done, running, missing = [], [], []
    for cell in range(repeats * k):
        if run.cell_at(cell, k).done:
            done.append(cell)
        elif is_live(run.claim(cell), stale_after):
            running.append(cell)
        else:
            missing.append(cell)
    return {"done": done, "running": running, "missing": missing}


def summarize_run(run_dir: str | os.PathLike, *, partial: bool = False,
                  stale_after: float = 300.0) -> dict:
    """Status of a run; writes summary.json (and confusion.png) once every cell is done,
    or summary.partial.json over the finished cells with ``partial``."""
    run = RunDir(run_dir)
    cfg = run.read_config()
    plan = run.read_plan()
    repeats, k = int(cfg["repeats"]), plan.k
    status = cell_status(run, repeats, k, stale_after)
    status.update(cells=repeats * k, k=k,
                  complete=not status["running"] and not status["missing"])
    if plan.final:  # no test fold: a final model's accuracy is its campaign's (model card)
        return status
    if status["complete"] or (partial and status["done"]):
        records = [run.cell_at(c, k).read_record() for c in status["done"]]
        summary = summarise(records, repeats, plan.class_names)
        summary.update(preset=plan.preset, n_samples=len(plan.sample_ids),
                       cells_done=len(status["done"]), cells=repeats * k)
        run.write_summary(summary, partial=not status["complete"])
        if status["complete"]:
            save_confusion_png(np.array(summary["confusion_matrix"]), plan.class_names,
                               run.confusion)
        status["summary"] = summary
    return status


def running_owner(run: RunDir, cell: int) -> str:
    owner = read_owner(run.claim(cell))
    return f"{owner.get('host', '?')}:{owner.get('pid', '?')}" if owner else "?"


def describe_status(status: dict, run: RunDir) -> str:
    """Lines for --summarize: done / running (by whom) / missing cells."""
    k = status["k"]

    def name(c: int) -> str:
        return f"{c} (r{c // k} f{c % k})"
    lines = [f"{run.path}: {len(status['done'])} of {status['cells']} cells done"]
    if status["running"]:
        lines.append("running: " + ", ".join(f"{name(c)} on {running_owner(run, c)}"
                                             for c in status["running"]))
    if status["missing"]:
        lines.append("missing: " + ", ".join(name(c) for c in status["missing"]))
    return "\n".join(lines)
