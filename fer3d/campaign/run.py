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

import torch

from fer3d.campaign import executors
from fer3d.campaign.claims import HEARTBEAT_S, try_claim
from fer3d.campaign.plan import open_run, selected_cells
from fer3d.campaign.protocol import resolve_preset
from fer3d.campaign.rundir import RunDir
from fer3d.campaign.summary import summarize_run
from fer3d.errors import CellsFailedError, ConfigError, DivergedError
from fer3d.settings import TrainConfig
from fer3d.train.cell import CellRun
from fer3d.train.packed import Models, pack_size, train_cells
from fer3d.train.runtime import configure, resolve_amp, resolve_device, versions
from fer3d.train.sources import DeviceData, use_device_data
from fer3d.train.step import check_variant, model_from_config
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
    """What every cell of this process shares; samples go to the device on first use."""

    cfg: TrainConfig
    index: object
    plan: object
    device: torch.device
    amp: object
    share: float = 1.0  # of the device's memory, when processes share a GPU
    eta_cells: int = 0
    _data: DeviceData | None = field(default=None, repr=False)
    _loaded: bool = False
    _cell_run: CellRun | None = field(default=None, repr=False)

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
                          data=self.data(), compile=mode, models=Models(cfg, dev, mode),
                          on_epoch=self._eta, details={
                              "device": versions(dev)["device"], "amp": self.amp.name})
            run.pack = pack_size(cfg.pack, run, self.share)
            log.info("%s: %d cell(s) per pack", dev, run.pack)
            self._cell_run = run
        return self._cell_run

    def _eta(self, repeat: int, fold: int, epoch: int, row: dict) -> None:
        if epoch == 1 and self.eta_cells:
            log.info("r%d f%d %s", repeat, fold,
                     eta_line(row, row["n_train"], self.cfg.epochs, self.eta_cells))
            self.eta_cells = 0


def _check(cfg: TrainConfig):
    """Checks that need no device; the shard index."""
    check_variant(cfg.variant)
    if cfg.pretrained is not None:
        try:  # a missing or mismatched weights file fails now, not in the first cell
            model_from_config(cfg)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"--pretrained: {exc}") from None
    index = read_shard_index(cfg.shards)
    cfg.preset = resolve_preset(cfg.preset, index)
    if cfg.image_size > index.image_size:
        log.warning("--image-size %d is larger than the shards' %d px grid: inputs are "
                    "upsampled and hold no more detail", cfg.image_size, index.image_size)
    return index


def prepare(cfg: TrainConfig, *, worker: int = 0, share: float = 1.0,
            on_workers: bool = False) -> Context | None:
    """Every check that can fail before training, then the run directory (created or
    attached) and this process's device (``worker``: its --parallel-cells index).
    ``on_workers`` (the driver of worker processes or Ray actors): the run directory only;
    each worker sets up its own device, and no Context is made here."""
    index = _check(cfg)
    if on_workers:
        resolved = {"device": f"{cfg.device} on each worker", "amp": f"{cfg.amp} on each worker",
                    "grid": index.image_size}
        open_run(cfg, index, {"resolved": resolved, "versions": versions(None)})
        return None
    device = resolve_device(cfg.device, worker=worker)
    amp = resolve_amp(cfg.amp, device)
    configure(device)
    resolved = {"resolved": {"device": str(device), "amp": amp.name, "grid": index.image_size},
                "versions": versions(device)}
    plan = open_run(cfg, index, resolved)
    log.info("%s: %d subjects, %d samples, %d repeat(s) x %d folds, device %s, amp %s",
             plan.preset, len(plan.subjects), len(plan.sample_ids), cfg.repeats, plan.k,
             device, amp.name)
    return Context(cfg, index, plan, device, amp, share=share)


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
        cells = selected_cells(cfg, k)
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
    status = summarize_run(cfg.out, stale_after=cfg.claim_timeout)
    if status["complete"]:
        return status["summary"]
    log.info("%d of %d cells done; %d running elsewhere, %d missing: summary.json is "
             "written when the last one finishes (or fer3d-train --summarize %s)",
             len(status["done"]), status["cells"], len(status["running"]),
             len(status["missing"]), cfg.out)
    return status
