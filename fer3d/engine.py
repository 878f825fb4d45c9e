"""Training and evaluation of (repeat, fold) cells and whole campaigns.

Stage: shards + fold plan -> checkpoints, per-epoch logs, per-fold and summary JSON.
Paper settings (Adam, betas (0.9, 0.999), lr 1e-4 fixed, cross-entropy, fixed epochs);
device, AMP and memory format chosen for the machine. Every random draw of a cell comes
from (seed, repeat, fold, epoch), and the RNG states are checkpointed, so a campaign that
is interrupted and resumed ends with the same numbers as one that was not (on CPU).
Run-directory layout: docs/protocol.md.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fer3d import protocol, report
from fer3d.data import Augment, NO_AUGMENT, ShardDataset, read_index
from fer3d_data.schema import EXPRESSIONS

log = logging.getLogger(__name__)

NUM_CLASSES = len(EXPRESSIONS)
# Defaults where the paper is silent (docs/protocol.md says why).
DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = 32
# Config fields that must match between a run directory and a --resume of it.
RESUME_KEYS = ("variant", "folds", "epochs", "batch_size", "lr", "image_size", "seed",
               "preset", "subjects", "val_subjects", "augment", "pretrained")


class DivergedError(RuntimeError):
    """The loss became NaN/inf; names the cells so they can be resumed or rerun."""


@dataclass
class TrainConfig:
    """A campaign's settings; saved resolved as config.json in the run directory."""

    shards: list[str]
    out: str
    variant: str = "afnet_m"
    repeats: int = 1
    folds: int = 10
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = 1e-4
    image_size: int = 224
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    workers: int = field(default_factory=lambda: min(4, max(1, (os.cpu_count() or 2) // 2)))
    seed: int = 0
    resume: bool = False
    preset: str = "auto"
    subjects: int = 60
    pretrained: str | None = None
    val_subjects: int = 0
    augment: bool = True
    progress: bool = True


# --------------------------------------------------------------------------- machine

def resolve_device(name: str = "auto") -> torch.device:
    """auto -> cuda if present else cpu; an explicit cuda without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked but torch sees no CUDA device")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def cpu_bf16_supported() -> bool:
    """True when oneDNN has native bf16 kernels here (AVX512-BF16/AMX) and autocast works.

    On CPUs without them bf16 convolutions are emulated and slower than fp32.
    """
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is None or not probe():
        return False
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = F.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
        return y.dtype == torch.bfloat16
    except RuntimeError:
        return False


@dataclass(frozen=True)
class AmpMode:
    """dtype None: full fp32. scaler: fp16 on CUDA needs loss scaling."""

    dtype: torch.dtype | None
    scaler: bool = False

    @property
    def name(self) -> str:
        return "off" if self.dtype is None else str(self.dtype).removeprefix("torch.")


def resolve_amp(amp: str, device: torch.device) -> AmpMode:
    """auto: bf16 on CPUs with native bf16 and on CUDA with bf16 support, fp16 + GradScaler
    on older GPUs, else fp32."""
    if amp == "off":
        return AmpMode(None)
    if amp == "bf16":
        return AmpMode(torch.bfloat16)
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("--amp fp16 needs a CUDA device; use bf16 or off on CPU")
        return AmpMode(torch.float16, scaler=True)
    if amp != "auto":
        raise ValueError(f"unknown --amp {amp!r}; use auto, off, bf16 or fp16")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return AmpMode(torch.bfloat16)
        return AmpMode(torch.float16, scaler=True)
    return AmpMode(torch.bfloat16) if cpu_bf16_supported() else AmpMode(None)


def versions(device: torch.device) -> dict[str, str]:
    """Package and library versions recorded in config.json."""
    from importlib import metadata

    import h5py
    import torchvision

    try:
        fer3d_version = metadata.version("fer3d")
    except metadata.PackageNotFoundError:
        fer3d_version = getattr(sys.modules.get("fer3d"), "__version__", "unknown")
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"fer3d": str(fer3d_version), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "h5py": h5py.__version__, "python": platform.python_version(),
            "device": f"{device.type}: {dev or platform.machine()}",
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


# --------------------------------------------------------------------------- randomness

def cell_seed(seed: int, repeat: int, fold: int, epoch: int | None = None) -> int:
    """A 31-bit seed drawn from (seed, repeat, fold[, epoch])."""
    words = [seed, repeat, fold] + ([] if epoch is None else [epoch])
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Global RNG states as tensors and plain types (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "python": [random.getstate()[0], list(random.getstate()[1]),
                        random.getstate()[2]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(position, augmentation seed)`` pairs, shuffled from (seed, epoch).

    The order and every augmentation draw depend only on the epoch, not on worker count,
    persistent workers or process history: what makes resume exact.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, 2 ** 31 - 1, (self.n,), generator=g)
        return iter(zip(order.tolist(), seeds.tolist()))


def _worker_init(_: int) -> None:
    # Loader workers decode and resize; one thread each leaves the cores to the model.
    torch.set_num_threads(1)


def make_loader(ds: ShardDataset, batch_size: int, workers: int, *, train: bool,
                seed: int, device: torch.device) -> torch.utils.data.DataLoader:
    """DataLoader over ``ds`` with an EpochSampler (call ``loader.sampler.set_epoch``)."""
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, sampler=EpochSampler(len(ds), seed, shuffle=train),
        num_workers=workers, persistent_workers=train and workers > 0,
        pin_memory=device.type == "cuda", worker_init_fn=_worker_init,
        # BatchNorm cannot train on a batch of one.
        drop_last=train and len(ds) % batch_size == 1)


# --------------------------------------------------------------------------- steps

def compute_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, 6) logits, (B,) codes -> scalar cross-entropy in fp32."""
    return F.cross_entropy(logits.float(), labels)


def _inputs(batch: dict, device: torch.device, channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    nb = device.type == "cuda"
    tex = batch["texture"].to(device, non_blocking=nb, memory_format=fmt)
    dep = batch["depth"].to(device, non_blocking=nb, memory_format=fmt)
    mask = batch["mask"].to(device, non_blocking=nb)
    return tex, dep, mask, batch["label"].to(device, non_blocking=nb)


def train_epoch(model, loader, optimizer, scaler, amp: AmpMode, device: torch.device,
                channels_last: bool, where: str, bar=None) -> dict:
    """One pass over ``loader``; DivergedError naming ``where`` on a non-finite loss."""
    model.train()
    total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    for batch in loader:
        tex, dep, mask, labels = _inputs(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp.dtype or torch.float32,
                            enabled=amp.dtype is not None):
            logits = model(tex, dep, mask)
        loss = compute_loss(logits, labels)
        if not torch.isfinite(loss):
            raise DivergedError(f"{where}: loss is {loss.item()} after {seen} samples; "
                                "the cell stopped (its last epoch checkpoint is kept)")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        b = labels.shape[0]
        total_loss += loss.item() * b
        correct += int((logits.argmax(1) == labels).sum())
        seen += b
        if bar is not None:
            bar.update(b)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                            refresh=False)  # refresh=True would defeat mininterval in logs
    secs = time.perf_counter() - t0
    return {"loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1),
            "time": secs, "samples_per_s": seen / max(secs, 1e-9)}


@torch.no_grad()
def predict(model, loader, amp: AmpMode, device: torch.device,
            channels_last: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions, labels, dataset positions), each (N,) int64, in loader order."""
    model.eval()
    preds, labels, where = [], [], []
    for batch in loader:
        tex, dep, mask, y = _inputs(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp.dtype or torch.float32,
                            enabled=amp.dtype is not None):
            logits = model(tex, dep, mask)
        preds.append(logits.argmax(1).cpu())
        labels.append(y.cpu())
        where.append(batch["index"])
    return _cat(preds), _cat(labels), _cat(where)


def _cat(parts: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(parts).numpy().astype(np.int64) if parts else np.zeros(0, np.int64)


# --------------------------------------------------------------------------- files

def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """torch.save to ``path.tmp`` then rename: a crash never leaves a torn checkpoint."""
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, variant: str | None = None) -> dict:
    """Load a checkpoint with weights_only=True; ValueError if it holds another variant."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "variant" not in ckpt:
        raise ValueError(f"{path}: not a fer3d checkpoint (no model/variant entries)")
    if variant is not None and ckpt["variant"] != variant:
        raise ValueError(f"{path}: checkpoint of variant {ckpt['variant']!r}, "
                         f"but variant {variant!r} was asked")
    return ckpt


def write_json(obj, path: str | os.PathLike) -> None:
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)


def _write_epochs_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _read_epochs_csv(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if int(r["epoch"]) <= upto]


# --------------------------------------------------------------------------- models

def check_variant(name: str) -> None:
    """ValueError listing the registered variants unless ``name`` is one."""
    from fer3d.models import list_models

    names = list(list_models())
    if name not in names:
        raise ValueError(f"unknown variant {name!r}; available: {', '.join(names)}")


def build_model(variant: str, pretrained: str | None, device: torch.device,
                channels_last: bool) -> torch.nn.Module:
    from fer3d.models import create_model

    model = create_model(variant, num_classes=NUM_CLASSES, pretrained=pretrained)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


# --------------------------------------------------------------------------- cells

@dataclass
class Campaign:
    """What every cell of a run shares (built once by prepare_campaign)."""

    cfg: TrainConfig
    run_dir: Path
    index: dict
    plan: protocol.FoldPlan
    device: torch.device
    amp: AmpMode


def cell_dir(run_dir: Path, repeat: int, fold: int) -> Path:
    return run_dir / "cells" / f"r{repeat}_f{fold}"


def train_one_cell(camp: Campaign, repeat: int, fold: int) -> dict:
    """Train and test one (repeat, fold); returns the fold record (also fold.json).

    A finished cell (fold.json present) is returned as is on resume; an unfinished one
    continues after its last epoch checkpoint.
    """
    cfg, device, amp = camp.cfg, camp.device, camp.amp
    out = cell_dir(camp.run_dir, repeat, fold)
    out.mkdir(parents=True, exist_ok=True)
    fold_json, ckpt_path, csv_path = out / "fold.json", out / "checkpoint.pt", out / "epochs.csv"
    if cfg.resume and fold_json.exists():
        with open(fold_json, encoding="utf-8") as fh:
            return json.load(fh)

    rows = camp.plan.cell(camp.index, repeat, fold)
    aug = Augment() if cfg.augment else NO_AUGMENT
    train_ds = ShardDataset(cfg.shards, rows["train"], image_size=cfg.image_size,
                            train=True, augment=aug)
    seed = cell_seed(cfg.seed, repeat, fold)
    seed_everything(seed)
    model = build_model(cfg.variant, cfg.pretrained, device, cfg.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    scaler = torch.amp.GradScaler(device.type, enabled=amp.scaler)
    start, best = 0, {"val_acc": -1.0, "epoch": 0}
    if cfg.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, cfg.variant)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start, best = int(ckpt["epoch"]), dict(ckpt["best"])
        set_rng_state(ckpt["rng"])
        log.info("r%d f%d: resuming after epoch %d", repeat, fold, start)
    history = _read_epochs_csv(csv_path, start)

    loader = make_loader(train_ds, cfg.batch_size, cfg.workers, train=True, seed=seed,
                         device=device)
    val_loader = None
    if len(rows["val"]):
        val_ds = ShardDataset(cfg.shards, rows["val"], image_size=cfg.image_size)
        val_loader = make_loader(val_ds, cfg.batch_size, 0, train=False, seed=seed,
                                 device=device)
    steps = len(loader) * loader.batch_size if loader.drop_last else len(train_ds)
    bar = tqdm(total=steps * (cfg.epochs - start), desc=f"r{repeat} f{fold}", unit="img",
               disable=not cfg.progress, leave=False, dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 30.0)  # logs: a line per 30 s
    try:
        for epoch in range(start + 1, cfg.epochs + 1):
            loader.sampler.set_epoch(epoch)
            stats = train_epoch(model, loader, optimizer, scaler, amp, device,
                                cfg.channels_last,
                                f"repeat {repeat}, fold {fold}, epoch {epoch}", bar)
            row = {"epoch": epoch, **{k: round(v, 6) for k, v in stats.items()}}
            if val_loader is not None:
                p, y, _ = predict(model, val_loader, amp, device, cfg.channels_last)
                row["val_acc"] = round(float((p == y).mean()), 6)
                if row["val_acc"] > best["val_acc"]:
                    best = {"val_acc": row["val_acc"], "epoch": epoch}
                    save_checkpoint({"model": model.state_dict()}, out / "best.pt")
            history.append(row)
            _write_epochs_csv(csv_path, history)
            save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scaler": scaler.state_dict() if amp.scaler else {},
                             "epoch": epoch, "variant": cfg.variant,
                             "num_classes": NUM_CLASSES, "image_size": cfg.image_size,
                             "class_names": list(EXPRESSIONS), "best": best,
                             "test_subjects": [str(s) for s in camp.plan.folds[repeat][fold]],
                             "rng": rng_state()}, ckpt_path)
    finally:
        bar.close()
        train_ds.close()

    if val_loader is not None:
        model.load_state_dict(torch.load(out / "best.pt", weights_only=True)["model"])
    test_ds = ShardDataset(cfg.shards, rows["test"], image_size=cfg.image_size)
    p, y, pos = predict(model, make_loader(test_ds, cfg.batch_size, 0, train=False,
                                           seed=seed, device=device),
                        amp, device, cfg.channels_last)
    record = {"repeat": repeat, "fold": fold, "variant": cfg.variant,
              "test_subjects": [str(s) for s in camp.plan.folds[repeat][fold]],
              "sample_ids": [str(s) for s in test_ds.sample_ids[pos]],
              "labels": y.tolist(), "predictions": p.tolist(),
              "correct": int((p == y).sum()), "total": int(len(y)),
              "accuracy": float((p == y).mean()) if len(y) else float("nan"),
              "epochs": cfg.epochs, "selected_epoch": best["epoch"] or cfg.epochs}
    write_json(record, fold_json)
    log.info("r%d f%d: test accuracy %.4f (%d/%d)", repeat, fold, record["accuracy"],
             record["correct"], record["total"])
    return record


# --------------------------------------------------------------------------- campaigns

def resolve_preset(preset: str, index: dict) -> str:
    """auto -> the shards' ``dataset`` attribute (all shards must agree)."""
    if preset != "auto":
        if preset not in protocol.PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose auto, "
                             f"{', '.join(protocol.PRESETS)}")
        return preset
    found = sorted(set(index["datasets"].tolist()))
    if len(found) != 1 or found[0] not in protocol.PRESETS:
        raise ValueError(f"--preset auto: the shards' dataset attributes are {found}; "
                         f"pass --preset {' or '.join(protocol.PRESETS)}")
    return found[0]


def prepare_campaign(cfg: TrainConfig) -> Campaign:
    """Every check that can fail before training: shards, variant, preset, folds, run dir.

    Writes config.json and folds.json (or reuses the run's folds.json on resume).
    """
    check_variant(cfg.variant)
    if cfg.pretrained is not None:
        # Fails now on a missing or mismatched weights file, not in the first cell.
        build_model(cfg.variant, cfg.pretrained, torch.device("cpu"), False)
    index = read_index(cfg.shards)
    cfg.preset = resolve_preset(cfg.preset, index)
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    run_dir = Path(cfg.out)
    config_path, folds_path = run_dir / "config.json", run_dir / "folds.json"
    if config_path.exists():
        if not cfg.resume:
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume to "
                                  "continue it or choose another --out")
        with open(config_path, encoding="utf-8") as fh:
            old = json.load(fh)["config"]
        if old.get("variant") != cfg.variant:
            raise ValueError(f"{run_dir}: its checkpoints are of variant {old.get('variant')!r}, "
                             f"asked {cfg.variant!r}")
        diff = {k: (old.get(k), getattr(cfg, k)) for k in RESUME_KEYS
                if old.get(k) != getattr(cfg, k)}
        if diff:
            detail = "; ".join(f"{k}: run has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"{run_dir}: cannot resume with other settings ({detail})")

    if folds_path.exists() and cfg.resume:
        plan = protocol.extend_plan(protocol.load_folds(folds_path), cfg.repeats)
        protocol.rows_of(index, plan.sample_ids)  # the shards must still hold every sample
    else:
        plan = protocol.make_plan(index, cfg.preset, n_subjects=cfg.subjects, k=cfg.folds,
                                  repeats=cfg.repeats, seed=cfg.seed,
                                  val_subjects=cfg.val_subjects)
    plan.shards = [os.path.abspath(p) for p in cfg.shards]
    run_dir.mkdir(parents=True, exist_ok=True)
    protocol.save_folds(plan, folds_path)
    write_json({"config": dataclasses.asdict(cfg),
                "resolved": {"device": str(device), "amp": amp.name,
                             "n_samples": len(plan.sample_ids),
                             "n_subjects": len(plan.subjects)},
                "versions": versions(device)}, config_path)
    log.info("%s: %d subjects, %d samples, %d repeat(s) x %d folds, device %s, amp %s",
             plan.preset, len(plan.subjects), len(plan.sample_ids), cfg.repeats, plan.k,
             device, amp.name)
    return Campaign(cfg, run_dir, index, plan, device, amp)


def summarise(records: list[dict], repeats: int) -> dict:
    """Fold records -> accuracy mean ± std over repeats, per-class accuracy, pooled
    confusion matrix (rows true, columns predicted). std uses ddof=1 (0 for one repeat)."""
    per_repeat = []
    for r in range(repeats):
        mine = [x for x in records if x["repeat"] == r]
        per_repeat.append(sum(x["correct"] for x in mine) / max(sum(x["total"] for x in mine), 1))
    labels = np.array([y for x in records for y in x["labels"]], dtype=np.int64)
    preds = np.array([p for x in records for p in x["predictions"]], dtype=np.int64)
    cm = report.confusion_matrix(labels, preds, NUM_CLASSES)
    acc = np.array(per_repeat)
    return {"variant": records[0]["variant"] if records else None,
            "repeats": repeats, "folds": len({x["fold"] for x in records}),
            "accuracy_mean": float(acc.mean()),
            "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "repeat_accuracies": [float(a) for a in acc],
            "class_names": list(EXPRESSIONS),
            "per_class_accuracy": dict(zip(EXPRESSIONS, report.per_class_accuracy(cm))),
            "confusion_matrix": cm.tolist(), "n_predictions": int(len(labels))}


def run_campaign(cfg: TrainConfig) -> dict:
    """Run (or resume) every (repeat, fold) cell, then write summary.json and confusion.png.

    A cell whose loss diverges stops; the other cells still run; DivergedError at the end
    lists the failed cells (resume continues them from their last checkpoint).
    """
    camp = prepare_campaign(cfg)
    records, failed = [], []
    for repeat in range(cfg.repeats):
        for fold in range(camp.plan.k):
            try:
                records.append(train_one_cell(camp, repeat, fold))
            except DivergedError as exc:
                log.error("%s", exc)
                failed.append(str(exc))
    if failed:
        raise DivergedError("; ".join(failed))
    summary = summarise(records, cfg.repeats)
    summary["preset"] = camp.plan.preset
    summary["n_samples"] = len(camp.plan.sample_ids)
    write_json(summary, camp.run_dir / "summary.json")
    report.save_confusion_png(np.array(summary["confusion_matrix"]), EXPRESSIONS,
                              camp.run_dir / "confusion.png")
    return summary


def evaluate_checkpoint(ckpt_path: str | os.PathLike, shards: list[str], *,
                        subjects: list[str] | None = None, preset: str = "auto",
                        variant: str | None = None, image_size: int | None = None,
                        batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto",
                        amp: str = "auto", channels_last: bool = True,
                        workers: int = 0) -> dict:
    """Test a checkpoint on the preset's samples of ``subjects`` (default: the test
    subjects stored in the checkpoint, else every subject of the preset)."""
    ckpt = load_checkpoint(ckpt_path, variant)
    check_variant(ckpt["variant"])
    index = read_index(shards)
    preset = resolve_preset(preset, index)
    subjects = subjects or list(ckpt.get("test_subjects") or
                                protocol.complete_subjects(index, preset))
    unknown = sorted(set(subjects) - set(index["subject"].tolist()))
    if unknown:
        raise ValueError(f"subjects not in the shards: {', '.join(unknown)}")
    rows = protocol.select_samples(index, preset, subjects)
    if not len(rows):
        raise ValueError(f"no {preset} sample of subjects {subjects} in the shards")
    # Subjects outside the cell's test fold may have been trained on: say so loudly.
    untested = sorted(set(subjects) - set(ckpt.get("test_subjects") or subjects))
    if untested:
        log.warning("subjects %s are not in this checkpoint's test fold: if they were among "
                    "its training subjects, this accuracy is not subject-independent",
                    ", ".join(untested))
    dev = resolve_device(device)
    mode = resolve_amp(amp, dev)
    model = build_model(ckpt["variant"], None, dev, channels_last)
    model.load_state_dict(ckpt["model"])
    ds = ShardDataset(shards, rows, image_size=image_size or int(ckpt["image_size"]))
    p, y, pos = predict(model, make_loader(ds, batch_size, workers, train=False, seed=0,
                                           device=dev), mode, dev, channels_last)
    cm = report.confusion_matrix(y, p, NUM_CLASSES)
    return {"checkpoint": os.fspath(ckpt_path), "variant": ckpt["variant"],
            "subjects": sorted(subjects), "outside_test_fold": untested,
            "sample_ids": [str(s) for s in ds.sample_ids[pos]],
            "labels": y.tolist(), "predictions": p.tolist(),
            "accuracy": float((p == y).mean()),
            "per_class_accuracy": dict(zip(EXPRESSIONS, report.per_class_accuracy(cm))),
            "confusion_matrix": cm.tolist(), "class_names": list(EXPRESSIONS)}
