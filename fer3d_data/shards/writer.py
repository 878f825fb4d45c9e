"""Writing a shard one sample at a time, resumable after a crash or Ctrl-C.

Stage: the end of preprocessing. :class:`ShardWriter` writes ``<out>.tmp`` (atomic rename on
completion); :mod:`.resume` decides before any work whether an existing file resumes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from .. import __version__
from ..errors import Fer3dDataError
from ..schema import CLASS_NAMES, FORMAT, FORMAT_VERSION, MASKS
from . import digest
from .resume import copy_finished, open_h5, preflight, refuse_if_locked
from .space import SpaceGuard
from .spec import (
    _ERROR_CHUNK,
    _INDEX_CHUNK,
    _VLEN_STR,
    DLIB_POINTS,
    ERROR_COLUMNS,
    INDEX_DTYPES,
    MASK_SOURCES,
    _config_dict,
    _read_errors,
    config_spec,
    index_row,
    tmp_path,
)


class ShardWriter:
    """Append samples to ``<path>.tmp``; :meth:`close` renames it to ``path``.

    An existing ``<path>.tmp`` with the same ``format_version``, config and landmark scheme
    is reopened and appended to (resume); a finished ``path`` is copied to ``<path>.tmp``
    first, so it is never moved or changed before the extended copy replaces it; anything
    else raises
    :class:`Fer3dDataError` at construction unless ``overwrite``. Every append is flushed,
    so a process killed between appends leaves a file the next run resumes.

    A full disk: an append that would leave less than its sample plus 1 MiB free raises
    ``OSError(ENOSPC)`` naming the file before writing anything; an HDF5 write failing on a
    full disk anyway raises the same. Every finished sample stays, and a rerun resumes:
    rows that cannot be read back at the end (a half-written last chunk) are dropped.

    ``label_names`` orders the classes: a sample's ``label`` (its ``expression`` when it has
    none) is stored as its position there (``/index/label``, root attribute ``class_names``).

    >>> with ShardWriter("out.h5", dataset="bu3dfe", cfg=cfg, image_size=224,   # doctest: +SKIP
    ...                  landmark_scheme="bu3dfe83", landmark_names=names) as w:
    ...     w.append(sample)
    """

    def __init__(self, path: str | os.PathLike, *, dataset: str, cfg: Any, image_size: int,
                 landmark_scheme: str, landmark_names: Iterable[str],
                 label_names: Iterable[str] = CLASS_NAMES, overwrite: bool = False):
        self.path = Path(path)
        self.label_names = tuple(str(n) for n in label_names)
        self.tmp = tmp_path(self.path)
        self.config = _config_dict(cfg)
        self.image_size = int(image_size)
        self.landmark_names = tuple(str(n) for n in landmark_names)
        self.spec = config_spec(self.image_size, len(self.landmark_names), self.config)
        self._sample_bytes = sum(int(np.prod(shape)) * dtype.itemsize
                                 for shape, dtype in self.spec.values())
        self._closed = self._broken = False
        self._handles: dict[str, h5py.Dataset] | None = None
        self._space = SpaceGuard(self.tmp)
        resume = preflight(self.path, config=cfg, landmark_scheme=landmark_scheme,
                           label_names=self.label_names, overwrite=overwrite)
        self._open(resume, dataset, landmark_scheme)
        try:  # once the file is ours (HDF5's lock): the ballast beside it is ours too
            self._space.reserve()
        except BaseException:
            self._abandon()
            raise

    def _open(self, resume: Path | None, dataset: str, landmark_scheme: str) -> None:
        if resume is None:
            refuse_if_locked(self.tmp)
            self.tmp.unlink(missing_ok=True)
            self._file = open_h5(self.tmp, "w")
            self._create(dataset, landmark_scheme)
        else:
            if resume == self.path:
                self._space.ensure(self.path.stat().st_size)
                copy_finished(self.path, self.tmp)
            self._file = open_h5(self.tmp, "r+", "; pass --overwrite to start afresh")
            digest.unseal(self._file)
        self._n = self._truncate_to_complete_rows()
        self._ids = set(self._file["index/sample_id"].asstr()[: self._n])
        self._errors = self._readable_errors()

    def _create(self, dataset: str, landmark_scheme: str) -> None:
        f = self._file
        f.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "dataset": dataset,
            "producer": f"fer3d_data {__version__}",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "image_size": self.image_size,
            "crop_radius": float(self.config.get("crop_radius", float("nan"))),
            "depth_units": "mm", "class_names": list(self.label_names),
            "masks": self.config.get("masks", MASKS[0]),
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
        f["index/label"].attrs["names"] = list(self.label_names)
        f["index/mask_source"].attrs["names"] = list(MASK_SOURCES)
        self._create_errors()
        f.flush()

    def _create_errors(self) -> None:
        for name in ERROR_COLUMNS:
            self._file.create_dataset(f"errors/{name}", shape=(0,), maxshape=(None,),
                                      dtype=_VLEN_STR, chunks=(_ERROR_CHUNK,))

    def _truncate_to_complete_rows(self) -> int:
        """Drop the rows not every dataset holds, then trailing rows that do not read back.

        A crash inside append() leaves some datasets a row longer than others; a full disk
        can leave the last row's chunks half written (a checksum or decompression error on
        read) or not stored at all while its extent grew. Rows are written arrays first,
        index last, each in its own chunk, so a finished row never shares a chunk with an
        unfinished one and is never dropped.
        """
        names = list(self.spec) + [f"index/{c}" for c in INDEX_DTYPES]
        n = min(self._file[name].shape[0] for name in names)
        while n and not self._row_reads(n - 1, names):
            n -= 1
        try:
            for name in names:
                if self._file[name].shape[0] != n:
                    self._file[name].resize(n, axis=0)
        except (OSError, RuntimeError, ValueError) as e:
            raise Fer3dDataError(f"{self.tmp}: cannot drop its unfinished rows ({e}); pass "
                                 "--overwrite to start afresh") from e
        return n

    def _row_reads(self, i: int, names: list[str]) -> bool:
        """Row ``i`` has a stored chunk in every dataset (a write lost on a full disk leaves
        none: it would read as zeros) and each decodes (checksum, decompression)."""
        try:
            for name in names:
                ds = self._file[name]
                if ds.id.get_chunk_info_by_coord((i,) + (0,) * (ds.ndim - 1)).byte_offset is None:
                    return False
                ds[i]
        except (OSError, RuntimeError, ValueError):  # h5py's errors for a chunk it cannot decode
            return False
        return True

    def _readable_errors(self) -> dict[str, tuple[str, str]]:
        """The error rows; an unreadable table (a full disk mid-rewrite) is emptied: its scans
        are not in the index, so the rerun retries them and records them again."""
        try:
            return {s: (st, m) for s, st, m in _read_errors(self._file)}
        except (OSError, RuntimeError, ValueError, UnicodeDecodeError):
            del self._file["errors"]
            self._create_errors()
            return {}

    def __len__(self) -> int:
        return self._n

    def existing_ids(self) -> set[str]:
        """sample_ids already in the shard (a resumed run skips them)."""
        return set(self._ids)

    def append(self, sample: Any) -> None:
        """Write one sample (a :class:`fer3d_data.prep.Sample` or anything with its fields)."""
        self._check_open()
        arrays, row = self._checked(sample)
        self._space.ensure(self._sample_bytes)
        with self._writing():
            self._write_row(arrays, row)
            # it failed before: no stale row
            if self._errors.pop(str(sample.source), None) is not None:
                self._write_errors()
            self._file.flush()
        self._n += 1
        self._ids.add(row["sample_id"].decode("utf-8"))

    def _write_row(self, arrays: dict, row: dict) -> None:
        # Arrays first and the index last: a sample counts once its whole row exists.
        n, ds = self._n, self._datasets()
        for name, a in arrays.items():
            ds[name].resize(n + 1, axis=0)
            ds[name][n] = a
        for name, value in row.items():
            ds[f"index/{name}"].resize(n + 1, axis=0)
            ds[f"index/{name}"][n] = value

    def _datasets(self) -> dict[str, h5py.Dataset]:
        """Open handles of the per-sample datasets, kept for the writer's life: a handle
        dropped after each write would flush its chunks in h5py's destructor, where a
        failed write (a full disk) is printed and ignored instead of raised by flush()."""
        if self._handles is None:
            names = list(self.spec) + [f"index/{c}" for c in INDEX_DTYPES]
            self._handles = {name: self._file[name] for name in names}
        return self._handles

    def _checked(self, sample: Any) -> tuple[dict, dict]:
        """(arrays in stored dtypes, index row) of a sample, or :class:`Fer3dDataError`.

        The one validation of a sample on its way into a shard: shapes and dtype kinds of the
        schema, an id not yet written, then the index row (:func:`~.spec.index_row`).
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
                                     f"{a.dtype}, the shard stores {shape} {dtype}")
            arrays[name] = a.astype(dtype, copy=False)
        return arrays, index_row(sample, self.label_names)

    def add_error(self, source: str, step: str, message: str) -> None:
        """Record a failed scan; a later error for the same source replaces this one."""
        self._check_open()
        self._space.ensure(len(str(message).encode("utf-8")) + len(str(source).encode("utf-8")))
        self._errors.pop(str(source), None)
        self._errors[str(source)] = (str(step), str(message))
        with self._writing():
            self._write_errors()
            self._file.flush()

    def _write_errors(self) -> None:
        rows = [(s, st, m) for s, (st, m) in self._errors.items()]
        for j, name in enumerate(ERROR_COLUMNS):
            ds = self._file[f"errors/{name}"]
            ds.resize(len(rows), axis=0)
            if rows:
                ds[:] = np.array([r[j] for r in rows], dtype=object)

    @contextlib.contextmanager
    def _writing(self):
        """A failed write leaves this writer broken (``close`` keeps the file for a rerun); a
        failure on a full disk, which h5py often reports as a filter or id error, becomes
        OSError(ENOSPC) naming the file."""
        try:
            yield
        except Exception as e:
            self._broken = True
            if (isinstance(e, (OSError, RuntimeError))
                    and self._space.is_full(e, self._sample_bytes)):
                raise self._space.enospc() from e
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise Fer3dDataError(f"{self.tmp}: writer is closed")
        if self._broken:
            raise Fer3dDataError(f"{self.tmp}: a write failed; rerun to resume from the kept file")

    def close(self, complete: bool = True) -> None:
        """Flush and close; with ``complete`` seal (digests) and rename ``<out>.tmp`` to
        ``<out>``, replacing a finished ``<out>`` at once (its readers keep their copy).

        After a failed write the file is closed as far as HDF5 can and kept, never renamed.
        """
        if self._closed:
            return
        self._closed = True
        if not self._broken:
            try:
                with self._writing():
                    if complete:  # the digests mark a finished shard (merge takes no other)
                        digest.seal(self._file)
                    self._file.flush()
            finally:
                if self._broken:
                    self._abandon()
            self._file.close()
            self._space.release()
            if complete:
                self._rename()
            return
        self._abandon()
        if complete:
            raise Fer3dDataError(f"{self.tmp}: a write failed; kept for a rerun to resume")

    def _rename(self) -> None:
        try:
            os.replace(self.tmp, self.path)
        except FileNotFoundError:
            raise Fer3dDataError(f"{self.tmp}: vanished before it could be renamed to {self.path} "
                                 "(deleted by another process?)") from None

    def _abandon(self) -> None:
        """Close a file whose last write failed; HDF5 may fail to flush it again: the rows
        already flushed are on disk and the next run drops the rest."""
        self._space.release()  # the room HDF5 needs to flush what it holds and close
        self._handles = None
        with contextlib.suppress(Exception):
            self._file.close()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)
