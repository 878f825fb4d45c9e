"""What a cell keeps on disk, and when: the one owner of checkpoint contents.

Stage: training state <-> files (like timm's CheckpointSaver). While a cell trains, a
resume checkpoint (model, optimizer, scaler, epoch, RNG states) is written every
``--checkpoint-every`` epochs; ``auto`` writes one whenever the training time since the
last one is at least 20x what a save costs (saving stays under 5 % of training time on
any device: every epoch on a CPU, rarely or never inside a cell of a few GPU-seconds).
When the cell finishes, ``--keep`` decides what stays: ``weights`` (fp32 state dict and
what evaluation needs, no optimizer), ``first`` (those of cell r0 f0 only, none elsewhere),
``full`` (also the last resume checkpoint) or ``none``. Files are written to a per-process
temporary name and renamed; they hold only tensors and plain types
(``torch.load(weights_only=True)``).

:func:`read_weights` is the one reader of weights files, for every consumer: resume,
fer3d-eval, fer3d-cam and prediction through :func:`load_model` (an engine checkpoint, a
plain state dict or a safetensors file, found from a file, a cell directory, a run
directory or a final model: :func:`fer3d.campaign.rundir.find_weights`), ``--pretrained`` through
:func:`read_pretrained`. Whatever a file holds, a problem is one CheckpointError naming it
(a crafted file included); it never suggests loading a file whose code would run.
:func:`load_models` reads every member of an ensemble (a final model, a run's cells);
:func:`save_safetensors` writes fp32 weights with the metadata a model needs (variant,
classes, input size) in the file's header.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import stat
import zipfile
from pathlib import Path

import torch

from fer3d.campaign.atomic import atomic_write
from fer3d.campaign.rundir import CellDir, find_all_weights, find_weights
from fer3d.errors import CheckpointError
from fer3d.settings import KEEP, MAX_IMAGE_SIZE

SAVE_SHARE = 0.05            # auto: saving at most this share of training time
ASSUMED_WRITE_BPS = 200e6    # auto's guess of write speed until the first save is timed
# Largest weights file read: AFNet-M's largest, a full resume checkpoint (weights + Adam's
# two moments), is about 0.3 GB; torch.load holds a whole file in memory.
MAX_WEIGHTS_BYTES = 4 * 2**30


def save(state: dict, path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _problem(path: Path) -> str | None:
    """Why ``path`` cannot be a weights file, judged from its type, size and first bytes:
    only a regular file of at most ``MAX_WEIGHTS_BYTES`` is ever opened (a FIFO or
    /dev/zero named as a checkpoint would hang or fill memory)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a weights file"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size == 0:
        return "empty file (0 bytes): not a checkpoint"
    if info.st_size > MAX_WEIGHTS_BYTES:
        return f"{info.st_size} bytes, over the {MAX_WEIGHTS_BYTES} a weights file may have"
    if path.suffix == ".safetensors":
        return None
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if magic != b"PK\x03\x04":
        return "not a PyTorch checkpoint (not a torch.save archive)"
    return _archive_problem(path, info.st_size)


def _archive_problem(path: Path, size: int) -> str | None:
    """A torch.save zip archive whose end is missing, or whose members would expand past
    ``MAX_WEIGHTS_BYTES`` (torch reads them whole)."""
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return f"truncated checkpoint ({size} bytes; the archive's end is missing)"
    if expanded > MAX_WEIGHTS_BYTES:
        return f"its archive expands to {expanded} bytes, over {MAX_WEIGHTS_BYTES}"
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


class SaveCadence:
    """When to write resume checkpoints: every ``every`` epochs (0: never inside a cell), or
    (``every`` None, auto) whenever the training time since the last save is at least
    1 / SAVE_SHARE times what a save costs (measured after the first; guessed before)."""

    def __init__(self, every: int | None):
        self.every = every
        self.save_seconds: float | None = None
        self.train_seconds = 0.0

    def due(self, epoch: int, epoch_seconds: float, nbytes: int) -> bool:
        """Whether to save after ``epoch`` (not the cell's last); ``nbytes``: the weights
        about to be saved (with Adam's two moments a save writes three times that)."""
        self.train_seconds += epoch_seconds
        if self.every is not None:
            return self.every > 0 and epoch % self.every == 0
        cost = self.save_seconds or 3 * nbytes / ASSUMED_WRITE_BPS
        return cost <= SAVE_SHARE * self.train_seconds

    def saved(self, seconds: float) -> None:
        self.save_seconds, self.train_seconds = seconds, 0.0


class CellCheckpoints:
    """Resume checkpoints and final weights of one cell directory.

    meta   plain entries stored in every file (variant, image_size, test_subjects, ...).
    """

    def __init__(self, cell: CellDir, keep: str, meta: dict):
        if keep not in KEEP:
            raise ValueError(f"unknown keep {keep!r}; choose {', '.join(KEEP)}")
        self.resume_path, self.weights_path, self.best_path = cell.resume, cell.weights, cell.best
        if keep == "first":  # the cell fer3d-cam, Fig. 6 and fer3d-eval RUN_DIR read
            keep = "weights" if (cell.repeat, cell.fold) == (0, 0) else "none"
        self.keep, self.meta = keep, dict(meta)

    def save_resume(self, state: dict) -> None:
        save({**self.meta, **state}, self.resume_path)

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

SAFETENSORS_META = "fer3d"  # header key of the JSON metadata in a safetensors file


def save_safetensors(state: dict[str, torch.Tensor], meta: dict, path: str | Path) -> None:
    """fp32 ``state`` and ``meta`` (plain JSON types) as a safetensors file, atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in state.items()}
    header = {SAFETENSORS_META: json.dumps(meta, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def _load_problem(exc: Exception) -> str:
    """One line for a failed weights-only load. torch's own text for a refused object
    advises loading with weights_only=False, which would run the file's code: not repeated."""
    text = str(exc).strip()
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if text.startswith("Weights only load failed") and refused:
        return (f"refused: unpickling it would import {refused[1]} (only tensors and plain "
                "types are loaded; nothing in the file was run)")
    return f"corrupt or truncated checkpoint ({_one_line(exc)})"


def read_weights(path: Path) -> tuple[dict, dict]:
    """(state dict, metadata) of an engine checkpoint, a plain state dict (.pt, also under
    ``"state_dict"``) or a safetensors file; CheckpointError naming ``path`` for anything
    else, whatever the file holds: every entry is checked (tensors under string names;
    metadata of the types fer3d writes) before anything uses it."""
    problem = _problem(path)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    if path.suffix == ".safetensors":
        obj = _load_safetensors(path)
    else:
        obj = _load_torch(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        state, meta = obj["model"], {k: v for k, v in obj.items() if k != "model"}
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state, meta = obj["state_dict"], {}
    else:
        state, meta = obj, {}
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: not a fer3d checkpoint (no model/variant entries) nor "
                              "a state dict (names -> tensors)")
    _check_meta(path, meta)
    return state, meta


def _load_torch(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # refused by weights_only: never loaded otherwise
        raise CheckpointError(f"{path}: {_load_problem(exc)}") from None
    except Exception as exc:  # torch.load raises many types on a damaged archive: all mean so
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint "
                              f"({_one_line(exc)})") from None


def _load_safetensors(path: Path) -> dict:
    """``{"model": tensors, **metadata}`` of a safetensors file (the metadata fer3d writes
    under :data:`SAFETENSORS_META` in its header), as an engine checkpoint reads."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(path, framework="pt") as fh:
            header = fh.metadata() or {}
        state = load_file(path)
    except Exception as exc:  # the library's errors differ by version: all mean "not valid"
        raise CheckpointError(f"{path}: not a safetensors file ({_one_line(exc)})") from None
    try:
        meta = json.loads(header.get(SAFETENSORS_META, "{}"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable {SAFETENSORS_META} metadata "
                              f"({_one_line(exc)})") from None
    if not isinstance(meta, dict) or "model" in meta:
        raise CheckpointError(f"{path}: its {SAFETENSORS_META} metadata is not a JSON object")
    return {**meta, "model": state}


def _one_line(exc: Exception) -> str:
    """An exception's text on one line, cut to 200 characters; its type alone when the
    text is empty or gives advice about weights_only (never taken: a file's code never runs)."""
    text = " ".join(str(exc).split())
    if not text or "weights_only" in text:
        return type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


MAX_CLASSES = 100_000  # a classifier's outputs: far above any label set, far below a hostile one

# Metadata fer3d writes into a checkpoint and reads back: name -> (type, check, wanted).
_META = {
    "variant": (str, lambda v: True, "a variant name"),
    "num_classes": (int, lambda v: 2 <= v <= MAX_CLASSES, f"a count in 2..{MAX_CLASSES}"),
    "image_size": (int, lambda v: 8 <= v <= MAX_IMAGE_SIZE and v % 4 == 0,
                   f"a multiple of 4 in 8..{MAX_IMAGE_SIZE}"),
    "class_names": (list, lambda v: 2 <= len(v) <= MAX_CLASSES and all(
        isinstance(n, str) for n in v), "a list of class names"),
    "test_subjects": (list, lambda v: all(isinstance(s, str) for s in v), "a list of names"),
}


def _check_meta(path: Path, meta: dict) -> None:
    """CheckpointError naming the first metadata entry of another type or value."""
    for key, (kind, ok, wanted) in _META.items():
        if key not in meta:
            continue
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool) or not ok(value):
            raise CheckpointError(f"{path}: its {key!r} is {str(value)[:80]!r}, expected "
                                  f"{wanted}; not a checkpoint fer3d wrote")


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


def _build(path: Path, variant: str | None) -> tuple[torch.nn.Module, dict]:
    from fer3d.models import create_model, list_models

    state, meta = read_weights(path)
    _check_variant(path, meta, variant)
    name = meta.get("variant") or variant or _infer_variant(state, path)
    if name not in list_models():
        raise CheckpointError(f"{path}: records variant {name[:80]!r}, which this fer3d does "
                              f"not have ({', '.join(list_models())})")
    n = int(meta.get("num_classes") or _num_classes(state, path))
    model = create_model(name, num_classes=n)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: does not hold a model of variant {name} "
                              f"({_one_line(exc)})") from None
    return model.eval(), {**meta, "variant": name, "num_classes": n, "path": str(path)}


def load_model(path: str | os.PathLike, variant: str | None = None
               ) -> tuple[torch.nn.Module, dict]:
    """Model in eval mode on the CPU and its metadata (``variant``, ``num_classes``,
    ``path``, and ``class_names``, ``image_size``, ``test_subjects``, ... when the file
    records them). ``path`` is a weights file, a cell directory, a run directory or a final
    model (its first member); ``variant`` refuses a file of another one."""
    return _build(find_weights(path), variant)


def load_models(path: str | os.PathLike, limit: int | None = None,
                variant: str | None = None) -> list[tuple[torch.nn.Module, dict]]:
    """Every member of the model at ``path`` as :func:`load_model` gives one: a final
    model's members, a run directory's finished cells (the first ``limit``), or the one
    model of a file or cell."""
    return [_build(p, variant) for p in find_all_weights(path, limit)]


def read_pretrained(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The resnet18 state dict ``--pretrained`` names: a file, or ``imagenet`` for
    torchvision's file in the torch hub cache (never downloaded); CheckpointError naming
    the file and what to do."""
    from fer3d.models import imagenet_weights_path

    path = imagenet_weights_path() if str(source) == "imagenet" else Path(source)
    if str(source) == "imagenet" and not path.is_file():
        raise CheckpointError(
            f"--pretrained imagenet: {path}: no such file; ImageNet resnet18 weights are not in "
            f"the torch hub cache and fer3d never downloads: put torchvision's {path.name} "
            "there (or set TORCH_HOME), pass --pretrained PATH to a resnet18 state dict, or "
            "--pretrained none to train from scratch")
    try:
        return read_weights(path)[0]
    except CheckpointError as exc:
        raise CheckpointError(f"--pretrained: {exc}") from None
