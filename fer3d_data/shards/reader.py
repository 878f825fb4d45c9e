"""Reading a shard (or a merged shard) with h5py and numpy only.

Stage: consumers of shards. :func:`open_shard` is the one reader every tool here uses.

>>> with open_shard("bu3dfe.h5") as shard:                # doctest: +SKIP
...     x = shard.sample(0)["depth"]                        # (S, S) float32 mm
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import Fer3dDataError
from ..schema import MASKS
from .spec import (
    ERROR_COLUMNS,
    INDEX_DTYPES,
    STRING_WIDTHS,
    _attr,
    _read_config,
    _read_errors,
    check_header,
    config_spec,
    missing_sources,
)


class Shard:
    """A shard opened for reading (torch-free). Use :func:`open_shard`.

    ``attrs``        root attributes as plain Python values.
    ``config``       the preprocessing config (dict).
    ``index``        column -> (N,) numpy array; strings decoded to ``str``.
    ``class_names``  names of the ``label`` codes, in code order.
    ``masks``        "landmarks", or "none" for a shard written with ``--masks none``.
    ``spec``         per-sample datasets: name -> (shape, stored dtype), /points included
                     when the shard holds point clouds.
    ``sample(i)``    dict of one sample's arrays plus its index row.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise Fer3dDataError(f"{self.path}: no such shard")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise Fer3dDataError(f"{self.path}: cannot be opened as HDF5 ({e})") from e
        try:
            check_header(self.file, self.path)
            self.attrs = {k: _attr(v) for k, v in self.file.attrs.items()}
            self.config = _read_config(self.file, self.path)
            if "landmarks" not in self.file:
                raise Fer3dDataError(f"{self.path}: missing dataset /landmarks")
            try:
                self.spec = config_spec(self.image_size, len(self.landmark_names), self.config)
            except (KeyError, ValueError, TypeError) as e:
                raise Fer3dDataError(f"{self.path}: unreadable image_size, landmark names or "
                                     f"depth_dtype ({e})") from None
            names = (*self.spec, *(f"index/{c}" for c in INDEX_DTYPES))
            missing = [n for n in names if n not in self.file]
            if missing:
                raise Fer3dDataError(f"{self.path}: missing datasets {missing}")
            check_parts(self.file, self.path)
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            # h5py on damaged bytes
            self.file.close()
            raise Fer3dDataError(f"{self.path}: corrupt: cannot read its header "
                                 f"({type(e).__name__}: {e})") from e
        except BaseException:
            self.file.close()
            raise
        self._index: dict[str, np.ndarray] | None = None


    def __len__(self) -> int:
        return self.file["index/sample_id"].shape[0]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.attrs["class_names"])

    @property
    def masks(self) -> str:
        return self.attrs.get("masks", MASKS[0])

    @property
    def image_size(self) -> int:
        return int(self.attrs["image_size"])

    @property
    def landmark_scheme(self) -> str:
        return _attr(self.file["landmarks"].attrs["scheme"])

    @property
    def landmark_names(self) -> tuple[str, ...]:
        return tuple(_attr(self.file["landmarks"].attrs["names"]))

    @property
    def index(self) -> dict[str, np.ndarray]:
        """column -> (N,) array; string columns as numpy ``str`` arrays."""
        if self._index is None:
            idx = {}
            for name in INDEX_DTYPES:
                ds = self.file[f"index/{name}"]
                idx[name] = np.array(ds.asstr()[()], dtype=str) if name in STRING_WIDTHS else ds[()]
            self._index = idx
        return self._index

    def sample(self, i: int) -> dict[str, Any]:
        """Arrays of sample ``i`` (shapes of docs/shards.md without N) and its index row."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.path}: sample {i} out of range for {n} samples")
        i = int(i) % n
        out: dict[str, Any] = {name: self.file[name][i] for name in self.spec}
        out.update({name: col[i].item() for name, col in self.index.items()})
        return out

    def errors(self) -> list[dict[str, str]]:
        """Failed scans: ``[{"source", "step", "message"}, ...]``."""
        return [dict(zip(ERROR_COLUMNS, row)) for row in _read_errors(self.file)]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "Shard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_shard(path: str | os.PathLike) -> Shard:
    """Open a shard (or a merged shard) for reading; raises :class:`Fer3dDataError` when the
    file is missing, not a fer3d shard, or of another ``format_version``."""
    return Shard(path)


def check_parts(f: h5py.File, path: Path) -> None:
    """Every part of a virtual (merged) shard ``f`` present, a shard, and as long and shaped
    as merged; else :class:`Fer3dDataError` naming the part. Nothing to do for a
    self-contained file.

    A virtual dataset silently reads fill values (zeros) where a part is missing or shorter
    than when it was merged, so every reader checks the parts before any read.
    """
    parts, lengths = _attr(f.attrs.get("parts", [])), _attr(f.attrs.get("part_lengths", []))
    if not parts:
        return
    gone = missing_sources(f, path)
    if gone:
        raise Fer3dDataError(
            f"{path}: virtual (merged) shard whose parts are missing: {', '.join(gone)}; keep "
            "the parts beside it, or merge without --virtual for one self-contained file")
    if len(parts) != len(lengths):
        raise Fer3dDataError(f"{path}: {len(parts)} parts but {len(lengths)} part_lengths")
    names = [n for n, ds in _datasets(f) if ds.is_virtual]
    for part, length in zip(parts, lengths):
        where = Path(path).parent / part
        try:
            with h5py.File(where, "r") as p:
                check_header(p, where)
                shapes = {n: p[n].shape if n in p else None for n in names}
        except OSError as e:
            raise Fer3dDataError(f"{path}: merged part {part} cannot be read ({e})") from e
        for n, shape in shapes.items():
            want = (int(length), *f[n].shape[1:])
            if shape != want:
                raise Fer3dDataError(f"{path}: merged part {part}: /{n} has shape {shape}, "
                                     f"the merge expects {want} (replaced or truncated part)")


def _datasets(f: h5py.File):
    """(name, dataset) of every dataset in ``f`` (one level of groups, as shards have)."""
    for name, item in f.items():
        if isinstance(item, h5py.Group):
            yield from ((f"{name}/{k}", d) for k, d in item.items() if isinstance(d, h5py.Dataset))
        else:
            yield name, item
