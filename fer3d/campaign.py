"""Campaigns: the (repeat, fold) cells of a run directory, planned once, claimed one at a
time by any number of processes, summarised when all are done.

Stage: settings + shards -> run directory. A cell is (repeat, fold) with flat index
``r * k + f``. The first process writes config.json and folds.json (atomically, first
writer wins); later ones with the same settings attach. ``--cells`` and ``--task-index /
--num-tasks`` (default: Slurm array and torchrun environment) pick which cells a process
tries; an ``O_EXCL`` claim (fer3d.claims) makes sure only one trains each. The run
directory on shared storage is the only state. Executors: :mod:`fer3d.executors`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np

from fer3d import protocol, report
from fer3d.claims import claim_path, is_live, read_owner
from fer3d.engine import NUM_CLASSES
from fer3d.runfiles import publish_once, read_json, write_json
from fer3d.settings import RESUME_KEYS, ConfigError, TrainConfig, validate
from fer3d_data.errors import Fer3dDataError
from fer3d_data.schema import EXPRESSIONS

log = logging.getLogger(__name__)


class RunExistsError(Fer3dDataError, FileExistsError):
    """--out names a run directory and nothing says to attach to it."""

__all__ = ["TrainConfig", "run_campaign", "summarize_run", "parse_cells", "task_slot"]


# --------------------------------------------------------------------------- cell choice

def parse_cells(spec: str, total: int) -> list[int]:
    """``"0-99,150"`` -> sorted cell indices; ConfigError for anything outside 0..total-1."""
    cells: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        try:
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"--cells: {part!r} is not N or N-M") from None
        if a > b or a < 0 or b >= total:
            raise ConfigError(f"--cells: {part!r} is outside the plan's cells 0-{total - 1} "
                              "(repeats x folds)")
        cells.update(range(a, b + 1))
    return sorted(cells)


def task_slot(task_index: int | None, num_tasks: int | None,
              env: dict | None = None) -> tuple[int, int]:
    """(index, count) of this process among its peers.

    Explicit flags win; otherwise a Slurm array task (``SLURM_ARRAY_TASK_ID`` minus
    ``SLURM_ARRAY_TASK_MIN``, of ``SLURM_ARRAY_TASK_COUNT``) and a torchrun rank (``RANK``
    of ``WORLD_SIZE``) combine, so torchrun inside an array job also works.
    """
    env = os.environ if env is None else env
    if (task_index is None) != (num_tasks is None):
        raise ConfigError("--task-index and --num-tasks go together")
    if task_index is None:
        slurm_i = int(env.get("SLURM_ARRAY_TASK_ID", 0)) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        slurm_n = int(env.get("SLURM_ARRAY_TASK_COUNT", 1))
        rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
        task_index, num_tasks = slurm_i * world + rank, slurm_n * world
    if not 0 <= task_index < num_tasks:
        raise ConfigError(f"task index {task_index} is not below the task count {num_tasks}")
    return task_index, num_tasks


def selected_cells(cfg: TrainConfig, k: int) -> list[int]:
    total = cfg.repeats * k
    cells = parse_cells(cfg.cells, total) if cfg.cells else list(range(total))
    i, n = task_slot(cfg.task_index, cfg.num_tasks)
    return cells[i::n]


# --------------------------------------------------------------------------- run directory

def _resolve_preset(preset: str, index) -> str:
    """auto -> the shards' ``dataset`` attribute (all shards must agree)."""
    if preset != "auto":
        return preset
    found = sorted(set(index.datasets))
    if len(found) != 1 or found[0] not in protocol.PRESETS:
        raise ConfigError(f"--preset auto: the shards' dataset attributes are {found}; "
                          f"pass --preset {' or '.join(protocol.PRESETS)}")
    return found[0]


def _check_same(run_dir: Path, old: dict, cfg: TrainConfig) -> None:
    if old.get("variant") != cfg.variant:
        raise ConfigError(f"{run_dir}: its checkpoints are of variant {old.get('variant')!r}, "
                          f"asked {cfg.variant!r}")
    diff = {k: (old.get(k), getattr(cfg, k)) for k in RESUME_KEYS if old.get(k) != getattr(cfg, k)}
    if diff:
        detail = "; ".join(f"{k}: run has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"{run_dir}: created with other settings ({detail})")


def _attaching(cfg: TrainConfig) -> bool:
    """Processes that share a run (tasks, cell subsets) attach without --resume."""
    return cfg.resume or cfg.init_only or bool(cfg.cells) or task_slot(
        cfg.task_index, cfg.num_tasks)[1] > 1


def _plan(cfg: TrainConfig, index, run_dir: Path) -> protocol.FoldPlan:
    folds_path = run_dir / "folds.json"
    if folds_path.exists():
        plan = protocol.load_folds(folds_path)
        grown = cfg.repeats > plan.repeats
        plan = protocol.extend_plan(plan, cfg.repeats)
        index.rows_of(plan.sample_ids)  # the shards must still hold every sample
        if grown:
            protocol.save_folds(plan, folds_path)
        return plan
    plan = protocol.make_plan(index, cfg.preset, n_subjects=cfg.subjects, k=cfg.folds,
                              repeats=cfg.repeats, seed=cfg.seed, val_subjects=cfg.val_subjects)
    plan.shards = [os.path.abspath(p) for p in cfg.shards]
    run_dir.mkdir(parents=True, exist_ok=True)
    publish_once(folds_path, dataclasses.asdict(plan))
    return protocol.load_folds(folds_path)  # whoever won the race, all use its plan


def open_run(cfg: TrainConfig, index, resolved: dict) -> protocol.FoldPlan:
    """Create the run directory (config.json, folds.json) or attach to it; the plan."""
    run_dir = Path(cfg.out)
    config_path = run_dir / "config.json"
    if config_path.exists():
        if not _attaching(cfg):
            raise RunExistsError(f"{run_dir} already holds a run; pass --resume to "
                                 "continue it or choose another --out")
        _check_same(run_dir, read_json(config_path)["config"], cfg)
    plan = _plan(cfg, index, run_dir)
    record = {"config": cfg.campaign_settings(), **resolved}
    if not publish_once(config_path, record):
        old = read_json(config_path)
        _check_same(run_dir, old["config"], cfg)
        if old["config"].get("repeats", 0) < cfg.repeats:
            write_json(record, config_path)
    return plan


# --------------------------------------------------------------------------- summaries

def summarise(records: list[dict], repeats: int) -> dict:
    """Fold records -> accuracy mean ± std over repeats, per-class accuracy, pooled
    confusion matrix (rows true, columns predicted). std uses ddof=1 (0 for one repeat)."""
    per_repeat = []
    for r in sorted({x["repeat"] for x in records}):
        mine = [x for x in records if x["repeat"] == r]
        per_repeat.append(sum(x["correct"] for x in mine) / max(sum(x["total"] for x in mine), 1))
    labels = np.array([y for x in records for y in x["labels"]], dtype=np.int64)
    preds = np.array([p for x in records for p in x["predictions"]], dtype=np.int64)
    cm = report.confusion_matrix(labels, preds, NUM_CLASSES)
    acc = np.array(per_repeat)
    return {"variant": records[0]["variant"] if records else None,
            "repeats": repeats, "folds": len({x["fold"] for x in records}),
            "accuracy_mean": float(acc.mean()) if len(acc) else float("nan"),
            "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "repeat_accuracies": [float(a) for a in acc],
            "class_names": list(EXPRESSIONS),
            "per_class_accuracy": dict(zip(EXPRESSIONS, report.per_class_accuracy(cm))),
            "confusion_matrix": cm.tolist(), "n_predictions": int(len(labels))}


def cell_status(run_dir: Path, repeats: int, k: int, stale_after: float) -> dict:
    """Cells of ``run_dir`` by state: done, running (live claim), missing."""
    done, running, missing = [], [], []
    for cell in range(repeats * k):
        r, f = divmod(cell, k)
        if (run_dir / "cells" / f"r{r}_f{f}" / "fold.json").exists():
            done.append(cell)
        elif is_live(claim_path(run_dir, cell), stale_after):
            running.append(cell)
        else:
            missing.append(cell)
    return {"done": done, "running": running, "missing": missing}


def _records(run_dir: Path, cells: list[int], k: int) -> list[dict]:
    return [read_json(run_dir / "cells" / f"r{c // k}_f{c % k}" / "fold.json") for c in cells]


def summarize_run(run_dir: str | os.PathLike, *, partial: bool = False,
                  stale_after: float = 300.0) -> dict:
    """Status of a run; writes summary.json (and confusion.png) once every cell is done,
    or summary.partial.json over the finished cells with ``partial``."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise Fer3dDataError(f"{run_dir}: no config.json; not a fer3d run directory")
    cfg = read_json(run_dir / "config.json")["config"]
    plan = protocol.load_folds(run_dir / "folds.json")
    repeats, k = int(cfg["repeats"]), plan.k
    status = cell_status(run_dir, repeats, k, stale_after)
    status.update(cells=repeats * k, complete=not status["running"] and not status["missing"])
    if status["complete"] or (partial and status["done"]):
        summary = summarise(_records(run_dir, status["done"], k), repeats)
        summary.update(preset=plan.preset, n_samples=len(plan.sample_ids),
                       cells_done=len(status["done"]), cells=repeats * k)
        name = "summary.json" if status["complete"] else "summary.partial.json"
        write_json(summary, run_dir / name)
        if status["complete"]:
            report.save_confusion_png(np.array(summary["confusion_matrix"]), EXPRESSIONS,
                                      run_dir / "confusion.png")
        status["summary"] = summary
    return status


# --------------------------------------------------------------------------- campaigns

def _duration(secs: float) -> str:
    return f"{secs / 3600:.1f} h" if secs >= 3600 else (
        f"{secs / 60:.1f} min" if secs >= 60 else f"{secs:.0f} s")


def eta_line(stats: dict, n_train: int, cfg: TrainConfig, cells: int) -> str:
    """samples/s of the first epoch and what the cells of this process will take (the first
    epoch includes warm-up: compile, cuDNN autotuning, so this errs on the long side)."""
    secs = cells * cfg.epochs * n_train / max(stats["samples_per_s"], 1e-9)
    finish = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + secs))
    return (f"first epoch: {stats['samples_per_s']:.1f} samples/s; {cells} cell(s) x "
            f"{cfg.epochs} epochs x {n_train} samples ≈ {_duration(secs)} at this speed "
            f"(ETA {finish})")


def run_campaign(cfg: TrainConfig) -> dict:
    """Plan (or attach to) the run in ``cfg.out``, train this process's cells, and return
    the summary once every cell is done (else the run's status: cells done, running,
    missing). ``init_only`` stops after writing config.json and folds.json.

    A cell whose loss diverges stops; the other cells still run; DivergedError at the end
    lists the failed cells (rerunning continues them from their last checkpoint).
    """
    from fer3d import executors

    validate(cfg)
    ctx = executors.prepare(cfg)
    if cfg.init_only:
        log.info("%s: planned %d cells; attach with the same settings", cfg.out,
                 cfg.repeats * ctx.plan.k)
        return {"run_dir": cfg.out, "cells": cfg.repeats * ctx.plan.k, "init_only": True}
    cells = selected_cells(cfg, ctx.plan.k)
    executors.run(cfg, ctx, cells)
    status = summarize_run(cfg.out, stale_after=cfg.claim_timeout)
    if status["complete"]:
        return status["summary"]
    log.info("%d of %d cells done; %d running elsewhere, %d missing: summary.json is "
             "written when the last one finishes (or fer3d-train --summarize %s)",
             len(status["done"]), status["cells"], len(status["running"]),
             len(status["missing"]), cfg.out)
    return status


def running_owner(run_dir: Path, cell: int) -> str:
    owner = read_owner(claim_path(run_dir, cell))
    return f"{owner.get('host', '?')}:{owner.get('pid', '?')}" if owner else "?"


def describe_status(status: dict, run_dir: Path, k: int) -> str:
    """Lines for --summarize: done / running (by whom) / missing cells."""
    def name(c: int) -> str:
        return f"{c} (r{c // k} f{c % k})"
    lines = [f"{run_dir}: {len(status['done'])} of {status['cells']} cells done"]
    if status["running"]:
        lines.append("running: " + ", ".join(f"{name(c)} on {running_owner(run_dir, c)}"
                                             for c in status["running"]))
    if status["missing"]:
        lines.append("missing: " + ", ".join(name(c) for c in status["missing"]))
    return "\n".join(lines)

