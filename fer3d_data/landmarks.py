"""Landmarks in a scheme's canonical order and region groups (:mod:`fer3d_data.schemes`),
and the dlib 68-point fallback for scans without native landmarks.

Stage: preprocessing, after the texture has been resampled onto the depth grid (the
detector runs on that aligned texture) and before the masks.

The fallback uses dlib's frontal face detector and the ``shape_predictor_68_face_landmarks``
model shipped by the ``face_recognition_models`` package (``pip install fer3d[dlib]``).
That predictor was trained on the iBUG 300-W data set, whose licence forbids commercial
use: landmarks it produces, and shards built from them, inherit that restriction.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from .constants import BOSPHORUS_LANDMARK_NAMES as BOSPHORUS_NAMES  # noqa: F401 - re-exported
from .errors import Fer3dDataError, ScanError
from .io.types import Landmarks
from .schemes import GROUPS, SCHEME_NAMES, Scheme, find_scheme  # noqa: F401 - re-exported


def _key(name: str) -> str:
    # Readers may differ in case and spacing of Bosphorus names; compare them normalised.
    return " ".join(name.split()).lower()


def canonical_points(landmarks: Landmarks) -> np.ndarray:
    """Landmarks -> (K, D) points in the canonical order of ``landmarks.scheme``.

    K = the scheme's point count (:func:`fer3d_data.schemes.get_scheme`); rows the scan
    does not have are NaN; names outside the scheme are dropped.

    >>> lm = Landmarks(np.array([[1.0, 2.0]]), ("Nose tip",), "bosphorus")
    >>> canonical_points(lm)[13].tolist()
    [1.0, 2.0]
    """
    scheme = find_scheme(landmarks.scheme)
    if scheme is None:
        raise ValueError(f"no canonical order for scheme {landmarks.scheme!r}")
    points = np.asarray(landmarks.points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] != len(landmarks.names):
        raise ValueError(f"landmarks: points {points.shape} but {len(landmarks.names)} names")
    row = {_key(name): i for i, name in enumerate(scheme.names)}
    out = np.full((len(row), points.shape[1]), np.nan)
    for name, point in zip(landmarks.names, points):
        if _key(name) in row:
            out[row[_key(name)]] = point
    return out


def group_points(points: np.ndarray, scheme: str | Scheme, group: str) -> np.ndarray:
    """(K, D) canonical points -> (k, D) finite points of one region group of ``scheme``
    (a name, a YAML path or a :class:`~fer3d_data.schemes.Scheme`).

    Groups: eye_left, eye_right, brow_left, brow_right, nose, mouth (a user's scheme may
    leave the brows empty).
    """
    found = find_scheme(scheme) if isinstance(scheme, str) else scheme
    if found is None:
        raise ValueError(f"no landmark groups for scheme {scheme!r}; known: {sorted(GROUPS)}")
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] != len(found.names):
        raise ValueError(f"{found.name} points must be ({len(found.names)}, D), "
                         f"got {points.shape}")
    index = {name: i for i, name in enumerate(found.names)}
    rows = points[[index[name] for name in found.groups.get(group, ())]]
    return rows[np.isfinite(rows).all(axis=1)]


def dlib_predictor_path() -> str:
    """Path of ``shape_predictor_68_face_landmarks.dat`` from ``face_recognition_models``.

    Located with importlib.util.find_spec: importing the package would import
    pkg_resources, which recent setuptools no longer ship.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise Fer3dDataError("dlib landmarks need the face_recognition_models package: "
                             "pip install fer3d[dlib]")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models",
                        "shape_predictor_68_face_landmarks.dat")
    if not os.path.isfile(path):
        raise Fer3dDataError(f"{path}: dlib 68-point model missing; "
                             "reinstall with pip install fer3d[dlib]")
    return path


@functools.lru_cache(maxsize=1)
def _dlib_models():
    # Loading the 100 MB predictor takes about a second: once per process.
    try:
        import dlib
    except ImportError as exc:
        raise Fer3dDataError("dlib landmarks need dlib: pip install fer3d[dlib]") from exc
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(dlib_predictor_path())


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


def face_boxes(image: np.ndarray, *, upsample: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (n, 4) int64 face boxes (left, top, right, bottom) in pixels,
    from dlib's HOG frontal face detector, largest first."""
    image = _check_rgb(image)
    detector, _ = _dlib_models()
    rects = detector(image, upsample)
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects],
                     dtype=np.int64).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-area, kind="stable")]


def detect_dlib68(image: np.ndarray, *, upsample: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (68, 2) float64 iBUG-68 points (x, y) in pixels of the largest face.

    Raises ScanError(step="landmarks") when the detector finds no face.

    >>> from skimage.data import astronaut
    >>> detect_dlib68(astronaut()).shape
    (68, 2)
    """
    image = _check_rgb(image)
    boxes = face_boxes(image, upsample=upsample)
    if len(boxes) == 0:
        raise ScanError("landmarks", "no face found by dlib's frontal face detector in the "
                                     f"{image.shape[1]}x{image.shape[0]} texture")
    import dlib  # already imported by _dlib_models

    _, predictor = _dlib_models()
    shape = predictor(image, dlib.rectangle(*(int(v) for v in boxes[0])))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
