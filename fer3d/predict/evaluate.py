"""Testing saved weights (a cell's weights.pt, a resume checkpoint, a cell or run
directory) on shard samples.

Stage: checkpoint + shards -> accuracy, confusion matrix (``fer3d-eval``), per frame and,
with ``per_sequence``, per sequence. The classes are the weights' own
(:func:`fer3d.train.checkpoint.class_names_of`): samples of other labels are not tested.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from fer3d import metrics
from fer3d.campaign import protocol
from fer3d.errors import PlanError, unknown_names
from fer3d.settings import DEFAULT_BATCH_SIZE
from fer3d.train.checkpoint import class_names_of, load_model
from fer3d.train.runtime import resolve_amp, resolve_device
from fer3d.train.sources import make_source
from fer3d.train.step import place_model, predict
from fer3d_data.shard_index import read_shard_index

log = logging.getLogger(__name__)


def _subjects(meta: dict, index, preset: str, classes: list[str],
              subjects: list[str] | None) -> tuple[list, list]:
    """The subjects to test and those of them outside the checkpoint's test fold."""
    subjects = list(subjects or meta.get("test_subjects") or
                    protocol.eligible_subjects(index, preset, classes))
    known = sorted(set(index.subject.tolist()))
    unknown = sorted(set(subjects) - set(known))
    if unknown:
        raise PlanError(f"subjects not in the shards: {unknown_names(unknown, known)}")
    # Subjects outside the cell's test fold may have been trained on: say so loudly.
    untested = sorted(set(subjects) - set(meta.get("test_subjects") or subjects))
    if untested:
        log.warning("subjects %s are not in this checkpoint's test fold: if they were among "
                    "its training subjects, this accuracy is not subject-independent",
                    ", ".join(untested))
    return subjects, untested


def _sequence_result(logits: np.ndarray, y: np.ndarray, index, rows: np.ndarray) -> dict:
    ids, labels, preds = metrics.sequence_votes(logits, y, index.sequence[rows],
                                                index.sample_id[rows])
    return {"sequence_ids": ids.tolist(), "sequence_labels": labels.tolist(),
            "sequence_predictions": preds.tolist(),
            "sequence_accuracy": float((preds == labels).mean()) if len(ids) else float("nan")}


def evaluate_checkpoint(ckpt_path: str | os.PathLike, shards: list[str], *,
                        subjects: list[str] | None = None, preset: str = "auto",
                        variant: str | None = None, image_size: int | None = None,
                        batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto",
                        amp: str = "auto", channels_last: bool = True,
                        workers: int = 0, per_sequence: bool = False) -> dict:
    """Test saved weights on the preset's samples of ``subjects`` (default: the test
    subjects stored with the weights, else every subject of the preset) of the weights'
    classes; ``per_sequence``: also vote per sequence (mean of its frames' softmaxes)."""
    model, meta = load_model(ckpt_path, variant)
    index = read_shard_index(shards)
    preset = protocol.resolve_preset(preset, index)
    classes = class_names_of(meta, index.class_names)
    subjects, untested = _subjects(meta, index, preset, classes, subjects)
    rows = protocol.select_samples(index, preset, subjects, classes)
    if not len(rows):
        raise PlanError(f"no {preset} sample of subjects {subjects} in the shards")
    index = protocol.relabel(index, classes)
    dev = resolve_device(device)
    model = place_model(model, dev, channels_last)
    src = make_source(index, rows, image_size=image_size or int(meta.get("image_size", 224)),
                      batch_size=batch_size, workers=workers, device=dev)
    logits, y, pos = predict(model, src.eval_batches(), resolve_amp(amp, dev), dev,
                             channels_last)
    src.close()
    p = logits.argmax(1).astype(np.int64)
    cm = metrics.confusion_matrix(y, p, len(classes))
    return {"checkpoint": meta["path"], "variant": meta["variant"],
            "subjects": sorted(subjects), "outside_test_fold": untested,
            "sample_ids": [str(s) for s in index.sample_id[rows[pos]]],
            "labels": y.tolist(), "predictions": p.tolist(),
            **metrics.scores(cm),
            "per_class_accuracy": dict(zip(classes, metrics.per_class_accuracy(cm))),
            "confusion_matrix": cm.tolist(), "class_names": classes,
            **(_sequence_result(logits, y, index, rows[pos]) if per_sequence else {})}
