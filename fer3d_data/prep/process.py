"""One scan -> one sample: read the raw files, then one chain of pure steps.

Stage: preprocessing (per scan). :func:`read_raw_scan` hands a scan to its dataset's
adapter (:mod:`fer3d_data.datasets`), which alone knows the file forms and returns a
:class:`RawScan`; :func:`process_scan` then chains the steps of :mod:`fer3d_data.surface`,
:mod:`fer3d_data.masks` and :mod:`fer3d_data.landmarks` (docs/preprocessing.md), the same
for every dataset. Any failure raises :class:`ScanError` naming its step.
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..datasets import RawScan, adapter
from ..datasets.records import ScanRecord
from ..errors import Fer3dDataError, ScanError
from ..landmarks import canonical_points, detect_dlib68
from ..masks import REGION_NAMES, salient_masks
from ..schema import NO_FRAME
from ..shards.spec import DLIB_POINTS, MASK_SOURCES
from ..surface import (
    Grid,
    GridFitter,
    apply_pose,
    clean_points,
    crop_sphere,
    frontal_rotation,
    nose_tip,
    texture_from_mesh,
)
from ..surface.points import sample_points
from ..surface.texture import grid_triangles, rasterize, texture_from_colors
from .config import PrepConfig
from .sanity import sanity_problems, surface_problems


@dataclass
class Sample:
    """One preprocessed scan, ready for :meth:`fer3d_data.shards.ShardWriter.append`.

    S = image size, K = number of native landmarks of the dataset's scheme.

    expression   a name of schema.CLASS_NAMES, or None (a scan labelled otherwise).
    texture      (S, S, 3) uint8 RGB, pixel-aligned with ``depth``; zeros for a scan
                 without texture image or colours.
    depth        (S, S) float32 mm, nose tip at 0, larger = closer to the camera.
    coverage     (S, S) bool, cell backed by scan data.
    mask         (S, S) uint8 in {0, 1}, union of ``regions``.
    regions      (3, S, S) uint8 in {0, 1}: eyes+eyebrows, nose, mouth.
    mask56       (56, 56) float32 in [0, 1], area-resize of ``mask``.
    mask28       (28, 28) float32 in [0, 1], area-resize of ``mask56``.
    landmarks    (K, 2) float32 grid pixels (x = column, y = row), NaN where missing.
    landmarks68  (68, 2) float32 dlib points, NaN unless dlib ran.
    mask_source  0 masks from native landmarks, 1 from dlib, 2 none (PrepConfig.masks).
    points       (P, 3) float32 mm on the frontal surface, or None (PrepConfig.points = 0).
    label        the class name stored as ``/index/label``; None: ``expression``.
    sequence     the capture sequence of a frame, "" for a lone scan; frame: its number, -1.

    The shard writer validates it (shapes, dtypes, codes) once, on the way in.
    """

    sample_id: str
    subject: str
    expression: str | None
    intensity: int
    source: str
    texture: np.ndarray
    depth: np.ndarray
    coverage: np.ndarray
    mask: np.ndarray
    regions: np.ndarray
    mask56: np.ndarray
    mask28: np.ndarray
    landmarks: np.ndarray
    landmarks68: np.ndarray
    mask_source: int = 0
    points: np.ndarray | None = None
    label: str | None = None
    sequence: str = ""
    frame: int = NO_FRAME


@contextlib.contextmanager
def step(name: str, scan_id: str | None = None):
    """Attribute any exception inside the block to preprocessing step ``name``.

    >>> with step("gridfit", "F0001_AN01WH"):   # doctest: +SKIP
    ...     depth = gridfit(points, grid, smoothness=cfg.smoothness)
    """
    try:
        yield
    except ScanError:
        raise
    except Exception as e:
        message = str(e) if isinstance(e, Fer3dDataError) else f"{type(e).__name__}: {e}"
        raise ScanError(name, message, scan_id) from e


def read_raw_scan(record: ScanRecord, cfg: PrepConfig) -> RawScan:
    """The raw files of ``record`` -> :class:`RawScan` by its dataset's adapter;
    :class:`ScanError` step "read"."""
    if record.problem:  # the walker could not read this scan's files: its own error row
        raise ScanError("read", record.problem, record.scan_id)
    with step("read", record.scan_id):
        return adapter(record.dataset).read(record, cfg)


# ----------------------------------------------------------------------------------------
# The chain.
# ----------------------------------------------------------------------------------------

@dataclass
class FrontalSurface:
    """The cleaned, cropped surface of one scan in the frontal frame: mm, nose tip at the
    origin, x right, y up, z toward the camera (the frame of the shard's depth and points).

    aligned   (N, 3) every raw point moved to this frame; ``keep`` (N,) bool the kept ones.
    rot, tip  the pose: aligned = (raw - tip) @ rot.T.
    """

    raw: RawScan
    aligned: np.ndarray
    keep: np.ndarray
    rot: np.ndarray
    tip: np.ndarray

    def triangles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, str]:
        """(vertices (V, 3), faces (F, 3) of kept points, uv, faces_uv or None, uv origin)."""
        raw = self.raw
        if raw.faces is not None:
            kept = self.keep[raw.faces].all(axis=1)
            return (self.aligned, raw.faces[kept], raw.uv,
                    None if raw.faces_uv is None else raw.faces_uv[kept], "bottom-left")
        valid = raw.grid_valid.copy()
        valid[raw.grid_valid] = self.keep
        xyz = np.zeros((*valid.shape, 3))
        xyz[valid] = self.aligned[self.keep]  # other cells stay 0: never the zmin sentinel
        return (xyz.reshape(-1, 3), grid_triangles(valid), raw.grid_uv.reshape(-1, 2), None,
                "top-left")


def frontal_surface(raw: RawScan, cfg: PrepConfig, sid: str | None = None) -> FrontalSurface:
    """clean -> nose tip -> crop -> pose of docs/preprocessing.md; :class:`ScanError` by step."""
    points, native = raw.points, raw.native
    with step("clean", sid):
        keep = clean_points(points, nb_neighbors=cfg.outlier_nb_neighbors,
                            std_ratio=cfg.outlier_std_ratio,
                            radius_mm=cfg.spike_radius, max_dev_mm=cfg.spike_max_dev,
                            min_points=cfg.min_points, grid_valid=raw.grid_valid)
    with step("nose_tip", sid):
        tip = nose_tip(points[keep], native)
    with step("crop", sid):
        keep &= crop_sphere(points, tip, cfg.crop_radius)
        if keep.sum() < cfg.min_points:
            raise ScanError("crop",
                            f"{int(keep.sum())} points within {cfg.crop_radius} mm of the nose "
                                    f"tip, need {cfg.min_points}", sid)
    with step("pose", sid):
        rot = frontal_rotation(points[keep], native) if cfg.pose else np.eye(3)
        aligned = apply_pose(points, rot, tip)
    return FrontalSurface(raw=raw, aligned=aligned, keep=keep, rot=rot, tip=tip)


def process_scan(record: ScanRecord, cfg: PrepConfig) -> Sample:
    """Raw scan -> :class:`Sample` by the chain of docs/preprocessing.md.

    read -> clean -> nose tip -> crop -> pose (-> the surface checks of :mod:`.sanity`) ->
    gridfit -> texture -> landmarks -> masks (-> points), then the sample checks of
    :mod:`.sanity` (both step "sanity"). Any failure raises :class:`ScanError` naming its
    step; the runner records it.
    """
    sid = record.scan_id
    grid = Grid(cfg.image_size, cfg.crop_radius)
    raw = read_raw_scan(record, cfg)
    surface = frontal_surface(raw, cfg, sid)
    triangles = surface.triangles()
    with step("sanity", sid):  # before the costly steps: texture coordinates, image, edges
        _insane(surface_problems(*_surface_parts(raw, triangles), cfg.to_dict()), sid)
    native, rot, tip = raw.native, surface.rot, surface.tip
    with step("gridfit", sid):
        x, y, z = surface.aligned[surface.keep].T
        fitted = _fitter(cfg, grid).fit(x, y, z)[::-1]  # gridfit rows go up; images go down
        depth = np.where(np.isnan(fitted), np.nanmin(fitted), fitted).astype(np.float32)
    with step("texture", sid):
        texture, covered = _texture_on_grid(raw, triangles, grid)
    landmarks = np.full((len(cfg.scheme().names), 2), np.nan, np.float32)
    with step("landmarks", sid):
        if native is not None:
            landmarks[:] = grid.to_pixels(apply_pose(canonical_points(native), rot, tip)[:, :2])
    landmarks68, masks, mask_source = _salient_regions(landmarks, native is None, texture,
                                                       raw.textured, grid, cfg, sid)
    points = None
    if cfg.points:
        with step("points", sid):  # seeded by the scan id: the same scan, the same points
            points = sample_points(*triangles[:2], cfg.points, cfg.point_sampling,
                                   seed=zlib.crc32(sid.encode("utf-8")))
    sample = Sample(sample_id=sid, subject=record.subject, expression=record.expression,
                    intensity=int(record.intensity), source=str(record.mesh), texture=texture,
                    depth=depth, coverage=covered, landmarks=landmarks, landmarks68=landmarks68,
                    mask_source=mask_source, points=points, label=record.label,
                    sequence=record.sequence, frame=record.frame, **masks)
    # well formed but wrong (landmarks off the mesh, a 1x1 texture): not a sample
    _insane(sanity_problems(vars(sample), sample.mask_source, cfg.scheme(), grid, cfg.to_dict(),
                            textured=raw.textured), sid)
    return sample


def _insane(problems: list[str], sid: str) -> None:
    if problems:
        raise ScanError("sanity", "; ".join(problems), sid)


def _surface_parts(raw: RawScan, triangles: tuple) -> tuple:
    """(vertices, faces, corner uvs or None, image shape or None) for the surface checks."""
    vertices, faces, uv, faces_uv, _ = triangles
    if raw.image is None or uv is None:  # textured by vertex colours, or not at all
        return vertices, faces, None, None
    return vertices, faces, uv[faces if faces_uv is None else faces_uv], raw.image.shape


def _salient_regions(landmarks: np.ndarray, no_native: bool, texture: np.ndarray,
                     textured: bool, grid: Grid, cfg: PrepConfig, sid: str):
    """(landmarks68, masks, mask_source) of a scan: masks from its ``landmarks`` (K, 2), or
    from dlib's 68 points on the aligned texture, or none at all (``cfg.masks``)."""
    landmarks68 = np.full((DLIB_POINTS, 2), np.nan, np.float32)
    if cfg.masks == "none":
        return landmarks68, _no_masks(grid.size), MASK_SOURCES.index("none")
    with step("landmarks", sid):
        use_dlib = cfg.landmarks == "dlib" or (cfg.landmarks == "auto" and no_native)
        if cfg.landmarks == "native" and no_native:
            raise ScanError("landmarks", "no native landmark file (use --landmarks auto or dlib)",
                            sid)
        if use_dlib and not textured:
            raise ScanError("landmarks", "no landmark file and no texture for dlib's detector "
                                         "(give landmarks, or use --masks none)", sid)
        if use_dlib:
            landmarks68[:] = _dlib_on_grid(texture)
    with step("masks", sid):
        masks = (salient_masks(landmarks68, "dlib68", grid.size, cfg.mask_margin_px) if use_dlib
                 else salient_masks(landmarks, cfg.scheme(), grid.size, cfg.mask_margin_px))
    return landmarks68, masks, MASK_SOURCES.index("dlib" if use_dlib else "native")


def _no_masks(size: int) -> dict:
    """The masks of a shard written with ``--masks none``: every one zero."""
    return {"mask": np.zeros((size, size), np.uint8),
            "regions": np.zeros((len(REGION_NAMES), size, size), np.uint8),
            "mask56": np.zeros((56, 56), np.float32), "mask28": np.zeros((28, 28), np.float32)}


def _texture_on_grid(raw: RawScan, triangles: tuple, grid: Grid):
    """((S, S, 3) uint8 texture, (S, S) bool coverage) of the kept, aligned surface
    (:meth:`FrontalSurface.triangles`): from the texture image, else the vertex colours,
    else black (coverage only)."""
    vertices, faces, uv, faces_uv, origin = triangles
    if len(faces) == 0:
        raise ScanError("texture", "no triangle of the kept surface to texture")
    if raw.image is not None:
        return texture_from_mesh(vertices, faces, uv, faces_uv, raw.image, grid,
                                 uv_origin=origin)
    if raw.colors is not None:
        return texture_from_colors(vertices, faces, raw.colors, grid)
    hit = rasterize(vertices, faces, grid)[0] >= 0
    return np.zeros((grid.size, grid.size, 3), np.uint8), hit


_FITTERS: dict = {}


def _fitter(cfg: PrepConfig, grid: Grid) -> GridFitter:
    """One GridFitter per process and grid: its symbolic factorisation serves every scan.

    Unknowns are restricted to the crop disk (plus the cells its edge touches): after the
    sphere crop no point lies outside it, so the corners would be regulariser-only fill.
    """
    key = (grid.size, grid.radius, cfg.smoothness, cfg.interp, cfg.regularizer)
    if key not in _FITTERS:
        xx, yy = np.meshgrid(grid.xnodes, grid.ynodes)
        disk = np.hypot(xx, yy) <= grid.radius + 1.5 * grid.spacing
        _FITTERS[key] = GridFitter(grid.xnodes, grid.ynodes, smoothness=cfg.smoothness,
                                   interp=cfg.interp, regularizer=cfg.regularizer, active=disk)
    return _FITTERS[key]


# dlib's frontal detector misses faces below ~80 px: run it on an upscaled texture.
_DLIB_MIN_SIZE = 320


def _dlib_on_grid(texture: np.ndarray) -> np.ndarray:
    """(S, S, 3) aligned texture -> (68, 2) dlib points in grid pixels."""
    scale = max(1.0, _DLIB_MIN_SIZE / texture.shape[0])
    big = texture if scale == 1.0 else cv2.resize(texture, None, fx=scale, fy=scale,
                                                  interpolation=cv2.INTER_CUBIC)
    # pixel centres: big-image coordinate p maps to (p + 0.5) / scale - 0.5
    return (detect_dlib68(big) + 0.5) / scale - 0.5
