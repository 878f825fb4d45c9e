"""Joining shards written by ``--shard i/n`` runs into one.

Stage: after preprocessing (``fer3d-prep merge``). By default the samples are copied into one
self-contained file (compressed chunks are copied as they are, without decoding); with
``virtual=True`` the output is an HDF5 virtual-dataset file that only references the parts,
which must then stay beside it (docs/shards.md).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from ..errors import Fer3dDataError
from . import digest
from .reader import Shard, open_shard
from .resume import open_h5
from .spec import (
    _ERROR_CHUNK,
    _VLEN_STR,
    ERROR_COLUMNS,
    INDEX_DTYPES,
    _diff,
    _read_errors,
    tmp_path,
)


def merge(out: str | os.PathLike, parts: Iterable[str | os.PathLike], *, overwrite: bool = False,
          virtual: bool = False) -> Path:
    """Join shards of one config into ``out``, which reads as one shard; returns ``out``.

    virtual  write a virtual-dataset file referencing the parts by paths relative to
             ``out``'s folder instead of copying them: instant and small, but the parts must
             stay beside it (a reader refuses it when one is missing).
    The parts' ``/errors`` rows are copied in both forms.
    """
    out, parts, tmp = Path(out), [Path(p) for p in parts], tmp_path(out)
    _check_paths(out, tmp, parts, overwrite)
    shards = [open_shard(p) for p in parts]
    try:
        _check_parts(parts, shards)
        f = open_h5(tmp, "x")  # exclusive: never over a file another process made meanwhile
    except BaseException:
        for s in shards:
            s.close()
        raise
    try:
        with f:
            _write_merged(f, out, parts, shards, virtual)
        for s in shards:
            s.close()
        # Sealed once the parts are closed (HDF5 reopens them to read the virtual index);
        # this replaces the first part's digests copied with its attributes.
        with open_h5(tmp, "r+") as f:
            digest.seal(f)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)  # ours: created exclusively above
        raise
    finally:
        for s in shards:
            s.close()
    return out


def _write_merged(f: h5py.File, out: Path, parts: list[Path], shards: list[Shard],
                  virtual: bool) -> None:
    """The merged file's attributes, /config, per-sample datasets and /errors."""
    first = shards[0]
    f.attrs.update({k: v for k, v in first.file.attrs.items()})
    f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    f.attrs["part_lengths"] = [len(s) for s in shards]
    f.create_dataset("config", data=json.dumps(first.config, sort_keys=True),
                     dtype=_VLEN_STR)
    names = list(first.spec) + [f"index/{c}" for c in INDEX_DTYPES]
    if virtual:
        rel = [os.path.relpath(p.resolve(), out.resolve().parent) for p in parts]
        f.attrs["parts"] = rel
        _write_virtual(f, names, shards, rel)
    else:
        f.attrs["merged_from"] = [p.name for p in parts]
        for name in names:
            _copy_rows(f, name, shards)
    errors = [row for s in shards for row in _read_errors(s.file)]
    for j, name in enumerate(ERROR_COLUMNS):
        column = np.array([e[j] for e in errors], dtype=object)
        f.create_dataset(f"errors/{name}", data=column,
                         dtype=_VLEN_STR, maxshape=(None,), chunks=(_ERROR_CHUNK,))


def _check_paths(out: Path, tmp: Path, parts: list[Path], overwrite: bool) -> None:
    """Refuse before opening anything: no parts, OUT present, or OUT.tmp present (another
    run's: HDF5 would empty it before its lock check), a part that is a .tmp."""
    if not parts:
        raise Fer3dDataError("merge needs at least one part")
    if out.exists() and not overwrite:
        raise Fer3dDataError(f"{out}: exists; pass --overwrite to replace it")
    if os.path.realpath(out) in {os.path.realpath(p) for p in parts}:  # never raises on a loop
        raise Fer3dDataError(f"{out}: is also one of the parts")
    if tmp.exists():
        raise Fer3dDataError(f"{tmp}: exists: a fer3d-prep run is writing {out.name}, or one "
                             "was interrupted (rerun it to finish) or a merge killed; choose "
                             "another OUT, or remove the .tmp if nothing writes it")
    unfinished = [p for p in parts if p.name.endswith(".tmp")]
    if unfinished:
        raise Fer3dDataError(f"{unfinished[0]}: an unfinished run's temporary file, not a "
                             "shard; rerun its fer3d-prep command to complete it, then merge "
                             "the finished shard")


def _check_parts(parts: list[Path], shards: list[Shard]) -> None:
    """Every part finished and intact (its digests), of one config, without shared ids."""
    first = shards[0]
    for p, s in zip(parts, shards):
        # the digests are sealed only when a writer completes: their absence marks a part a
        # killed or interrupted run left, and a mismatch one changed since
        sealed = digest.digest_problems(s.file)
        if sealed:
            raise Fer3dDataError(f"{p}: not a finished, intact shard: {sealed[0]}; rerun its "
                                 f"fer3d-prep command (or run fer3d-prep verify {p})")
        if s.config != first.config:
            raise Fer3dDataError(f"{p}: config differs from {parts[0]} "
                                 f"({_diff(first.config, s.config)})")
        if s.landmark_names != first.landmark_names:
            raise Fer3dDataError(f"{p}: landmark scheme differs from {parts[0]}")
        if s.class_names != first.class_names:
            raise Fer3dDataError(f"{p}: labels {list(s.class_names)} differ from {parts[0]}'s "
                                 f"{list(first.class_names)}")
        if "parts" in s.attrs:
            raise Fer3dDataError(f"{p}: is itself a virtual merged shard; merge its parts instead")
    ids = np.concatenate([s.index["sample_id"] for s in shards])
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise Fer3dDataError(f"parts share sample ids {uniq[counts > 1][:5].tolist()}")
    if len(ids) == 0:
        raise Fer3dDataError(f"every part is empty: {[str(p) for p in parts]}")


def _write_virtual(f: h5py.File, names: list[str], shards: list[Shard], rel: list[str]) -> None:
    total = sum(len(s) for s in shards)
    for name in names:
        src = shards[0].file[name]
        layout = h5py.VirtualLayout(shape=(total, *src.shape[1:]), dtype=src.dtype)
        start = 0
        for r, s in zip(rel, shards):
            k = len(s)
            if k:
                layout[start:start + k] = h5py.VirtualSource(r, name, shape=(k, *src.shape[1:]),
                                                             dtype=src.dtype)
            start += k
        ds = f.create_virtual_dataset(name, layout)
        ds.attrs.update({k: v for k, v in src.attrs.items()})


def _copy_rows(f: h5py.File, name: str, shards: list[Shard]) -> None:
    """Create ``name`` like the first part's (chunks, filters, attributes) and fill it.

    Per-sample datasets hold one sample per chunk: their compressed chunks are copied as
    stored (checksums included). The index columns are small and copied as arrays.
    """
    src = shards[0].file[name]
    total = sum(len(s) for s in shards)
    dst = f.create_dataset(name, shape=(total, *src.shape[1:]), maxshape=(None, *src.shape[1:]),
                           dtype=src.dtype, chunks=src.chunks, compression=src.compression,
                           compression_opts=src.compression_opts, shuffle=src.shuffle,
                           fletcher32=src.fletcher32)
    dst.attrs.update({k: v for k, v in src.attrs.items()})
    if src.chunks[0] != 1:
        dst[...] = np.concatenate([s.file[name][()] for s in shards])
        return
    row, zeros = 0, (0,) * (len(src.shape) - 1)
    for s in shards:
        part = s.file[name]
        for i in range(part.shape[0]):
            mask, chunk = part.id.read_direct_chunk((i, *zeros))
            dst.id.write_direct_chunk((row, *zeros), chunk, mask)
            row += 1
