"""load_bnt: exact plane layout, row flip, validity rule and every header error."""

import struct

import numpy as np
import pytest

from fer3d_data.io import RangeGrid, RawFormatError, load_bnt

ZMIN = -1e9


def bnt_bytes(planes, name=b"bs000_E_ANGER_0.png", zmin=ZMIN, ndata=None):
    """planes (5, rows, cols) in file order (row 0 = bottom of the face)."""
    rows, cols = planes.shape[1:]
    ndata = planes.size if ndata is None else ndata
    return (struct.pack("<HHdH", rows, cols, zmin, len(name)) + name
            + struct.pack("<I", ndata) + planes.astype("<f8").tobytes())


def numbered_planes(rows=3, cols=4):
    return np.arange(5 * rows * cols, dtype=np.float64).reshape(5, rows, cols)


def write(tmp_path, data, name="bs000_E_ANGER_0.bnt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_planes_rows_flipped_and_fields(tmp_path):
    planes = numbered_planes()
    grid = load_bnt(write(tmp_path, bnt_bytes(planes)))
    assert isinstance(grid, RangeGrid)
    assert grid.xyz.shape == (3, 4, 3) and grid.uv.shape == (3, 4, 2) and grid.valid.shape == (3, 4)
    assert grid.xyz.dtype == np.float64 and grid.valid.dtype == bool
    # data[p*N + r*ncols + c] with r counted from the bottom: image row 0 = file row 2
    np.testing.assert_array_equal(grid.xyz[0, 0], [8, 20, 32])
    np.testing.assert_array_equal(grid.xyz[2, 3], [3, 15, 27])
    np.testing.assert_array_equal(grid.uv[0, 1], [45, 57])
    np.testing.assert_array_equal(grid.xyz[..., 2], planes[2, ::-1])
    assert grid.valid.all()
    assert grid.texture == "bs000_E_ANGER_0.png" and grid.zmin == ZMIN


def test_invalid_where_any_coordinate_is_zmin(tmp_path):
    planes = numbered_planes()
    planes[0, 0, 0] = ZMIN            # X only
    planes[2, 1, 3] = ZMIN            # Z only (seen in a genuine file)
    planes[:3, 2, 1] = ZMIN           # all three
    planes[3, 0, 2] = ZMIN            # U at zmin does not invalidate
    grid = load_bnt(write(tmp_path, bnt_bytes(planes)))
    expected = np.ones((3, 4), bool)
    expected[2, 0] = expected[1, 3] = expected[0, 1] = False   # rows flipped
    np.testing.assert_array_equal(grid.valid, expected)


def test_empty_texture_name_is_allowed(tmp_path):
    grid = load_bnt(write(tmp_path, bnt_bytes(numbered_planes(1, 1), name=b"")))
    assert grid.texture == "" and grid.xyz.shape == (1, 1, 3)


@pytest.mark.parametrize("data, problem", [
    (b"", "empty file"),
    (b"\x03\x00\x04\x00", "truncated header"),
    (bnt_bytes(numbered_planes())[:20], "truncated header"),
    (bnt_bytes(numbered_planes())[:-8], "truncated: 509 bytes, header implies 517"),
    (bnt_bytes(numbered_planes()) + b"\x00", "trailing bytes: 518 bytes, header implies 517"),
    (bnt_bytes(numbered_planes(), ndata=59), "ndata = 59 but 5 x 3 x 4 = 60"),
    (bnt_bytes(np.zeros((5, 0, 4))), r"empty grid \(0 rows x 4 columns\)"),
    (bnt_bytes(np.zeros((5, 2, 0))), r"empty grid \(2 rows x 0 columns\)"),
    (bnt_bytes(numbered_planes(), name="bs000é.png".encode()), "not printable ASCII"),
    (bnt_bytes(numbered_planes(), name=b"a\x00b.png"), "not printable ASCII"),
])
def test_errors_name_file_and_problem(tmp_path, data, problem):
    path = write(tmp_path, data, name="bad.bnt")
    with pytest.raises(RawFormatError, match=problem) as info:
        load_bnt(path)
    assert str(info.value).startswith(str(path))
