"""Bosphorus ``.bnt`` range-grid reader -> :class:`RangeGrid`.

Stage: raw input. Layout (docs/formats.md#bnt; little-endian, no magic): uint16 nrows, uint16
ncols, float64 zmin, uint16 L, L ASCII bytes (texture name), uint32 ndata, then ndata
float64 = five planes X, Y, Z, U, V of nrows x ncols each, row 0 at the bottom of the face.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ..errors import RawFormatError
from ._common import DEFAULT_MAX_BYTES, read_bytes
from .types import RangeGrid

_PLANES = 5  # X, Y, Z, U, V


def load_bnt(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RangeGrid:
    """Read a ``.bnt`` file; rows are flipped so row 0 is the top of the face.

    Returns xyz (H, W, 3), uv (H, W, 2), valid (H, W) = no coordinate equals zmin.

    Example:
        >>> grid = load_bnt("bs000/bs000_E_ANGER_0.bnt")  # doctest: +SKIP
        >>> grid.xyz.shape, int(grid.valid.sum())  # doctest: +SKIP
        ((464, 331, 3), 35122)
    """
    data = read_bytes(path, max_bytes=max_bytes)
    if len(data) < 14:
        raise RawFormatError(path, f"truncated header ({len(data)} bytes)")
    nrows, ncols, zmin, name_len = struct.unpack_from("<HHdH", data, 0)
    if nrows == 0 or ncols == 0:
        raise RawFormatError(path, f"empty grid ({nrows} rows x {ncols} columns)")
    if len(data) < 18 + name_len:
        raise RawFormatError(path, f"truncated header ({len(data)} bytes, name of {name_len})")
    raw_name = data[14:14 + name_len]
    if not all(0x20 <= b < 0x7F for b in raw_name):
        raise RawFormatError(path, "texture name is not printable ASCII")
    (ndata,) = struct.unpack_from("<I", data, 14 + name_len)
    if ndata != _PLANES * nrows * ncols:
        raise RawFormatError(path, f"ndata = {ndata} but 5 x {nrows} x {ncols} = "
                                   f"{_PLANES * nrows * ncols}")
    expected = 18 + name_len + 8 * ndata
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "trailing bytes"
        raise RawFormatError(path, f"{state}: {len(data)} bytes, header implies {expected}")
    planes = np.frombuffer(data, dtype="<f8", count=ndata, offset=18 + name_len)
    planes = planes.reshape(_PLANES, nrows, ncols)[:, ::-1]  # row 0 = top, image order
    xyz = np.ascontiguousarray(np.moveaxis(planes[:3], 0, -1), dtype=np.float64)
    uv = np.ascontiguousarray(np.moveaxis(planes[3:], 0, -1), dtype=np.float64)
    valid = ~(xyz == zmin).any(axis=-1)
    return RangeGrid(xyz=xyz, uv=uv, valid=valid, texture=raw_name.decode("ascii"),
                     zmin=float(zmin))

