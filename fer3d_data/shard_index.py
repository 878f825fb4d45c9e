"""The one reader of a shard's index: which samples a set of shards holds, checked.

Stage: HDF5 shard -> training plan. Torch-free, so any consumer (fer3d's protocol and
datasets, a user's own loader) reads the same typed :class:`ShardIndex` the same way.
Several shards read as one index only when they were written with the same preprocessing
config (same grid, same cleaning) and no ``sample_id`` repeats: two shards of the same
subjects at 64 and 224 px would otherwise train together with duplicated samples.

>>> index = read_shard_index(["bu3dfe.h5"])          # doctest: +SKIP
>>> index.image_size, len(index), index.subject[:2]  # doctest: +SKIP
(224, 2500, array(['F0001', 'F0001'], dtype='<U5'))
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .errors import Fer3dDataError
from .schema import CLASS_NAMES, INDEX_COLUMNS
from .shards import check_header
from .shards.reader import check_parts

# Per-sample datasets a trainer reads (landmarks only when asked for).
TRAINING_DATASETS = ("texture", "depth", "coverage", "mask56")


@dataclass(frozen=True)
class ShardIndex:
    """The concatenated, checked ``/index`` of one or more shards.

    Per row (length N, shards in the order given): ``sample_id``, ``subject`` (str),
    ``expression``, ``intensity`` (int64), ``shard`` (position in ``paths``), ``row`` (row
    inside that shard). Per file: ``datasets`` (the ``dataset`` attribute), ``configs``
    (the preprocessing config). ``image_size``: the grid size S every shard shares.
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

    def __len__(self) -> int:
        return len(self.sample_id)

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
    missing += [f"index/{c}" for c in INDEX_COLUMNS if f"index/{c}" not in f]
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
        names = tuple(_text(n) for n in f.attrs.get("class_names", CLASS_NAMES))
        if names[: len(CLASS_NAMES)] != CLASS_NAMES:
            raise Fer3dDataError(f"{path}: class_names {names} differ from {CLASS_NAMES}")
        try:
            config = json.loads(_text(f["config"][()])) if "config" in f else {}
        except ValueError as exc:
            raise Fer3dDataError(f"{path}: /config is not valid JSON ({exc})") from None
        return {"sample_id": _strings(f["index/sample_id"][...]),
                "subject": _strings(f["index/subject"][...]),
                "expression": f["index/expression"][...].astype(np.int64),
                "intensity": f["index/intensity"][...].astype(np.int64),
                "dataset": _text(f.attrs.get("dataset", "")), "config": config, "size": size}


def _check_joinable(paths: list[str], parts: list[dict]) -> None:
    """Refuse shards of different preprocessing configs or with repeated sample ids."""
    for path, part in zip(paths[1:], parts[1:]):
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
           for k in ("sample_id", "subject", "expression", "intensity")}
    return ShardIndex(
        paths=tuple(names), **col,
        shard=np.concatenate([np.full(len(p["sample_id"]), i, np.int64)
                              for i, p in enumerate(parts)]),
        row=np.concatenate([np.arange(len(p["sample_id"]), dtype=np.int64) for p in parts]),
        datasets=tuple(p["dataset"] for p in parts),
        configs=tuple(p["config"] for p in parts), image_size=sizes.pop())
