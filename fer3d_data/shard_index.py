"""The one reader of a shard's index: which samples a set of shards holds, checked.

Stage: HDF5 shard -> training plan. Torch-free, so any consumer (fer3d's protocol and
datasets, a user's own loader) reads the same typed :class:`ShardIndex` the same way.
Several shards read as one index only when they were written with the same preprocessing
config (same grid, same cleaning), with the same label names, and no ``sample_id``
repeats: two shards of the same subjects at 64 and 224 px would otherwise train together
with duplicated samples.

The contract with trainers (docs/shards.md): ``label`` codes into ``class_names``, the
``sequence`` and ``frame`` of each row, and ``masks`` ("none": no salient-region masks).

>>> index = read_shard_index(["bu3dfe.h5"])          # doctest: +SKIP
>>> index.image_size, len(index), index.subject[:2]  # doctest: +SKIP
(224, 2500, array(['F0001', 'F0001'], dtype='<U5'))
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .errors import Fer3dDataError
from .schema import CLASS_NAMES, INDEX_COLUMNS, LABEL_COLUMNS, MASKS, NO_FRAME
from .shards import check_header
from .shards.reader import check_parts

# Per-sample datasets a trainer reads (landmarks only when asked for).
TRAINING_DATASETS = ("texture", "depth", "coverage", "mask56")


@dataclass(frozen=True)
class ShardIndex:
    """The concatenated, checked ``/index`` of one or more shards.

    Per row (length N, shards in the order given): ``sample_id``, ``subject`` (str),
    ``label`` (int64 code into ``class_names``: what a trainer learns), ``expression``
    (int64 code into schema.CLASS_NAMES, -1 where the label is no expression; equal to
    ``label`` in BU-3DFE and Bosphorus shards), ``intensity`` (int64), ``sequence`` (str,
    "" outside a sequence), ``frame`` (int64, -1 outside a sequence), ``shard`` (position
    in ``paths``), ``row`` (row inside that shard). Per file: ``datasets`` (the ``dataset``
    attribute), ``configs`` (the preprocessing config). Shared by every shard:
    ``image_size`` (the grid size S), ``class_names`` (label names in code order) and
    ``masks`` ("landmarks", or "none": every mask is zero).
    """

    paths: tuple[str, ...]
    sample_id: np.ndarray
    subject: np.ndarray
    expression: np.ndarray
    intensity: np.ndarray
    shard: np.ndarray
    row: np.ndarray
    datasets: tuple[str, ...]
    configs: tuple[dict, ...]
    image_size: int
    label: np.ndarray
    sequence: np.ndarray
    frame: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    masks: str = MASKS[0]

    ROW_FIELDS = ("sample_id", "subject", "expression", "intensity", "shard", "row", "label",
                  "sequence", "frame")

    def __len__(self) -> int:
        return len(self.sample_id)

    def take(self, rows) -> "ShardIndex":
        """The index of the given rows (indices or a boolean mask), every column alike."""
        return dataclasses.replace(self, **{k: getattr(self, k)[rows] for k in self.ROW_FIELDS})

    def rows_of(self, sample_ids: Sequence[str]) -> np.ndarray:
        """Rows of ``sample_ids`` in that order; Fer3dDataError naming the first missing."""
        where = {sid: i for i, sid in enumerate(self.sample_id)}
        missing = [s for s in sample_ids if s not in where]
        if missing:
            raise Fer3dDataError(f"{len(missing)} sample ids are not in the shards "
                                 f"{', '.join(self.paths)}, e.g. {str(missing[0])!r}")
        return np.array([where[s] for s in sample_ids], dtype=np.int64)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _strings(column: np.ndarray) -> np.ndarray:
    """Fixed-length UTF-8 bytes (h5py 'S' dtype) -> numpy str array."""
    return np.char.decode(column, "utf-8") if column.dtype.kind == "S" else column.astype(str)


def check_datasets(f: h5py.File, path: Path, needed: Sequence[str] = TRAINING_DATASETS) -> int:
    """Fer3dDataError naming ``path`` unless ``needed`` and the index are there, one row
    per index row, on one square grid; returns the grid size S."""
    missing = [n for n in needed if n not in f]
    missing += [f"index/{c}" for c in INDEX_COLUMNS
                if f"index/{c}" not in f and c not in LABEL_COLUMNS]
    if missing:
        raise Fer3dDataError(f"{path}: missing datasets: {', '.join(missing)}")
    n = f["index/sample_id"].shape[0]
    wrong = [name for name in needed if f[name].shape[0] != n]
    if wrong:
        raise Fer3dDataError(f"{path}: datasets {wrong} do not have one row per index row ({n})")
    s = f["texture"].shape
    if len(s) != 4 or s[1] != s[2] or s[3] != 3:
        raise Fer3dDataError(f"{path}: /texture has shape {s}; expected (N, S, S, 3)")
    if f["depth"].shape != s[:3] or f["coverage"].shape != s[:3]:
        raise Fer3dDataError(f"{path}: /depth or /coverage shape differs from /texture {s[:3]}")
    return int(s[1])


def _read_one(path: Path, landmarks: bool) -> dict:
    if not path.exists():
        raise Fer3dDataError(f"{path}: no such shard")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise Fer3dDataError(f"{path}: not an HDF5 file ({exc})") from None
    with f:
        check_header(f, path)
        check_parts(f, path)  # a virtual shard's missing part would read as zeros
        size = check_datasets(f, path, TRAINING_DATASETS + (("landmarks",) if landmarks else ()))
        try:
            config = json.loads(_text(f["config"][()])) if "config" in f else {}
        except ValueError as exc:
            raise Fer3dDataError(f"{path}: /config is not valid JSON ({exc})") from None
        return {"sample_id": _strings(f["index/sample_id"][...]),
                "subject": _strings(f["index/subject"][...]),
                "expression": f["index/expression"][...].astype(np.int64),
                "intensity": f["index/intensity"][...].astype(np.int64),
                **_labels(f, path),
                "dataset": _text(f.attrs.get("dataset", "")), "config": config, "size": size,
                "masks": _text(f.attrs.get("masks", MASKS[0]))}


def _labels(f: h5py.File, path: Path) -> dict:
    """label codes, their names, sequence and frame of a shard; one without the label
    columns (written before labels were data, or by hand) is labelled by its expressions."""
    n = f["index/sample_id"].shape[0]
    names = tuple(_text(v) for v in f.attrs.get("class_names", CLASS_NAMES))
    label = f["index/label" if "index/label" in f else "index/expression"][...].astype(np.int64)
    bad = np.flatnonzero((label < 0) | (label >= len(names)))
    if bad.size:
        raise Fer3dDataError(f"{path}: label codes {sorted(set(label[bad].tolist()))[:5]} have no "
                             f"name in class_names {list(names)}")
    return {"label": label, "class_names": names,
            "sequence": (_strings(f["index/sequence"][...]) if "index/sequence" in f
                         else np.full(n, "")),
            "frame": (f["index/frame"][...].astype(np.int64) if "index/frame" in f
                      else np.full(n, NO_FRAME, np.int64))}


def _check_joinable(paths: list[str], parts: list[dict]) -> None:
    """Refuse shards of different label sets, preprocessing configs or masks, or with
    repeated sample ids."""
    for path, part in zip(paths[1:], parts[1:]):
        if part["class_names"] != parts[0]["class_names"]:
            raise Fer3dDataError(f"{path}: labels {list(part['class_names'])} differ from "
                                 f"{paths[0]}'s {list(parts[0]['class_names'])}; train on "
                                 "shards of one label set")
        if part["masks"] != parts[0]["masks"]:
            raise Fer3dDataError(f"{path}: masks {part['masks']!r} but {paths[0]} has "
                                 f"{parts[0]['masks']!r}")
        if part["config"] != parts[0]["config"]:
            keys = sorted(k for k in set(part["config"]) | set(parts[0]["config"])
                          if part["config"].get(k) != parts[0]["config"].get(k))
            raise Fer3dDataError(f"{path}: preprocessing config differs from {paths[0]} "
                                 f"({', '.join(keys)}); train on shards of one config")
    ids = np.concatenate([p["sample_id"] for p in parts])
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise Fer3dDataError(f"{', '.join(paths)}: {len(dup)} sample ids occur more than once "
                             f"(e.g. {str(dup[0])!r}); the same scan would train twice")


def read_shard_index(paths: Sequence[str | os.PathLike], *, landmarks: bool = False) -> ShardIndex:
    """Read and check the index of ``paths`` (read once per campaign)."""
    if not paths:
        raise Fer3dDataError("no shard given")
    names = [os.fspath(p) for p in paths]
    parts = [_read_one(Path(p), landmarks) for p in names]
    _check_joinable(names, parts)
    sizes = {p["size"] for p in parts}
    if len(sizes) > 1:  # a config without image_size (hand-made shards) still must agree
        raise Fer3dDataError(f"{', '.join(names)}: shards of different grid sizes {sorted(sizes)}")
    col = {k: np.concatenate([p[k] for p in parts])
           for k in ("sample_id", "subject", "expression", "intensity", "label", "sequence",
                     "frame")}
    return ShardIndex(
        paths=tuple(names), **col,
        shard=np.concatenate([np.full(len(p["sample_id"]), i, np.int64)
                              for i, p in enumerate(parts)]),
        row=np.concatenate([np.arange(len(p["sample_id"]), dtype=np.int64) for p in parts]),
        datasets=tuple(p["dataset"] for p in parts),
        configs=tuple(p["config"] for p in parts), image_size=sizes.pop(),
        class_names=parts[0]["class_names"], masks=parts[0]["masks"])
