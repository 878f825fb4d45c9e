"""Planning a campaign or attaching to one, and choosing the cells this process tries.

Stage: settings + shard index -> run directory (config.json, folds.json) and this
process's cells (torch-free). A cell is (repeat, fold) with flat index ``r * k + f``. The
first process writes config.json and folds.json (atomically, first writer wins); later
ones with the same plan settings attach. ``--cells`` and ``--task-index / --num-tasks``
(default: Slurm array and torchrun environment) pick which cells a process tries; a claim
(:mod:`fer3d.campaign.claims`) makes sure only one trains each.
"""

from __future__ import annotations

import dataclasses
import os

from fer3d.campaign import protocol
from fer3d.campaign.rundir import RunDir
from fer3d.errors import ConfigError, RunExistsError
from fer3d.settings import PLAN_KEYS, TrainConfig

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
    """The cells this process tries: ``--cells`` (default all), then its task's share."""
    total = cfg.repeats * k
    cells = parse_cells(cfg.cells, total) if cfg.cells else list(range(total))
    i, n = task_slot(cfg.task_index, cfg.num_tasks)
    return cells[i::n]


# --------------------------------------------------------------------------- run directory

def check_same(run: RunDir, old: dict, cfg: TrainConfig) -> None:
    """ConfigError naming every plan setting in which ``cfg`` differs from the run's."""
    if old.get("variant") != cfg.variant:
        raise ConfigError(f"{run.path}: its checkpoints are of variant {old.get('variant')!r}, "
                          f"asked {cfg.variant!r}")
    diff = {k: (old.get(k), getattr(cfg, k)) for k in PLAN_KEYS if old.get(k) != getattr(cfg, k)}
    if diff:
        detail = "; ".join(f"{k}: run has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"{run.path}: created with other settings ({detail})")


def _attaching(cfg: TrainConfig) -> bool:
    """Processes that share a run (tasks, cell subsets) attach without --resume."""
    return cfg.resume or cfg.init_only or bool(cfg.cells) or task_slot(
        cfg.task_index, cfg.num_tasks)[1] > 1


def _plan(cfg: TrainConfig, index, run: RunDir) -> protocol.FoldPlan:
    if run.folds.exists():
        plan = run.read_plan()
        grown = cfg.repeats > plan.repeats
        index.rows_of(plan.sample_ids)  # the shards must still hold every sample
        protocol.plan_classes(index, plan.preset, plan.class_names)  # and every class
        plan = protocol.extend_plan(plan, cfg.repeats, index)
        if grown:
            run.write_plan(dataclasses.asdict(plan))
        return plan
    plan = protocol.make_plan(index, cfg.preset, classes=cfg.classes, n_subjects=cfg.subjects,
                              k=cfg.folds, repeats=cfg.repeats, seed=cfg.seed,
                              val_subjects=cfg.val_subjects)
    plan.shards = [os.path.abspath(p) for p in cfg.shards]
    return run.publish_plan(dataclasses.asdict(plan))  # whoever won the race, all use its plan


def open_run(cfg: TrainConfig, index, resolved: dict) -> protocol.FoldPlan:
    """Create the run directory (config.json, folds.json) or attach to it; the plan."""
    run = RunDir(cfg.out)
    if run.exists():
        if not _attaching(cfg):
            raise RunExistsError(f"{run.path} already holds a run; pass --resume to "
                                 "continue it or choose another --out")
        check_same(run, run.read_config(), cfg)
    plan = _plan(cfg, index, run)
    record = {"config": cfg.campaign_settings(), **resolved}
    if not run.publish_config(record):
        old = run.read_config()
        check_same(run, old, cfg)
        if old.get("repeats", 0) < cfg.repeats:
            run.write_config(record)
    return plan
