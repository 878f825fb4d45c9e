"""Landmark readers: .bnd, .pse, .lm3, .lm2 layouts, the exported orders, every error."""

import numpy as np
import pytest

from fer3d_data.io import (
    BOSPHORUS_LANDMARK_NAMES,
    Landmarks,
    RawFormatError,
    load_bnd,
    load_lm2,
    load_lm3,
    load_pse,
)


def write(tmp_path, text, name, newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def bnd_text(rows=83):
    return "".join(f"{100 + i}\t\t{i}.5\t\t{-i}\t\t{2 * i}e0\n" for i in range(rows))


def test_bnd_83_rows(tmp_path):
    lm = load_bnd(write(tmp_path, bnd_text(), "F0001_AN01WH_F3D.bnd", newline="\r\n"))
    assert isinstance(lm, Landmarks) and lm.scheme == "bu3dfe83"
    assert lm.points.shape == (83, 3) and lm.points.dtype == np.float64
    assert lm.names == tuple(str(i) for i in range(1, 84))
    np.testing.assert_array_equal(lm.points[5], [5.5, -5, 10])
    np.testing.assert_array_equal(lm.extra["vertex_index"], np.arange(100, 183))
    assert lm.extra["vertex_index"].dtype == np.int64
    np.testing.assert_array_equal(lm.get("83"), [82.5, -82, 164])


def test_bnd_trailing_blank_lines_ignored(tmp_path):
    assert len(load_bnd(write(tmp_path, bnd_text() + "\n\n", "a.bnd"))) == 83


@pytest.mark.parametrize("text, problem", [
    (bnd_text(82), "82 landmark rows, expected 83"),
    (bnd_text(84), "84 landmark rows, expected 83"),
    (bnd_text().replace("3.5", "3.5 7", 1), "row 4 has 5 fields"),
    (bnd_text().replace("3.5", "x", 1), "non-numeric"),
    (bnd_text().replace("103", "-3", 1), "negative, fractional or out-of-range"),
    (bnd_text().replace("103", "1e300", 1), "negative, fractional or out-of-range"),
    ("", "empty file"),
    ("1\t2\x00\t3\t4\n", "binary"),
])
def test_bnd_errors(tmp_path, text, problem):
    path = write(tmp_path, text, "bad.bnd")
    with pytest.raises(RawFormatError, match=problem) as info:
        load_bnd(path)
    assert str(info.value).startswith(str(path))


PSE = "".join(f"{10 * i} {i} {i + 1} {i + 2}\n" for i in range(8))


def test_pse_with_and_without_normal(tmp_path):
    lm = load_pse(write(tmp_path, PSE, "F0001_AN01WH_RAW.pse"))
    assert lm.scheme == "bu3dfe_pse" and lm.points.shape == (8, 3) and "normal" not in lm.extra
    np.testing.assert_array_equal(lm.points[7], [7, 8, 9])
    np.testing.assert_array_equal(lm.extra["vertex_index"], np.arange(0, 80, 10))
    lm = load_pse(write(tmp_path, PSE + "n 0.1 -0.2 0.97\n", "b.pse", newline="\r\n"))
    np.testing.assert_array_equal(lm.extra["normal"], [0.1, -0.2, 0.97])
    assert lm.points.shape == (8, 3)


@pytest.mark.parametrize("text, problem", [
    (PSE[:PSE.rindex("70")], "7 pose points, expected 8"),
    (PSE + "n 1 2\n", "row 1 has 2 fields"),
    (PSE + "n 1 2 3\nn 1 2 3\n", "2 normal lines"),
])
def test_pse_errors(tmp_path, text, problem):
    path = write(tmp_path, text, "bad.pse")
    with pytest.raises(RawFormatError, match=problem) as info:
        load_pse(path)
    assert str(info.value).startswith(str(path))


def lm3_text(names, info=False):
    head = "# 3D Landmark File\n" + ("*\nsubject bs000\ncaptured 2008\n\n" if info else "\n")
    body = "".join(f"{n}\n{i}.5 {-i} {i * 2}\n" for i, n in enumerate(names))
    return head + f"{len(names)} landmarks:\n" + body


def lm2_text(names, count=None, info=False):
    head = "# 2D Landmark File\n" + ("*\nsome info\n\n" if info else "\n")
    return (head + f"{len(names) if count is None else count} landmarks\n\nLabels:\n"
            + "".join(n + "\n" for n in names) + "\n2D Image coordinates:\n"
            + "".join(f"{10 * i} {i}.25\n" for i in range(len(names))))


def test_lm3_keyed_by_name_crlf_and_info_block(tmp_path):
    names = [n for n in BOSPHORUS_LANDMARK_NAMES[:22] if n != "Nose tip"]   # an occluded point
    for info in (False, True):
        lm = load_lm3(write(tmp_path, lm3_text(names, info), "bs000_E_ANGER_0.lm3", newline="\r\n"))
        assert lm.scheme == "bosphorus" and lm.points.shape == (21, 3) and lm.names == tuple(names)
        assert lm.get("Nose tip") is None
        np.testing.assert_array_equal(lm.get("Chin middle"), [20.5, -20, 40])


def test_lm2_keyed_by_name_crlf_and_info_block(tmp_path):
    names = list(BOSPHORUS_LANDMARK_NAMES[:5])
    for info in (False, True):
        path = write(tmp_path, lm2_text(names, info=info), "bs000_E_ANGER_0.lm2", newline="\r\n")
        lm = load_lm2(path)
        assert lm.scheme == "bosphorus" and lm.points.shape == (5, 2) and lm.names == tuple(names)
        np.testing.assert_array_equal(lm.get("Inner right eyebrow"), [30, 3.25])


@pytest.mark.parametrize("loader, text, problem", [
    (load_lm3, lm3_text(["A", "B"]).replace("2 landmarks", "3 landmarks"),
     "header says 3 landmarks but 2 follow"),
    (load_lm3, lm3_text(["A", "B"]).replace("0.5 0 0", "0.5 0"), "row 1 has 2 fields"),
    (load_lm3, lm3_text(["A", "A"]), "'A' appears twice"),
    (load_lm3, lm3_text(["A"]).replace("1 landmarks:", "landmarks"), "missing 'N landmarks' line"),
    (load_lm3, lm3_text(["A"]).replace("# 3D Landmark File", "3D Landmark File"),
     "missing '# ... Landmark File'"),
    (load_lm2, lm2_text(["A", "B"], count=3),
     "header says 3 landmarks but 2 labels and 2 coordinates"),
    (load_lm2, lm2_text(["A", "B"]).replace("Labels:", "Names:"), "'Labels:' then"),
    (load_lm2, lm2_text(["A", "B"]).replace("10 1.25", "10 1.25 4"), "row 2 has 3 fields"),
    (load_lm2, "", "empty file"),
])
def test_bosphorus_errors(tmp_path, loader, text, problem):
    path = write(tmp_path, text, "bad.lm")
    with pytest.raises(RawFormatError, match=problem) as info:
        loader(path)
    assert str(info.value).startswith(str(path))


def test_bosphorus_name_order():
    assert len(BOSPHORUS_LANDMARK_NAMES) == 24 == len(set(BOSPHORUS_LANDMARK_NAMES))
    assert BOSPHORUS_LANDMARK_NAMES[13] == "Nose tip"
    assert BOSPHORUS_LANDMARK_NAMES[21] == "Chin middle"
    assert BOSPHORUS_LANDMARK_NAMES[-2:] == ("Left ear lobe", "Right ear lobe")
