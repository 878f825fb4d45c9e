"""The parametric synthetic face: identity + expression -> analytic surface and albedo.

Stage: synthetic data (tests, demo, dry runs). Face frame: mm, +x the viewer's right, +y up,
the face looks toward +z, the nose tip at (0, 0, 0). A scan's frame is the face frame
translated by a per-scan offset; landmarks and that ground truth are in :mod:`.truth`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from ..constants import BU3DFE_RACE_CODES
from ..schema import EXPRESSIONS, NEUTRAL

DATASET_KEY = {"bu3dfe": 1, "bosphorus": 2, "folder": 3}


@dataclass(frozen=True)
class Identity:
    """Per-subject shape (mm) and colours (RGB in [0, 1]); drawn by :func:`subject_identity`."""

    head_a: float  # head ellipsoid semi-axes (x, y, z) and centre height
    head_b: float
    head_c: float
    head_cy: float
    face_a: float  # face outline ellipse (mesh / grid validity): semi-axes and centre y
    face_b: float
    face_cy: float
    eye_x: float
    eye_y: float
    eye_w: float  # half width / half height of the eye opening
    eye_h: float
    socket_d: float
    brow_y: float
    brow_h: float
    brow_arch: float
    brow_thick: float
    tip_h: float
    bridge_h: float
    nose_w: float
    ala_h: float
    cheek_h: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_low: float
    lip_h: float
    chin_y: float
    chin_h: float
    skin: tuple
    lip_rgb: tuple
    brow_rgb: tuple
    iris_rgb: tuple
    offset: tuple  # subject's scan-frame translation (mm)
    race: str


@dataclass(frozen=True)
class Deformation:
    """Expression displacements (mm, or a relative change for ``eye_open``/``lip_press``)."""

    brow_raise: float = 0.0
    brow_inner: float = 0.0
    brow_together: float = 0.0
    eye_open: float = 0.0
    corner_dy: float = 0.0
    mouth_stretch: float = 0.0
    mouth_open: float = 0.0
    lip_press: float = 0.0
    upper_lip_raise: float = 0.0
    nose_wrinkle: float = 0.0
    cheek_raise: float = 0.0
    chin_raise: float = 0.0


# Full (intensity 4) deformation of each expression, after FACS prototypes: each class
# moves a different combination of brows, eyes, mouth corners, jaw and lips.
EXPRESSION_DEFORMATIONS = {
    "anger": Deformation(brow_raise=-4, brow_inner=-3, brow_together=4, eye_open=-0.2,
                         corner_dy=-1.5, mouth_stretch=-4, lip_press=0.45),
    "disgust": Deformation(brow_raise=-2, brow_inner=-1, brow_together=2, eye_open=-0.4,
                           corner_dy=-2.5, mouth_stretch=-1, mouth_open=1.5,
                           upper_lip_raise=4, nose_wrinkle=4),
    "fear": Deformation(brow_raise=4, brow_inner=3, brow_together=3, eye_open=0.45,
                        corner_dy=-1.5, mouth_stretch=6, mouth_open=6),
    "happiness": Deformation(brow_raise=0.5, eye_open=-0.45, corner_dy=6, mouth_stretch=9,
                             mouth_open=3.5, cheek_raise=5),
    "sadness": Deformation(brow_inner=5, brow_together=2, eye_open=-0.25, corner_dy=-5,
                           mouth_stretch=-2, chin_raise=3),
    "surprise": Deformation(brow_raise=8, eye_open=0.6, mouth_stretch=-7, mouth_open=16),
}


@dataclass(frozen=True)
class FaceParams:
    """One face: identity, expression and the raw-frame position of its nose tip.

    ``tip`` = (x, y, z) of the height field's maximum near the nose before the shift that
    puts it at the origin of the face frame.
    """

    identity: Identity
    expression: str
    intensity: float
    deform: Deformation
    tip: tuple = (0.0, 0.0, 0.0)


def subject_identity(seed: int, dataset: str, subject: str) -> Identity:
    """Seeded identity of ``subject`` ("F0001", "bs003"): the same for all its scans."""
    key = [int(seed), DATASET_KEY[dataset]] + [ord(ch) for ch in subject]
    rng = np.random.default_rng(key)

    def u(lo, hi):
        return float(rng.uniform(lo, hi))

    tone = u(0.0, 1.0)
    skin = tuple(np.array([0.93, 0.78, 0.66]) * (1 - tone) + np.array([0.45, 0.30, 0.22]) * tone)
    eye_y = u(32, 35)
    return Identity(
        head_a=u(78, 86), head_b=u(120, 130), head_c=u(80, 92), head_cy=u(0, 6),
        face_a=u(66, 72), face_b=u(86, 92), face_cy=u(-8, -5),
        eye_x=u(30, 34), eye_y=eye_y, eye_w=u(12, 14), eye_h=u(4.5, 5.5), socket_d=u(6, 9),
        brow_y=eye_y + u(13, 16), brow_h=u(3, 5), brow_arch=u(2, 4), brow_thick=u(2.3, 3.2),
        tip_h=u(17, 21), bridge_h=u(8, 11), nose_w=u(13, 16), ala_h=u(4, 6), cheek_h=u(3, 5),
        mouth_y=u(-34, -31), mouth_w=u(22, 26), lip_up=u(5.5, 7.5), lip_low=u(7, 9),
        lip_h=u(3, 4), chin_y=u(-70, -64), chin_h=u(5, 8),
        skin=skin,
        lip_rgb=tuple(np.clip(np.array(skin) * np.array([0.95, 0.55, 0.55]) + [0.1, 0, 0], 0, 1)),
        brow_rgb=tuple(np.array([0.16, 0.11, 0.08]) * u(0.6, 1.4)),
        iris_rgb=tuple(rng.uniform(0.1, 0.5, 3)),
        offset=(u(-15, 15), u(-10, 30), u(-40, 40)),
        race=BU3DFE_RACE_CODES[int(rng.integers(len(BU3DFE_RACE_CODES)))],
    )


def deformation(expression: str, intensity: float) -> Deformation:
    """Deformation of ``expression`` at ``intensity`` 1..4 (linear in intensity); neutral: none."""
    if expression == NEUTRAL:
        return Deformation()
    if expression not in EXPRESSION_DEFORMATIONS:
        raise ValueError(f"unknown expression {expression!r}; expected one of {EXPRESSIONS}")
    if not 0 < intensity <= 4:
        raise ValueError(f"intensity must be in (0, 4], got {intensity}")
    full = EXPRESSION_DEFORMATIONS[expression]
    return Deformation(**{f.name: getattr(full, f.name) * intensity / 4.0 for f in fields(full)})


def face_params(identity: Identity, expression: str, intensity: float = 4) -> FaceParams:
    """Identity + expression, with the nose tip located (the field's local maximum)."""
    return posed_face(identity, expression, float(intensity if expression != NEUTRAL else 0),
                      deformation(expression, intensity))


def posed_face(identity: Identity, name: str, intensity: float, deform: Deformation) -> FaceParams:
    """Identity + any deformation (a class of a labelled folder), nose tip located."""
    p = FaceParams(identity, name, float(intensity), deform)
    return replace(p, tip=_find_tip(p))


def _find_tip(p: FaceParams) -> tuple:
    # Coarse-to-fine 21x21 grid searches for the maximum of the raw field near the nose.
    cx, cy = 0.0, 0.0
    for step in (0.4, 0.04, 0.004):
        g = step * np.arange(-10, 11)
        gx, gy = np.meshgrid(cx + g, cy + g)
        k = np.argmax(_height_raw(p, gx, gy))
        cx, cy = float(gx.flat[k]), float(gy.flat[k])
    return (cx, cy, float(_height_raw(p, np.array(cx), np.array(cy))))


# ---------------------------------------------------------------- raw-frame geometry


def _g(dx, dy, sx, sy):
    return np.exp(-0.5 * ((dx / sx) ** 2 + (dy / sy) ** 2))


def _jaw_drop(p: FaceParams) -> float:
    return 0.7 * p.deform.mouth_open


def _jaw_warp(p: FaceParams, y):
    """y at which the neutral lower face is evaluated (below the mouth: moved with the jaw)."""
    s = np.clip((p.identity.mouth_y - y) / 12.0, 0.0, 1.0)
    return y + _jaw_drop(p) * s * s * (3 - 2 * s)


def _eye_aperture(p: FaceParams):
    """(half width, half height, centre y) of the eye opening."""
    i, d = p.identity, p.deform
    return i.eye_w, i.eye_h * (1 + d.eye_open), i.eye_y + 0.15 * d.cheek_raise


def _brow_ends(p: FaceParams):
    i, d = p.identity, p.deform
    return 11.0 - d.brow_together, i.eye_x + i.eye_w + 2 - 0.3 * d.brow_together


def _brow_curve(p: FaceParams, side: int, x):
    """Brow centre line on one side (-1 viewer's left, +1 right): (y, weight, t)."""
    i, d = p.identity, p.deform
    x_in, x_out = _brow_ends(p)
    t = (side * x - x_in) / (x_out - x_in)
    tc = np.clip(t, 0.0, 1.0)
    yb = (i.brow_y + 1 + i.brow_arch * np.sin(np.pi * tc ** 0.8)
          + d.brow_raise + d.brow_inner * (1 - tc))
    excess = (t - tc) * (x_out - x_in)
    return yb, np.exp(-0.5 * (excess / 3.0) ** 2), t


def _mouth(p: FaceParams, x):
    """Lip edges at x: (centre, inner upper, outer upper, inner lower, outer lower, window)."""
    i, d = p.identity, p.deform
    u = x / (i.mouth_w + d.mouth_stretch)
    inside = np.clip(1 - u * u, 0.0, None)
    yc = i.mouth_y + d.corner_dy * np.minimum(u * u, 1.0)
    y_iu = yc + (0.3 * d.mouth_open + 0.6 * d.upper_lip_raise) * inside
    y_il = yc - _jaw_drop(p) * inside
    root = np.sqrt(inside)
    y_ou = y_iu + i.lip_up * (1 - d.lip_press) * root
    y_ol = y_il - i.lip_low * (1 - d.lip_press) * root
    return yc, y_iu, y_ou, y_il, y_ol, inside


def _segment_distance(x, y, a, b):
    ab = np.subtract(b, a)
    t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1]) / (ab @ ab), 0.0, 1.0)
    return np.hypot(x - a[0] - t * ab[0], y - a[1] - t * ab[1])


def _wrinkles(p: FaceParams, x, y):
    """Expression wrinkles in [0, ~1]: forehead lines (brow raise), glabellar lines (brows
    pulled together), nasolabial folds (cheek raise, nose wrinkle, smile), crow's feet,
    chin dimpling. Grooves in the surface, dark lines in the albedo."""
    i, d = p.identity, p.deform
    w = (np.clip(d.brow_raise / 8, 0, 1) * (0.5 + 0.5 * np.cos(2 * np.pi * (y - i.brow_y) / 7)) ** 4
         * _g(x, y - i.brow_y - 22, 30, 9))
    w = w + np.clip(d.brow_together / 4, 0, 1) * sum(_g(x - s * 5, y - i.brow_y + 4, 1.2,
                                                        6) for s in (-1, 1))
    fold = np.clip((d.cheek_raise + d.nose_wrinkle + max(d.corner_dy, 0.0)) / 6, 0, 1.2)
    corner_x = i.mouth_w + d.mouth_stretch + 4
    for s in (-1, 1):
        dist = _segment_distance(x, y, (s * (i.nose_w + 3), -2.0),
                                 (s * corner_x, i.mouth_y + d.corner_dy - 3))
        w = w + fold * np.exp(-0.5 * (dist / 1.2) ** 2)
        w = w + (np.clip(d.cheek_raise / 5, 0, 1) * _g(x - s * (i.eye_x + i.eye_w + 6), y - i.eye_y,
                                                       3, 5)
                 * (0.5 + 0.5 * np.cos(2 * np.pi * (y - i.eye_y) / 3)) ** 2)
    w = w + (np.clip(d.nose_wrinkle / 3, 0,
                     1) * (0.5 + 0.5 * np.cos(2 * np.pi * (y - 24) / 3.5)) ** 2
             * _g(x, y - 24, 9, 5))
    dimple = (0.5 + 0.5 * np.cos(2 * np.pi * x / 4) * np.cos(2 * np.pi * y / 4)) ** 2
    return w + np.clip(d.chin_raise / 3, 0, 1) * dimple * _g(x, y - i.chin_y, 10, 6)


def _height_raw(p: FaceParams, x, y):
    i, d = p.identity, p.deform
    yw = _jaw_warp(p, y)
    r2 = (x / i.head_a) ** 2 + ((yw - i.head_cy) / i.head_b) ** 2
    z = i.head_c * np.sqrt(np.clip(1 - r2, 0.0, None))
    ew, eh, ey = _eye_aperture(p)
    for side in (-1, 1):
        dx = x - side * i.eye_x
        z = z - i.socket_d * _g(dx, y - i.eye_y, 14, 10) + 2.5 * _g(dx, y - i.eye_y, 0.8 * ew, 7)
        z = z - 1.5 * np.exp(-((dx / ew) ** 4 + ((y - ey) / eh) ** 4))
        z = z + i.brow_h * _g(dx, y - i.brow_y, 18, 6)
        yb, w, _ = _brow_curve(p, side, x)
        z = z + 1.8 * np.exp(-0.5 * ((y - yb) / 3.5) ** 2) * w
        z = z - 0.35 * d.brow_together * _g(x - side * 5, y - (i.brow_y - 4), 1.6, 6)
        z = z + i.ala_h * _g(x - side * i.nose_w, y + 5 - 0.4 * d.nose_wrinkle, 5, 5)
        z = z + 0.8 * d.nose_wrinkle * _g(x - side * 8, y - 24, 3, 2.5)
        z = z + (i.cheek_h + 0.6 * d.cheek_raise) * _g(x - side * 38, y + 8 - 0.8 * d.cheek_raise,
                                                       14, 12)
    z = z - 1.2 * _wrinkles(p, x, y)
    z = z + i.tip_h * _g(x, y, 9, 8) + i.bridge_h * _g(x, y - 22, 6.5, 16)
    yc, y_iu, y_ou, y_il, y_ol, inside = _mouth(p, x)
    win = np.sqrt(inside)
    for centre, half in ((0.5 * (y_iu + y_ou), 0.5 * (y_ou - y_iu)),
                         (0.5 * (y_il + y_ol), 0.5 * (y_il - y_ol))):  # upper, lower lip
        z = z + i.lip_h * np.exp(-0.5 * ((y - centre) / (half + 1.2)) ** 2) * win
    cavity = min(1.2 * d.mouth_open + 0.5 * d.upper_lip_raise, 12.0)
    if cavity > 0:
        half = 0.5 * (y_iu - y_il) + 0.3
        z = z - cavity * np.exp(-((y - 0.5 * (y_iu + y_il)) / half) ** 4) * inside
    z = z + (i.chin_h + d.chin_raise) * _g(x, yw - (i.chin_y + d.chin_raise), 15, 9)
    return z


# ---------------------------------------------------------------- face frame (public)


def face_height(p: FaceParams, x, y) -> np.ndarray:
    """Surface height z (mm) at face-frame (x, y); any broadcastable shapes -> their shape.

    >>> p = face_params(subject_identity(0, "bu3dfe", "F0001"), "neutral")
    >>> float(face_height(p, 0.0, 0.0))
    0.0
    """
    x, y = _coords(x, y)
    return _height_raw(p, x + p.tip[0], y + p.tip[1]) - p.tip[2]


def _coords(x, y):
    # float32 input stays float32: texture rasters are 5x faster and need no more precision.
    x, y = np.asarray(x), np.asarray(y)
    dt = np.result_type(x, y, np.float32)
    return np.broadcast_arrays(x.astype(dt, copy=False), y.astype(dt, copy=False))


def face_mask(p: FaceParams, x, y) -> np.ndarray:
    """True where face-frame (x, y) is on the face (inside the outline; chin follows the jaw)."""
    i = p.identity
    yr = np.asarray(y, dtype=np.float64) + p.tip[1]
    b = np.where(yr < i.face_cy, i.face_b + _jaw_drop(p), i.face_b)
    return (((np.asarray(x) + p.tip[0]) / i.face_a) ** 2 + ((yr - i.face_cy) / b) ** 2) <= 1.0


def face_bounds(p: FaceParams) -> tuple:
    """(xmin, xmax, ymin, ymax) of the face outline in the face frame."""
    i = p.identity
    return (-i.face_a - p.tip[0], i.face_a - p.tip[0],
            i.face_cy - i.face_b - _jaw_drop(p) - p.tip[1], i.face_cy + i.face_b - p.tip[1])


def _soft(dist, width=0.35):
    """Coverage of an edge at signed distance ``dist`` (mm, negative inside)."""
    return np.clip(0.5 - dist / width, 0.0, 1.0)[..., None]


def face_albedo(p: FaceParams, x, y) -> np.ndarray:
    """(..., 3) RGB reflectance in [0, 1] at face-frame (x, y): skin, brows, eyes, nostrils,
    lips, mouth opening and teeth where the geometry puts them."""
    i, d = p.identity, p.deform
    x, y = _coords(x, y)
    x, y = x + p.tip[0], y + p.tip[1]
    dt = x.dtype
    col = np.broadcast_to(np.asarray(i.skin, dtype=dt), x.shape + (3,)).copy()
    blush = sum(_g(x - s * 38, y + 8 - 0.8 * d.cheek_raise, 12, 10) for s in (-1, 1))
    col = col * (1 + 0.08 * blush[..., None] * np.array([1.0, -0.3, -0.3], dtype=dt))
    col = col * (1 - 0.45 * np.clip(_wrinkles(p, x, y), 0, 1))[..., None]

    def paint(colour, alpha):
        # Features cover little of the face: blend only where they do.
        a = np.broadcast_to(alpha[..., 0], x.shape)
        hit = a > 0
        ah = a[hit][:, None]
        col[hit] = col[hit] * (1 - ah) + np.asarray(colour, dtype=dt) * ah

    ew, eh, ey = _eye_aperture(p)
    for side in (-1, 1):
        yb, w, _ = _brow_curve(p, side, x)
        paint(i.brow_rgb, _soft(np.abs(y - yb) - i.brow_thick) * w[..., None])
        dx, dy = x - side * i.eye_x, y - ey
        ell = np.sqrt((dx / ew) ** 2 + (dy / eh) ** 2)
        paint((0.08, 0.06, 0.05), _soft((ell - 1.12) * eh))  # lash line
        opening = _soft((ell - 1.0) * eh)
        paint((0.93, 0.93, 0.9), opening)
        r = np.hypot(dx, dy)
        paint(i.iris_rgb, _soft(r - 5.0) * opening)
        paint((0.02, 0.02, 0.02), _soft(r - 2.0) * opening)
        paint((0.12, 0.05, 0.05), _soft(np.hypot((x - side * 6) / 3.5,
                                                 (y + 11 - 0.4 * d.nose_wrinkle) / 2.0) * 2 - 2))
    yc, y_iu, y_ou, y_il, y_ol, inside = _mouth(p, x)
    lips = inside > 0
    paint(i.lip_rgb, _soft(np.where(lips, np.maximum(y - y_ou, y_ol - y), 9.0)))
    gap = np.where(lips, np.maximum(y - y_iu, y_il - y), 9.0)
    paint((0.18, 0.04, 0.05), _soft(gap))
    teeth = min(0.45 * (d.mouth_open + d.upper_lip_raise), 4.0)
    if teeth > 0.3:
        shown = (inside > 0.15)[..., None]
        paint((0.95, 0.94, 0.86), _soft(np.maximum(gap, y_iu - teeth - y)) * shown)
    return np.clip(col, 0.0, 1.0)
