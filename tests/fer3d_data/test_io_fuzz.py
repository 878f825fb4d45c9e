"""Corrupted raw files: every reader returns its result or raises RawFormatError naming the
file; no case takes over 2 s or claims memory out of proportion to its size.

The seeds are genuine-format files written by fer3d_data.synth (BU-3DFE mesh, landmarks and
texture; Bosphorus range grid, landmarks and texture; a JPEG) and a hand-written ``.pse``
(synth writes none). Hypothesis truncates, flips, deletes, splices random or self-copied
chunks and repeats a chunk up to 2,000 times (bracket nesting, digit runs); a numpy
RuntimeWarning (garbage through a cast) fails the case too. The default run
draws 250 cases per reader; ``pytest -m fuzz`` draws 3,000.
"""

import functools
import os
import tracemalloc

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer3d_data.io import (
    Landmarks,
    Mesh,
    RangeGrid,
    RawFormatError,
    load_bnd,
    load_bnt,
    load_image,
    load_lm2,
    load_lm3,
    load_pse,
    load_wrl,
)
from fer3d_data.synth import (
    build_bosphorus_scan,
    build_bu3dfe_scan,
    write_bosphorus_scan,
    write_bu3dfe_scan,
)

PSE = ("".join(f"{i} {i} {i} {i}\n" for i in range(8)) + "n 0 0 1\n").encode()

# Limits the fuzzed readers run under: small, so a header that claims the most it may
# still decodes quickly.
MAX_PIXELS = 1 << 20
# Memory one case may claim: proportional to the file, plus the largest image allowed
# (16-bit RGBA decoded, converted) and a fixed allowance for parser temporaries.
MEMORY_PER_BYTE, MEMORY_FIXED = 64, MAX_PIXELS * 16 + 8 * 2**20

_read_image = functools.partial(load_image, max_pixels=MAX_PIXELS)
_LOADERS = {"wrl": (load_wrl, Mesh), "bnd": (load_bnd, Landmarks), "pse": (load_pse, Landmarks),
            "bnt": (load_bnt, RangeGrid), "lm3": (load_lm3, Landmarks),
            "lm2": (load_lm2, Landmarks),
            "bmp": (_read_image, np.ndarray), "png": (_read_image, np.ndarray),
            "jpg": (_read_image, np.ndarray)}
READERS = sorted(_LOADERS)


@functools.cache
def seeds(folder: str) -> dict[str, bytes]:
    """suffix -> bytes of a small genuine-format file of that kind."""
    bu = build_bu3dfe_scan("F0001", "happiness", 4, vertices=80, texture_size=8, f2d_size=8)
    bs = build_bosphorus_scan("bs000", "anger", grid=(10, 8), texture_scale=1.0)
    files = (write_bu3dfe_scan(bu, folder, wrl_variants=("comments", "crlf"), skip=("f2d",))
             + write_bosphorus_scan(bs, folder, lm_variants=("info",)))
    out = {p.suffix[1:]: p.read_bytes() for p in files}
    out["pse"] = PSE
    out["jpg"] = cv2.imencode(".jpg", np.full((8, 12, 3), 90, np.uint8))[1].tobytes()
    return out


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    return seeds(str(tmp_path_factory.mktemp("seeds")))


@st.composite
def corrupted(draw, data: bytes):
    """``data`` after one to three random edits."""
    for _ in range(draw(st.integers(1, 3))):
        n = len(data)
        kind = draw(st.sampled_from(["truncate", "flip", "delete", "splice_random", "splice_self",
                                     "repeat"]))
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
        elif kind == "repeat":
            chunk = draw(st.sampled_from([b"[", b"{", b"#\n", b"9", b'"', b"[ 1 ", b"Group {"]))
            data = data[:at] + chunk * draw(st.integers(1, 2000)) + data[at:]
        elif n:
            start = draw(st.integers(0, n - 1))
            data = data[:at] + data[start:start + draw(st.integers(1, 64))] + data[at:]
    return data


@pytest.mark.parametrize("suffix", READERS)
def test_seed_files_read(suffix, genuine, tmp_path):
    loader, kind = _LOADERS[suffix]
    path = tmp_path / f"ok.{suffix}"
    path.write_bytes(genuine[suffix])
    assert isinstance(loader(path), kind)


def run_fuzz(suffix: str, data: bytes, folder, cases: int) -> None:
    """``cases`` corrupted copies of ``data``: a result or RawFormatError, in bounded memory;
    hypothesis' deadline fails any case over 2 s."""
    loader, kind = _LOADERS[suffix]
    path = os.path.join(folder, f"fuzz.{suffix}")

    @settings(max_examples=cases, deadline=2000, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(corrupted(data))
    def check(blob):
        with open(path, "wb") as f:
            f.write(blob)
        tracemalloc.start()  # traces the reader only, not hypothesis' own data
        try:
            assert isinstance(loader(path), kind)
        except RawFormatError as e:
            assert str(e).startswith(path)
        finally:
            claimed = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert claimed <= MEMORY_PER_BYTE * len(blob) + MEMORY_FIXED, (
            f"{claimed} bytes for {len(blob)}")

    check()


# a numpy warning in a reader means garbage went through (e.g. an overflowing cast)
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("suffix", READERS)
def test_corrupted_files_raise_only_raw_format_error(suffix, genuine, tmp_path):
    run_fuzz(suffix, genuine[suffix], tmp_path, 250)


@pytest.mark.fuzz
@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("suffix", READERS)
def test_corrupted_files_thousands(suffix, genuine, tmp_path):
    run_fuzz(suffix, genuine[suffix], tmp_path, 3000)
