"""Joining shards written by ``--shard i/n`` runs into one.

Stage: after preprocessing (``fer3d-prep merge``).
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
from .spec import _ERROR_CHUNK, _VLEN_STR, ERROR_COLUMNS, INDEX_DTYPES, _diff, _read_errors, tmp_path

def merge(out: str | os.PathLike, parts: Iterable[str | os.PathLike], *, overwrite: bool = False) -> Path:
    """Join shards of one config into a virtual-dataset file that reads as one shard.

    The parts stay where they are and are referenced by paths relative to ``out``'s folder
    (keep them together when moving). Their ``/errors`` rows are copied.
    """
    out = Path(out)
    parts = [Path(p) for p in parts]
    if not parts:
        raise Fer3dDataError("merge needs at least one part")
    if out.exists() and not overwrite:
        raise Fer3dDataError(f"{out}: exists; pass --overwrite to replace it")
    if out.resolve() in {p.resolve() for p in parts}:
        raise Fer3dDataError(f"{out}: is also one of the parts")
    shards = [open_shard(p) for p in parts]
    try:
        first = shards[0]
        for p, s in zip(parts[1:], shards[1:]):
            if s.config != first.config:
                raise Fer3dDataError(f"{p}: config differs from {parts[0]} ({_diff(first.config, s.config)})")
            if s.landmark_names != first.landmark_names or "parts" in s.attrs:
                raise Fer3dDataError(f"{p}: landmark scheme differs from {parts[0]}, or it is itself merged")
        ids = np.concatenate([s.index["sample_id"] for s in shards])
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise Fer3dDataError(f"parts share sample ids {uniq[counts > 1][:5].tolist()}")
        lengths = [len(s) for s in shards]
        total = sum(lengths)
        if total == 0:
            raise Fer3dDataError(f"every part is empty: {[str(p) for p in parts]}")
        rel = [os.path.relpath(p.resolve(), out.resolve().parent) for p in parts]
        names = list(Shard._array_names()) + [f"index/{c}" for c in INDEX_DTYPES]
        errors = [row for s in shards for row in _read_errors(s.file)]
        tmp = tmp_path(out)
        with h5py.File(tmp, "w") as f:
            f.attrs.update({k: v for k, v in first.file.attrs.items()})
            f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["parts"] = rel
            f.attrs["part_lengths"] = lengths
            f.create_dataset("config", data=json.dumps(first.config, sort_keys=True), dtype=_VLEN_STR)
            for name in names:
                src = first.file[name]
                layout = h5py.VirtualLayout(shape=(total, *src.shape[1:]), dtype=src.dtype)
                start = 0
                for r, s, k in zip(rel, shards, lengths):
                    if k:
                        layout[start:start + k] = h5py.VirtualSource(r, name, shape=(k, *src.shape[1:]), dtype=src.dtype)
                    start += k
                ds = f.create_virtual_dataset(name, layout)
                ds.attrs.update({k: v for k, v in src.attrs.items()})
            for j, name in enumerate(ERROR_COLUMNS):
                f.create_dataset(f"errors/{name}", data=np.array([e[j] for e in errors], dtype=object),
                                 dtype=_VLEN_STR, maxshape=(None,), chunks=(_ERROR_CHUNK,))
    finally:
        for s in shards:
            s.close()
    # Sealed once the parts are closed (HDF5 reopens them to read the virtual index); this
    # replaces the first part's digests copied with its attributes.
    with h5py.File(tmp, "r+") as f:
        digest.seal(f)
    os.replace(tmp, out)
    return out
