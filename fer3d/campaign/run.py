"""Running a campaign: check, plan or attach, train this process's cells, summarise.

Stage: TrainConfig -> trained cells -> summary.json. :func:`run_campaign` is the entry
point fer3d-train and fer3d-reproduce call. :func:`prepare` does every check that can fail
before training and builds this process's :class:`Context` (shard index, plan, device,
precision, samples on the device). Each cell ends in :func:`run_cell` (claim, train, write
fold.json) whichever executor (:mod:`fer3d.campaign.executors`) runs it, so a Slurm array,
``torchrun`` ranks, a Ray cluster and a laptop may all work on the same run at once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fer3d.campaign import executors
from fer3d.campaign.claims import HEARTBEAT_S, try_claim
from fer3d.campaign.plan import open_run, selected_cells
from fer3d.campaign.protocol import plan_classes, relabel, resolve_preset
from fer3d.campaign.rundir import RunDir
from fer3d.campaign.summary import summarize_run
from fer3d.errors import ConfigError, DivergedError
from fer3d.settings import TrainConfig
from fer3d.train.cell import CellRun, train_one_cell
from fer3d.train.runtime import configure, resolve_amp, resolve_device, versions
from fer3d.train.sources import DeviceData, use_device_data
from fer3d.train.step import check_masks, check_variant, model_from_config
from fer3d_data.shard_index import read_shard_index

log = logging.getLogger(__name__)


def _duration(secs: float) -> str:
    return f"{secs / 3600:.1f} h" if secs >= 3600 else (
        f"{secs / 60:.1f} min" if secs >= 60 else f"{secs:.0f} s")


def eta_line(epoch_stats: dict, epochs_left: int, cells_left: int) -> str:
    """What the epochs this process still has to train will take, at the speed of a
    steady-state epoch (not a cell's first: it includes warm-up, compile, cuDNN autotuning)."""
    secs = epochs_left * epoch_stats["time"]
    finish = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + secs))
    return (f"steady-state epoch: {epoch_stats['samples_per_s']:.1f} samples/s, "
            f"{epoch_stats['time']:.1f} s; {epochs_left} more epoch(s) in {cells_left} "
            f"cell(s) ≈ {_duration(secs)} (ETA {finish})")


@dataclass
class Context:
    """What every cell of this process shares; samples go to the device on first use.
    ``index`` labels its rows with the plan's class codes (:func:`relabel`)."""

    cfg: TrainConfig
    index: object
    plan: object
    device: torch.device
    amp: object
    eta_cells: int = 0       # cells this process will train: the ETA's horizon (0: no ETA)
    _data: DeviceData | None = field(default=None, repr=False)
    _loaded: bool = False
    _seen: list = field(default_factory=list)  # (repeat, fold) of the first epochs trained

    @property
    def run(self) -> RunDir:
        return RunDir(self.cfg.out)

    def data(self) -> DeviceData | None:
        if not self._loaded:
            rows = self.index.rows_of(self.plan.sample_ids)
            if use_device_data(self.cfg.data_on_device, self.device, len(rows),
                               self.index.image_size):
                self._data = DeviceData(self.index, rows, self.device)
                log.info("%d samples on %s (%.0f MB): batched on-device augmentation",
                         len(rows), self.device, self._data.nbytes / 1e6)
            self._loaded = True
        return self._data

    def cell_run(self) -> CellRun:
        return CellRun(self.cfg, self.run, self.index, self.plan, self.device, self.amp,
                       data=self.data(), compile=self.cfg.compile == "on",
                       on_epoch=self._eta if self.eta_cells else None)

    def _eta(self, repeat: int, fold: int, epoch: int, row: dict) -> None:
        """Log the ETA once, after the first epoch that is not the first this process
        trained (with one epoch per cell: the second cell's), unless nothing is left."""
        if len(self._seen) >= 2:
            return
        self._seen.append((repeat, fold))
        if len(self._seen) < 2:
            return
        more_cells = self.eta_cells - len(set(self._seen))
        this_cell = self.cfg.epochs - epoch
        left = this_cell + more_cells * self.cfg.epochs
        if left > 0:
            log.info("r%d f%d %s", repeat, fold,
                     eta_line(row, left, more_cells + (this_cell > 0)))


def prepare(cfg: TrainConfig) -> Context:
    """Every check that can fail before training, then the run directory (created or
    attached) and this process's device."""
    check_variant(cfg.variant)
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ConfigError(f"--out {cfg.out}: is a file, not a run directory; choose another "
                          "--out")
    selected_cells(cfg, cfg.folds)  # --cells and the task slot, before anything is written
    index = read_shard_index(cfg.shards)
    cfg.preset = resolve_preset(cfg.preset, index)
    check_masks(cfg.variant, index)
    classes = plan_classes(index, cfg.preset, cfg.classes)
    if cfg.pretrained is not None:  # a missing or mismatched weights file fails now
        model_from_config(cfg, len(classes))
    if cfg.image_size > index.image_size:
        log.warning("--image-size %d is larger than the shards' %d px grid: inputs are "
                    "upsampled and hold no more detail", cfg.image_size, index.image_size)
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    configure(device)
    resolved = {"resolved": {"device": str(device), "amp": amp.name, "grid": index.image_size},
                "versions": versions(device)}
    plan, attached = open_run(cfg, index, resolved)
    log.info("%s: %d classes (%s), %d subjects, %d samples, %d repeat(s) x %d folds, "
             "device %s, amp %s", plan.preset, len(plan.class_names),
             ", ".join(plan.class_names), len(plan.subjects), len(plan.sample_ids),
             cfg.repeats, plan.k, device, amp.name)
    if attached:
        log.info("%s: resuming the run there: %d of %d cells done", cfg.out,
                 len(RunDir(cfg.out).finished_cells()), cfg.repeats * plan.k)
    return Context(cfg, relabel(index, plan.class_names), plan, device, amp)


def run_cell(ctx: Context, cell: int) -> str:
    """Train ``cell`` unless it is finished or a live process holds it."""
    run = ctx.run
    cell_dir = run.cell_at(cell, ctx.plan.k)
    if cell_dir.done:
        return "finished"
    timeout = ctx.cfg.claim_timeout
    claim = try_claim(run.claim(cell), stale_after=timeout,
                      heartbeat=min(HEARTBEAT_S, timeout / 4))
    if claim is None:
        log.info("cell %d (r%d f%d) is being trained by another process; skipped",
                 cell, cell_dir.repeat, cell_dir.fold)
        return "held"
    with claim:
        if cell_dir.done:  # finished between the look and the claim
            return "finished"
        train_one_cell(ctx.cell_run(), cell_dir.repeat, cell_dir.fold)
    return "trained"


# --------------------------------------------------------------------------- worker tasks

_CONTEXTS: dict[str, Context] = {}


def worker_config(settings: dict) -> TrainConfig:
    """A cell task's config: attaches to the run, trains only what it is handed."""
    return dataclasses.replace(TrainConfig(**settings), resume=True, progress=False,
                               executor="local", parallel_cells=1, cells=None, task_index=0,
                               num_tasks=1, init_only=False)


def cell_task(settings: dict, cell: int, eta_cells: int = 0) -> tuple[int, str, str]:
    """Run one cell in a worker process (pool or Ray); the context is built once per
    process. Returns (cell, status, divergence message)."""
    cfg = worker_config(settings)
    ctx = _CONTEXTS.get(cfg.out)
    if ctx is None:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        ctx = _CONTEXTS[cfg.out] = prepare(cfg)
        ctx.eta_cells = eta_cells
    return _attempt(ctx, cell)


def _run_here(ctx: Context, cells: list[int]) -> list[str]:
    """Cells one after another in this process; the divergence messages."""
    ctx.eta_cells = len(cells)
    return [msg for _, status, msg in (_attempt(ctx, c) for c in cells) if status == "diverged"]


def _attempt(ctx: Context, cell: int) -> tuple[int, str, str]:
    """(cell, status, divergence message): a diverged cell is reported, the others go on."""
    try:
        return cell, run_cell(ctx, cell), ""
    except DivergedError as exc:
        log.error("%s", exc)
        return cell, "diverged", str(exc)


def run_campaign(cfg: TrainConfig) -> dict:
    """Plan (or attach to) the run in ``cfg.out``, train this process's cells, and return
    the summary once every cell is done (else the run's status: cells done, running,
    missing). ``init_only`` stops after writing config.json and folds.json.

    A cell whose loss diverges stops; the other cells still run; DivergedError at the end
    lists the failed cells (rerunning continues them from their last checkpoint).
    """
    ctx = prepare(cfg)
    if cfg.init_only:
        log.info("%s: planned %d cells; attach with the same settings", cfg.out,
                 cfg.repeats * ctx.plan.k)
        return {"run_dir": cfg.out, "cells": cfg.repeats * ctx.plan.k, "init_only": True}
    chosen = selected_cells(cfg, ctx.plan.k)
    cells = [c for c in chosen if not ctx.run.cell_at(c, ctx.plan.k).done]
    log.info("%d cell(s) to train in this process (%d of its %d done already)", len(cells),
             len(chosen) - len(cells), len(chosen))
    settings = dataclasses.asdict(cfg)
    if cfg.executor == "ray":
        failed = executors.run_ray(cell_task, settings, cells, address=cfg.ray_address,
                                   gpus_per_cell=cfg.gpus_per_cell, use_gpu=cfg.device != "cpu")
    elif cfg.parallel_cells > 1:
        failed = executors.run_processes(cell_task, settings, cells, cfg.parallel_cells)
    else:
        failed = _run_here(ctx, cells)
    if failed:
        raise DivergedError("; ".join(failed) + "; rerun the same command to resume")
    return _outcome(cfg)


def _outcome(cfg: TrainConfig) -> dict:
    status = summarize_run(cfg.out, stale_after=cfg.claim_timeout)
    if status["complete"]:
        return status["summary"]
    log.info("%d of %d cells done; %d running elsewhere, %d missing: summary.json is "
             "written when the last one finishes (or fer3d-train --summarize %s)",
             len(status["done"]), status["cells"], len(status["running"]),
             len(status["missing"]), cfg.out)
    return status
