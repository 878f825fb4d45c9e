"""Running a campaign: check, plan or attach, train this process's cells, summarise.

Stage: TrainConfig -> trained cells -> summary.json. :func:`run_campaign` is the entry
point fer3d-train and fer3d-reproduce call. :func:`prepare` does every check that can fail
before training and builds a process's :class:`Context` (shard index, plan, device,
precision, samples on the device, its networks). A :class:`CellWorker` takes cells a pack
at a time: claims each (:mod:`fer3d.campaign.claims`), trains the claimed ones together
(:func:`fer3d.train.packed.train_cells`) and reports each cell's outcome; a cell that fails
is recorded and the others go on. Whichever executor runs the workers (this process, K
local processes, long-lived Ray actors: :mod:`fer3d.campaign.executors`), a Slurm array,
``torchrun`` ranks, a Ray cluster and a laptop may all work on the same run at once.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fer3d.campaign import executors
from fer3d.campaign.claims import HEARTBEAT_S, try_claim
from fer3d.campaign.plan import open_run, selected_cells
from fer3d.campaign.protocol import plan_classes, relabel, resolve_preset
from fer3d.campaign.rundir import RunDir
from fer3d.campaign.summary import summarize_run
from fer3d.errors import CellsFailedError, ConfigError, DivergedError
from fer3d.predict.final import check_final, publish_final
from fer3d.settings import TrainConfig
from fer3d.train.cell import CellRun
from fer3d.train.packed import Models, pack_size, train_cells
from fer3d.train.runtime import configure, resolve_amp, resolve_device, versions
from fer3d.train.sources import DeviceData, use_device_data
from fer3d.train.step import check_masks, check_variant, model_from_config
from fer3d_data.shard_index import read_shard_index

log = logging.getLogger(__name__)


def _duration(secs: float) -> str:
    return f"{secs / 3600:.1f} h" if secs >= 3600 else (
        f"{secs / 60:.1f} min" if secs >= 60 else f"{secs:.0f} s")


def eta_line(epoch_stats: dict, epochs_left: int, cells_left: int, pack: int = 1) -> str:
    """What the epochs this process still has to train will take, at the speed of a
    steady-state epoch (not a cell's first: it includes warm-up, compile, cuDNN autotuning);
    ``epochs_left`` counts cell-epochs, of which a pack trains ``pack`` at once."""
    secs = epochs_left * epoch_stats["time"] / pack
    finish = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + secs))
    return (f"steady-state epoch: {epoch_stats['samples_per_s']:.1f} samples/s, "
            f"{epoch_stats['time']:.1f} s; {epochs_left} more epoch(s) in {cells_left} "
            f"cell(s) ≈ {_duration(secs)} (ETA {finish})")


@contextmanager
def sigterm_releases():
    """SIGTERM (Slurm preemption or time limit, scancel, torchrun stopping the other ranks)
    ends this process through an exception, exit status 143: every claim it holds is
    released on the way out and resume checkpoints stay, so a requeued or rerun task
    continues at once. Only the main thread can take signals; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        log.warning("SIGTERM: stopping; claims released, resume checkpoints kept (rerun the "
                    "same command to resume)")
        raise SystemExit(128 + signum)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Context:
    """What every cell of this process shares; samples go to the device on first use.
    ``index`` labels its rows with the plan's class codes (:func:`relabel`)."""

    cfg: TrainConfig
    index: object
    plan: object
    device: torch.device
    amp: object
    share: float = 1.0  # of the device's memory, when processes share a GPU
    eta_cells: int = 0       # cells this process will train: the ETA's horizon (0: no ETA)
    _data: DeviceData | None = field(default=None, repr=False)
    _loaded: bool = False
    _cell_run: CellRun | None = field(default=None, repr=False)
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
        """The process's CellRun: networks kept (and compiled once) across cells."""
        if self._cell_run is None:
            cfg, dev = self.cfg, self.device
            mode = None if cfg.compile != "on" else (
                "reduce-overhead" if dev.type == "cuda" else "default")
            run = CellRun(cfg, self.run, self.index, self.plan, dev, self.amp,
                          data=self.data(), compile=mode,
                          models=Models(cfg, dev, mode, len(self.plan.class_names)),
                          on_epoch=self._eta, details={
                              "device": versions(dev)["device"], "amp": self.amp.name})
            run.pack = pack_size(cfg.pack, run, self.share)
            log.info("%s: %d cell(s) per pack", dev, run.pack)
            self._cell_run = run
        return self._cell_run

    def _eta(self, repeat: int, fold: int, epoch: int, row: dict) -> None:
        """Log the ETA once, after the first epoch that is not the first this process
        trained (with one epoch per cell: the second pack's), unless nothing is left. A
        pack reports once per epoch, under its first cell."""
        if not self.eta_cells or len(self._seen) >= 2:
            return
        self._seen.append((repeat, fold))
        if len(self._seen) < 2:
            return
        pack = self._cell_run.pack if self._cell_run else 1
        started = min(self.eta_cells, pack * len(set(self._seen)))
        more_cells = self.eta_cells - started
        this_pack = (self.cfg.epochs - epoch) * min(pack, started)
        left = this_pack + more_cells * self.cfg.epochs
        if left > 0:
            log.info("r%d f%d %s", repeat, fold, eta_line(
                row, left, more_cells + min(pack, started) * (this_pack > 0), pack))


def _check(cfg: TrainConfig):
    """Checks that need no device; the shard index."""
    check_variant(cfg.variant)
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ConfigError(f"--out {cfg.out}: is a file, not a run directory; choose another "
                          "--out")
    selected_cells(cfg, cfg.folds)  # --cells and the task slot, before anything is written
    index = read_shard_index(cfg.shards)
    cfg.preset = resolve_preset(cfg.preset, index)
    if cfg.final:
        check_final(cfg)
    check_masks(cfg.variant, index)
    classes = plan_classes(index, cfg.preset, cfg.classes)
    if cfg.pretrained is not None:  # a missing or mismatched weights file fails now
        model_from_config(cfg, len(classes))
    if cfg.image_size > index.image_size:
        log.warning("--image-size %d is larger than the shards' %d px grid: inputs are "
                    "upsampled and hold no more detail", cfg.image_size, index.image_size)
    return index


def prepare(cfg: TrainConfig, *, worker: int | None = None, share: float = 1.0,
            on_workers: bool = False) -> Context | None:
    """Every check that can fail before training, then the run directory (created or
    attached) and this process's device (``worker``: a launched worker's --parallel-cells
    index; None in the process the user started).
    ``on_workers`` (the driver of worker processes or Ray actors): the run directory only;
    each worker sets up its own device, and no Context is made here."""
    index = _check(cfg)
    if on_workers:
        resolved = {"device": f"{cfg.device} on each worker", "amp": f"{cfg.amp} on each worker",
                    "grid": index.image_size}
        _say_attached(cfg, *open_run(cfg, index, {"resolved": resolved,
                                                  "versions": versions(None)}))
        return None
    device = resolve_device(cfg.device, worker=worker or 0)
    amp = resolve_amp(cfg.amp, device)
    configure(device)
    resolved = {"resolved": {"device": str(device), "amp": amp.name, "grid": index.image_size},
                "versions": versions(device)}
    plan, attached = open_run(cfg, index, resolved)
    log.info("%s: %d classes (%s), %d subjects, %d samples, %d repeat(s) x %d folds, "
             "device %s, amp %s", plan.preset, len(plan.class_names),
             ", ".join(plan.class_names), len(plan.subjects), len(plan.sample_ids),
             cfg.repeats, plan.k, device, amp.name)
    if worker is None:
        _say_attached(cfg, plan, attached)
    return Context(cfg, relabel(index, plan.class_names), plan, device, amp, share=share)


def _say_attached(cfg: TrainConfig, plan, attached: bool) -> None:
    if attached:
        log.info("%s: resuming the run there: %d of %d cells done", cfg.out,
                 len(RunDir(cfg.out).finished_cells()), cfg.repeats * plan.k)


class CellWorker:
    """Trains cells a pack at a time in this process: ``run(cells)`` claims each, trains
    the claimed ones together and returns (cell, status, message) for every one: trained,
    finished (already), held (by a live process), diverged or failed."""

    def __init__(self, ctx: Context, task: str | None = None):
        self.ctx, self.task = ctx, task

    @property
    def capacity(self) -> int:
        return self.ctx.cell_run().pack

    def _claim(self, cell: int, stack: ExitStack) -> str | None:
        run, timeout = self.ctx.run, self.ctx.cfg.claim_timeout
        cell_dir = run.cell_at(cell, self.ctx.plan.k)
        if cell_dir.done:
            return "finished"
        claim = try_claim(run.claim(cell), stale_after=timeout, task=self.task,
                          heartbeat=min(HEARTBEAT_S, timeout / 4))
        if claim is None:
            log.info("cell %d (r%d f%d) is being trained by another process; skipped",
                     cell, cell_dir.repeat, cell_dir.fold)
            return "held"
        stack.enter_context(claim)
        return "finished" if cell_dir.done else None  # finished between look and claim

    def run(self, cells: list[int]) -> list[tuple[int, str, str]]:
        """Every one of ``cells``, a pack at a time (packs of equal size: 10 cells at
        capacity 8 train as 5 + 5); each pack's cells are claimed just before it trains and
        released when it is done."""
        out, todo = {}, list(cells)
        size = -(-len(todo) // -(-len(todo) // self.capacity)) if todo else 0  # balanced
        while todo:
            with sigterm_releases(), ExitStack() as stack:
                mine = []
                while todo and len(mine) < size:
                    cell = todo.pop(0)
                    out[cell] = self._claim(cell, stack)
                    mine += [cell] if out[cell] is None else []
                if mine:
                    out.update(self._train(mine))
        return [(c, *(v if isinstance(v, tuple) else (v, ""))) for c, v in out.items()]

    def _train(self, cells: list[int]) -> dict[int, str | tuple[str, str]]:
        k = self.ctx.plan.k
        out = {}
        for cell, result in zip(cells, train_cells(self.ctx.cell_run(),
                                                   [divmod(c, k) for c in cells])):
            if isinstance(result, DivergedError):
                out[cell] = ("diverged", str(result))
            elif isinstance(result, Exception):
                log.error("cell %d failed: %s", cell, result, exc_info=result)
                out[cell] = ("failed", f"cell {cell} (r{cell // k} f{cell % k}): {result}")
            else:
                out[cell] = "trained"
        return out


def worker_config(settings: dict) -> TrainConfig:
    """A worker's config: attaches to the run, trains only what it is handed."""
    return dataclasses.replace(TrainConfig(**settings), resume=True, progress=False,
                               executor="local", parallel_cells=1, cells=None, task_index=0,
                               num_tasks=1, init_only=False)


def make_worker(settings: dict, slot: int, task: str | None, eta_cells: int = 0,
                share: float = 1.0) -> CellWorker:
    """A worker in a launched process (a local worker process or a Ray actor): its context
    (device, data, networks) is built here, on the machine that trains."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ctx = prepare(worker_config(settings), worker=slot, share=share)
    ctx.eta_cells = eta_cells
    return CellWorker(ctx, task)


def _launch(cfg: TrainConfig, cells: list[int]) -> list[tuple[int, str, str]]:
    """This process's cells through the executor ``cfg`` names."""
    settings = dataclasses.asdict(cfg)  # absolute paths: workers may run elsewhere
    settings.update(out=os.path.abspath(cfg.out), shards=[os.path.abspath(s) for s in cfg.shards])
    if cfg.executor == "ray":
        return executors.run_ray(make_worker, settings, cells, address=cfg.ray_address,
                                 gpus_per_cell=cfg.gpus_per_cell, use_gpu=cfg.device != "cpu")
    k = min(cfg.parallel_cells, max(1, len(cells)))
    gpus = torch.cuda.device_count() if cfg.device != "cpu" and torch.cuda.is_available() else 0
    share = 1.0 / math.ceil(k / gpus) if gpus else 1.0
    return executors.run_processes(make_worker, settings, cells, k, share=share)


def run_campaign(cfg: TrainConfig) -> dict:
    """Plan (or attach to) the run in ``cfg.out``, train this process's cells, and return
    the summary once every cell is done (else the run's status: cells done, running,
    missing). ``init_only`` stops after writing config.json and folds.json.

    A cell that fails (its loss diverges, its checkpoint is unreadable, its worker dies)
    stops; the other cells still run; an error at the end names the failed cells
    (rerunning continues them from their last checkpoint).
    """
    with sigterm_releases():
        launched = cfg.executor == "ray" or cfg.parallel_cells > 1
        ctx = prepare(cfg, on_workers=launched or cfg.init_only)
        k = ctx.plan.k if ctx else RunDir(cfg.out).read_plan().k
        if cfg.init_only:
            log.info("%s: planned %d cells; attach with the same settings", cfg.out,
                     cfg.repeats * k)
            return {"run_dir": cfg.out, "cells": cfg.repeats * k, "init_only": True}
        chosen = selected_cells(cfg, k)
        cells = [c for c in chosen if not RunDir(cfg.out).cell_at(c, k).done]
        log.info("%d cell(s) to train in this process (%d of its %d done already)",
                 len(cells), len(chosen) - len(cells), len(chosen))
        if launched:
            results = _launch(cfg, cells)
        else:
            ctx.eta_cells = len(cells)
            results = CellWorker(ctx).run(cells)
    _raise_failures(results)
    return _outcome(cfg)


def _raise_failures(results: list[tuple[int, str, str]]) -> None:
    failed = [(status, msg) for _, status, msg in sorted(results)
              if status in ("diverged", "failed")]
    if not failed:
        return
    text = "; ".join(msg for _, msg in failed) + "; rerun the same command to resume"
    if all(status == "diverged" for status, _ in failed):
        raise DivergedError(text)
    raise CellsFailedError(f"{len(failed)} cell(s) failed, the others went on: {text}")


def _outcome(cfg: TrainConfig) -> dict:
    if cfg.final:
        return publish_final(cfg)
    status = summarize_run(cfg.out, stale_after=cfg.claim_timeout)
    if status["complete"]:
        return status["summary"]
    log.info("%d of %d cells done; %d running elsewhere, %d missing: summary.json is "
             "written when the last one finishes (or fer3d-train --summarize %s)",
             len(status["done"]), status["cells"], len(status["running"]),
             len(status["missing"]), cfg.out)
    return status
