"""Testing saved weights (a cell's weights.pt, a resume checkpoint, a cell or run
directory) on shard samples.

Stage: checkpoint + shards -> accuracy, confusion matrix (``fer3d-eval``).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from fer3d import metrics
from fer3d.campaign import protocol
from fer3d.errors import PlanError, unknown_names
from fer3d.settings import DEFAULT_BATCH_SIZE
from fer3d.train.checkpoint import load_model
from fer3d.train.runtime import resolve_amp, resolve_device
from fer3d.train.sources import make_source
from fer3d.train.step import NUM_CLASSES, place_model, predict
from fer3d_data.schema import EXPRESSIONS
from fer3d_data.shard_index import read_shard_index

log = logging.getLogger(__name__)


def _subjects(meta: dict, index, preset: str, subjects: list[str] | None) -> tuple[list, list]:
    """The subjects to test and those of them outside the checkpoint's test fold."""
    subjects = list(subjects or meta.get("test_subjects") or
                    protocol.complete_subjects(index, preset))
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


def evaluate_checkpoint(ckpt_path: str | os.PathLike, shards: list[str], *,
                        subjects: list[str] | None = None, preset: str = "auto",
                        variant: str | None = None, image_size: int | None = None,
                        batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto",
                        amp: str = "auto", channels_last: bool = True,
                        workers: int = 0) -> dict:
    """Test saved weights on the preset's samples of ``subjects`` (default: the test
    subjects stored with the weights, else every subject of the preset)."""
    model, meta = load_model(ckpt_path, variant)
    index = read_shard_index(shards)
    preset = protocol.resolve_preset(preset, index)
    subjects, untested = _subjects(meta, index, preset, subjects)
    rows = protocol.select_samples(index, preset, subjects)
    if not len(rows):
        raise PlanError(f"no {preset} sample of subjects {subjects} in the shards")
    dev = resolve_device(device)
    model = place_model(model, dev, channels_last)
    src = make_source(index, rows, image_size=image_size or int(meta.get("image_size", 224)),
                      batch_size=batch_size, workers=workers, device=dev)
    logits, y, pos = predict(model, src.eval_batches(), resolve_amp(amp, dev), dev,
                             channels_last)
    src.close()
    p = logits.argmax(1).astype(np.int64)
    cm = metrics.confusion_matrix(y, p, NUM_CLASSES)
    return {"checkpoint": meta["path"], "variant": meta["variant"],
            "subjects": sorted(subjects), "outside_test_fold": untested,
            "sample_ids": [str(s) for s in index.sample_id[rows[pos]]],
            "labels": y.tolist(), "predictions": p.tolist(),
            **metrics.scores(cm),
            "per_class_accuracy": dict(zip(EXPRESSIONS, metrics.per_class_accuracy(cm))),
            "confusion_matrix": cm.tolist(), "class_names": list(EXPRESSIONS)}
