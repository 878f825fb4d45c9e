import importlib.util
import os

import numpy as np
import pytest

from fer3d_data import landmarks
from fer3d_data.errors import Fer3dDataError, ScanError
from fer3d_data.io.types import Landmarks
from fer3d_data.landmarks import BOSPHORUS_NAMES, canonical_points, group_points

pytest.importorskip("dlib")
astronaut = pytest.importorskip("skimage.data").astronaut


@pytest.fixture(scope="module")
def face():
    image = astronaut()
    return image, landmarks.face_boxes(image), landmarks.detect_dlib68(image)


def test_predictor_path_found_without_importing_the_package():
    import sys

    path = landmarks.dlib_predictor_path()
    assert path.endswith(os.path.join("models", "shape_predictor_68_face_landmarks.dat"))
    assert os.path.isfile(path)
    assert "face_recognition_models" not in sys.modules


def test_missing_model_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(Fer3dDataError, match=r"pip install fer3d\[dlib\]"):
        landmarks.dlib_predictor_path()


def test_astronaut_68_points_inside_the_face(face):
    image, boxes, points = face
    assert points.shape == (68, 2) and points.dtype == np.float64
    assert len(boxes) >= 1
    left, top, right, bottom = boxes[0]
    margin = 0.2 * (right - left)
    assert (points[:, 0] > left - margin).all() and (points[:, 0] < right + margin).all()
    assert (points[:, 1] > top - margin).all() and (points[:, 1] < bottom + margin).all()
    eyes, mouth = points[36:48], points[48:68]
    assert eyes[:, 1].max() < mouth[:, 1].min()
    assert points[36:42, 0].mean() < points[42:48, 0].mean()  # image-left eye first
    # The face in skimage's astronaut picture is in the upper-left part of the image.
    assert 100 < points[:, 0].mean() < 300 and 50 < points[:, 1].mean() < 250


def test_dlib_points_feed_the_dlib68_groups(face):
    _, _, points = face
    assert group_points(points, "dlib68", "mouth").shape == (20, 2)
    assert group_points(points, "dlib68", "nose").shape == (9, 2)


@pytest.mark.parametrize("kind", ["noise", "flat"])
def test_no_face_is_a_scan_error(kind):
    rng = np.random.default_rng(0)
    image = np.full((120, 120, 3), 90, np.uint8)
    if kind == "noise":
        image = rng.integers(0, 256, (120, 120, 3), dtype=np.uint8)
    with pytest.raises(ScanError, match="no face") as err:
        landmarks.detect_dlib68(image)
    assert err.value.step == "landmarks"


def test_bad_image_raises_value_error():
    with pytest.raises(ValueError, match="uint8 RGB"):
        landmarks.detect_dlib68(np.zeros((10, 10, 3), np.float32))


def test_canonical_points_reorders_by_name_and_fills_nan():
    lm = Landmarks(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]),
                   ("nose  TIP", "Outer left eyebrow", "Ear lobe (unknown name)"), "bosphorus")
    canon = canonical_points(lm)
    assert canon.shape == (len(BOSPHORUS_NAMES), 3) and BOSPHORUS_NAMES[13] == "Nose tip"
    np.testing.assert_array_equal(canon[BOSPHORUS_NAMES.index("Nose tip")], [1, 2, 3])
    np.testing.assert_array_equal(canon[0], [4, 5, 6])
    assert np.isnan(canon[1]).all() and np.isfinite(canon).all(axis=1).sum() == 2
