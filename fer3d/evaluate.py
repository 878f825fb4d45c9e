"""Testing a saved cell (weights.pt or a resume checkpoint) on shard samples.

Stage: checkpoint + shards -> accuracy, confusion matrix (``fer3d-eval``).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from fer3d import protocol, report
from fer3d.campaign import _resolve_preset
from fer3d.checkpoint import load_checkpoint
from fer3d.device_data import make_source
from fer3d.engine import NUM_CLASSES, check_variant, place_model, predict
from fer3d.runtime import resolve_amp, resolve_device
from fer3d.settings import DEFAULT_BATCH_SIZE
from fer3d_data.errors import Fer3dDataError
from fer3d_data.schema import EXPRESSIONS
from fer3d_data.shard_index import read_shard_index

log = logging.getLogger(__name__)


def _subjects(ckpt: dict, index, preset: str, subjects: list[str] | None) -> tuple[list, list]:
    """The subjects to test and those of them outside the checkpoint's test fold."""
    subjects = list(subjects or ckpt.get("test_subjects") or
                    protocol.complete_subjects(index, preset))
    unknown = sorted(set(subjects) - set(index.subject.tolist()))
    if unknown:
        raise Fer3dDataError(f"subjects not in the shards: {', '.join(unknown)}")
    # Subjects outside the cell's test fold may have been trained on: say so loudly.
    untested = sorted(set(subjects) - set(ckpt.get("test_subjects") or subjects))
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
    """Test a checkpoint on the preset's samples of ``subjects`` (default: the test
    subjects stored in the checkpoint, else every subject of the preset)."""
    from fer3d.models import create_model

    ckpt = load_checkpoint(ckpt_path, variant)
    check_variant(ckpt["variant"])
    index = read_shard_index(shards)
    preset = _resolve_preset(preset, index)
    subjects, untested = _subjects(ckpt, index, preset, subjects)
    rows = protocol.select_samples(index, preset, subjects)
    if not len(rows):
        raise Fer3dDataError(f"no {preset} sample of subjects {subjects} in the shards")
    dev = resolve_device(device)
    model = place_model(create_model(ckpt["variant"], num_classes=NUM_CLASSES), dev,
                        channels_last)
    model.load_state_dict(ckpt["model"])
    src = make_source(index, rows, image_size=image_size or int(ckpt["image_size"]),
                      batch_size=batch_size, workers=workers, device=dev)
    logits, y, pos = predict(model, src.eval_batches(), resolve_amp(amp, dev), dev,
                             channels_last)
    src.close()
    p = logits.argmax(1).astype(np.int64)
    cm = report.confusion_matrix(y, p, NUM_CLASSES)
    return {"checkpoint": os.fspath(ckpt_path), "variant": ckpt["variant"],
            "subjects": sorted(subjects), "outside_test_fold": untested,
            "sample_ids": [str(s) for s in index.sample_id[rows[pos]]],
            "labels": y.tolist(), "predictions": p.tolist(),
            "accuracy": float((p == y).mean()),
            "per_class_accuracy": dict(zip(EXPRESSIONS, report.per_class_accuracy(cm))),
            "confusion_matrix": cm.tolist(), "class_names": list(EXPRESSIONS)}
