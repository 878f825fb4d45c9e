"""Checking a shard: schema, index values, per-sample values and every chunk's checksum.

Stage: consumers of shards (``fer3d-prep verify``).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import Fer3dDataError
from ..schema import CLASS_NAMES
from .reader import open_shard
from .spec import ERROR_COLUMNS, INDEX_DTYPES, STRING_WIDTHS


def _area_resize_half(a: np.ndarray) -> np.ndarray:
    """(2h, 2w) -> (h, w) by averaging 2x2 blocks: area resize by one half."""
    h, w = a.shape[0] // 2, a.shape[1] // 2
    return a.reshape(h, 2, w, 2).mean(axis=(1, 3))


def _check_schema(f: h5py.File, spec: dict, n: int) -> list[str]:
    problems = []
    for name, (shape, dtype) in spec.items():
        if name not in f:
            problems.append(f"/{name}: missing")
            continue
        ds = f[name]
        if ds.shape != (n, *shape):
            problems.append(f"/{name}: shape {ds.shape}, expected {(n, *shape)}")
        if ds.dtype != dtype:
            problems.append(f"/{name}: dtype {ds.dtype}, expected {dtype}")
        if not ds.is_virtual and (ds.chunks is None or ds.chunks[0] != 1 or not ds.fletcher32):
            problems.append(f"/{name}: must be chunked one sample per chunk with fletcher32")
    for name, dtype in INDEX_DTYPES.items():
        ds = f.get(f"index/{name}")
        if ds is None:
            problems.append(f"/index/{name}: missing")
        elif ds.shape != (n,):
            problems.append(f"/index/{name}: length {ds.shape[0]}, expected {n}")
        elif ((name in STRING_WIDTHS) != (ds.dtype.kind == "S")
              or (name not in STRING_WIDTHS and ds.dtype != dtype)):
            problems.append(f"/index/{name}: dtype {ds.dtype}, expected {dtype}")
    lengths = {c: f[f"errors/{c}"].shape[0] for c in ERROR_COLUMNS if f"errors/{c}" in f}
    if len(lengths) != len(ERROR_COLUMNS) or len(set(lengths.values())) > 1:
        problems.append(f"/errors: columns {ERROR_COLUMNS} must all exist with equal lengths, "
                        f"got {lengths}")
    return problems


def _check_index(index: dict[str, np.ndarray]) -> list[str]:
    problems = []
    ids, counts = np.unique(index["sample_id"], return_counts=True)
    if (counts > 1).any():
        problems.append(f"/index/sample_id: duplicated ids {ids[counts > 1][:5].tolist()}")
    expr = index["expression"]
    bad = np.flatnonzero((expr < 0) | (expr >= len(CLASS_NAMES)))
    if bad.size:
        problems.append(f"/index/expression: codes outside 0..{len(CLASS_NAMES) - 1} "
                        f"at rows {bad[:5].tolist()}")
    inten = index["intensity"]
    bad = np.flatnonzero((inten < -1) | (inten > 4))
    if bad.size:
        problems.append(f"/index/intensity: values outside -1..4 at rows {bad[:5].tolist()}")
    bad = np.flatnonzero(~np.isin(index["mask_source"], (0, 1)))
    if bad.size:
        problems.append(f"/index/mask_source: values outside {{0, 1}} at rows {bad[:5].tolist()}")
    return problems


def _check_values(s: dict[str, np.ndarray]) -> list[str]:
    """Problems of one sample's values (shapes already checked)."""
    problems = []
    if not np.isfinite(s["depth"]).all():
        problems.append("depth has non-finite values")
    if s["coverage"].dtype != np.bool_:
        problems.append(f"coverage dtype {s['coverage'].dtype}, expected bool")
    for name in ("mask", "regions"):
        if s[name].max(initial=0) > 1:
            problems.append(f"{name} has values above 1")
    if not np.array_equal(s["mask"], s["regions"].max(axis=0)):
        problems.append("mask is not the union of regions")
    for name in ("mask56", "mask28"):
        a = s[name].astype(np.float32)
        if not (np.isfinite(a).all() and a.min(initial=0) >= 0 and a.max(initial=0) <= 1):
            problems.append(f"{name} has values outside [0, 1]")
    half = _area_resize_half(s["mask56"].astype(np.float32))
    err = np.abs(half - s["mask28"].astype(np.float32)).max()
    if err > 2e-3:  # float16 storage rounds to ~5e-4
        problems.append(f"mask28 differs from the area-resize of mask56 by {err:.4f}")
    for name in ("landmarks", "landmarks68"):
        if np.isinf(s[name]).any():
            problems.append(f"{name} has infinite values (missing points must be NaN)")
    if "points" in s and not np.isfinite(s["points"]).all():
        problems.append("points has non-finite values")
    return problems


def verify(path: str | os.PathLike) -> list[str]:
    """Every problem found in a shard, as readable strings; [] when it is sound.

    Checks the header and schema (datasets, shapes, dtypes, chunking, index lengths), the
    index values, and reads every chunk of every sample, so a Fletcher-32 checksum error
    (a corrupt byte on disk) is reported for that sample instead of raised.
    """
    path = Path(path)
    try:
        shard = open_shard(path)
    except Fer3dDataError as e:
        return [str(e)]
    with shard:
        f = shard.file
        n = len(shard)
        spec = shard.spec
        problems = [f"{path}: {p}" for p in _check_schema(f, spec, n)]
        if problems:
            return problems
        try:
            index = shard.index
        except OSError as e:
            return [f"{path}: /index cannot be read ({e})"]
        problems += [f"{path}: {p}" for p in _check_index(index)]
        for i in range(n):
            where = f"{path}: sample {i} ({index['sample_id'][i]})"
            s = {}
            for name in spec:
                try:
                    s[name] = f[name][i]
                except OSError as e:  # h5py raises on a Fletcher-32 mismatch or a bad chunk
                    problems.append(f"{where}: /{name} cannot be read "
                                    f"(checksum or corrupt chunk: {e})")
            if len(s) == len(spec):
                problems += [f"{where}: {p}" for p in _check_values(s)]
    return problems


