"""Run directories in the engine's layout without training (tests of reports and
reproduction): a real plan (folds.json from the protocol's own subject_folds), predictions
drawn at random, the summary from the engine's own summarise, every file written through
the run directory's owner."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from fer3d.campaign.folds import subject_folds
from fer3d.campaign.protocol import FoldPlan
from fer3d.campaign.rundir import RunDir
from fer3d.campaign.summary import summarise
from fer3d_data.schema import EXPRESSIONS


def fake_plan(dataset: str, folds: int, repeats: int, subjects_per_fold: int,
              plan_seed: int, class_names=EXPRESSIONS) -> FoldPlan:
    """Subjects S00.. with one sample per class, split as the engine splits them."""
    subjects = [f"S{i:02d}" for i in range(folds * subjects_per_fold)]
    return FoldPlan(preset=dataset, seed=plan_seed, k=folds, subjects=subjects,
                    sample_ids=[f"{s}_{c}" for s in subjects for c in range(len(class_names))],
                    folds=subject_folds(subjects, folds, repeats, plan_seed),
                    class_names=list(class_names))


def _record(plan: FoldPlan, variant: str, r: int, f: int, rng, hit_rate: float,
            sequences: bool) -> dict:
    """``sequences``: per-sequence votes too (every third sample starts a sequence, whose
    vote is right when that sample is)."""
    test = plan.folds[r][f]
    ids = [i for i in plan.sample_ids if i.split("_")[0] in test]
    labels = np.array([int(i.split("_")[1]) for i in ids])
    hit = rng.random(len(ids)) < hit_rate + 0.1 * f
    preds = np.where(hit, labels, (labels + 1) % len(plan.class_names))
    votes = {"sequence_correct": int(hit[::3].sum()), "sequence_total": len(hit[::3])}
    return {"repeat": r, "fold": f, "variant": variant, "test_subjects": test,
            "sample_ids": ids, "labels": labels.tolist(), "predictions": preds.tolist(),
            "correct": int(hit.sum()), "total": len(ids), "accuracy": float(hit.mean()),
            "epochs": 3, "selected_epoch": 3, **(votes if sequences else {})}


def write_run(out: Path, variant: str, dataset: str = "bu3dfe", *, repeats: int = 2,
              folds: int = 2, subjects_per_fold: int = 2, epochs: int = 3, seed: int = 0,
              plan_seed: int = 0, image_size: int = 64, hit_rate: float = 0.5,
              amp: str = "off", class_names=EXPRESSIONS, sequences: bool = False) -> dict:
    """Write config.json, folds.json, cells/*/{fold.json,epochs.csv} and summary.json.

    Runs with the same ``dataset``, ``folds``, ``subjects_per_fold`` and ``plan_seed``
    share one plan; ``seed`` draws the predictions, ``hit_rate`` their accuracy;
    ``class_names`` are the plan's classes, ``sequences`` adds per-sequence votes."""
    run, rng = RunDir(out), np.random.default_rng(seed)
    run.path.mkdir(parents=True, exist_ok=True)
    plan = fake_plan(dataset, folds, repeats, subjects_per_fold, plan_seed, class_names)
    run.write_plan(dataclasses.asdict(plan))
    records = []
    for r in range(repeats):
        for f in range(folds):
            cell = run.cell(r, f)
            cell.path.mkdir(parents=True)
            records.append(_record(plan, variant, r, f, rng, hit_rate, sequences))
            cell.write_record(records[-1])
            cell.write_epochs([{"epoch": e, "loss": 1.8 / e + rng.random() * 0.1,
                                "train_acc": 0.3 + 0.2 * e, "time": 1.0, "samples_per_s": 50.0}
                               for e in range(1, epochs + 1)])
    summary = summarise(records, repeats, plan.class_names)
    summary.update(preset=dataset, n_samples=len(plan.sample_ids))
    config = {"variant": variant, "preset": dataset, "repeats": repeats, "folds": folds,
              "epochs": epochs, "image_size": image_size, "seed": plan_seed}
    run.write_config({"config": config, "resolved": {"device": "cpu", "amp": amp}})
    run.write_summary(summary)
    return summary
