"""Corrupted raw files: only RawFormatError may escape a reader, and none may hang.

Valid bytes of each format are truncated, bit-flipped, cut and spliced with random or
self-copied chunks by hypothesis; every outcome must be a parsed result or RawFormatError.
"""

import os
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer3d_data.io import (Landmarks, Mesh, RangeGrid, RawFormatError, load_bnd, load_bnt, load_lm2,
                           load_lm3, load_pse, load_wrl)

WRL = b"""#VRML V2.0 utf8\r
# comment, with [ brackets ] and { braces }\r
DEF obj Transform { children [ Shape {\r
  appearance Appearance { texture ImageTexture { url "s_F3D.bmp" repeatS FALSE } }\r
  geometry IndexedFaceSet { ccw TRUE creaseAngle 1.57\r
    coord Coordinate { point [ 0 0 0, 1 0 0, 1 1 0, 0 1 0, 0.5 2.5e0 -1E-1 ] }\r
    coordIndex [ 0 1 2 -1, 0 2 3 4 -1, 1 2 3 4 0 -1 ]\r
    texCoord TextureCoordinate { point [ 0 0, 1 0, 1 1, 0 1, .5 .5, 0.25 0.75 ] }\r
    texCoordIndex [ 0 1 2 -1, 3 4 5 0 -1, 1 2 3 4 5 -1 ]\r
} } ] }\r
DEF cam Viewpoint { position 0 0 100 description "front" }\r
"""

_planes = np.arange(5 * 3 * 4, dtype="<f8")
_planes[7] = -1e9
BNT = (struct.pack("<HHdH", 3, 4, -1e9, 7) + b"tex.png" + struct.pack("<I", 60) + _planes.tobytes())
BND = "".join(f"{i}\t\t{i}.5\t\t-{i}.25\t\t{i}e-1\r\n" for i in range(83)).encode()
PSE = ("".join(f"{i} {i} {i} {i}\n" for i in range(8)) + "n 0 0 1\n").encode()
LM3 = (b"# 3D Landmark File\r\n*\r\ninfo text\r\n\r\n3 landmarks:\r\nNose tip\r\n1 2 3\r\n"
       b"Chin middle\r\n4 5.5 -6e1\r\nLeft mouth corner\r\n7 8 9\r\n")
LM2 = (b"# 2D Landmark File\r\n\r\n2 landmarks\r\n\r\nLabels:\r\nNose tip\r\nChin middle\r\n\r\n"
       b"2D Image coordinates:\r\n10.5 20\r\n30 40.25\r\n")

CASES = {"wrl": (load_wrl, WRL, Mesh), "bnt": (load_bnt, BNT, RangeGrid),
         "bnd": (load_bnd, BND, Landmarks), "pse": (load_pse, PSE, Landmarks),
         "lm3": (load_lm3, LM3, Landmarks), "lm2": (load_lm2, LM2, Landmarks)}


@st.composite
def corrupted(draw, data: bytes):
    """``data`` after one to three random edits."""
    for _ in range(draw(st.integers(1, 3))):
        n = len(data)
        kind = draw(st.sampled_from(["truncate", "flip", "delete", "splice_random", "splice_self"]))
        at = draw(st.integers(0, n))
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip" and n:
            at = min(at, n - 1)
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 16)):]
        elif kind == "splice_random":
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
        elif n:
            start = draw(st.integers(0, n - 1))
            data = data[:at] + data[start:start + draw(st.integers(1, 64))] + data[at:]
    return data


@pytest.mark.parametrize("suffix", sorted(CASES))
def test_valid_fixture_reads(suffix, tmp_path):
    loader, data, kind = CASES[suffix]
    path = tmp_path / f"ok.{suffix}"
    path.write_bytes(data)
    assert isinstance(loader(path), kind)


def fuzz(suffix):
    loader, data, kind = CASES[suffix]

    @settings(max_examples=100, deadline=2000, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(corrupted(data))
    def check(blob):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"fuzz.{suffix}")
            with open(path, "wb") as f:
                f.write(blob)
            try:
                assert isinstance(loader(path), kind)
            except RawFormatError as e:
                assert str(e).startswith(path)

    return check


@pytest.mark.parametrize("suffix", sorted(CASES))
def test_corrupted_bytes_raise_only_raw_format_error(suffix):
    fuzz(suffix)()
