"""Run directories in the engine's layout without training (tests of reports and
reproduction): predictions drawn at random, the summary from the engine's own summarise."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fer3d.campaign.summary import summarise
from fer3d_data.schema import EXPRESSIONS


def write_run(out: Path, variant: str, dataset: str = "bu3dfe", *, repeats: int = 2,
              folds: int = 2, per_fold: int = 12, epochs: int = 3, seed: int = 0,
              image_size: int = 64, class_names=EXPRESSIONS, sequences: bool = False) -> dict:
    """Write config.json, folds.json, cells/r*_f*/{fold.json,epochs.csv} and summary.json;
    ``sequences``: the fold records carry per-sequence votes (every 3 samples one sequence,
    right when its first frame is)."""
    n = len(class_names)
    rng = np.random.default_rng(seed)
    records = []
    for r in range(repeats):
        for f in range(folds):
            labels = np.arange(per_fold) % n
            hit = rng.random(per_fold) < 0.5 + 0.1 * f
            preds = np.where(hit, labels, (labels + 1) % n)
            ids = [f"S{r}{f}_{i:02d}" for i in range(per_fold)]
            rec = {"repeat": r, "fold": f, "variant": variant, "test_subjects": [f"S{r}{f}"],
                   "sample_ids": ids, "labels": labels.tolist(), "predictions": preds.tolist(),
                   "correct": int(hit.sum()), "total": per_fold,
                   "accuracy": float(hit.mean()), "epochs": epochs, "selected_epoch": epochs}
            if sequences:
                rec.update(sequence_correct=int(hit[::3].sum()), sequence_total=len(hit[::3]))
            cell = out / "cells" / f"r{r}_f{f}"
            cell.mkdir(parents=True)
            (cell / "fold.json").write_text(json.dumps(rec))
            with open(cell / "epochs.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["epoch", "loss", "train_acc", "time", "samples_per_s"])
                for e in range(1, epochs + 1):
                    w.writerow([e, 1.8 / e + rng.random() * 0.1, 0.3 + 0.2 * e, 1.0, 50.0])
            records.append(rec)
    summary = summarise(records, repeats, list(class_names))
    summary.update(preset=dataset, n_samples=per_fold * folds)
    config = {"variant": variant, "preset": dataset, "repeats": repeats, "folds": folds,
              "epochs": epochs, "image_size": image_size}
    (out / "config.json").write_text(json.dumps({"config": config}))
    (out / "summary.json").write_text(json.dumps(summary))
    return summary
