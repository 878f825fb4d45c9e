"""Where the cells of a campaign run: in this process, in K processes on this machine, or
as Ray tasks on a cluster.

Stage: campaign execution. Every executor ends in :func:`run_cell` (claim, train, write
fold.json), so they can be mixed on one run directory: a Slurm array, ``torchrun`` ranks,
a Ray cluster and a laptop may all work on the same run at once.

- ``local`` (default): cells one after another in this process; ``--parallel-cells K``
  spreads them over K spawned processes (several small cells share a GPU or the cores).
- ``ray``: each cell is a Ray task with ``--gpus-per-cell`` (fractional: 0.25 puts four
  cells on a GPU), submitted to ``--ray-address`` or to a local instance started here.
  Ray retries a task whose worker died; the claim of the dead attempt is taken over.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch

from fer3d.campaign import _resolve_preset, eta_line, open_run
from fer3d.claims import HEARTBEAT_S, try_claim
from fer3d.device_data import DeviceData, use_device_data
from fer3d.engine import CellRun, DivergedError, check_variant, model_from_config, train_one_cell
from fer3d.runtime import configure, resolve_amp, resolve_device, versions
from fer3d.settings import ConfigError, TrainConfig
from fer3d_data.clibase import require
from fer3d_data.errors import Fer3dDataError
from fer3d_data.shard_index import read_shard_index

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every cell of this process shares; samples go to the device on first use."""

    cfg: TrainConfig
    index: object
    plan: object
    device: torch.device
    amp: object
    eta_cells: int = 0
    _data: DeviceData | None = field(default=None, repr=False)
    _loaded: bool = False

    def data(self) -> DeviceData | None:
        if not self._loaded:
            rows = self.index.rows_of(self.plan.sample_ids)
            if use_device_data(self.cfg.data_on_device, self.device, len(rows),
                               self.index.image_size, self.cfg.image_size):
                self._data = DeviceData(self.index, rows, self.device)
                log.info("%d samples on %s (%.0f MB): batched on-device augmentation",
                         len(rows), self.device, self._data.nbytes / 1e6)
            self._loaded = True
        return self._data

    def cell_run(self) -> CellRun:
        return CellRun(self.cfg, Path(self.cfg.out), self.index, self.plan, self.device,
                       self.amp, data=self.data(), compile=self.cfg.compile == "on",
                       on_epoch=self._eta if self.eta_cells else None)

    def _eta(self, repeat: int, fold: int, epoch: int, row: dict) -> None:
        if epoch == 1 and self.eta_cells:
            n_train = round(row["samples_per_s"] * row["time"])
            log.info("r%d f%d %s", repeat, fold, eta_line(row, n_train, self.cfg, self.eta_cells))
            self.eta_cells = 0


def prepare(cfg: TrainConfig) -> Context:
    """Every check that can fail before training, then the run directory (created or
    attached) and this process's device."""
    check_variant(cfg.variant)
    if cfg.pretrained is not None:
        try:  # a missing or mismatched weights file fails now, not in the first cell
            model_from_config(cfg)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"--pretrained: {exc}") from None
    index = read_shard_index(cfg.shards)
    cfg.preset = _resolve_preset(cfg.preset, index)
    if cfg.image_size > index.image_size:
        log.warning("--image-size %d is larger than the shards' %d px grid: inputs are "
                    "upsampled and hold no more detail", cfg.image_size, index.image_size)
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    configure(device)
    resolved = {"resolved": {"device": str(device), "amp": amp.name, "grid": index.image_size},
                "versions": versions(device)}
    plan = open_run(cfg, index, resolved)
    log.info("%s: %d subjects, %d samples, %d repeat(s) x %d folds, device %s, amp %s",
             plan.preset, len(plan.subjects), len(plan.sample_ids), cfg.repeats, plan.k,
             device, amp.name)
    return Context(cfg, index, plan, device, amp)


def run_cell(ctx: Context, cell: int) -> str:
    """Train ``cell`` unless it is finished or a live process holds it."""
    k, run_dir = ctx.plan.k, Path(ctx.cfg.out)
    repeat, fold = divmod(cell, k)
    done = run_dir / "cells" / f"r{repeat}_f{fold}" / "fold.json"
    if done.exists():
        return "finished"
    timeout = ctx.cfg.claim_timeout
    claim = try_claim(run_dir, cell, stale_after=timeout, heartbeat=min(HEARTBEAT_S, timeout / 4))
    if claim is None:
        log.info("cell %d (r%d f%d) is being trained by another process; skipped",
                 cell, repeat, fold)
        return "held"
    with claim:
        if done.exists():  # finished between the look and the claim
            return "finished"
        train_one_cell(ctx.cell_run(), repeat, fold)
    return "trained"


# --------------------------------------------------------------------------- workers

_CONTEXTS: dict[str, Context] = {}


def _worker_config(settings: dict) -> TrainConfig:
    """A cell task's config: attaches to the run, trains only what it is handed."""
    cfg = TrainConfig(**settings)
    return dataclasses.replace(cfg, resume=True, progress=False, executor="local",
                               parallel_cells=1, cells=None, task_index=0, num_tasks=1,
                               init_only=False)


def cell_task(settings: dict, cell: int, eta_cells: int = 0) -> tuple[int, str, str]:
    """Run one cell in a worker process (pool or Ray); the context is built once per
    process. Returns (cell, status, divergence message)."""
    cfg = _worker_config(settings)
    ctx = _CONTEXTS.get(cfg.out)
    if ctx is None:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        ctx = _CONTEXTS[cfg.out] = prepare(cfg)
        ctx.eta_cells = eta_cells
    try:
        return cell, run_cell(ctx, cell), ""
    except DivergedError as exc:
        log.error("%s", exc)
        return cell, "diverged", str(exc)


def _threads(n: int) -> None:
    torch.set_num_threads(n)


def _run_local(ctx: Context, cells: list[int]) -> list[str]:
    ctx.eta_cells, failed = len(cells), []
    for cell in cells:
        try:
            run_cell(ctx, cell)
        except DivergedError as exc:
            log.error("%s", exc)
            failed.append(str(exc))
    return failed


def _run_processes(cfg: TrainConfig, cells: list[int]) -> list[str]:
    k = min(cfg.parallel_cells, max(1, len(cells)))
    threads = max(1, torch.get_num_threads() // k)  # the cores this process was given
    settings = dataclasses.asdict(cfg)
    with ProcessPoolExecutor(k, mp_context=get_context("spawn"), initializer=_threads,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(cell_task, settings, c, math.ceil(len(cells) / k))
                   for c in cells]
        results = [f.result() for f in as_completed(futures)]
    return [msg for _, status, msg in results if status == "diverged"]


def _check_address(address: str) -> None:
    """A clear error before training when a Ray head does not answer."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise Fer3dDataError(f"--ray-address {address}: no Ray head answers there ({exc}); "
                             "start one with `ray start --head` or omit --ray-address "
                             "for a local instance") from None


def _run_ray(cfg: TrainConfig, cells: list[int]) -> list[str]:
    require("ray", "ray", "--executor ray")
    import ray

    started = not ray.is_initialized()
    if started:
        if cfg.ray_address and cfg.ray_address != "auto":
            _check_address(cfg.ray_address)
        ray.init(address=cfg.ray_address, include_dashboard=False)
    try:
        has_gpu = cfg.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(num_cpus=1, num_gpus=cfg.gpus_per_cell if has_gpu else 0,
                          max_retries=3)(cell_task)
        settings = dataclasses.asdict(cfg)
        results = ray.get([task.remote(settings, c, 1 if i == 0 else 0)
                           for i, c in enumerate(cells)])
    finally:
        if started:
            ray.shutdown()
    return [msg for _, status, msg in results if status == "diverged"]


def run(cfg: TrainConfig, ctx: Context, cells: list[int]) -> None:
    """Run ``cells`` with the executor ``cfg`` names; DivergedError listing failed cells."""
    if cfg.executor == "ray":
        failed = _run_ray(cfg, cells)
    elif cfg.parallel_cells > 1:
        failed = _run_processes(cfg, cells)
    else:
        failed = _run_local(ctx, cells)
    if failed:
        raise DivergedError("; ".join(failed))
