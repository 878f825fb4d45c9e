"""One scan -> one sample: read the raw files, then one chain of pure steps.

Stage: preprocessing (per scan). :func:`read_raw_scan` is the only place that knows a
dataset's file forms and yields a :class:`RawScan`; :func:`process_scan` then chains the
steps of :mod:`fer3d_data.surface`, :mod:`fer3d_data.masks` and :mod:`fer3d_data.landmarks`
(docs/preprocessing.md). Any failure raises :class:`ScanError` naming its step.
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..datasets import resolve_texture
from ..datasets.records import ScanRecord
from ..errors import Fer3dDataError, ScanError
from ..io import load_bnd, load_bnt, load_image, load_lm3, load_wrl
from ..landmarks import canonical_points, detect_dlib68
from ..masks import salient_masks
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
from ..surface.texture import grid_triangles
from .config import PrepConfig
from .sanity import sanity_problems, surface_problems


@dataclass
class Sample:
    """One preprocessed scan, ready for :meth:`fer3d_data.shards.ShardWriter.append`.

    S = image size, K = number of native landmarks of the dataset's scheme.

    texture      (S, S, 3) uint8 RGB, pixel-aligned with ``depth``.
    depth        (S, S) float32 mm, nose tip at 0, larger = closer to the camera.
    coverage     (S, S) bool, cell backed by scan data.
    mask         (S, S) uint8 in {0, 1}, union of ``regions``.
    regions      (3, S, S) uint8 in {0, 1}: eyes+eyebrows, nose, mouth.
    mask56       (56, 56) float32 in [0, 1], area-resize of ``mask``.
    mask28       (28, 28) float32 in [0, 1], area-resize of ``mask56``.
    landmarks    (K, 2) float32 grid pixels (x = column, y = row), NaN where missing.
    landmarks68  (68, 2) float32 dlib points, NaN unless dlib ran.
    mask_source  0 masks from native landmarks, 1 from dlib.
    points       (P, 3) float32 mm on the frontal surface, or None (PrepConfig.points = 0).

    The shard writer validates it (shapes, dtypes, codes) once, on the way in.
    """

    sample_id: str
    subject: str
    expression: str
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


@dataclass
class RawScan:
    """A scan as read from disk, in the scan's own frame; the same form for every dataset.

    points     (N, 3) float64 mm, the surface samples (mesh vertices, valid grid cells).
    image      (H, W, 3) uint8 RGB texture photograph.
    native     (K, 3) native 3D landmarks (:class:`fer3d_data.io.Landmarks`) or None.
    faces, uv, faces_uv
               mesh form (BU-3DFE): triangles over ``points`` and their texture coordinates.
    grid_valid, grid_uv
               range-grid form (Bosphorus): (H', W') bool cells that are ``points`` (row
               major) and (H', W', 2) texture coordinates.
    """

    points: np.ndarray
    image: np.ndarray
    native: object | None
    faces: np.ndarray | None = None
    uv: np.ndarray | None = None
    faces_uv: np.ndarray | None = None
    grid_valid: np.ndarray | None = None
    grid_uv: np.ndarray | None = None


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


# ----------------------------------------------------------------------------------------
# Reading: the only dataset-specific part.
# ----------------------------------------------------------------------------------------

def read_raw_scan(record: ScanRecord, cfg: PrepConfig) -> RawScan:
    """The raw files of ``record`` -> :class:`RawScan`; :class:`ScanError` step "read"."""
    sid = record.scan_id
    if record.problem:  # the walker could not read this scan's files: its own error row
        raise ScanError("read", record.problem, sid)
    with step("read", sid):
        if record.expression is None:
            raise ScanError("read", f"capture {record.capture} is not an expression scan", sid)
        if record.mesh is None:
            raise ScanError("read",
                            f"missing {'mesh' if record.dataset == 'bu3dfe' else 'range grid'} "
                                    f"file (missing: {', '.join(record.missing) or 'mesh'})", sid)
        if record.dataset == "bu3dfe":
            mesh = load_wrl(record.mesh)
            if mesh.uv is None:
                raise ScanError("read", f"{record.mesh}: no texture coordinates", sid)
            image = _texture(record, mesh.texture, cfg)
            return RawScan(points=mesh.vertices, image=image, native=_read_native_landmarks(record),
                           faces=mesh.faces, uv=mesh.uv, faces_uv=mesh.faces_uv)
        rng = load_bnt(record.mesh)
        image = _texture(record, rng.texture, cfg)
        return RawScan(points=rng.xyz[rng.valid], image=image,
                       native=_read_native_landmarks(record),
                       grid_valid=rng.valid, grid_uv=rng.uv)


def _texture(record: ScanRecord, named: str | None, cfg: PrepConfig) -> np.ndarray:
    """The texture image the scan names, kept inside the dataset tree and size-limited."""
    path = resolve_texture(record, named, allow_outside=cfg.allow_outside_textures)
    return load_image(path, max_pixels=cfg.max_image_pixels)


def _read_native_landmarks(record: ScanRecord):
    """3D landmarks of the scan (``.bnd`` or ``.lm3``) or None when the scan has no file."""
    if record.landmarks is None:
        return None
    return (load_bnd if record.dataset == "bu3dfe" else load_lm3)(record.landmarks)


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
    vertices, faces, uv, faces_uv, origin = surface.triangles()
    with step("sanity", sid):  # before the costly steps: texture coordinates, image, edges
        _insane(surface_problems(vertices, faces, uv[faces if faces_uv is None else faces_uv],
                                 raw.image.shape, cfg.to_dict()), sid)
    native, rot, tip = raw.native, surface.rot, surface.tip
    with step("gridfit", sid):
        x, y, z = surface.aligned[surface.keep].T
        fitted = _fitter(cfg, grid).fit(x, y, z)[::-1]  # gridfit rows go up; images go down
        depth = np.where(np.isnan(fitted), np.nanmin(fitted), fitted).astype(np.float32)
    with step("texture", sid):
        if len(faces) == 0:
            raise ScanError("texture", "no triangle of the kept surface to texture")
        texture, covered = texture_from_mesh(vertices, faces, uv, faces_uv, raw.image, grid,
                                             uv_origin=origin)
    scheme, names = cfg.landmark_scheme()
    landmarks = np.full((len(names), 2), np.nan, np.float32)
    landmarks68 = np.full((68, 2), np.nan, np.float32)
    with step("landmarks", sid):
        if native is not None:
            landmarks[:] = grid.to_pixels(apply_pose(canonical_points(native), rot, tip)[:, :2])
        use_dlib = cfg.landmarks == "dlib" or (cfg.landmarks == "auto" and native is None)
        if cfg.landmarks == "native" and native is None:
            raise ScanError("landmarks", "no native landmark file (use --landmarks auto or dlib)",
                            sid)
        if use_dlib:
            landmarks68[:] = _dlib_on_grid(texture)
    scheme = "dlib68" if use_dlib else scheme
    with step("masks", sid):
        masks = salient_masks(landmarks68 if use_dlib else landmarks, scheme, grid.size,
                              cfg.mask_margin_px)
    points = None
    if cfg.points:
        with step("points", sid):  # seeded by the scan id: the same scan, the same points
            points = sample_points(vertices, faces, cfg.points, cfg.point_sampling,
                                   seed=zlib.crc32(sid.encode("utf-8")))
    sample = Sample(sample_id=sid, subject=record.subject, expression=record.expression,
                    intensity=int(record.intensity), source=str(record.mesh), texture=texture,
                    depth=depth, coverage=covered, landmarks=landmarks, landmarks68=landmarks68,
                    mask_source=int(use_dlib), points=points, **masks)
    # well formed but wrong (landmarks off the mesh, a 1x1 texture): not a sample
    _insane(sanity_problems(vars(sample), scheme, grid, cfg.to_dict()), sid)
    return sample


def _insane(problems: list[str], sid: str) -> None:
    if problems:
        raise ScanError("sanity", "; ".join(problems), sid)


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
