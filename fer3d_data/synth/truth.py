"""Landmarks of the synthetic face and the ground truth of every scan the generators write.

Stage: synthetic data (tests, demo, dry runs). Landmarks are placed analytically on the
parametric face of :mod:`.face` (features, not fitted), then moved to a scan's frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import BOSPHORUS_FACE_LANDMARKS
from ..io.types import Landmarks
from ..schema import NEUTRAL
from .face import (
    DATASET_KEY,
    FaceParams,
    _brow_curve,
    _brow_ends,
    _eye_aperture,
    _jaw_drop,
    _mouth,
    face_height,
    face_params,
    subject_identity,
)

# A synthetic face has no ears: its scans name the 22 facial points.
BOSPHORUS_NAMES = BOSPHORUS_FACE_LANDMARKS
BU3DFE_NAMES = tuple(str(k) for k in range(1, 84))


def _xy_brow(p, side, t, dy):
    x_in, x_out = _brow_ends(p)
    x = side * (x_in + np.asarray(t) * (x_out - x_in))
    return x, _brow_curve(p, side, x)[0] + dy


def _xy_eye(p, side, angles_deg):
    ew, eh, ey = _eye_aperture(p)
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return side * p.identity.eye_x + ew * np.cos(a), ey + eh * np.sin(a)


def _xy_lip(p, u, which):
    x = np.asarray(u, dtype=np.float64) * (p.identity.mouth_w + p.deform.mouth_stretch)
    edges = _mouth(p, x)
    return x, edges[which]


def _raw_bu3dfe_xy(p: FaceParams) -> np.ndarray:
    """(83, 2) raw-frame (x, y) of the BU-3DFE landmarks, rows in .bnd order
    (docs/formats.md#landmark-schemes)."""
    i = p.identity
    t5 = np.linspace(0, 1, 5)
    parts = [
        _xy_eye(p, -1, [0, 45, 90, 135, 180, 225, 270, 315]),        # 1-8, 1 inner, 5 outer
        _xy_eye(p, 1, [180, 135, 90, 45, 0, 315, 270, 225]),         # 9-16, 9 inner, 13 outer
    ]
    for side in (-1, 1):                                              # 17-26, 27-36
        xu, yu = _xy_brow(p, side, t5, i.brow_thick)
        xl, yl = _xy_brow(p, side, t5[::-1], -i.brow_thick)
        parts.append((np.r_[xu, xl], np.r_[yu, yl]))
    w = i.nose_w + 3
    nose = np.array([[-8, 35], [-10, 18], [-13, 5], [-w, -5], [-12, -11], [-6, -13.5],
                     [0, -14.5], [6, -13.5], [w, -5], [13, 5], [10, 18], [8, 35]], float)
    parts.append((nose[:, 0], nose[:, 1]))                            # 37-48, 43 subnasale
    uo = np.array([-2, -1, 0, 1, 2]) / 3.0
    xs, ys = [], []
    for u, which in [([-1.0], 0), (uo, 2), ([1.0], 0), (uo[::-1], 4),  # 49-60 outer
                     ([-0.9], 0), ([-0.5, 0, 0.5], 1), ([0.9], 0), ([0.5, 0, -0.5], 3)]:
        x, y = _xy_lip(p, u, which)
        xs.append(x)
        ys.append(y)
    parts.append((np.concatenate(xs), np.concatenate(ys)))
    theta = np.deg2rad(165 + 15 * np.arange(15))                      # 69-83, 76 chin
    b = np.where(np.sin(theta) < 0, i.face_b + _jaw_drop(p), i.face_b)
    parts.append((0.96 * i.face_a * np.cos(theta), i.face_cy + 0.96 * b * np.sin(theta)))
    return np.concatenate([np.column_stack(pt) for pt in parts])


def _raw_bosphorus_xy(p: FaceParams) -> np.ndarray:
    """(22, 2) raw-frame (x, y) of :data:`BOSPHORUS_NAMES`; "left" = viewer's left (x < 0)."""
    i = p.identity
    ew, eh, ey = _eye_aperture(p)
    pts = [_xy_brow(p, -1, t, 0.0) for t in (1.0, 0.5, 0.0)]
    pts += [_xy_brow(p, 1, t, 0.0) for t in (0.0, 0.5, 1.0)]
    pts += [(-i.eye_x - ew, ey), (-i.eye_x + ew, ey), (i.eye_x - ew, ey), (i.eye_x + ew, ey),
            (-9.0, i.eye_y - 2), (9.0, i.eye_y - 2), (-(i.nose_w + 3), -5.0), (p.tip[0], p.tip[1]),
            (i.nose_w + 3, -5.0)]
    pts += [_xy_lip(p, [-1.0], 0), _xy_lip(p, [0.0], 2), _xy_lip(p, [1.0], 0),
            _xy_lip(p, [0.0], 1), _xy_lip(p, [0.0], 3), _xy_lip(p, [0.0], 4)]
    chin_y = i.chin_y + p.deform.chin_raise - _jaw_drop(p)
    pts.append((0.0, chin_y))
    return np.array([[float(np.ravel(x)[0]), float(np.ravel(y)[0])] for x, y in pts])


def face_landmarks(p: FaceParams, scheme: str) -> Landmarks:
    """Landmarks in the face frame, z on the surface: scheme "bu3dfe83" (83 rows, names
    "1".."83") or "bosphorus" (the 22 facial names of docs/formats.md#landmark-schemes)."""
    if scheme == "bu3dfe83":
        xy, names = _raw_bu3dfe_xy(p), BU3DFE_NAMES
    elif scheme == "bosphorus":
        xy, names = _raw_bosphorus_xy(p), BOSPHORUS_NAMES
    else:
        raise ValueError(f"unknown landmark scheme {scheme!r}")
    x, y = xy[:, 0] - p.tip[0], xy[:, 1] - p.tip[1]
    return Landmarks(np.column_stack([x, y, face_height(p, x, y)]), names, scheme)


@dataclass(frozen=True)
class ScanTruth:
    """Ground truth of one synthetic scan: scan frame = face frame + ``offset``.

    landmarks  analytic landmark positions in the scan frame (Landmarks, D = 3).
    """

    params: FaceParams
    offset: np.ndarray
    landmarks: Landmarks

    def height(self, x, y) -> np.ndarray:
        """Surface z at scan-frame (x, y)."""
        o = self.offset
        return face_height(self.params, np.asarray(x) - o[0], np.asarray(y) - o[1]) + o[2]

    @property
    def nose_tip(self) -> np.ndarray:
        """(3,) nose tip in the scan frame."""
        return self.offset.copy()


def scan_truth(dataset: str, subject: str, expression: str, intensity: float = 4, *,
               seed: int = 0, capture: int = 0) -> ScanTruth:
    """Ground truth of the scan the generators write for (subject, expression, intensity).

    ``capture`` is the Bosphorus repeat number ``k``. Bosphorus emotions are ungraded:
    their intensity is drawn in [3, 4] from the seed and the argument is ignored.
    """
    ident = subject_identity(seed, dataset, subject)
    key = [int(seed), DATASET_KEY[dataset], 99, capture] + [ord(c) for c in subject + expression]
    rng = np.random.default_rng(key + [int(intensity * 10)] if dataset == "bu3dfe" else key)
    if dataset == "bosphorus" and expression != NEUTRAL:
        intensity = float(rng.uniform(3.0, 4.0))
    p = face_params(ident, expression, intensity)
    offset = np.asarray(ident.offset) + rng.uniform(-2.0, 2.0, 3)
    lm = face_landmarks(p, "bu3dfe83" if dataset == "bu3dfe" else "bosphorus")
    return ScanTruth(p, offset, Landmarks(lm.points + offset, lm.names, lm.scheme))
