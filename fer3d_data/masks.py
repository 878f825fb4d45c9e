"""Salient-region masks (eyes+eyebrows, nose, mouth) from landmarks in grid pixels.

Stage: preprocessing step 9, the last before the shard writer. Each region is the filled
convex hull of its landmark group (eyes and eyebrows: one hull per image side), grown by
a margin; the union is area-resized to the 56x56 and 28x28 masks AFNet-M's mask
attention takes after layer1 and layer2.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import ScanError
from .landmarks import group_points
from .schemes import GROUPS, Scheme, find_scheme

# Region channel -> hulls, each hull the union of some landmark groups.
REGIONS = (
    ("eyes", (("eye_left", "brow_left"), ("eye_right", "brow_right"))),
    ("nose", (("nose",),)),
    ("mouth", (("mouth",),)),
)
REGION_NAMES = tuple(name for name, _ in REGIONS)

_SUBPIXEL_BITS = 4  # cv2 fills polygons with 1/16-pixel vertex precision


def _filled_hull(points: np.ndarray, size: int) -> np.ndarray:
    hull = cv2.convexHull(np.round(points * (1 << _SUBPIXEL_BITS)).astype(np.int32))
    canvas = np.zeros((size, size), dtype=np.uint8)
    cv2.fillConvexPoly(canvas, hull, 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    # Sub-pixel rounding can leave a hull vertex's own pixel out: put every landmark in.
    col, row = np.round(points).astype(np.int64).T
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    canvas[row[inside], col[inside]] = 1
    return canvas


def _dilate(mask: np.ndarray, margin_px: float) -> np.ndarray:
    if margin_px <= 0:
        return mask
    # Exact Euclidean distance to the region: a disc-shaped dilation for any real margin.
    distance = cv2.distanceTransform(1 - mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return (distance <= margin_px).astype(np.uint8)


def region_masks(points: np.ndarray, scheme: str | Scheme, size: int, *,
                 margin_px: float = 4.0) -> np.ndarray:
    """(K, 2) landmarks (x = col, y = row) in grid pixels, canonical order of ``scheme`` (a
    name, a YAML path or a :class:`~fer3d_data.schemes.Scheme`) ->
    (3, size, size) uint8 in {0, 1}: channels eyes+eyebrows, nose, mouth (REGION_NAMES).

    Missing (NaN) landmarks are skipped; a hull with fewer than 3 points left raises
    ScanError(step="masks").

    >>> pts = np.tile([[20.0, 20.0]], (68, 1)) + np.random.default_rng(0).normal(size=(68, 2))
    >>> region_masks(pts, "dlib68", 40).shape
    (3, 40, 40)
    """
    found = find_scheme(scheme) if isinstance(scheme, str) else scheme
    if found is None:
        raise ScanError("masks", f"no landmark groups for scheme {scheme!r}; "
                                 f"known {sorted(GROUPS)}")
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (len(found.names), 2) or size < 1:
        raise ValueError(f"{found.name} points must be ({len(found.names)}, 2), size >= 1; "
                         f"got {points.shape}, {size}")
    regions = np.zeros((len(REGIONS), size, size), dtype=np.uint8)
    for channel, (name, hulls) in enumerate(REGIONS):
        for groups in hulls:
            hull = np.concatenate([group_points(points, found, group) for group in groups])
            if len(hull) < 3:
                raise ScanError("masks", f"region {name} ({'+'.join(groups)}) has {len(hull)} "
                                         f"{found.name} landmarks, need 3")
            regions[channel] |= _filled_hull(hull, size)
        regions[channel] = _dilate(regions[channel], margin_px)
    return regions


def area_resize(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) mask in [0, 1] (any real dtype) -> (size, size) float32 in [0, 1], each output
    pixel the mean of the input area it covers (cv2.INTER_AREA)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or size < 1:
        raise ValueError(f"mask must be (H, W) and size >= 1, got {mask.shape}, {size}")
    resized = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(resized, 0.0, 1.0)


def salient_masks(points: np.ndarray, scheme: str | Scheme, size: int,
                  margin_px: float = 4.0) -> dict:
    """(K, 2) grid-pixel landmarks -> dict of

    mask    (size, size) uint8 {0, 1}   union of the regions
    regions (3, size, size) uint8 {0, 1}  eyes+eyebrows, nose, mouth
    mask56  (56, 56) float32 [0, 1]     area-resize of ``mask``
    mask28  (28, 28) float32 [0, 1]     area-resize of ``mask56``
    """
    regions = region_masks(points, scheme, size, margin_px=margin_px)
    mask = regions.max(axis=0)
    mask56 = area_resize(mask, 56)
    return {"mask": mask, "regions": regions, "mask56": mask56, "mask28": area_resize(mask56, 28)}
