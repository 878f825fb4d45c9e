"""Planning a campaign or attaching to one, and choosing the cells this process tries.

Stage: settings + shard index -> run directory (config.json, folds.json) and this
process's cells (torch-free). A cell is (repeat, fold) with flat index ``r * k + f``. The
first process writes config.json and folds.json (atomically, first writer wins); later
ones with the same plan settings and shards attach (:func:`check_same`), whatever their
flags: rerunning a command resumes its run. ``--cells`` and ``--task-index / --num-tasks``
(default: Slurm array and torchrun environment) pick which cells a process tries; a claim
(:mod:`fer3d.campaign.claims`) makes sure only one trains each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import h5py

from fer3d.campaign import protocol
from fer3d.campaign.rundir import RunDir
from fer3d.errors import ConfigError
from fer3d.settings import PLAN_KEYS, TrainConfig, default
from fer3d_data.shards import digest

# --------------------------------------------------------------------------- cell choice


def parse_cells(spec: str, total: int) -> list[int]:
    """``"0-99,150,200-"`` -> sorted cell indices; ``N-`` runs to the plan's last cell.
    ConfigError for anything outside 0..total-1 or not of these forms."""
    cells: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        try:
            lo, dash, hi = part.partition("-")
            a = int(lo)
            b = int(hi) if hi.strip() else (total - 1 if dash else a)
        except ValueError:
            raise ConfigError(f"--cells: {part!r} is not N, N-M or N- (N to the last "
                              "cell)") from None
        if a > b or a < 0 or b >= total:
            raise ConfigError(f"--cells: {part!r} is outside the plan's cells 0-{total - 1} "
                              "(repeats x folds)")
        cells.update(range(a, b + 1))
    return sorted(cells)


def _env_int(env, name: str, default: int) -> int:
    """An integer the scheduler put in the environment; ConfigError naming it otherwise."""
    value = env.get(name, "")
    if not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} in the environment is not an integer (Slurm and "
                          "torchrun set it): unset it, or pass --task-index and "
                          "--num-tasks") from None


def task_slot(task_index: int | None, num_tasks: int | None,
              env: dict | None = None) -> tuple[int, int]:
    """(index, count) of this process among its peers.

    Explicit flags win; otherwise a Slurm array task (``SLURM_ARRAY_TASK_ID`` minus
    ``SLURM_ARRAY_TASK_MIN``, of ``SLURM_ARRAY_TASK_COUNT``) combines with the process's
    rank inside it: torchrun's ``RANK`` of ``WORLD_SIZE``, or else a plain ``srun
    --ntasks-per-node=8`` task's ``SLURM_PROCID`` of ``SLURM_STEP_NUM_TASKS`` (set in srun
    steps only, so a batch script's own process with ``--ntasks`` keeps every cell).
    """
    env = os.environ if env is None else env
    if (task_index is None) != (num_tasks is None):
        raise ConfigError("--task-index and --num-tasks go together")
    if task_index is None:
        slurm_i = (_env_int(env, "SLURM_ARRAY_TASK_ID", 0)
                   - _env_int(env, "SLURM_ARRAY_TASK_MIN", 0))
        slurm_n = _env_int(env, "SLURM_ARRAY_TASK_COUNT", 1)
        if "RANK" in env:
            rank, world = _env_int(env, "RANK", 0), _env_int(env, "WORLD_SIZE", 1)
        else:
            rank, world = (_env_int(env, "SLURM_PROCID", 0),
                           _env_int(env, "SLURM_STEP_NUM_TASKS", 1))
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

def _shard_digest(path: str) -> str:
    """SHA-256 over the digests of a shard's /config and /index columns (its sample table)."""
    with h5py.File(path, "r") as f:
        parts = {k: v for k, v in digest.compute(f).items()
                 if k == "config" or k.startswith("index/")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def shards_record(index) -> dict:
    """What config.json records of the shards a run trains on: their preprocessing config
    (one for all: the shard index refuses a mix), their sample count and a digest of their
    sample tables, which changes when they hold other samples wherever the files live."""
    files = [{"path": os.path.abspath(p), "digest": _shard_digest(p)} for p in index.paths]
    joined = "".join(sorted(f["digest"] for f in files)).encode()
    return {"config": index.configs[0] if index.configs else {}, "samples": len(index),
            "digest": hashlib.sha256(joined).hexdigest(), "files": files}


def _shard_differences(old: dict | None, new: dict) -> list[str]:
    """How the shards ``new`` differ from those a run recorded (``old``; None: a run made
    before shards were recorded, nothing to compare)."""
    if old is None:
        return []
    a, b = old.get("config") or {}, new["config"]
    diff = [f"shard config {k}: run has {a.get(k)!r}, asked {b.get(k)!r}"
            for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]
    if not diff and old.get("digest") != new["digest"]:
        diff.append(f"shards: other samples (the run's held {old.get('samples')}, these "
                    f"{new['samples']}; the digest of their /config and /index differs)")
    return diff


def check_same(run: RunDir, record: dict, cfg: TrainConfig, shards: dict) -> None:
    """ConfigError naming every plan setting, and the shards' preprocessing config or
    samples, in which this campaign differs from the run (``record``: its config.json);
    the one check of whether a run may be attached to (fer3d-train, fer3d-reproduce)."""
    old = record.get("config") or {}
    # a setting newer than the run reads as its table default
    diff = [f"{k}: run has {old.get(k, default(k))!r}, asked {getattr(cfg, k)!r}"
            for k in PLAN_KEYS if old.get(k, default(k)) != getattr(cfg, k)]
    diff += _shard_differences(record.get("shards"), shards)
    if diff:
        raise ConfigError(f"{run.path}: holds a run of other settings ({'; '.join(diff)}); "
                          "give the run's settings to resume it, or another --out")


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
    if cfg.final:
        plan = protocol.make_final_plan(index, cfg.preset, classes=cfg.classes,
                                        n_subjects=cfg.subjects, seeds=cfg.repeats,
                                        seed=cfg.seed, val_subjects=cfg.val_subjects)
    else:
        plan = protocol.make_plan(index, cfg.preset, classes=cfg.classes,
                                  n_subjects=cfg.subjects, k=cfg.folds, repeats=cfg.repeats,
                                  seed=cfg.seed, val_subjects=cfg.val_subjects)
    plan.shards = [os.path.abspath(p) for p in cfg.shards]
    return run.publish_plan(dataclasses.asdict(plan))  # whoever won the race, all use its plan


def open_run(cfg: TrainConfig, index, resolved: dict) -> tuple[protocol.FoldPlan, bool]:
    """Create the run directory (config.json, folds.json), or attach to the run there when
    its settings and shards are these: the plan, and whether a run was there already.
    Any process may attach, any number of times (resuming is the default); ``--resume``
    only adds that a run must be there."""
    run = RunDir(cfg.out)
    shards = shards_record(index)
    existed = run.exists()
    if existed:
        check_same(run, run.read_record(), cfg, shards)
    elif cfg.resume:
        raise ConfigError(f"--resume: {run.path} holds no run to resume (no config.json); "
                          "without --resume a new run starts there")
    plan = _plan(cfg, index, run)
    record = {"config": cfg.campaign_settings(), "shards": shards, **resolved}
    if not run.publish_config(record):
        old = run.read_record()
        check_same(run, old, cfg, shards)
        if (old.get("config") or {}).get("repeats", 0) < cfg.repeats:
            run.write_config(record)
    return plan, existed
