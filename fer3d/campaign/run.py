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


def eta_line(stats: dict, n_train: int, epochs: int, cells: int) -> str:
    """samples/s of the first epoch and what the cells of this process will take (the first
    epoch includes warm-up: compile, cuDNN autotuning, so this errs on the long side)."""
    secs = cells * epochs * n_train / max(stats["samples_per_s"], 1e-9)
    finish = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + secs))
    return (f"first epoch: {stats['samples_per_s']:.1f} samples/s; {cells} cell(s) x "
            f"{epochs} epochs x {n_train} samples ≈ {_duration(secs)} at this speed "
            f"(ETA {finish})")


@dataclass
class Context:
    """What every cell of this process shares; samples go to the device on first use.
    ``index`` labels its rows with the plan's class codes (:func:`relabel`)."""

    cfg: TrainConfig
    index: object
    plan: object
    device: torch.device
    amp: object
    eta_cells: int = 0
    _data: DeviceData | None = field(default=None, repr=False)
    _loaded: bool = False

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
        if epoch == 1 and self.eta_cells:
            n_train = round(row["samples_per_s"] * row["time"])
            log.info("r%d f%d %s", repeat, fold,
                     eta_line(row, n_train, self.cfg.epochs, self.eta_cells))
            self.eta_cells = 0


def prepare(cfg: TrainConfig) -> Context:
    """Every check that can fail before training, then the run directory (created or
    attached) and this process's device."""
    check_variant(cfg.variant)
    index = read_shard_index(cfg.shards)
    cfg.preset = resolve_preset(cfg.preset, index)
    check_masks(cfg.variant, index)
    classes = plan_classes(index, cfg.preset, cfg.classes)
    if cfg.pretrained is not None:
        try:  # a missing or mismatched weights file fails now, not in the first cell
            model_from_config(cfg, len(classes))
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"--pretrained: {exc}") from None
    if cfg.image_size > index.image_size:
        log.warning("--image-size %d is larger than the shards' %d px grid: inputs are "
                    "upsampled and hold no more detail", cfg.image_size, index.image_size)
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    configure(device)
    resolved = {"resolved": {"device": str(device), "amp": amp.name, "grid": index.image_size},
                "versions": versions(device)}
    plan = open_run(cfg, index, resolved)
    log.info("%s: %d classes (%s), %d subjects, %d samples, %d repeat(s) x %d folds, "
             "device %s, amp %s", plan.preset, len(plan.class_names),
             ", ".join(plan.class_names), len(plan.subjects), len(plan.sample_ids),
             cfg.repeats, plan.k, device, amp.name)
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
    cells = selected_cells(cfg, ctx.plan.k)
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
