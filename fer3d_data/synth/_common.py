"""Pieces both synthetic writers share: raster rendering, markers, number formatting,
image files, hole placement."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .face import FaceParams, face_albedo, face_height, face_mask
from .truth import face_landmarks

# Distinct pure colours drawn at chosen landmarks when ``markers=True``: downstream tests
# find them in the resampled texture to check pixel alignment.
MARKERS_BU3DFE = {"1": (255, 0, 0), "9": (0, 255, 0), "5": (0, 0, 255),
                  "13": (255, 255, 0), "49": (255, 0, 255), "55": (0, 255, 255)}
MARKERS_BOSPHORUS = {"Inner left eye corner": (255, 0, 0), "Inner right eye corner": (0, 255, 0),
                     "Outer left eye corner": (0, 0, 255), "Outer right eye corner": (255, 255, 0),
                     "Left mouth corner": (255, 0, 255), "Right mouth corner": (0, 255, 255),
                     "Nose tip": (255, 128, 0)}
MARKER_RADIUS_MM = 1.2
_LIGHT = np.array([0.2, 0.3, 1.0]) / np.linalg.norm([0.2, 0.3, 1.0])


def render(p: FaceParams, x0: float, y0: float, dx: float, dy: float, shape: tuple, *,
           background=(0, 0,
                       0), markers: dict | None = None, scheme: str = "bu3dfe83") -> np.ndarray:
    """(H, W, 3) uint8 image of the face on an affine raster: pixel (r, c) centre is the
    face-frame point (x0 + c·dx, y0 + r·dy). Albedo × Lambertian shading, ``background``
    off the face, ``markers`` {landmark name: RGB} as dots of MARKER_RADIUS_MM (at least
    1.5 px) centred on the landmark."""
    h, w = shape
    x = (x0 + dx * np.arange(w, dtype=np.float64)).astype(np.float32)
    y = (y0 + dy * np.arange(h, dtype=np.float64)).astype(np.float32)
    xx, yy = np.meshgrid(x, y)
    z = face_height(p, xx, yy)
    gy, gx = np.gradient(z, dy, dx)
    shade = (-gx * _LIGHT[0] - gy * _LIGHT[1] + _LIGHT[2]) / np.sqrt(gx * gx + gy * gy + 1)
    rgb = face_albedo(p, xx, yy) * (0.55 + 0.45 * np.clip(shade, 0, 1))[..., None]
    img = np.where(face_mask(p, xx, yy)[..., None], rgb * 255 + 0.5,
                   np.asarray(background, np.float32)).astype(np.uint8)
    if markers:
        lm = face_landmarks(p, scheme)
        radius = max(MARKER_RADIUS_MM, 1.5 * max(abs(dx), abs(dy)))
        for name, colour in markers.items():
            pt = lm.get(name)
            if pt is not None:
                img[np.hypot(xx - pt[0], yy - pt[1]) <= radius] = colour
    return img


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image (BMP or PNG by suffix); bytes depend only on the pixels."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, 6] if path.suffix == ".png" else []
    if not cv2.imwrite(os.fspath(path), np.ascontiguousarray(rgb[..., ::-1]), params):
        raise OSError(f"{path}: could not write image")
    return path


def format_rows(values: np.ndarray, *, exponents: bool = False, sep: str = " ") -> list[str]:
    """One string per row of a (N, D) float array, 6 significant digits.

    Without ``exponents`` values below 1e-4 in magnitude are written as 0 so %g never
    switches to exponent notation (as in the genuine files); the caller keeps the array
    it formatted, so round trips compare against :func:`printed`.
    """
    values = printed(values, exponents=exponents)
    fmt = sep.join(["%.5e" if exponents else "%.6g"] * values.shape[1])
    return [fmt % tuple(row) for row in values.tolist()]


def printed(values: np.ndarray, *, exponents: bool = False) -> np.ndarray:
    """``values`` as :func:`format_rows` writes them (before rounding to 6 digits)."""
    values = np.asarray(values, dtype=np.float64)
    return values if exponents else np.where(np.abs(values) < 1e-4, 0.0, values)


def hole_centres(rng: np.random.Generator, count: int, bounds: tuple) -> np.ndarray:
    """(count, 3) face-frame hole discs (x, y, radius), kept 15 mm off the nose tip so
    nose-tip detection stays meaningful."""
    xmin, xmax, ymin, ymax = bounds
    out = []
    while len(out) < count:
        x, y = rng.uniform(0.8 * xmin, 0.8 * xmax), rng.uniform(0.8 * ymin, 0.8 * ymax)
        r = rng.uniform(3.0, 8.0)
        if np.hypot(x, y) > 15 + r:
            out.append((x, y, r))
    return np.array(out, dtype=np.float64).reshape(-1, 3)


def in_holes(x: np.ndarray, y: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """True where face-frame (x, y) falls in any hole disc."""
    hit = np.zeros(np.shape(x), dtype=bool)
    for hx, hy, r in holes:
        hit |= (x - hx) ** 2 + (y - hy) ** 2 <= r * r
    return hit


def check_variants(given, known: tuple, what: str) -> frozenset:
    """Validate a collection of format-variant names."""
    given = frozenset(given or ())
    unknown = given - set(known)
    if unknown:
        raise ValueError(f"unknown {what} variant(s) {sorted(unknown)}; known: {list(known)}")
    return given


def write_text(path: Path, text: str, crlf: bool = False) -> Path:
    data = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes(data.encode("ascii"))
    return path
