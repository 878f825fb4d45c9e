"""Nose tip, sphere crop and frontal pose of one scan.

Stage: preprocessing steps 3-5, on cleaned points (mm, scan frame, face toward +z).
Convention: ``aligned = apply_pose(points, R, origin) = (points - origin) @ R.T``; the
rows of R are the face's x (viewer's right), y (up) and z (face normal, toward the
camera) axes, so in the aligned frame the nose tip is at 0 and larger z is closer.
"""

from __future__ import annotations

import numpy as np

from ..io.types import Landmarks
from ..landmarks import canonical_points, group_points
from ..schemes import find_scheme
from .clean import _check_points


def _is_3d(landmarks: Landmarks | None) -> bool:
    return landmarks is not None and np.shape(landmarks.points)[1:] == (3,)


def _landmark_group(landmarks: Landmarks | None, group: str) -> np.ndarray:
    """(k, 3) finite 3D points of one region group, empty when unavailable (no landmarks,
    2D landmarks, or a scheme without groups such as ``bu3dfe_pse``)."""
    if not _is_3d(landmarks) or find_scheme(landmarks.scheme) is None:
        return np.zeros((0, 3))
    return group_points(canonical_points(landmarks), landmarks.scheme, group)


def frontal_rotation(points: np.ndarray, landmarks: Landmarks | None = None) -> np.ndarray:
    """(N, 3) points (and optional 3D landmarks) -> (3, 3) rotation R making the face frontal.

    The face normal (row 2 of R) is the least-variance axis of the points (a least-squares
    plane fit), signed toward the camera (+z). The x axis is the eye line (centre of the
    image-left eye -> centre of the image-right eye) when both eyes have landmarks, else
    the scan's x axis, each projected onto the face plane; y = z × x points up.
    """
    points = _check_points(points)
    if len(points) < 3:
        raise ValueError(f"frontal_rotation needs at least 3 points, got {len(points)}")
    centred = points - points.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    normal = vectors[:, 0] if vectors[2, 0] >= 0 else -vectors[:, 0]
    left, right = _landmark_group(landmarks, "eye_left"), _landmark_group(landmarks, "eye_right")
    x = np.array([1.0, 0.0, 0.0])
    if len(left) and len(right):
        x = right.mean(axis=0) - left.mean(axis=0)
    x = x - (x @ normal) * normal
    if np.linalg.norm(x) < 1e-9:  # eye line (or x axis) along the normal: keep the scan's y up
        x = np.cross(np.array([0.0, 1.0, 0.0]), normal)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(normal, x), normal])


def apply_pose(points: np.ndarray, R: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """(N, 3) points, (3, 3) rotation, (3,) origin -> (N, 3) ``(points - origin) @ R.T``."""
    points, R, origin = _check_points(points), np.asarray(R, float), np.asarray(origin, float)
    if R.shape != (3, 3) or origin.shape != (3,):
        raise ValueError(f"apply_pose needs R (3, 3), origin (3,); got {R.shape}, {origin.shape}")
    return (points - origin) @ R.T


def crop_sphere(points: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """(N, 3) points, (3,) center, radius mm -> (N,) bool keep: within ``radius`` of ``center``."""
    points, center = _check_points(points), np.asarray(center, dtype=np.float64)
    if center.shape != (3,) or not radius > 0:
        raise ValueError(f"crop_sphere needs center (3,), radius > 0; got {center.shape}, {radius}")
    return np.einsum("ij,ij->i", points - center, points - center) <= radius * radius


def nose_tip(points: np.ndarray, landmarks: Landmarks | None = None, *, margin_mm: float = 10.0,
             centre_radius_mm: float = 50.0) -> np.ndarray:
    """(N, 3) points (and optional 3D landmarks in the same frame) -> (3,) nose tip, mm.

    1. The scheme's nose-tip landmark (Bosphorus ``Nose tip``) when the scan has it.
    2. The most prominent point (max z after a coarse frontal alignment) whose aligned xy
       lies in the nose landmarks' box grown by ``margin_mm`` (BU-3DFE rows 37-48;
       Bosphorus saddles and peaks).
    3. Else the most prominent point within ``centre_radius_mm`` (xy) of the cloud's median.
    """
    points = _check_points(points)
    if len(points) < 3:
        raise ValueError(f"nose_tip needs at least 3 points, got {len(points)}")
    scheme = find_scheme(landmarks.scheme) if _is_3d(landmarks) else None
    if scheme is not None and scheme.nose_tip is not None:
        tip = landmarks.get(scheme.nose_tip)
        if tip is not None and np.isfinite(tip).all():
            return np.asarray(tip, dtype=np.float64).copy()
    R, origin = frontal_rotation(points, landmarks), points.mean(axis=0)
    aligned = apply_pose(points, R, origin)
    nose = _landmark_group(landmarks, "nose")
    if len(nose):
        box = apply_pose(nose, R, origin)[:, :2]
        inside = np.all((aligned[:, :2] >= box.min(axis=0) - margin_mm)
                        & (aligned[:, :2] <= box.max(axis=0) + margin_mm), axis=1)
        if inside.any():
            return points[np.flatnonzero(inside)[np.argmax(aligned[inside, 2])]].copy()
    offset = aligned[:, :2] - np.median(aligned[:, :2], axis=0)
    near = np.linalg.norm(offset, axis=1) <= centre_radius_mm
    if not near.any():
        near[:] = True
    return points[np.flatnonzero(near)[np.argmax(aligned[near, 2])]].copy()
