"""What a cell keeps on disk, and when: the one owner of checkpoint contents.

Stage: training state <-> files (like timm's CheckpointSaver). While a cell trains, a
resume checkpoint (model, optimizer, scaler, epoch, RNG states) is written every
``--checkpoint-every`` epochs; ``auto`` writes one whenever the training time since the
last one is at least 20x what a save costs (saving stays under 5 % of training time on
any device: every epoch on a CPU, rarely or never inside a cell of a few GPU-seconds).
When the cell finishes, ``--keep`` decides what stays: ``weights`` (fp32 state dict and
what evaluation needs, no optimizer), ``full`` (also the last resume checkpoint) or
``none``. Files are written to a per-process temporary name and renamed; they hold only
tensors and plain types (``torch.load(weights_only=True)``).

:func:`load_model` is the one reader of weights for every consumer (fer3d-eval, fer3d-cam,
prediction): an engine checkpoint, a plain state dict or a safetensors file, found from a
file, a cell directory or a run directory (:func:`fer3d.campaign.rundir.find_weights`).
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import time
import zipfile
from pathlib import Path

import torch

from fer3d.campaign.atomic import atomic_write
from fer3d.campaign.rundir import CellDir, find_weights
from fer3d.errors import CheckpointError
from fer3d.settings import KEEP

SAVE_SHARE = 0.05            # auto: saving at most this share of training time
ASSUMED_WRITE_BPS = 200e6    # auto's guess of write speed until the first save is timed


def save(state: dict, path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _problem(path: Path) -> str | None:
    """Why ``path`` cannot be a torch.save checkpoint, judged before unpickling."""
    if not path.exists():
        return "no such checkpoint"
    if path.is_dir():
        return "is a directory, not a checkpoint file"
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes): not a checkpoint"
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        return "not a PyTorch checkpoint (not a torch.save archive)"
    if not zipfile.is_zipfile(path):
        return f"truncated checkpoint ({size} bytes; the archive's end is missing)"
    return None


def load_checkpoint(path: str | Path, variant: str | None = None) -> dict:
    """A fer3d checkpoint (resume, best or weights) as a dict; CheckpointError naming ``path``
    when it is missing, empty, truncated, not a checkpoint, or of another variant."""
    state, meta = read_weights(Path(path))
    if "variant" not in meta:
        raise CheckpointError(f"{path}: not a fer3d checkpoint (no model/variant entries)")
    _check_variant(path, meta, variant)
    return {**meta, "model": state}


def _check_variant(path, meta: dict, variant: str | None) -> None:
    if variant is not None and meta.get("variant", variant) != variant:
        raise CheckpointError(f"{path}: checkpoint of variant {meta['variant']!r}, "
                              f"but variant {variant!r} was asked")


def fp32_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict on the CPU, floating tensors as fp32 (what evaluation needs)."""
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu()
            for k, v in model.state_dict().items()}


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() * v.element_size() for v in state.values())


class CellCheckpoints:
    """Resume checkpoints and final weights of one cell directory.

    every  epochs between resume checkpoints; 0: none inside the cell; None: auto.
    meta   plain entries stored in every file (variant, image_size, test_subjects, ...).
    """

    def __init__(self, cell: CellDir, every: int | None, keep: str, meta: dict):
        if keep not in KEEP:
            raise ValueError(f"unknown keep {keep!r}; choose {', '.join(KEEP)}")
        self.resume_path, self.weights_path, self.best_path = cell.resume, cell.weights, cell.best
        self.every, self.keep, self.meta = every, keep, dict(meta)
        self.save_seconds: float | None = None
        self.train_seconds = 0.0

    def due(self, epoch: int, epoch_seconds: float, model: torch.nn.Module) -> bool:
        """Whether to write a resume checkpoint after ``epoch`` (not the cell's last)."""
        self.train_seconds += epoch_seconds
        if self.every is not None:
            return self.every > 0 and epoch % self.every == 0
        # model + Adam's two moments: three times the weights
        cost = self.save_seconds or 3 * state_bytes(model.state_dict()) / ASSUMED_WRITE_BPS
        return cost <= SAVE_SHARE * self.train_seconds

    def save_resume(self, state: dict) -> None:
        t0 = time.perf_counter()
        save({**self.meta, **state}, self.resume_path)
        self.save_seconds = time.perf_counter() - t0
        self.train_seconds = 0.0

    def load_resume(self) -> dict | None:
        if not self.resume_path.exists():
            return None
        return load_checkpoint(self.resume_path, self.meta.get("variant"))

    def save_best(self, model: torch.nn.Module) -> None:
        """The weights of the best validation epoch so far (cells with a validation split)."""
        save({**self.meta, "model": model.state_dict()}, self.best_path)

    def load_best(self) -> dict[str, torch.Tensor]:
        return load_checkpoint(self.best_path, self.meta.get("variant"))["model"]

    def finish(self, model: torch.nn.Module, epoch: int, last_state) -> None:
        """Keep what ``--keep`` asks for and remove the rest (call before fold.json is
        written: a finished cell is one whose fold.json exists)."""
        if self.keep in ("weights", "full"):
            save({**self.meta, "model": fp32_state(model), "epoch": epoch}, self.weights_path)
        if self.keep == "full":
            self.save_resume(last_state())
        else:
            self.resume_path.unlink(missing_ok=True)
        self.best_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- any weights

def _load_problem(exc: Exception) -> str:
    """One line for a failed weights-only load. torch's own text for a refused object
    advises loading with weights_only=False, which would run the file's code: not repeated."""
    text = str(exc).strip()
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if text.startswith("Weights only load failed") and refused:
        return (f"refused: unpickling it would import {refused[1]} (only tensors and plain "
                "types are loaded; nothing in the file was run)")
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"corrupt or truncated checkpoint ({first})"


def read_weights(path: Path) -> tuple[dict, dict]:
    """(state dict, metadata) of an engine checkpoint, a plain state dict (.pt) or a
    safetensors file; CheckpointError naming ``path`` for anything else."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path), {}
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: not a safetensors file ({exc})") from None
    problem = _problem(path)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: {_load_problem(exc)}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"], {k: v for k, v in obj.items() if k != "model"}
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    raise CheckpointError(f"{path}: not a fer3d checkpoint (no model/variant entries) nor a "
                          "state dict")


@functools.cache
def _state_shapes(name: str, num_classes: int) -> tuple:
    from fer3d.models import create_model

    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = create_model(name, num_classes=num_classes)
    return tuple(sorted((k, tuple(v.shape)) for k, v in model.state_dict().items()))


def _num_classes(state: dict, path: Path) -> int:
    """Outputs of the classifier (``fc.weight``, or one ``fc.<branch>.weight`` per branch)."""
    heads = [v for k, v in state.items() if k.startswith("fc.") and k.endswith("weight")]
    if not heads:
        raise CheckpointError(f"{path}: no classifier (fc) weights: not a fer3d model")
    return int(heads[0].shape[0])


def class_names_of(meta: dict, shard_names) -> list[str]:
    """The classes a model loaded by :func:`load_model` predicts, in output order: as its
    weights record them; else (plain state dicts, weights from before labels were data)
    the shards' first ``num_classes`` labels, as training used them then."""
    names = list(meta.get("class_names") or list(shard_names)[:meta["num_classes"]])
    if len(names) != meta["num_classes"]:
        raise CheckpointError(f"{meta['path']}: {meta['num_classes']} outputs but "
                              f"{len(names)} class names {names}")
    return names


def _infer_variant(state: dict, path: Path) -> str:
    """The one registered variant whose parameter names and shapes match ``state``."""
    from fer3d.models import list_models

    shapes = tuple(sorted((k, tuple(v.shape)) for k, v in state.items()))
    found = [name for name in list_models()
             if _state_shapes(name, _num_classes(state, path)) == shapes]
    if len(found) != 1:
        raise CheckpointError(f"{path}: a plain state dict matching {found or 'no variant'}; "
                              "pass --variant")
    return found[0]


def load_model(path: str | os.PathLike, variant: str | None = None
               ) -> tuple[torch.nn.Module, dict]:
    """Model in eval mode on the CPU and its metadata (``variant``, ``num_classes``,
    ``path``, and ``class_names``, ``image_size``, ``test_subjects``, ... when the file
    records them). ``path`` is a weights file, a cell directory or a run directory;
    ``variant`` refuses a file of another one."""
    from fer3d.models import create_model

    path = find_weights(path)
    state, meta = read_weights(path)
    _check_variant(path, meta, variant)
    name = meta.get("variant") or variant or _infer_variant(state, path)
    n = int(meta.get("num_classes") or _num_classes(state, path))
    model = create_model(name, num_classes=n)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: does not hold a {name} model ({first})") from None
    return model.eval(), {**meta, "variant": name, "num_classes": n, "path": str(path)}
