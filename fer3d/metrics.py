"""Classification metrics of test predictions: confusion matrix, accuracy, balanced accuracy,
macro-F1 and per-class recall.

Stage: predictions -> numbers (numpy only, torch-free). Used by campaign summaries,
fer3d-eval, TensorBoard and reports alike, so a number means the same wherever it is
printed. Conventions are scikit-learn's: balanced accuracy is the mean recall over the
classes that occur among the true labels; macro-F1 the mean F1 over the classes that occur
among the true or the predicted labels (a class predicted but never shown counts with F1 0).
"""

from __future__ import annotations

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


def sequence_votes(logits: np.ndarray, labels: np.ndarray, sequences: np.ndarray,
                   sample_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (N, C) logits, (N,) codes -> one vote per sequence: (ids, labels, predictions).

    A sequence predicts the class of the mean of its frames' softmaxes; a sample outside
    any sequence (``sequences`` "") votes alone under its sample id. A sequence's label is
    its frames' (the most common, should they differ). Ids are sorted.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    groups = np.where(np.asarray(sequences) != "", np.char.add("sequence:", sequences),
                      np.char.add("sample:", np.asarray(sample_ids).astype(str)))
    keys, where = np.unique(groups, return_inverse=True)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    votes = np.zeros((len(keys), logits.shape[1]))
    np.add.at(votes, where, probs)
    counts = np.zeros((len(keys), logits.shape[1]), np.int64)
    np.add.at(counts, (where, labels), 1)
    return keys, counts.argmax(1), votes.argmax(1)


def per_class_f1(cm: np.ndarray) -> list[float]:
    """F1 of each class, 2 TP / (true + predicted); NaN for a class neither shown nor
    predicted."""
    cm = np.asarray(cm, dtype=np.float64)
    seen = cm.sum(axis=1) + cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(x) for x in np.where(seen > 0, 2 * np.diag(cm) / seen, np.nan)]


def scores(cm: np.ndarray) -> dict[str, float]:
    """accuracy, balanced_accuracy and macro_f1 of a confusion matrix (NaN when empty)."""
    cm = np.asarray(cm, dtype=np.float64)
    recall = np.array(per_class_accuracy(cm))
    f1 = np.array(per_class_f1(cm))
    total = cm.sum()
    return {"accuracy": float(np.trace(cm) / total) if total else float("nan"),
            "balanced_accuracy": _mean(recall), "macro_f1": _mean(f1)}


def _mean(values: np.ndarray) -> float:
    """Mean over the defined (non-NaN) entries; NaN when none is defined."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")
