"""Sanity checks every written sample passes and a wrong one fails.

Stage: preprocessing (after crop and pose: :func:`surface_problems`; the last step of each
scan: :func:`sanity_problems`) and ``fer3d-prep verify`` (:func:`depth_problems`). A sample
can be well formed (shapes, dtypes: the writer's check) and still wrong: landmarks 500 mm off
the mesh or in shuffled rows, a nose tip found on the chin, a mesh mirrored in depth, texture
coordinates outside the image, a 2x2 texture, triangles joining random vertices. Every
threshold is in :data:`THRESHOLDS`, each a :class:`~fer3d_data.prep.PrepConfig` key stored in
the shard's ``/config`` (docs/preprocessing.md, "Sanity checks", gives the reasoning).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.spatial import cKDTree

from ..landmarks import group_points
from ..schemes import Scheme, find_scheme
from ..surface.grid import Grid

# The one table of sanity thresholds: PrepConfig key -> (default, what it bounds: the help of
# its fer3d-prep option). PrepConfig takes its defaults from here; a config dict lacking a key
# (an older shard's) gets the default. docs/preprocessing.md gives each value's reasoning;
# genuine-like synthetic scans pass at stricter values (tests/fer3d_data/test_sanity.py).
THRESHOLDS = {
    # the sample as stored
    "min_landmark_fraction": (0.5, "least share of the mask landmarks on the S x S grid"),
    "min_texture_std": (1.0, "least texture standard deviation over covered cells, grey "
                             "levels (a constant image has 0)"),
    "min_depth_relief": (5.0, "least depth range over covered cells, mm (a face: ~50)"),
    "min_face_depth": (5.0, "least depth of the median covered cell behind the nose tip, mm "
                            "(a face: ~33; mirrored in depth, a bowl: < 0)"),
    "min_eye_distance": (15.0, "least distance between the two eye centres, mm (adults: "
                               "55-75; inner corners alone: 28)"),
    "max_eye_distance": (200.0, "largest distance between the two eye centres, mm"),
    "max_roll": (30.0, "largest angle of the eye line from horizontal, degrees (posed: ~0)"),
    "max_tip_offset": (20.0, "largest sideways distance of the eyes' midpoint and the mouth "
                             "from the nose tip, mm (a scan: < 8)"),
    # the raw surface after crop and pose
    "min_uv_inside": (0.9, "least share of the used texture coordinates inside [0, 1]"),
    "min_texture_side": (16, "shortest side of the texture image, pixels (genuine: 512+)"),
    "max_texture_aspect": (4.0, "largest ratio of the texture image's sides (genuine: <= 1.4)"),
    "max_edge_ratio": (4.0, "largest median triangle edge over the median point spacing "
                            "(a scan: ~1.2; random connectivity: ~30)"),
}
_DLIB, _NO_MASKS = 1, 2  # mask_source of dlib's masks and of --masks none (shards.MASK_SOURCES)


def thresholds(cfg: Mapping) -> dict[str, float]:
    """Every threshold of ``cfg`` (a config dict), defaults where it lacks one."""
    return {k: float(cfg.get(k, default)) for k, (default, _) in THRESHOLDS.items()}


def sanity_problems(s: Mapping[str, np.ndarray], mask_source: int, scheme: str | Scheme,
                    grid: Grid, cfg: Mapping, *, textured: bool = True) -> list[str]:
    """Every failed check of one sample, as readable strings; [] when it is sane.

    s            the sample's arrays (``texture`` (S, S, 3), ``depth``, ``coverage``, ``mask``
                 (S, S), ``landmarks`` (K, 2), ``landmarks68`` (68, 2)).
    mask_source  0: the masks came from ``landmarks``; 1: from ``landmarks68`` (dlib); 2: no
                 masks (``--masks none``: neither masks nor landmarks are checked).
    scheme       the landmark scheme of ``landmarks`` (the config's).
    grid         the S x S grid (its centre is the nose tip).
    cfg          a config dict (or PrepConfig.to_dict()) holding the thresholds.
    textured     False for a scan without texture image or colours: its black texture is
                 not checked.
    """
    t = thresholds(cfg)
    covered = np.asarray(s["coverage"], dtype=bool)
    problems = depth_problems(s["depth"], covered, cfg) or _face_depth(s["depth"], covered, t)
    if textured:
        problems += _texture_problems(np.asarray(s["texture"]), covered, t["min_texture_std"])
    if mask_source == _NO_MASKS:
        return problems
    if not np.asarray(s["mask"]).any():
        problems.append("mask: empty (no salient region on the grid)")
    dlib = mask_source == _DLIB
    which = "dlib landmarks68" if dlib else "landmarks"
    points = np.asarray(s["landmarks68" if dlib else "landmarks"], np.float64)
    problems += _on_grid(points, grid.size, t["min_landmark_fraction"], which)
    layout = _layout(grid.to_mm(points), "dlib68" if dlib else scheme, t)
    return problems + [f"{which}: {p}" for p in layout]


def _texture_problems(texture: np.ndarray, covered: np.ndarray, min_std: float) -> list[str]:
    """The texture over covered cells must not be constant."""
    texels = texture[covered] if covered.any() else texture.reshape(-1, texture.shape[-1])
    spread = float(texels.std()) if texels.size else 0.0
    if spread < min_std:
        return [f"texture: standard deviation {spread:.2f} is below min_texture_std "
                f"{min_std:g} (a constant image)"]
    return []


def depth_problems(depth: np.ndarray, covered: np.ndarray, cfg: Mapping) -> list[str]:
    """(S, S) depth must be finite with ``min_depth_relief`` mm of relief over covered cells."""
    min_relief = thresholds(cfg)["min_depth_relief"]
    depth, covered = np.asarray(depth), np.asarray(covered, dtype=bool)
    if not np.isfinite(depth).all():
        return [f"depth: {int((~np.isfinite(depth)).sum())} non-finite cells"]
    if not covered.any():
        return ["depth: no cell is covered by scan data"]
    relief = float(depth[covered].max() - depth[covered].min())
    if relief < min_relief:
        return [(f"depth: relief {relief:.2f} mm over covered cells is below min_depth_relief "
                 f"{min_relief:g} mm (flat or empty surface)")]
    return []


def _face_depth(depth: np.ndarray, covered: np.ndarray, t: dict) -> list[str]:
    """A face bulges toward the camera around its nose tip (depth 0): most of it lies behind."""
    behind = -float(np.median(np.asarray(depth)[covered]))
    if behind < t["min_face_depth"]:
        return [(f"depth: the median covered cell lies {behind:.1f} mm behind the nose tip, "
                 f"less than min_face_depth {t['min_face_depth']:g} mm (a concave surface: "
                 "the mesh mirrored in depth?)")]
    return []


def _on_grid(points: np.ndarray, size: int, min_fraction: float, which: str) -> list[str]:
    """The landmarks the masks came from must lie on the S x S grid, enough of them."""
    # on the grid: within half a pixel of its outer pixel centres
    inside = (np.isfinite(points).all(axis=1) & (points >= -0.5).all(axis=1)
              & (points <= size - 0.5).all(axis=1))
    if len(points) and inside.sum() < min_fraction * len(points):
        return [(f"{which}: {int(inside.sum())}/{len(points)} on the {size}x{size} grid, below "
                 f"min_landmark_fraction {min_fraction:g}")]
    return []


def _layout(xy: np.ndarray, scheme: str, t: dict) -> list[str]:
    """Eyes level and a face's width apart, the nose tip (0, 0) between them and the mouth.

    xy (K, 2) mm, y up. A check whose groups the scan lacks (occluded points) is skipped.
    """
    scheme = find_scheme(scheme) if isinstance(scheme, str) else scheme
    if scheme is None:  # a scheme without regions
        return []
    left, right, mouth = (group_points(xy, scheme, g) for g in ("eye_left", "eye_right", "mouth"))
    if not (len(left) and len(right)):
        return []
    spread = max(_radius(left), _radius(right))
    left, right = left.mean(axis=0), right.mean(axis=0)
    (dx, dy), mid = right - left, (left + right) / 2
    gap, roll = float(np.hypot(dx, dy)), float(np.degrees(np.arctan2(dy, dx)))
    problems = []
    if not t["min_eye_distance"] <= gap <= t["max_eye_distance"]:
        problems.append(f"eye centres {gap:.1f} mm apart, outside min_eye_distance "
                        f"{t['min_eye_distance']:g} .. max_eye_distance "
                        f"{t['max_eye_distance']:g} mm")
    elif spread >= gap / 2:  # the two eyes' landmarks overlap: no threshold needed
        problems.append(f"an eye's landmarks spread {spread:.1f} mm from its centre, over half "
                        f"the {gap:.1f} mm between the eyes (shuffled landmark rows?)")
    if gap > 0 and abs(roll) > t["max_roll"]:
        problems.append(f"eye line at {roll:.0f} degrees from horizontal, over max_roll "
                        f"{t['max_roll']:g} (rotated face or shuffled landmark rows)")
    mouth = mouth.mean(axis=0) if len(mouth) else np.array([0.0, -np.inf])
    side = max(abs(mid[0]), abs(mouth[0]) if np.isfinite(mouth[1]) else 0.0)
    if not (mid[1] > 0 > mouth[1]) or side > t["max_tip_offset"]:
        problems.append(f"the nose tip is not between the eyes (x {mid[0]:.0f}, y {mid[1]:.0f} "
                        f"mm) and the mouth (y {mouth[1]:.0f} mm) within max_tip_offset "
                        f"{t['max_tip_offset']:g} mm (cropped around the wrong point?)")
    return problems


def _radius(points: np.ndarray) -> float:
    """mm from the centre of ``points`` (k, 2) to the farthest of them."""
    return float(np.linalg.norm(points - points.mean(axis=0), axis=1).max())


def surface_problems(vertices: np.ndarray, faces: np.ndarray, uv_corners: np.ndarray | None,
                     image_shape: tuple | None, cfg: Mapping) -> list[str]:
    """Every failed check of a scan's cropped, posed surface before it is sampled on the grid.

    vertices (V, 3) mm, faces (F, 3) the kept triangles, uv_corners (..., 2) the texture
    coordinates of their corners, image_shape (H, W, ...) of the texture image; both None
    for a scan textured otherwise (vertex colours) or not at all.
    """
    t = thresholds(cfg)
    connectivity = _connectivity(vertices, faces, t["max_edge_ratio"])
    if image_shape is None or uv_corners is None:
        return connectivity
    problems, uv_corners = [], np.asarray(uv_corners, dtype=np.float64).reshape(-1, 2)
    inside = float(np.mean(np.all((uv_corners >= -1e-6) & (uv_corners <= 1 + 1e-6), axis=1))
                   if len(uv_corners) else 0.0)
    if inside < t["min_uv_inside"]:
        problems.append(f"texture coordinates: {inside:.0%} inside [0, 1], below min_uv_inside "
                        f"{t['min_uv_inside']:g}")
    h, w = image_shape[:2]
    if min(h, w) < t["min_texture_side"] or max(h, w) > t["max_texture_aspect"] * min(h, w):
        problems.append(f"texture image: {w}x{h} pixels, a side under min_texture_side "
                        f"{t['min_texture_side']:g} or sides further apart than "
                        f"max_texture_aspect {t['max_texture_aspect']:g}")
    return problems + connectivity


def _connectivity(vertices: np.ndarray, faces: np.ndarray, max_ratio: float) -> list[str]:
    """Triangles of a scan join neighbouring points: their edges are about the point spacing."""
    used = np.unique(faces)
    if len(used) < 3:
        return []
    points = np.asarray(vertices, dtype=np.float64)[used]
    spacing = float(np.median(cKDTree(points).query(points, k=2)[0][:, 1]))
    corners = np.asarray(vertices, dtype=np.float64)[faces]
    edge = float(np.median(np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2)))
    if edge > max_ratio * max(spacing, 1e-9):
        return [(f"mesh: median triangle edge {edge:.1f} mm is {edge / max(spacing, 1e-9):.0f} "
                 f"times the point spacing {spacing:.2f} mm, over max_edge_ratio {max_ratio:g} "
                 "(triangles join distant vertices)")]
    return []
