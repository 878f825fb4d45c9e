"""Training and testing of one (repeat, fold) cell.

Stage: a cell's rows + batches -> weights, per-epoch log, fold record, test logits, in the
cell's directory (:class:`fer3d.campaign.rundir.CellDir`). Every random draw of a cell
comes from (seed, repeat, fold, epoch), so a cell resumed from a checkpoint ends with the
same numbers as one that was not interrupted (on CPU). The step itself:
:mod:`fer3d.train.step`; what is kept on disk: :mod:`fer3d.train.checkpoint`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from fer3d import metrics
from fer3d.campaign.atomic import atomic_write
from fer3d.campaign.rundir import RunDir
from fer3d.metrics import sequence_votes
from fer3d.settings import PLAN_KEYS
from fer3d.train.checkpoint import CellCheckpoints
from fer3d.train.runtime import (
    AmpMode,
    cell_seed,
    make_optimizer,
    rng_state,
    seed_everything,
    set_rng_state,
)
from fer3d.train.sources import DeviceData, make_source
from fer3d.train.step import model_from_config, place_model, predict, train_epoch
from fer3d.train.transforms import NO_AUGMENT, Augment

log = logging.getLogger(__name__)


@dataclass
class CellRun:
    """What one cell needs from its campaign (built once per process by fer3d.campaign.run).

    data      the campaign's samples on the device, or None for the per-sample loader.
    on_epoch  called after every epoch with (repeat, fold, epoch, stats): progress, ETA.
    """

    cfg: object
    run: RunDir
    index: object      # labels in the plan's class codes
    plan: object
    device: torch.device
    amp: AmpMode
    data: DeviceData | None = None
    compile: bool = False
    on_epoch: Callable | None = None


class _Trainer:
    """The model, optimizer and files of one cell while it trains."""

    def __init__(self, run: CellRun, repeat: int, fold: int):
        cfg = run.cfg
        self.run, self.repeat, self.fold = run, repeat, fold
        self.cell = run.run.cell(repeat, fold)
        self.cell.path.mkdir(parents=True, exist_ok=True)
        self.rows = run.plan.cell(run.index, repeat, fold)
        self.seed = cell_seed(cfg.seed, repeat, fold)
        seed_everything(self.seed)
        # raw: the module whose state dict is saved; model: what runs (compiled or not)
        classes = list(run.plan.class_names)
        self.raw = place_model(model_from_config(cfg, len(classes)), run.device,
                               cfg.channels_last)
        self.model = torch.compile(self.raw) if run.compile else self.raw
        self.optimizer = make_optimizer(self.raw.parameters(), cfg.lr, run.device)
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=run.amp.scaler)
        self.test_subjects = [str(s) for s in run.plan.folds[repeat][fold]]
        self.ckpt = CellCheckpoints(self.cell, cfg.checkpoint_every, cfg.keep, {
            "variant": cfg.variant, "num_classes": len(classes), "image_size": cfg.image_size,
            "class_names": classes, "test_subjects": self.test_subjects})
        self.start, self.best = 0, {"val_acc": -1.0, "epoch": 0}

    def state(self, epoch: int) -> dict:
        return {"model": self.raw.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.run.amp.scaler else {},
                "epoch": epoch, "best": self.best, "rng": rng_state()}

    def restore(self) -> list[dict]:
        ckpt = self.ckpt.load_resume()
        if ckpt is not None:
            self.raw.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            self.start, self.best = int(ckpt["epoch"]), dict(ckpt["best"])
            set_rng_state(ckpt["rng"])
            log.info("r%d f%d: resuming after epoch %d", self.repeat, self.fold, self.start)
        return self.cell.read_epochs(upto=self.start)

    def source(self, part: str, aug: Augment = NO_AUGMENT):
        cfg = self.run.cfg
        return make_source(self.run.index, self.rows[part], image_size=cfg.image_size,
                           batch_size=cfg.batch_size, aug=aug, workers=cfg.workers,
                           device=self.run.device, data=self.run.data)

    def validate(self, val, epoch: int) -> float:
        cfg = self.run.cfg
        logits, y, _ = predict(self.model, val.eval_batches(), self.run.amp, self.run.device,
                               cfg.channels_last)
        acc = round(float((logits.argmax(1) == y).mean()), 6)
        if acc > self.best["val_acc"]:
            self.best = {"val_acc": acc, "epoch": epoch}
            self.ckpt.save_best(self.raw)
        return acc

    def epoch(self, train, epoch: int, bar) -> dict:
        cfg = self.run.cfg
        where = f"repeat {self.repeat}, fold {self.fold}, epoch {epoch}"
        stats = train_epoch(self.model, train.train_batches(cell_seed(
            cfg.seed, self.repeat, self.fold, epoch)), self.optimizer, self.scaler,
            self.run.amp, self.run.device, channels_last=cfg.channels_last, where=where,
            nan_check_every=cfg.nan_check_every, bar=bar)
        return {"epoch": epoch, **{k: round(v, 6) for k, v in stats.items()}}

    def fit(self, history: list[dict], tb) -> None:
        cfg = self.run.cfg
        train = self.source("train", Augment() if cfg.augment else NO_AUGMENT)
        val = self.source("val") if len(self.rows["val"]) else None
        bar = tqdm(total=len(train) * (cfg.epochs - self.start), desc=f"r{self.repeat} "
                   f"f{self.fold}", unit="img", disable=not cfg.progress, leave=False,
                   dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 30.0)
        try:
            for epoch in range(self.start + 1, cfg.epochs + 1):
                row = self.epoch(train, epoch, bar)
                if val is not None:
                    row["val_acc"] = self.validate(val, epoch)
                history.append(row)
                self.cell.write_epochs(history)
                for key, value in row.items() if tb is not None else ():
                    if key != "epoch":
                        tb.add_scalar(key, value, epoch)
                if self.run.on_epoch:
                    self.run.on_epoch(self.repeat, self.fold, epoch, row)
                if epoch < cfg.epochs and self.ckpt.due(epoch, row["time"], self.raw):
                    self.ckpt.save_resume(self.state(epoch))
        finally:
            bar.close()
            for src in (train, val):
                if src is not None:
                    src.close()

    def test(self) -> dict:
        cfg = self.run.cfg
        if len(self.rows["val"]):
            self.raw.load_state_dict(self.ckpt.load_best())
        src = self.source("test")
        logits, y, pos = predict(self.model, src.eval_batches(), self.run.amp, self.run.device,
                                 cfg.channels_last)
        src.close()
        index, rows = self.run.index, self.rows["test"][pos]
        ids = np.array([str(s) for s in index.sample_id[rows]])
        atomic_write(self.cell.logits, lambda tmp: _save_npz(
            tmp, logits=logits, labels=y, sample_ids=ids))
        p = logits.argmax(1).astype(np.int64)
        return {"repeat": self.repeat, "fold": self.fold, "variant": cfg.variant,
                "test_subjects": self.test_subjects, "sample_ids": ids.tolist(),
                "labels": y.tolist(), "predictions": p.tolist(),
                "correct": int((p == y).sum()), "total": len(y),
                "accuracy": float((p == y).mean()) if len(y) else float("nan"),
                "epochs": cfg.epochs, "selected_epoch": self.best["epoch"] or cfg.epochs,
                **self.sequence_record(logits, y, rows)}

    def sequence_record(self, logits: np.ndarray, y: np.ndarray, rows: np.ndarray) -> dict:
        """Per-sequence votes of the test samples when the campaign has sequences."""
        index = self.run.index
        if not (index.sequence[np.concatenate(list(self.rows.values()))] != "").any():
            return {}
        _, labels, preds = sequence_votes(logits, y, index.sequence[rows],
                                          index.sample_id[rows])
        return {"sequence_correct": int((preds == labels).sum()), "sequence_total": len(labels)}


def _save_npz(path: str, **arrays) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append .npz to a name
        np.savez(fh, **arrays)


def _tensorboard(run: CellRun, repeat: int, fold: int):
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


def train_one_cell(run: CellRun, repeat: int, fold: int) -> dict:
    """Train and test one (repeat, fold); returns the fold record (also fold.json).

    An unfinished cell continues after its last resume checkpoint.
    """
    t = _Trainer(run, repeat, fold)
    history = t.restore()
    tb = _tensorboard(run, repeat, fold)
    try:
        t.fit(history, tb)
        record = t.test()
        if tb is not None:
            _log_test(tb, run.cfg, record, len(run.plan.class_names))
    finally:
        if tb is not None:
            tb.close()
    t.ckpt.finish(t.raw, run.cfg.epochs, lambda: t.state(run.cfg.epochs))
    t.cell.write_record(record)
    log.info("r%d f%d: test accuracy %.4f (%d/%d)", repeat, fold, record["accuracy"],
             record["correct"], record["total"])
    return record
