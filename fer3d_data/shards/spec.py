"""What a shard holds: names, shapes, dtypes, the header check and small HDF5 helpers.

Stage: HDF5 shard schema (docs/shards.md). Every other module of :mod:`fer3d_data.shards`
takes its facts from here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from ..errors import Fer3dDataError
from ..schema import CLASS_CODE, CLASS_NAMES, FORMAT, FORMAT_VERSION, NO_EXPRESSION, NO_FRAME

# /index/mask_source codes: masks from native landmarks, from dlib's, or none (--masks none).
MASK_SOURCES = ("native", "dlib", "none")
DLIB_POINTS = 68
# Fixed UTF-8 widths (bytes) of the string index columns.
STRING_WIDTHS = {"sample_id": 64, "subject": 16, "source": 256, "sequence": 64}
INDEX_DTYPES = {
    "sample_id": h5py.string_dtype("utf-8", STRING_WIDTHS["sample_id"]),
    "subject": h5py.string_dtype("utf-8", STRING_WIDTHS["subject"]),
    "expression": np.dtype(np.int8),
    "intensity": np.dtype(np.int8),
    "source": h5py.string_dtype("utf-8", STRING_WIDTHS["source"]),
    "mask_source": np.dtype(np.int8),
    "label": np.dtype(np.int16),
    "sequence": h5py.string_dtype("utf-8", STRING_WIDTHS["sequence"]),
    "frame": np.dtype(np.int32),
}
ERROR_COLUMNS = ("source", "step", "message")
# One row per chunk: a finished row never shares a chunk with one being written (resume
# after a full disk drops only unfinished rows).
_INDEX_CHUNK = 1
_ERROR_CHUNK = 64
_VLEN_STR = h5py.string_dtype("utf-8")


# Stored dtypes /depth may have (PrepConfig.depth_dtype); float16 halves its size.
DEPTH_DTYPES = ("float32", "float16")


def array_spec(image_size: int, n_landmarks: int, *, depth_dtype: str = "float32",
               points: int = 0) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-sample datasets: name -> (shape of one sample, stored dtype). N is prepended.

    ``/points`` (P, 3) exists only in shards written with ``points`` P > 0.
    """
    S = int(image_size)
    spec = {
        "texture": ((S, S, 3), np.dtype(np.uint8)),
        "depth": ((S, S), np.dtype(depth_dtype)),
        "coverage": ((S, S), np.dtype(np.bool_)),
        "mask": ((S, S), np.dtype(np.uint8)),
        "regions": ((3, S, S), np.dtype(np.uint8)),
        "mask56": ((56, 56), np.dtype(np.float16)),
        "mask28": ((28, 28), np.dtype(np.float16)),
        "landmarks": ((int(n_landmarks), 2), np.dtype(np.float32)),
        "landmarks68": ((DLIB_POINTS, 2), np.dtype(np.float32)),
    }
    if int(points) > 0:
        spec["points"] = ((int(points), 3), np.dtype(np.float32))
    return spec


def config_spec(image_size: int, n_landmarks: int, config: Mapping) -> dict:
    """:func:`array_spec` of a shard written with preprocessing ``config`` (its /config)."""
    return array_spec(image_size, n_landmarks, depth_dtype=config.get("depth_dtype", "float32"),
                      points=int(config.get("points", 0)))


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


def missing_sources(f: h5py.File, path: Path) -> list[str]:
    """Source files of ``f``'s virtual datasets that do not exist beside ``path`` (sorted).

    A source that HDF5 cannot find reads as fill values (zeros, empty ids) without any error,
    so every reader here refuses such a file; sources must sit beside the virtual file.
    """
    names = set()
    for ds in f.values():
        items = ds.values() if isinstance(ds, h5py.Group) else [ds]
        for d in items:
            if isinstance(d, h5py.Dataset) and d.is_virtual:
                names.update(vs.file_name for vs in d.virtual_sources() if vs.file_name != ".")
    folder = Path(path).parent
    return sorted(n for n in names if not (folder / n).exists())  # folder / absolute = absolute


def _diff(old: Mapping, new: Mapping) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}"
                     for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>"))


def _encode(column: str, value: str) -> bytes:
    b = str(value).encode("utf-8")
    if len(b) > STRING_WIDTHS[column]:
        raise Fer3dDataError(f"index column {column} holds {STRING_WIDTHS[column]} UTF-8 bytes; "
                             f"{value!r} has {len(b)}")
    return b


def index_row(sample: Any, label_names: tuple[str, ...]) -> dict:
    """The ``/index`` row of a sample (a :class:`fer3d_data.prep.Sample` or anything with its
    fields; ``label``, ``sequence`` and ``frame`` may be absent), or :class:`Fer3dDataError`
    naming the sample: a label outside ``label_names``, an expression outside CLASS_NAMES,
    a mask source out of range, a string too wide for its column."""
    sid = str(sample.sample_id)
    label = getattr(sample, "label", None)
    label = sample.expression if label is None else label
    if label not in label_names:
        raise Fer3dDataError(f"sample {sid}: label {label!r} is not one of this shard's labels "
                             f"{list(label_names)}")
    if sample.expression is not None and sample.expression not in CLASS_CODE:
        raise Fer3dDataError(f"sample {sid}: unknown expression {sample.expression!r}; "
                             f"known {CLASS_NAMES}")
    if int(sample.mask_source) not in range(len(MASK_SOURCES)):
        raise Fer3dDataError(f"sample {sid}: mask_source must be one of "
                             f"0..{len(MASK_SOURCES) - 1}, got {sample.mask_source}")
    return {
        "sample_id": _encode("sample_id", sid), "subject": _encode("subject", sample.subject),
        "expression": (NO_EXPRESSION if sample.expression is None
                       else CLASS_CODE[sample.expression]),
        "intensity": int(sample.intensity), "source": _encode("source", sample.source),
        "mask_source": int(sample.mask_source), "label": label_names.index(label),
        "sequence": _encode("sequence", getattr(sample, "sequence", "")),
        "frame": int(getattr(sample, "frame", NO_FRAME)),
    }


def _read_errors(f: h5py.File) -> list[tuple[str, str, str]]:
    if "errors" not in f:
        return []
    cols = [f[f"errors/{c}"].asstr()[()] if f[f"errors/{c}"].shape[0] else []
            for c in ERROR_COLUMNS]
    return list(zip(*[list(c) for c in cols]))


