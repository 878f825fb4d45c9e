"""HDF5 shards: the documented output of fer3d_data (schema in docs/shards.md).

Stage: the end of preprocessing. :class:`ShardWriter` writes ``<out>.tmp`` one sample at a
time (atomic rename on completion, resumable after a crash or Ctrl-C); :func:`open_shard`
reads a shard (or a merged virtual shard) with h5py and numpy only; :func:`verify` checks
schema, values and every chunk's Fletcher-32 checksum; :func:`merge` joins shards written by
``--shard i/n`` runs; :func:`inspect` counts what a shard holds.

>>> with open_shard("bu3dfe.h5") as shard:                # doctest: +SKIP
...     x = shard.sample(0)["depth"]                        # (S, S) float32 mm
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import numpy as np

from . import __version__
from .errors import Fer3dDataError
from .schema import CLASS_CODE, CLASS_NAMES, FORMAT, FORMAT_VERSION

MASK_SOURCES = ("native", "dlib")
DLIB_POINTS = 68
# Fixed UTF-8 widths (bytes) of the string index columns.
STRING_WIDTHS = {"sample_id": 64, "subject": 16, "source": 256}
INDEX_DTYPES = {
    "sample_id": h5py.string_dtype("utf-8", STRING_WIDTHS["sample_id"]),
    "subject": h5py.string_dtype("utf-8", STRING_WIDTHS["subject"]),
    "expression": np.dtype(np.int8),
    "intensity": np.dtype(np.int8),
    "source": h5py.string_dtype("utf-8", STRING_WIDTHS["source"]),
    "mask_source": np.dtype(np.int8),
}
ERROR_COLUMNS = ("source", "step", "message")
_INDEX_CHUNK = 256
_ERROR_CHUNK = 64
_VLEN_STR = h5py.string_dtype("utf-8")


def array_spec(image_size: int, n_landmarks: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-sample datasets: name -> (shape of one sample, stored dtype). N is prepended."""
    S = int(image_size)
    return {
        "texture": ((S, S, 3), np.dtype(np.uint8)),
        "depth": ((S, S), np.dtype(np.float32)),
        "coverage": ((S, S), np.dtype(np.bool_)),
        "mask": ((S, S), np.dtype(np.uint8)),
        "regions": ((3, S, S), np.dtype(np.uint8)),
        "mask56": ((56, 56), np.dtype(np.float16)),
        "mask28": ((28, 28), np.dtype(np.float16)),
        "landmarks": ((int(n_landmarks), 2), np.dtype(np.float32)),
        "landmarks68": ((DLIB_POINTS, 2), np.dtype(np.float32)),
    }


def tmp_path(path: str | os.PathLike) -> Path:
    """Where a shard is written until complete: ``<out>.tmp``."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def _config_dict(cfg: Any) -> dict:
    """A PrepConfig (anything with ``to_dict``) or a mapping -> a JSON round-tripped dict."""
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return json.loads(json.dumps(d, sort_keys=True))


def _attr(value: Any) -> Any:
    """An HDF5 attribute value as plain Python (str, int, float, list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_config(f: h5py.File, path: Path) -> dict:
    if "config" not in f:
        raise Fer3dDataError(f"{path}: no /config dataset; not a complete fer3d shard")
    raw = f["config"][()]
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, AttributeError) as e:
        raise Fer3dDataError(f"{path}: /config is not valid JSON ({e})") from e


def check_header(f: h5py.File, path: Path) -> None:
    """Refuse a file that is not a fer3d shard of the version this package reads."""
    fmt = _attr(f.attrs.get("format"))
    if fmt != FORMAT:
        raise Fer3dDataError(f"{path}: not a {FORMAT} file (root attribute format={fmt!r})")
    version = _attr(f.attrs.get("format_version"))
    if version != FORMAT_VERSION:
        raise Fer3dDataError(
            f"{path}: {FORMAT} format_version {version} but this fer3d_data reads version "
            f"{FORMAT_VERSION}; rewrite it with this version's fer3d-prep (--overwrite)")


def _diff(old: Mapping, new: Mapping) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}"
                     for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>"))


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
            raise Fer3dDataError(f"{candidate}: exists but cannot be opened as HDF5 ({e}){hint}") from e
        with f:
            try:
                check_header(f, candidate)
            except Fer3dDataError as e:
                raise Fer3dDataError(f"{e}{hint}") from None
            if "parts" in f.attrs:
                raise Fer3dDataError(f"{candidate}: is a merged (virtual) shard and cannot be appended to{hint}")
            old = _read_config(f, candidate)
            scheme = _attr(f["landmarks"].attrs.get("scheme")) if "landmarks" in f else None
        if old != config:
            raise Fer3dDataError(f"{candidate}: was written with another config ({_diff(old, config)}){hint}")
        if scheme != landmark_scheme:
            raise Fer3dDataError(f"{candidate}: landmark scheme {scheme!r}, expected {landmark_scheme!r}{hint}")
        return candidate
    return None


def _encode(column: str, value: str) -> bytes:
    b = str(value).encode("utf-8")
    if len(b) > STRING_WIDTHS[column]:
        raise Fer3dDataError(f"index column {column} holds {STRING_WIDTHS[column]} UTF-8 bytes; "
                             f"{value!r} has {len(b)}")
    return b


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
        self.spec = array_spec(self.image_size, len(self.landmark_names))
        resume = preflight(self.path, config=self.config, landmark_scheme=landmark_scheme, overwrite=overwrite)
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
            "image_size": self.image_size, "crop_radius": float(self.config.get("crop_radius", float("nan"))),
            "depth_units": "mm", "class_names": list(CLASS_NAMES),
        })
        f.create_dataset("config", data=json.dumps(self.config, sort_keys=True), dtype=_VLEN_STR)
        compression = self.config.get("compression", "gzip")
        filters = {"shuffle": True, "fletcher32": True}
        if compression == "gzip":
            filters.update(compression="gzip", compression_opts=int(self.config.get("compression_level", 4)))
        elif compression == "lzf":
            filters.update(compression="lzf")
        for name, (shape, dtype) in self.spec.items():
            f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                             chunks=(1, *shape), **filters)
        f["landmarks"].attrs.update({"scheme": landmark_scheme, "names": list(self.landmark_names)})
        f["landmarks68"].attrs.update({"scheme": "dlib68", "names": [str(i) for i in range(DLIB_POINTS)]})
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
        """Write one sample (a :class:`fer3d_data.pipeline.Sample` or anything with its fields)."""
        self._check_open()
        sid = str(sample.sample_id)
        if sid in self._ids:
            raise Fer3dDataError(f"{self.tmp}: sample_id {sid!r} is already in the shard")
        arrays = {}
        for name, (shape, dtype) in self.spec.items():
            a = np.asarray(getattr(sample, name))
            if a.shape != shape:
                raise Fer3dDataError(f"sample {sid}: {name} has shape {a.shape}, the shard stores {shape}")
            arrays[name] = a.astype(dtype, copy=False)
        if sample.expression not in CLASS_CODE:
            raise Fer3dDataError(f"sample {sid}: unknown expression {sample.expression!r}; known {CLASS_NAMES}")
        row = {
            "sample_id": _encode("sample_id", sid), "subject": _encode("subject", sample.subject),
            "expression": CLASS_CODE[sample.expression], "intensity": int(sample.intensity),
            "source": _encode("source", sample.source), "mask_source": int(sample.mask_source),
        }
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


def _read_errors(f: h5py.File) -> list[tuple[str, str, str]]:
    if "errors" not in f:
        return []
    cols = [f[f"errors/{c}"].asstr()[()] if f[f"errors/{c}"].shape[0] else [] for c in ERROR_COLUMNS]
    return list(zip(*[list(c) for c in cols]))


class Shard:
    """A shard opened for reading (torch-free). Use :func:`open_shard`.

    ``attrs``        root attributes as plain Python values.
    ``config``       the preprocessing config (dict).
    ``index``        column -> (N,) numpy array; strings decoded to ``str``.
    ``class_names``  names of the ``expression`` codes.
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
            missing = [n for n in (*self._array_names(), *(f"index/{c}" for c in INDEX_DTYPES)) if n not in self.file]
            if missing:
                raise Fer3dDataError(f"{self.path}: missing datasets {missing}")
            for part in self.attrs.get("parts", []):
                # A virtual dataset silently reads fill values when a part is gone.
                if not (self.path.parent / part).exists():
                    raise Fer3dDataError(f"{self.path}: merged part {part} is missing")
        except BaseException:
            self.file.close()
            raise
        self._index: dict[str, np.ndarray] | None = None

    @staticmethod
    def _array_names() -> tuple[str, ...]:
        return tuple(array_spec(2, 1))

    def __len__(self) -> int:
        return self.file["index/sample_id"].shape[0]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.attrs["class_names"])

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
        out: dict[str, Any] = {name: self.file[name][i] for name in self._array_names()}
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


# ----------------------------------------------------------------------------------------
# verify, inspect, merge
# ----------------------------------------------------------------------------------------

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
        elif (name in STRING_WIDTHS) != (ds.dtype.kind == "S") or (name not in STRING_WIDTHS and ds.dtype != dtype):
            problems.append(f"/index/{name}: dtype {ds.dtype}, expected {dtype}")
    lengths = {c: f[f"errors/{c}"].shape[0] for c in ERROR_COLUMNS if f"errors/{c}" in f}
    if len(lengths) != len(ERROR_COLUMNS) or len(set(lengths.values())) > 1:
        problems.append(f"/errors: columns {ERROR_COLUMNS} must all exist with equal lengths, got {lengths}")
    return problems


def _check_index(index: dict[str, np.ndarray]) -> list[str]:
    problems = []
    ids, counts = np.unique(index["sample_id"], return_counts=True)
    if (counts > 1).any():
        problems.append(f"/index/sample_id: duplicated ids {ids[counts > 1][:5].tolist()}")
    expr = index["expression"]
    bad = np.flatnonzero((expr < 0) | (expr >= len(CLASS_NAMES)))
    if bad.size:
        problems.append(f"/index/expression: codes outside 0..{len(CLASS_NAMES) - 1} at rows {bad[:5].tolist()}")
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
    err = np.abs(_area_resize_half(s["mask56"].astype(np.float32)) - s["mask28"].astype(np.float32)).max()
    if err > 2e-3:  # float16 storage rounds to ~5e-4
        problems.append(f"mask28 differs from the area-resize of mask56 by {err:.4f}")
    for name in ("landmarks", "landmarks68"):
        if np.isinf(s[name]).any():
            problems.append(f"{name} has infinite values (missing points must be NaN)")
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
        try:
            spec = array_spec(shard.image_size, len(shard.landmark_names))
        except (KeyError, ValueError) as e:
            return [f"{path}: unreadable image_size or landmark names ({e})"]
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
                    problems.append(f"{where}: /{name} cannot be read (checksum or corrupt chunk: {e})")
            if len(s) == len(spec):
                problems += [f"{where}: {p}" for p in _check_values(s)]
    return problems


def inspect(path: str | os.PathLike) -> dict[str, Any]:
    """Counts of a shard: samples per subject, expression and intensity, errors per step."""
    with open_shard(path) as shard:
        idx = shard.index
        errors = shard.errors()
        return {
            "path": str(path),
            "complete": not str(path).endswith(".tmp"),
            "format_version": shard.attrs["format_version"],
            "dataset": shard.attrs["dataset"],
            "producer": shard.attrs.get("producer"),
            "created": shard.attrs.get("created"),
            "image_size": shard.image_size,
            "landmark_scheme": shard.landmark_scheme,
            "parts": shard.attrs.get("parts", []),
            "n_samples": len(shard),
            "n_subjects": int(len(np.unique(idx["subject"]))),
            "by_expression": {shard.class_names[k]: v for k, v in sorted(Counter(idx["expression"].tolist()).items())},
            "by_intensity": dict(sorted(Counter(idx["intensity"].tolist()).items())),
            "by_subject": dict(sorted(Counter(idx["subject"].tolist()).items())),
            "by_mask_source": {MASK_SOURCES[k]: v for k, v in sorted(Counter(idx["mask_source"].tolist()).items())},
            "n_errors": len(errors),
            "errors_by_step": dict(sorted(Counter(e["step"] for e in errors).items())),
            "config": shard.config,
        }


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
        os.replace(tmp, out)
    finally:
        for s in shards:
            s.close()
    return out
