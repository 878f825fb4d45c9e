"""Checking a shard: schema, digests, index values, every chunk's checksum, per-sample values.

Stage: consumers of shards (``fer3d-prep verify``). Never raises on a damaged file: every
HDF5 error while reading is reported as corruption of the object being read.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import Fer3dDataError
from ..schema import CLASS_NAMES, NO_EXPRESSION
from . import digest
from .reader import open_shard
from .spec import ERROR_COLUMNS, INDEX_DTYPES, MASK_SOURCES, STRING_WIDTHS


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
        elif not ds.is_virtual and ds.id.get_num_chunks() != ds.shape[0]:
            problems.append(f"/{name}: {ds.shape[0] - ds.id.get_num_chunks()} of {ds.shape[0]} "
                            "samples have no stored chunk (they would read as zeros)")
    for name, dtype in INDEX_DTYPES.items():
        ds = f.get(f"index/{name}")
        if ds is None:
            problems.append(f"/index/{name}: missing")
        elif ds.shape != (n,):
            problems.append(f"/index/{name}: length {ds.shape[0]}, expected {n}")
        elif ((name in STRING_WIDTHS) != (ds.dtype.kind == "S")
              or (name not in STRING_WIDTHS and ds.dtype != dtype)):
            problems.append(f"/index/{name}: dtype {ds.dtype}, expected {dtype}")
        elif not ds.is_virtual and not ds.fletcher32:
            problems.append(f"/index/{name}: must carry fletcher32 checksums")
        elif not ds.is_virtual and ds.id.get_num_chunks() != -(-n // ds.chunks[0]):
            problems.append(f"/index/{name}: {ds.id.get_num_chunks()} stored chunks for {n} rows "
                            f"in chunks of {ds.chunks[0]}: rows without a stored chunk read as "
                            "zeros")
    lengths = {c: f[f"errors/{c}"].shape[0] for c in ERROR_COLUMNS if f"errors/{c}" in f}
    if len(lengths) != len(ERROR_COLUMNS) or len(set(lengths.values())) > 1:
        problems.append(f"/errors: columns {ERROR_COLUMNS} must all exist with equal lengths, "
                        f"got {lengths}")
    return problems


def _check_index(index: dict[str, np.ndarray], class_names: tuple[str, ...]) -> list[str]:
    problems = []
    ids, counts = np.unique(index["sample_id"], return_counts=True)
    if (counts > 1).any():
        problems.append(f"/index/sample_id: duplicated ids {ids[counts > 1][:5].tolist()}")
    for column, low, high in (("expression", NO_EXPRESSION, len(CLASS_NAMES) - 1),
                              ("label", 0, len(class_names) - 1)):
        bad = np.flatnonzero((index[column] < low) | (index[column] > high))
        if bad.size:
            problems.append(f"/index/{column}: codes outside {low}..{high} at rows "
                            f"{bad[:5].tolist()}")
    inten = index["intensity"]
    bad = np.flatnonzero((inten < -1) | (inten > 4))
    if bad.size:
        problems.append(f"/index/intensity: values outside -1..4 at rows {bad[:5].tolist()}")
    bad = np.flatnonzero(~np.isin(index["mask_source"], range(len(MASK_SOURCES))))
    if bad.size:
        problems.append(f"/index/mask_source: values outside 0..{len(MASK_SOURCES) - 1} at rows "
                        f"{bad[:5].tolist()}")
    return problems


def _check_values(s: dict[str, np.ndarray]) -> list[str]:
    """Problems of one sample's values (shapes already checked)."""
    problems = []  # depth: prep's depth sanity check (see _sample_problems)
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


# Seconds without progress after which verify gives up on a child stuck inside HDF5.
STALL_S = 30.0


def verify(path: str | os.PathLike, *, isolated: bool = True,
           stall_s: float = STALL_S) -> list[str]:
    """Every problem found in a shard, as readable strings; [] when it is sound.

    Checks the header and schema (datasets, shapes, dtypes, chunking, checksums present),
    the SHA-256 digests of ``/config``, ``/index``, ``/errors`` and every attribute stored
    at close, the index values, and reads every chunk of every sample: a Fletcher-32
    mismatch is reported for that sample; then each sample's values and prep's depth sanity
    check (finite, with relief over covered cells: docs/preprocessing.md), so a chunk lost
    to a corrupt chunk index (it reads as zeros) is caught. A merged shard's parts are
    checked by :func:`open_shard`.

    ``isolated``: read in a forked child process, because the HDF5 library can crash
    (segfault) or loop forever on some damaged files; a crash, or no progress for
    ``stall_s`` seconds (each sample is progress), is reported as corruption.
    """
    path = Path(path)
    if not isolated or "fork" not in multiprocessing.get_all_start_methods():
        return _verify_here(path, lambda: None)
    _sanity()  # imported here once, inherited by every child
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_verify_child, args=(path, send), daemon=True)
    child.start()
    send.close()
    try:
        return _answer(path, child, recv, stall_s)
    finally:
        child.kill()
        child.join()
        recv.close()


def _answer(path: Path, child, recv, stall_s: float) -> list[str]:
    """The child's problems, or the report of its crash or stall."""
    while True:
        if not recv.poll(stall_s):
            return [f"{path}: corrupt: reading it made no progress for {stall_s:g} s (the HDF5 "
                    "library loops on a damaged structure)"]
        try:
            kind, value = recv.recv()
        except EOFError:  # the child died without an answer
            child.join()
            return [f"{path}: corrupt: the HDF5 library crashed reading it "
                    f"(child exit {child.exitcode})"]
        if kind == "done":
            return value


def _verify_child(path: Path, send) -> None:
    faulthandler.disable()  # an HDF5 crash here is expected on damaged files and reported
    send.send(("done", _verify_here(path, lambda: send.send(("beat", None)))))
    send.close()


def _verify_here(path: Path, beat) -> list[str]:
    try:
        shard = open_shard(path)
    except Fer3dDataError as e:
        return [str(e)]
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:  # h5py on a damaged file
        return [f"{path}: corrupt: cannot read its header ({type(e).__name__}: {e})"]
    beat()
    with shard:
        try:
            return [f"{path}: {p}" for p in _verify_open(shard, beat)]
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
            return [f"{path}: corrupt: {type(e).__name__}: {e}"]


def _verify_open(shard, beat) -> list[str]:
    """Problems of an open shard; ``beat()`` after each step and each sample (progress)."""
    f, n = shard.file, len(shard)
    spec = shard.spec
    problems = _check_schema(f, spec, n)
    if problems:
        return problems
    problems += _guarded("digests", digest.digest_problems, f)
    beat()
    try:
        index = shard.index
    except (OSError, RuntimeError, ValueError, UnicodeDecodeError) as e:
        return problems + [f"/index cannot be read (checksum or corrupt chunk: {e})"]
    problems += _check_index(index, shard.class_names)
    for i in range(n):
        beat()
        problems += [f"sample {i} ({index['sample_id'][i]}): {p}"
                     for p in _sample_problems(f, spec, i, shard.config)]
    return problems


def _sanity():
    """prep's depth check, imported here: importing the prep package at module level would
    pull the whole pipeline (and a cycle through prep.runner) into every shard reader."""
    from ..prep.sanity import depth_problems

    return depth_problems


def _guarded(what: str, check, *args) -> list[str]:
    try:
        return check(*args)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        return [f"{what}: cannot be read (corrupt: {type(e).__name__}: {e})"]


def _sample_problems(f: h5py.File, spec: dict, i: int, config: dict) -> list[str]:
    """Read errors, value problems and sanity failures of sample ``i``."""
    depth_problems = _sanity()
    s, problems = {}, []
    for name in spec:
        try:
            s[name] = f[name][i]
        except (OSError, RuntimeError, ValueError) as e:  # a Fletcher-32 mismatch or a bad chunk
            problems.append(f"/{name} cannot be read (checksum or corrupt chunk: {e})")
    if len(s) == len(spec):
        problems += _check_values(s)
        problems += [f"sanity: {p}" for p in depth_problems(s["depth"], s["coverage"], config)]
    return problems
