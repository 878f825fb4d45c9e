"""Writing a shard one sample at a time, resumable after a crash or Ctrl-C.

Stage: the end of preprocessing. :class:`ShardWriter` writes ``<out>.tmp`` (atomic rename on
completion); :func:`preflight` decides before any work whether an existing file resumes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from .. import __version__
from ..errors import Fer3dDataError
from ..schema import CLASS_CODE, CLASS_NAMES, FORMAT, FORMAT_VERSION
from .spec import (
    _ERROR_CHUNK,
    _INDEX_CHUNK,
    _VLEN_STR,
    DLIB_POINTS,
    ERROR_COLUMNS,
    INDEX_DTYPES,
    MASK_SOURCES,
    _attr,
    _config_dict,
    _diff,
    _encode,
    _read_config,
    _read_errors,
    check_header,
    config_spec,
    tmp_path,
)


def preflight(path: str | os.PathLike, *, config: Any, landmark_scheme: str,
              overwrite: bool = False) -> Path | None:
    """The existing file a writer would resume (``<out>.tmp`` first, then ``<out>``), or None.

    Raises :class:`Fer3dDataError` before any work when that file cannot be resumed: not a
    shard, another ``format_version``, a merged file, another config or landmark scheme.
    With ``overwrite`` nothing is checked and None is returned (the writer starts afresh).
    """
    path = Path(path)
    if overwrite:
        return None
    config = _config_dict(config)
    for candidate in (tmp_path(path), path):
        if not candidate.exists():
            continue
        hint = "; pass --overwrite (overwrite=True) to replace it, or choose another output"
        try:
            f = h5py.File(candidate, "r")
        except OSError as e:
            raise Fer3dDataError(f"{candidate}: exists but cannot be opened as HDF5 "
                                 f"({e}){hint}") from e
        with f:
            try:
                check_header(f, candidate)
            except Fer3dDataError as e:
                raise Fer3dDataError(f"{e}{hint}") from None
            if "parts" in f.attrs:
                raise Fer3dDataError(f"{candidate}: is a merged (virtual) shard and cannot be "
                                     f"appended to{hint}")
            old = _read_config(f, candidate)
            scheme = _attr(f["landmarks"].attrs.get("scheme")) if "landmarks" in f else None
        if old != config:
            raise Fer3dDataError(f"{candidate}: was written with another config "
                                 f"({_diff(old, config)}){hint}")
        if scheme != landmark_scheme:
            raise Fer3dDataError(f"{candidate}: landmark scheme {scheme!r}, "
                                 f"expected {landmark_scheme!r}{hint}")
        return candidate
    return None


class ShardWriter:
    """Append samples to ``<path>.tmp``; :meth:`close` renames it to ``path``.

    An existing ``<path>.tmp`` or ``path`` with the same ``format_version``, config and
    landmark scheme is reopened and appended to (resume); anything else raises
    :class:`Fer3dDataError` at construction unless ``overwrite``. Every append is flushed,
    so a process killed between appends leaves a file the next run resumes.

    >>> with ShardWriter("out.h5", dataset="bu3dfe", cfg=cfg, image_size=224,   # doctest: +SKIP
    ...                  landmark_scheme="bu3dfe83", landmark_names=names) as w:
    ...     w.append(sample)
    """

    def __init__(self, path: str | os.PathLike, *, dataset: str, cfg: Any, image_size: int,
                 landmark_scheme: str, landmark_names: Iterable[str], overwrite: bool = False):
        self.path = Path(path)
        self.tmp = tmp_path(self.path)
        self.config = _config_dict(cfg)
        self.image_size = int(image_size)
        self.landmark_names = tuple(str(n) for n in landmark_names)
        self.spec = config_spec(self.image_size, len(self.landmark_names), self.config)
        resume = preflight(self.path, config=self.config, landmark_scheme=landmark_scheme,
                           overwrite=overwrite)
        if resume is None:
            self.tmp.unlink(missing_ok=True)
            self._file = h5py.File(self.tmp, "w")
            self._create(dataset, landmark_scheme)
        else:
            if resume == self.path:  # a complete shard being extended: it is a tmp again until done
                os.replace(self.path, self.tmp)
            self._file = h5py.File(self.tmp, "r+")
        self._n = self._truncate_to_complete_rows()
        self._ids = set(self._file["index/sample_id"].asstr()[: self._n])
        self._errors = {s: (st, m) for s, st, m in _read_errors(self._file)}
        self._closed = False

    def _create(self, dataset: str, landmark_scheme: str) -> None:
        f = self._file
        f.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "dataset": dataset,
            "producer": f"fer3d_data {__version__}",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "image_size": self.image_size,
            "crop_radius": float(self.config.get("crop_radius", float("nan"))),
            "depth_units": "mm", "class_names": list(CLASS_NAMES),
        })
        f.create_dataset("config", data=json.dumps(self.config, sort_keys=True), dtype=_VLEN_STR)
        compression = self.config.get("compression", "gzip")
        filters = {"shuffle": True, "fletcher32": True}
        if compression == "gzip":
            filters.update(compression="gzip",
                           compression_opts=int(self.config.get("compression_level", 4)))
        elif compression == "lzf":
            filters.update(compression="lzf")
        for name, (shape, dtype) in self.spec.items():
            f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                             chunks=(1, *shape), **filters)
        f["landmarks"].attrs.update({"scheme": landmark_scheme, "names": list(self.landmark_names)})
        f["landmarks68"].attrs.update({"scheme": "dlib68",
                                       "names": [str(i) for i in range(DLIB_POINTS)]})
        for name, dtype in INDEX_DTYPES.items():
            f.create_dataset(f"index/{name}", shape=(0,), maxshape=(None,), dtype=dtype,
                             chunks=(_INDEX_CHUNK,), **filters)
        f["index/expression"].attrs["names"] = list(CLASS_NAMES)
        f["index/mask_source"].attrs["names"] = list(MASK_SOURCES)
        for name in ERROR_COLUMNS:
            f.create_dataset(f"errors/{name}", shape=(0,), maxshape=(None,), dtype=_VLEN_STR,
                             chunks=(_ERROR_CHUNK,))
        f.flush()

    def _truncate_to_complete_rows(self) -> int:
        # A crash inside append() can leave some datasets one row longer than others: the
        # rows every dataset holds are the complete samples, the rest is dropped.
        names = list(self.spec) + [f"index/{c}" for c in INDEX_DTYPES]
        n = min(self._file[name].shape[0] for name in names)
        for name in names:
            if self._file[name].shape[0] != n:
                self._file[name].resize(n, axis=0)
        return n

    def __len__(self) -> int:
        return self._n

    def existing_ids(self) -> set[str]:
        """sample_ids already in the shard (a resumed run skips them)."""
        return set(self._ids)

    def append(self, sample: Any) -> None:
        """Write one sample (a :class:`fer3d_data.prep.Sample` or anything with its fields)."""
        self._check_open()
        arrays, row = self._checked(sample)
        sid = row["sample_id"].decode("utf-8")
        n = self._n
        f = self._file
        # Arrays first and the index last: a sample counts once its whole row exists.
        for name, a in arrays.items():
            f[name].resize(n + 1, axis=0)
            f[name][n] = a
        for name, value in row.items():
            f[f"index/{name}"].resize(n + 1, axis=0)
            f[f"index/{name}"][n] = value
        self._n = n + 1
        self._ids.add(sid)
        if self._errors.pop(str(sample.source), None) is not None:  # it failed before: no stale row
            self._write_errors()
        f.flush()

    def _checked(self, sample: Any) -> tuple[dict, dict]:
        """(arrays in stored dtypes, index row) of a sample, or :class:`Fer3dDataError`.

        The one validation of a sample on its way into a shard: shapes and dtype kinds of the
        schema, a known expression, a mask source in range, an id not yet written.
        """
        sid = str(sample.sample_id)
        if sid in self._ids:
            raise Fer3dDataError(f"{self.tmp}: sample_id {sid!r} is already in the shard")
        arrays = {}
        for name, (shape, dtype) in self.spec.items():
            a = np.asarray(getattr(sample, name))
            # same_kind: float64 depth may be stored as float32, float texture never as uint8
            if a.shape != shape or not np.can_cast(a.dtype, dtype, "same_kind"):
                raise Fer3dDataError(f"sample {sid}: {name} has shape {a.shape} and dtype "
                                     f"{a.dtype}, "
                                     f"the shard stores {shape} {dtype}")
            arrays[name] = a.astype(dtype, copy=False)
        if sample.expression not in CLASS_CODE:
            raise Fer3dDataError(f"sample {sid}: unknown expression {sample.expression!r}; "
                                 f"known {CLASS_NAMES}")
        if int(sample.mask_source) not in range(len(MASK_SOURCES)):
            raise Fer3dDataError(f"sample {sid}: mask_source must be one of "
                                 f"0..{len(MASK_SOURCES) - 1}, "
                                 f"got {sample.mask_source}")
        row = {
            "sample_id": _encode("sample_id", sid), "subject": _encode("subject", sample.subject),
            "expression": CLASS_CODE[sample.expression], "intensity": int(sample.intensity),
            "source": _encode("source", sample.source), "mask_source": int(sample.mask_source),
        }
        return arrays, row

    def add_error(self, source: str, step: str, message: str) -> None:
        """Record a failed scan; a later error for the same source replaces this one."""
        self._check_open()
        self._errors.pop(str(source), None)
        self._errors[str(source)] = (str(step), str(message))
        self._write_errors()
        self._file.flush()

    def _write_errors(self) -> None:
        rows = [(s, st, m) for s, (st, m) in self._errors.items()]
        for j, name in enumerate(ERROR_COLUMNS):
            ds = self._file[f"errors/{name}"]
            ds.resize(len(rows), axis=0)
            if rows:
                ds[:] = np.array([r[j] for r in rows], dtype=object)

    def _check_open(self) -> None:
        if self._closed:
            raise Fer3dDataError(f"{self.tmp}: writer is closed")

    def close(self, complete: bool = True) -> None:
        """Flush and close; with ``complete`` rename ``<out>.tmp`` to ``<out>``."""
        if self._closed:
            return
        self._closed = True
        self._file.flush()
        self._file.close()
        if complete:
            os.replace(self.tmp, self.path)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)


