"""Training and testing of one (repeat, fold) cell.

Stage: a cell's rows + batches -> weights, per-epoch log, fold record, test logits.
Paper settings (Adam, betas (0.9, 0.999), lr 1e-4 fixed, cross-entropy, fixed epochs).
A training step never waits for the host: loss and correct counts accumulate on the
device and are read once per epoch (a NaN check every ``nan_check_every`` steps). Every
random draw of a cell comes from (seed, repeat, fold, epoch), so a cell resumed from a
checkpoint ends with the same numbers as one that was not interrupted (on CPU).
Campaigns (plans, claims, executors): :mod:`fer3d.campaign`. Run-directory layout:
docs/protocol.md.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fer3d.checkpoint import CellCheckpoints
from fer3d.data import NO_AUGMENT, Augment
from fer3d.device_data import DeviceData, make_source
from fer3d.runfiles import atomic_write, write_json
from fer3d.runtime import (
    AmpMode,
    cell_seed,
    make_optimizer,
    rng_state,
    seed_everything,
    set_rng_state,
)
from fer3d.settings import ConfigError
from fer3d_data.schema import EXPRESSIONS

log = logging.getLogger(__name__)

NUM_CLASSES = len(EXPRESSIONS)


class DivergedError(RuntimeError):
    """The loss became NaN/inf; names the cells so they can be resumed or rerun."""


# --------------------------------------------------------------------------- steps

def compute_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, 6) logits, (B,) codes -> scalar cross-entropy in fp32."""
    return F.cross_entropy(logits.float(), labels)


def _check_finite(loss_sum: torch.Tensor, where: str, seen: int) -> None:
    if not torch.isfinite(loss_sum):  # the one host read of a NaN check
        raise DivergedError(f"{where}: loss is {float(loss_sum)} after {seen} samples; the "
                            "cell stopped (its last checkpoint is kept)")


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def train_epoch(model, batches, optimizer, scaler, amp: AmpMode, device: torch.device, *,
                channels_last: bool, where: str, nan_check_every: int = 0, bar=None) -> dict:
    """One pass over ``batches``; DivergedError naming ``where`` on a non-finite loss."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, t0 = 0, time.perf_counter()
    for step, (tex, dep, mask, labels, _) in enumerate(batches, 1):
        with amp.autocast(device):
            logits = model(_layout(tex, channels_last), _layout(dep, channels_last), mask)
        loss = compute_loss(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        b = labels.shape[0]
        loss_sum += loss.detach() * b
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += b
        if nan_check_every and step % nan_check_every == 0:
            _check_finite(loss_sum, where, seen)
        if bar is not None:
            bar.update(b)
    _check_finite(loss_sum, where, seen)
    total_loss, total_correct = torch.stack([loss_sum, correct.float()]).tolist()
    secs = time.perf_counter() - t0
    return {"loss": total_loss / max(seen, 1), "train_acc": total_correct / max(seen, 1),
            "time": secs, "samples_per_s": seen / max(secs, 1e-9)}


@torch.no_grad()
def predict(model, batches, amp: AmpMode, device: torch.device,
            channels_last: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N, 6) float32, labels (N,) int64, source positions (N,) int64)."""
    model.eval()
    logits, labels, where = [], [], []
    for tex, dep, mask, y, pos in batches:
        with amp.autocast(device):
            logits.append(model(_layout(tex, channels_last), _layout(dep, channels_last),
                                mask).float())
        labels.append(y)
        where.append(pos)
    if not logits:
        return np.zeros((0, NUM_CLASSES), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (torch.cat(logits).cpu().numpy(), torch.cat(labels).cpu().numpy().astype(np.int64),
            torch.cat(where).cpu().numpy().astype(np.int64))


# --------------------------------------------------------------------------- models

def check_variant(name: str) -> None:
    """ConfigError listing the registered variants unless ``name`` is one."""
    from fer3d.models import list_models

    names = list(list_models())
    if name not in names:
        raise ConfigError(f"unknown variant {name!r}; available: {', '.join(names)}")


def model_from_config(cfg) -> torch.nn.Module:
    """The one place TrainConfig settings become model-builder keywords."""
    from fer3d.models import create_model

    return create_model(cfg.variant, num_classes=NUM_CLASSES, pretrained=cfg.pretrained,
                        head_init=cfg.head_init)


def place_model(model: torch.nn.Module, device: torch.device,
                channels_last: bool) -> torch.nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


# --------------------------------------------------------------------------- cells

@dataclass
class CellRun:
    """What one cell needs from its campaign (built once per process by fer3d.campaign).

    data      the campaign's samples on the device, or None for the per-sample loader.
    on_epoch  called after every epoch with (repeat, fold, epoch, stats): progress, ETA.
    """

    cfg: object
    run_dir: Path
    index: object
    plan: object
    device: torch.device
    amp: AmpMode
    data: DeviceData | None = None
    compile: bool = False
    on_epoch: Callable | None = None


def cell_dir(run_dir: Path, repeat: int, fold: int) -> Path:
    return run_dir / "cells" / f"r{repeat}_f{fold}"


def _write_epochs_csv(path: Path, rows: list[dict]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(path, write)


def _read_epochs_csv(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if int(r["epoch"]) <= upto]


class _Trainer:
    """The model, optimizer and files of one cell while it trains."""

    def __init__(self, run: CellRun, repeat: int, fold: int):
        cfg = run.cfg
        self.run, self.repeat, self.fold = run, repeat, fold
        self.out = cell_dir(run.run_dir, repeat, fold)
        self.out.mkdir(parents=True, exist_ok=True)
        self.rows = run.plan.cell(run.index, repeat, fold)
        self.seed = cell_seed(cfg.seed, repeat, fold)
        seed_everything(self.seed)
        # raw: the module whose state dict is saved; model: what runs (compiled or not)
        self.raw = place_model(model_from_config(cfg), run.device, cfg.channels_last)
        self.model = torch.compile(self.raw) if run.compile else self.raw
        self.optimizer = make_optimizer(self.raw.parameters(), cfg.lr, run.device)
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=run.amp.scaler)
        self.test_subjects = [str(s) for s in run.plan.folds[repeat][fold]]
        self.ckpt = CellCheckpoints(self.out, cfg.checkpoint_every, cfg.keep, {
            "variant": cfg.variant, "num_classes": NUM_CLASSES, "image_size": cfg.image_size,
            "class_names": list(EXPRESSIONS), "test_subjects": self.test_subjects})
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
        return _read_epochs_csv(self.out / "epochs.csv", self.start)

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
            atomic_write(self.out / "best.pt",
                         lambda tmp: torch.save({"model": self.raw.state_dict()}, tmp))
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
                _write_epochs_csv(self.out / "epochs.csv", history)
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
            best = torch.load(self.out / "best.pt", weights_only=True)["model"]
            self.raw.load_state_dict(best)
        src = self.source("test")
        logits, y, pos = predict(self.model, src.eval_batches(), self.run.amp, self.run.device,
                                 cfg.channels_last)
        src.close()
        ids = np.array([str(s) for s in self.run.index.sample_id[self.rows["test"][pos]]])
        atomic_write(self.out / "logits.npz", lambda tmp: _save_npz(
            tmp, logits=logits, labels=y, sample_ids=ids))
        p = logits.argmax(1).astype(np.int64)
        return {"repeat": self.repeat, "fold": self.fold, "variant": cfg.variant,
                "test_subjects": self.test_subjects, "sample_ids": ids.tolist(),
                "labels": y.tolist(), "predictions": p.tolist(),
                "correct": int((p == y).sum()), "total": len(y),
                "accuracy": float((p == y).mean()) if len(y) else float("nan"),
                "epochs": cfg.epochs, "selected_epoch": self.best["epoch"] or cfg.epochs}


def _save_npz(path: str, **arrays) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append .npz to a name
        np.savez(fh, **arrays)


def _tensorboard(run: CellRun, repeat: int, fold: int):
    if not getattr(run.cfg, "tensorboard", False):
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(os.fspath(run.run_dir / "tensorboard" / f"r{repeat}_f{fold}"))


def train_one_cell(run: CellRun, repeat: int, fold: int) -> dict:
    """Train and test one (repeat, fold); returns the fold record (also fold.json).

    An unfinished cell continues after its last resume checkpoint.
    """
    t = _Trainer(run, repeat, fold)
    history = t.restore()
    tb = _tensorboard(run, repeat, fold)
    try:
        t.fit(history, tb)
    finally:
        if tb is not None:
            tb.close()
    record = t.test()
    t.ckpt.finish(t.raw, run.cfg.epochs, lambda: t.state(run.cfg.epochs))
    (t.out / "best.pt").unlink(missing_ok=True)
    write_json(record, t.out / "fold.json")
    log.info("r%d f%d: test accuracy %.4f (%d/%d)", repeat, fold, record["accuracy"],
             record["correct"], record["total"])
    return record
