"""Native landmark readers: BU-3DFE ``.bnd`` (83 points) and ``.pse`` (8 pose points),
Bosphorus ``.lm3`` (3D) and ``.lm2`` (2D), each -> :class:`Landmarks`; and the generic
forms of a labelled folder: text rows ``[name] x y z`` and ``.npy`` (K, 3) arrays.

Stage: raw input. BU-3DFE points are kept by row (names "1".."83"); Bosphorus points are
keyed by name because occluded points are left out of a file.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np

from ..constants import BOSPHORUS_LANDMARK_NAMES  # noqa: F401 - re-exported by fer3d_data.io
from ..errors import RawFormatError
from ._common import DEFAULT_MAX_BYTES, MAX_NUMBER_CHARS, read_bytes, read_text_lines
from .types import Landmarks

BU3DFE_COUNT = 83
PSE_COUNT = 8

_COUNT_LINE = re.compile(r"^\s*(\d+)\s+landmarks?\s*:?\s*$", re.IGNORECASE)
_MAX_COUNT_DIGITS = 4  # a Bosphorus file holds at most 24 points


def load_bnd(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Landmarks:
    """Read an 83-row ``_F3D.bnd``: points (83, 3) mm, names "1".."83".

    Column 1 (a vertex index of 0- or 1-based convention) is kept in
    ``extra["vertex_index"]`` (83,) int64; use the coordinates, not the index.
    """
    lines = [line for line in read_text_lines(path, max_bytes=max_bytes) if line.strip()]
    rows = _numeric_rows(path, lines, 4, "index x y z")
    if len(rows) != BU3DFE_COUNT:
        raise RawFormatError(path, f"{len(rows)} landmark rows, expected {BU3DFE_COUNT}")
    return Landmarks(points=rows[:, 1:], names=tuple(str(i + 1) for i in range(BU3DFE_COUNT)),
                     scheme="bu3dfe83", extra={"vertex_index": _indices(path, rows[:, 0])})


def load_pse(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Landmarks:
    """Read a ``_RAW.pse``: 8 rows ``index x y z`` -> points (8, 3), names "1".."8".

    An optional line ``n x y z`` gives the pose normal, kept as ``extra["normal"]`` (3,).
    """
    lines = [line for line in read_text_lines(path, max_bytes=max_bytes) if line.strip()]
    normal_lines = [line for line in lines if line.split()[0].lower() == "n"]
    point_lines = [line for line in lines if line.split()[0].lower() != "n"]
    rows = _numeric_rows(path, point_lines, 4, "index x y z")
    if len(rows) != PSE_COUNT:
        raise RawFormatError(path, f"{len(rows)} pose points, expected {PSE_COUNT}")
    extra = {"vertex_index": _indices(path, rows[:, 0])}
    if len(normal_lines) > 1:
        raise RawFormatError(path, f"{len(normal_lines)} normal lines, at most 1 expected")
    if normal_lines:
        normal = " ".join(normal_lines[0].split()[1:])
        extra["normal"] = _numeric_rows(path, [normal], 3, "n x y z")[0]
    return Landmarks(points=rows[:, 1:], names=tuple(str(i + 1) for i in range(PSE_COUNT)),
                     scheme="bu3dfe_pse", extra=extra)


def load_lm3(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Landmarks:
    """Read a Bosphorus ``.lm3``: N (name line, "x y z" line) pairs -> points (N, 3) mm."""
    lines, count = _bosphorus_header(path, max_bytes)
    body = [line.strip() for line in lines if line.strip()]
    if len(body) != 2 * count:
        raise RawFormatError(path, f"header says {count} landmarks but {len(body) / 2:g} follow")
    names = body[0::2]
    points = _numeric_rows(path, body[1::2], 3, "x y z")
    return _named(path, points, names)


def load_lm2(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Landmarks:
    """Read a Bosphorus ``.lm2``: ``Labels:`` then N names, ``2D Image coordinates:`` then
    N "x y" lines -> points (N, 2) pixels, origin top-left."""
    lines, count = _bosphorus_header(path, max_bytes)
    sections = ("labels:", "2d image coordinates:")
    heads = [i for i, line in enumerate(lines) if line.strip().lower() in sections]
    if len(heads) != 2 or lines[heads[0]].strip().lower() != sections[0]:
        raise RawFormatError(path, "expected 'Labels:' then '2D Image coordinates:' sections")
    names = [line.strip() for line in lines[heads[0] + 1:heads[1]] if line.strip()]
    coords = [line for line in lines[heads[1] + 1:] if line.strip()]
    if len(names) != count or len(coords) != count:
        raise RawFormatError(path, f"header says {count} landmarks but {len(names)} labels "
                                   f"and {len(coords)} coordinates follow")
    return _named(path, _numeric_rows(path, coords, 2, "x y"), names)


def _bosphorus_header(path, max_bytes: int) -> tuple[list[str], int]:
    """Lines after the ``N landmarks`` line, and N; skips the optional ``*`` info block."""
    lines = read_text_lines(path, max_bytes=max_bytes)
    i = _skip_blank(lines, 0)
    if i == len(lines) or not lines[i].lstrip().startswith("#"):
        raise RawFormatError(path, "missing '# ... Landmark File' header line")
    i = _skip_blank(lines, i + 1)
    if i < len(lines) and lines[i].strip() == "*":  # info block: text up to an empty line
        while i < len(lines) and lines[i].strip():
            i += 1
        i = _skip_blank(lines, i)
    m = _COUNT_LINE.match(lines[i]) if i < len(lines) else None
    if m is None:
        raise RawFormatError(path, "missing 'N landmarks' line")
    if len(m.group(1)) > _MAX_COUNT_DIGITS:
        raise RawFormatError(path, f"landmark count of {len(m.group(1))} digits "
                                   f"(at most {_MAX_COUNT_DIGITS})")
    return lines[i + 1:], int(m.group(1))


def _skip_blank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _numeric_rows(path, lines: list[str], width: int, layout: str) -> np.ndarray:
    """(len(lines), width) float64 from whitespace-separated lines; anything else fails."""
    rows = [line.split() for line in lines]
    for k, row in enumerate(rows):
        if len(row) != width:
            raise RawFormatError(path, f"row {k + 1} has {len(row)} fields, expected '{layout}'")
        if max(map(len, row)) > MAX_NUMBER_CHARS:
            raise RawFormatError(path, f"row {k + 1} has a value over "
                                       f"{MAX_NUMBER_CHARS} characters")
    try:
        values = np.array(rows, dtype=np.float64).reshape(len(rows), width)
    except ValueError as e:
        raise RawFormatError(path, f"non-numeric value in '{layout}' rows ({e})") from None
    if not np.isfinite(values).all():
        raise RawFormatError(path, f"non-finite value in '{layout}' rows")
    return values


def _indices(path, column: np.ndarray) -> np.ndarray:
    """(K,) float column of vertex indices -> int64; fractional, negative or absurdly large
    values (a mesh has far fewer than 2**31 vertices) fail."""
    if (column < 0).any() or (column >= 2**31).any() or (column != np.round(column)).any():
        raise RawFormatError(path, "vertex index column holds a negative, fractional or "
                                   "out-of-range value")
    return column.astype(np.int64)


def _named(path, points: np.ndarray, names: list[str]) -> Landmarks:
    """Bosphorus Landmarks; a name given twice would make lookups ambiguous."""
    seen = set()
    for name in names:
        if name in seen:
            raise RawFormatError(path, f"landmark {name!r} appears twice")
        seen.add(name)
    return Landmarks(points=points, names=tuple(names), scheme="bosphorus")


def load_xyz(path: str | os.PathLike, *,
             max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Text landmarks: one point per line, ``x y z`` or ``name x y z`` (whitespace or commas;
    a name may hold spaces; ``#`` starts a comment) -> ((K, 3) float64, K names or None).

    Either every row is named or none is.
    """
    rows = [line.split("#", 1)[0].replace(",", " ").split()
            for line in read_text_lines(path, max_bytes=max_bytes)]
    rows = [r for r in rows if r]
    if not rows:
        raise RawFormatError(path, "no landmark rows")
    named = {len(r) > 3 for r in rows}
    if len(named) > 1 or any(len(r) < 3 for r in rows):
        raise RawFormatError(path, "every row must be 'x y z', or every row 'name x y z'")
    points = _numeric_rows(path, [" ".join(r[-3:]) for r in rows], 3, "x y z")
    return points, (tuple(" ".join(r[:-3]) for r in rows) if named.pop() else None)


def load_npy(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """A ``.npy`` array of K 3D points -> (K, 3) float64 (no pickled objects)."""
    try:
        points = np.load(io.BytesIO(read_bytes(path, max_bytes=max_bytes)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise RawFormatError(path, f"not a .npy array ({e})") from None
    if points.ndim != 2 or points.shape[1] != 3 or points.dtype.kind not in "iuf":
        raise RawFormatError(path, f"expected (K, 3) numbers, got {points.shape} {points.dtype}")
    if not np.isfinite(points).all():
        raise RawFormatError(path, "non-finite landmark coordinates")
    return points.astype(np.float64)
