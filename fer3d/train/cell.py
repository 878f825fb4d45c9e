"""One (repeat, fold) cell: its rows, files, resume state, validation and test.

Stage: a cell's rows + weights -> per-epoch log, fold record, test logits, kept weights, in
the cell's directory (:class:`fer3d.campaign.rundir.CellDir`). Every random draw of a cell
comes from (seed, repeat, fold, epoch), so a cell resumed from a checkpoint ends with the
same numbers as one that was not interrupted (on CPU), and a cell trained in a pack
(:mod:`fer3d.train.packed`, which runs the epochs) takes exactly the draws it takes alone.
What is kept on disk: :mod:`fer3d.train.checkpoint`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from fer3d import metrics
from fer3d.campaign.atomic import atomic_write
from fer3d.campaign.rundir import RunDir
from fer3d.metrics import sequence_votes
from fer3d.settings import PLAN_KEYS
from fer3d.train.checkpoint import CellCheckpoints
from fer3d.train.runtime import AmpMode, cell_seed, rng_state, seed_everything, set_rng_state
from fer3d.train.sources import DeviceData, make_source, train_shape
from fer3d.train.step import model_from_config, predict
from fer3d.train.transforms import NO_AUGMENT, Augment

log = logging.getLogger(__name__)


@dataclass
class CellRun:
    """What the cells of one process share (built once per process by fer3d.campaign.run).

    data      the campaign's samples on the device, or None for the per-sample loader.
    compile   torch.compile mode for training (None: eager).
    pack      most cells trained at once as one network (1: each alone).
    models    the process's networks, reused by every cell (fer3d.train.packed.Models).
    on_epoch  called after every epoch with (repeat, fold, epoch, stats): progress, ETA.
    """

    cfg: object
    run: RunDir
    index: object      # labels in the plan's class codes
    plan: object
    device: torch.device
    amp: AmpMode
    data: DeviceData | None = None
    compile: str | None = None
    pack: int = 1
    models: object = None
    on_epoch: Callable | None = None
    details: dict = field(default_factory=dict)  # recorded in every fold.json


class Cell:
    """One cell while it trains: rows, seed, files, progress (start, best, history)."""

    def __init__(self, run: CellRun, repeat: int, fold: int):
        cfg = run.cfg
        self.run, self.repeat, self.fold = run, repeat, fold
        self.where = f"repeat {repeat}, fold {fold}"
        self.dir = run.run.cell(repeat, fold)
        self.dir.path.mkdir(parents=True, exist_ok=True)
        self.rows = run.plan.cell(run.index, repeat, fold)
        self.seed = cell_seed(cfg.seed, repeat, fold)
        self.test_subjects = [str(s) for s in run.plan.folds[repeat][fold]]
        self.classes = list(run.plan.class_names)
        self.ckpt = CellCheckpoints(self.dir, cfg.keep, {
            "variant": cfg.variant, "num_classes": len(self.classes),
            "image_size": cfg.image_size, "class_names": self.classes,
            "test_subjects": self.test_subjects})
        self.start, self.best, self.history = 0, {"val_acc": -1.0, "epoch": 0}, []
        self.resumed: dict | None = None

    def train_shape(self) -> tuple[int, int]:
        return train_shape(len(self.rows["train"]), self.run.cfg.batch_size)

    def epoch_seed(self, epoch: int) -> int:
        return cell_seed(self.run.cfg.seed, self.repeat, self.fold, epoch)

    def initial_weights(self) -> dict[str, torch.Tensor]:
        """The weights the cell starts from: its resume checkpoint's, else drawn from its
        seed (the same draw whether it trains alone or in a pack)."""
        if self.resumed is not None:
            return self.resumed["model"]
        seed_everything(self.seed)
        return model_from_config(self.run.cfg, len(self.classes)).state_dict()

    def restore(self) -> None:
        """Read the resume checkpoint, if any: epoch, best, history, RNG states."""
        ckpt = self.ckpt.load_resume()
        if ckpt is not None:
            self.resumed = ckpt
            self.start, self.best = int(ckpt["epoch"]), dict(ckpt["best"])
            set_rng_state(ckpt["rng"], self.run.device)
            log.info("r%d f%d: resuming after epoch %d", self.repeat, self.fold, self.start)
        self.history = self.dir.read_epochs(upto=self.start)

    def state(self, epoch: int, model: dict, optimizer: dict, scaler: dict) -> dict:
        """A resume checkpoint's content (the same whether trained alone or packed)."""
        return {"model": model, "optimizer": optimizer, "scaler": scaler, "epoch": epoch,
                "best": self.best, "rng": rng_state(self.run.device)}

    def source(self, part: str, aug: Augment = NO_AUGMENT):
        cfg = self.run.cfg
        return make_source(self.run.index, self.rows[part], image_size=cfg.image_size,
                           batch_size=cfg.batch_size, aug=aug, workers=cfg.workers,
                           device=self.run.device, data=self.run.data)

    def log_epoch(self, row: dict, tb) -> None:
        self.history.append(row)
        self.dir.write_epochs(self.history)
        for key, value in row.items() if tb is not None else ():
            if key != "epoch":
                tb.add_scalar(key, value, row["epoch"])

    def validate(self, model, val, epoch: int) -> float:
        """Accuracy of ``model`` (this cell's weights) on the validation rows; keeps the best."""
        cfg = self.run.cfg
        logits, y, _ = predict(model, val.eval_batches(), self.run.amp, self.run.device,
                               cfg.channels_last)
        acc = round(float((logits.argmax(1) == y).mean()), 6)
        if acc > self.best["val_acc"]:
            self.best = {"val_acc": acc, "epoch": epoch}
            self.ckpt.save_best(model)
        return acc

    def test(self, model, pack: int = 1) -> dict:
        """Test ``model`` (this cell's final weights, or its best with a validation split);
        writes logits.npz and returns the fold record (``pack``: cells it trained with)."""
        cfg = self.run.cfg
        if len(self.rows["val"]):
            model.load_state_dict(self.ckpt.load_best())
        src = self.source("test")
        logits, y, pos = predict(model, src.eval_batches(), self.run.amp, self.run.device,
                                 cfg.channels_last)
        src.close()
        index, rows = self.run.index, self.rows["test"][pos]
        ids = np.array([str(s) for s in index.sample_id[rows]])
        atomic_write(self.dir.logits, lambda tmp: _save_npz(
            tmp, logits=logits, labels=y, sample_ids=ids))
        p = logits.argmax(1).astype(np.int64)
        return {"repeat": self.repeat, "fold": self.fold, "variant": cfg.variant,
                "test_subjects": self.test_subjects, "sample_ids": ids.tolist(),
                "labels": y.tolist(), "predictions": p.tolist(),
                "correct": int((p == y).sum()), "total": len(y),
                "accuracy": float((p == y).mean()) if len(y) else float("nan"),
                "epochs": cfg.epochs, "selected_epoch": self.best["epoch"] or cfg.epochs,
                **self.sequence_record(logits, y, rows), **self.run.details, "pack": pack}

    def sequence_record(self, logits: np.ndarray, y: np.ndarray, rows: np.ndarray) -> dict:
        """Per-sequence votes of the test samples when the campaign has sequences."""
        index = self.run.index
        if not (index.sequence[np.concatenate(list(self.rows.values()))] != "").any():
            return {}
        _, labels, preds = sequence_votes(logits, y, index.sequence[rows],
                                          index.sample_id[rows])
        return {"sequence_correct": int((preds == labels).sum()), "sequence_total": len(labels)}

    def finish(self, model, last_state: Callable[[], dict], pack: int = 1) -> dict:
        """Test, keep what ``--keep`` asks for, write fold.json (last: the cell is done)."""
        record = self.test(model, pack)
        tb = tensorboard(self.run, self.repeat, self.fold) if record["total"] else None
        if tb is not None:
            try:
                _log_test(tb, self.run.cfg, record, len(self.classes))
            finally:
                tb.close()
        self.ckpt.finish(model, self.run.cfg.epochs, last_state)
        self.dir.write_record(record)
        if record["total"]:
            log.info("r%d f%d: test accuracy %.4f (%d/%d)", self.repeat, self.fold,
                     record["accuracy"], record["correct"], record["total"])
        else:
            log.info("r%d f%d: trained (no test fold: a final model's member)", self.repeat,
                     self.fold)
        return record


def _save_npz(path: str, **arrays) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append .npz to a name
        np.savez(fh, **arrays)


def tensorboard(run: CellRun, repeat: int, fold: int):
    if not getattr(run.cfg, "tensorboard", False):
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(os.fspath(run.run.tensorboard(repeat, fold)))


def _log_test(tb, cfg, record: dict, n_classes: int) -> None:
    """The cell's test scores as scalars (test/...) and, with the plan's settings, as one
    HParams session, so TensorBoard can compare cells and campaigns."""
    cm = metrics.confusion_matrix(record["labels"], record["predictions"], n_classes)
    test = {f"test/{k}": v for k, v in metrics.scores(cm).items()}
    for key, value in test.items():
        tb.add_scalar(key, value, cfg.epochs)
    hparams = {k: "none" if getattr(cfg, k) is None else getattr(cfg, k) for k in PLAN_KEYS}
    tb.add_hparams(hparams, test, run_name=".", global_step=cfg.epochs)
