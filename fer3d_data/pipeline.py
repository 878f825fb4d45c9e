"""Scan -> sample, and the parallel driver that turns a list of scans into one shard.

Stage: preprocessing driver. :func:`process_scan` chains the pure steps of
:mod:`fer3d_data.surface`, :mod:`fer3d_data.masks` and :mod:`fer3d_data.landmarks` for one
scan; :func:`run_prep` runs it over many scans in worker processes while the parent alone
writes the shard (:class:`fer3d_data.shards.ShardWriter`). A scan that fails becomes an
``/errors`` row and the run goes on; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .datasets.records import ScanRecord
from .errors import Fer3dDataError, RawFormatError, ScanError
from .io import load_bnd, load_bnt, load_image, load_lm3, load_wrl
from .landmarks import SCHEME_NAMES, canonical_points, detect_dlib68
from .masks import salient_masks
from .schema import CLASS_CODE, DATASETS
from .shards import ShardWriter, array_spec
from .surface import (Grid, GridFitter, apply_pose, clean_points, crop_sphere,
                      frontal_rotation, nose_tip, texture_from_grid, texture_from_mesh)

# Native landmark scheme of each dataset; its canonical point order (fer3d_data.landmarks)
# is the order of the shard's /landmarks rows.
DATASET_SCHEMES = {"bu3dfe": "bu3dfe83", "bosphorus": "bosphorus"}

# Sample arrays whose in-memory dtype differs from the stored one (shards.array_spec).
_MEMORY_DTYPES = {"mask56": np.dtype(np.float32), "mask28": np.dtype(np.float32)}

# Error-row steps beyond the preprocessing steps of docs/shards.md.
STEP_UNEXPECTED = "process"  # an exception no step claimed
STEP_WORKER = "worker"  # the worker process died (segfault, out of memory)

_CHOICES = {
    "interp": ("triangle", "bilinear", "nearest"),
    "regularizer": ("gradient", "laplacian", "springs"),
    "landmarks": ("auto", "native", "dlib"),
    "compression": ("gzip", "lzf", "none"),
}


@dataclass
class PrepConfig:
    """Every preprocessing parameter; written as JSON into the shard's ``/config``.

    dataset            "bu3dfe" or "bosphorus".
    image_size         S: side of the depth/texture grid in pixels.
    crop_radius        mm; sphere around the nose tip, and half the grid's side.
    smoothness         gridfit smoothness s (lambda = s * |A|_1 / |R|_1).
    interp             gridfit data term: "triangle", "bilinear" or "nearest".
    regularizer        gridfit regulariser: "gradient", "laplacian" or "springs".
    pose               rotate the cropped face to frontal before gridfit.
    outlier_nb_neighbors, outlier_std_ratio
                       open3d statistical outlier removal.
    spike_radius       mm; neighbourhood of the local median depth for spike removal.
    spike_max_dev      mm; a point further than this from its local median is a spike.
    min_points         a scan with fewer points left after cleaning is an error.
    mask_margin_px     dilation of each salient region's hull, in grid pixels at S.
    landmarks          "native" (the scan's own), "dlib" (68-point detector on the aligned
                       texture) or "auto" (native where the scan has them, else dlib).
    compression        shard compression: "gzip", "lzf" or "none".
    compression_level  gzip level 0-9.

    >>> PrepConfig.from_dict(PrepConfig(dataset="bosphorus").to_dict()).dataset
    'bosphorus'
    """

    dataset: str = "bu3dfe"
    image_size: int = 224
    crop_radius: float = 90.0
    smoothness: float = 1.0
    interp: str = "triangle"
    regularizer: str = "gradient"
    pose: bool = True
    outlier_nb_neighbors: int = 20
    outlier_std_ratio: float = 3.0  # 2.0 removed genuine nostril vertices of unevenly sampled meshes
    spike_radius: float = 2.5
    spike_max_dev: float = 4.0
    min_points: int = 2000
    mask_margin_px: int = 4
    landmarks: str = "auto"
    compression: str = "gzip"
    compression_level: int = 4

    def __post_init__(self):
        problems = []
        if self.dataset not in DATASETS:
            problems.append(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 8 <= int(self.image_size) <= 4096:
            problems.append(f"image_size must be in [8, 4096], got {self.image_size}")
        for name in ("crop_radius", "smoothness", "outlier_std_ratio", "spike_radius", "spike_max_dev"):
            if not float(getattr(self, name)) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("outlier_nb_neighbors", "min_points"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.mask_margin_px) < 0:
            problems.append(f"mask_margin_px must be >= 0, got {self.mask_margin_px}")
        if not 0 <= int(self.compression_level) <= 9:
            problems.append(f"compression_level must be in [0, 9], got {self.compression_level}")
        if problems:
            raise Fer3dDataError("invalid preprocessing config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict of every parameter."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PrepConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise Fer3dDataError(f"unknown preprocessing config keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def landmark_scheme(self) -> tuple[str, tuple[str, ...]]:
        """(scheme, names) of this dataset's native landmarks, as stored in ``/landmarks``."""
        scheme = DATASET_SCHEMES[self.dataset]
        return scheme, SCHEME_NAMES[scheme]


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

    def check(self, image_size: int, n_landmarks: int) -> None:
        """Raise :class:`ScanError` (step "masks"/"landmarks"/...) on a wrong shape or dtype."""
        spec = array_spec(image_size, n_landmarks)
        for name, (shape, dtype) in spec.items():
            dtype = _MEMORY_DTYPES.get(name, dtype)
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
                got = f"{a.shape} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ScanError("sample", f"{name} must be {shape} {np.dtype(dtype)}, got {got}", self.sample_id)
        if self.expression not in CLASS_CODE:
            raise ScanError("sample", f"unknown expression {self.expression!r}", self.sample_id)
        if self.mask_source not in (0, 1):
            raise ScanError("sample", f"mask_source must be 0 or 1, got {self.mask_source}", self.sample_id)


# ----------------------------------------------------------------------------------------
# One scan. The lead writes the body of process_scan: the chain of pure steps.
# ----------------------------------------------------------------------------------------

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


def process_scan(record: ScanRecord, cfg: PrepConfig) -> Sample:
    """Raw scan -> :class:`Sample` by the chain of docs/preprocessing.md.

    read -> clean -> nose tip -> crop -> pose -> gridfit -> texture -> landmarks -> masks.
    Any failure raises :class:`ScanError` naming its step; :func:`run_prep` records it.
    """
    sid = record.scan_id
    grid = Grid(cfg.image_size, cfg.crop_radius)
    with step("read", sid):
        if record.expression is None:
            raise ScanError("read", f"capture {record.capture} is not an expression scan", sid)
        if record.mesh is None:
            raise ScanError("read", f"missing {'mesh' if record.dataset == 'bu3dfe' else 'range grid'} "
                                    f"file (missing: {', '.join(record.missing) or 'mesh'})", sid)
        if record.dataset == "bu3dfe":
            mesh = load_wrl(record.mesh)
            if mesh.uv is None:
                raise ScanError("read", f"{record.mesh}: no texture coordinates", sid)
            points = mesh.vertices
        else:
            rng = load_bnt(record.mesh)
            points = rng.xyz[rng.valid]
        image = load_image(_texture_path(record, mesh.texture if record.dataset == "bu3dfe" else rng.texture))
        native = _read_native_landmarks(record)

    with step("clean", sid):
        keep = clean_points(points, nb_neighbors=cfg.outlier_nb_neighbors, std_ratio=cfg.outlier_std_ratio,
                            radius_mm=cfg.spike_radius, max_dev_mm=cfg.spike_max_dev,
                            min_points=cfg.min_points,
                            grid_valid=None if record.dataset == "bu3dfe" else rng.valid)
    with step("nose_tip", sid):
        tip = nose_tip(points[keep], native)
    with step("crop", sid):
        keep &= crop_sphere(points, tip, cfg.crop_radius)
        if keep.sum() < cfg.min_points:
            raise ScanError("crop", f"{int(keep.sum())} points within {cfg.crop_radius} mm of the nose "
                                    f"tip, need {cfg.min_points}", sid)
    with step("pose", sid):
        rot = frontal_rotation(points[keep], native) if cfg.pose else np.eye(3)
        aligned = apply_pose(points, rot, tip)
    with step("gridfit", sid):
        x, y, z = aligned[keep].T
        fitted = _fitter(cfg, grid).fit(x, y, z)[::-1]  # gridfit rows go up; images go down
        depth = np.where(np.isnan(fitted), np.nanmin(fitted), fitted).astype(np.float32)
    with step("texture", sid):
        if record.dataset == "bu3dfe":
            faces_kept = keep[mesh.faces].all(axis=1)
            texture, covered = texture_from_mesh(aligned, mesh.faces[faces_kept], mesh.uv,
                                           None if mesh.faces_uv is None else mesh.faces_uv[faces_kept],
                                           image, grid)
        else:
            valid = rng.valid.copy()
            valid[rng.valid] = keep
            xyz = np.zeros_like(rng.xyz)
            xyz[rng.valid] = aligned
            texture, covered = texture_from_grid(xyz, rng.uv, valid, image, grid)

    scheme, names = cfg.landmark_scheme()
    landmarks = np.full((len(names), 2), np.nan, np.float32)
    landmarks68 = np.full((68, 2), np.nan, np.float32)
    with step("landmarks", sid):
        if native is not None:
            landmarks[:] = grid.to_pixels(apply_pose(canonical_points(native), rot, tip)[:, :2])
        use_dlib = cfg.landmarks == "dlib" or (cfg.landmarks == "auto" and native is None)
        if cfg.landmarks == "native" and native is None:
            raise ScanError("landmarks", "no native landmark file (use --landmarks auto or dlib)", sid)
        if use_dlib:
            landmarks68[:] = _dlib_on_grid(texture)
    with step("masks", sid):
        masks = (salient_masks(landmarks68, "dlib68", grid.size, cfg.mask_margin_px) if use_dlib
                 else salient_masks(landmarks, scheme, grid.size, cfg.mask_margin_px))

    return Sample(sample_id=sid, subject=record.subject, expression=record.expression,
                  intensity=int(record.intensity), source=str(record.mesh), texture=texture,
                  depth=depth, coverage=covered, landmarks=landmarks, landmarks68=landmarks68,
                  mask_source=int(use_dlib), **masks)


def _texture_path(record: ScanRecord, named: str | None) -> Path:
    """The texture the scan file names (wrl url, bnt header) beside it, else the walker's."""
    if named:
        path = Path(record.mesh).parent / named
        if path.is_file():
            return path
    if record.texture is None:
        raise ScanError("read", f"missing texture image{f' {named}' if named else ''} for {record.mesh}")
    return Path(record.texture)


def _read_native_landmarks(record: ScanRecord):
    """3D landmarks of the scan (``.bnd`` or ``.lm3``) or None when the scan has no file."""
    if record.landmarks is None:
        return None
    return (load_bnd if record.dataset == "bu3dfe" else load_lm3)(record.landmarks)


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


# ----------------------------------------------------------------------------------------
# The driver.
# ----------------------------------------------------------------------------------------

@dataclass
class PrepSummary:
    """What :func:`run_prep` did. ``exit_code`` is what the CLI returns."""

    out_path: Path
    total: int
    written: int
    skipped: int
    failed_by_step: dict[str, int]
    seconds: float
    n_samples: int
    strict: bool = False
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.failed_by_step.values())

    @property
    def exit_code(self) -> int:
        """0 on success; 1 when the shard holds no sample, or with ``strict`` and any failure."""
        if self.n_samples == 0 or (self.strict and self.failed):
            return 1
        return 0

    def line(self) -> str:
        """One-line summary: ``written 710, skipped 0, failed 10 (gridfit 7, read 3) -> out.h5 in 1m02s``."""
        steps = ", ".join(f"{k} {v}" for k, v in sorted(self.failed_by_step.items(), key=lambda kv: -kv[1]))
        failed = f"failed {self.failed}" + (f" ({steps})" if steps else "")
        m, s = divmod(int(round(self.seconds)), 60)
        return (f"written {self.written}, skipped {self.skipped}, {failed} -> {self.out_path} "
                f"({self.n_samples} samples) in {m}m{s:02d}s")


def source_of(record: ScanRecord, raw_root: str | os.PathLike | None) -> str:
    """The ``source`` column of a scan: its mesh/grid path relative to the raw root."""
    if record.mesh is None:  # a missing mesh still needs a stable key for its error row
        return f"{record.subject}/{record.scan_id}"
    path = Path(record.mesh)
    if raw_root is not None:
        with contextlib.suppress(ValueError):
            return path.resolve().relative_to(Path(raw_root).resolve()).as_posix()
    return path.as_posix()


def _describe_failure(exc: BaseException) -> tuple[str, str]:
    """(step, message) of an exception raised by process_scan."""
    if isinstance(exc, ScanError):
        return exc.step, exc.message
    if isinstance(exc, RawFormatError):
        return "read", str(exc)
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return STEP_UNEXPECTED, f"{type(exc).__name__}: {exc}{where}"


def _process_one(record: ScanRecord, cfg: PrepConfig) -> tuple:
    """Run process_scan and return ``("ok", sample)`` or ``("error", step, message)``.

    Top-level so spawn-started workers can unpickle it; exceptions become plain tuples so
    an exception type that does not pickle cannot break the pool.
    """
    try:
        sample = process_scan(record, cfg)
        scheme, names = cfg.landmark_scheme()
        sample.check(cfg.image_size, len(names))
        return ("ok", sample)
    except Exception as exc:  # noqa: BLE001 - every failure of one scan becomes an error row
        return ("error", *_describe_failure(exc))


def _worker_init() -> None:
    # Ctrl-C goes to the whole process group: only the parent handles it, so it can flush.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _one_thread_per_worker():
    """Workers are processes: keep BLAS/OpenMP in each to one thread (no oversubscription)."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _results_serial(records: Sequence[ScanRecord], cfg: PrepConfig):
    """(record, result) in order, in this process (workers <= 1; tests monkeypatch here)."""
    for record in records:
        yield record, _process_one(record, cfg)


def _results_parallel(records: Sequence[ScanRecord], cfg: PrepConfig, workers: int, fn=None):
    """(record, result) in input order from a spawn-started process pool.

    At most ``2 * workers`` scans are in flight, so memory stays flat however many scans.
    When a worker dies the pool breaks for every scan in flight: those are retried one at a
    time in a fresh pool, and the scan that kills its worker alone gets a ``worker`` error.
    """
    fn = fn or _process_one  # tests pass a top-level stand-in
    ctx = multiprocessing.get_context("spawn")
    todo = deque(records)
    suspects: deque[ScanRecord] = deque()
    limit = 2 * workers
    pool = None
    try:
        while todo or suspects:
            if pool is None:
                with _one_thread_per_worker():
                    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)
            if suspects:  # isolation mode: one scan at a time
                record = suspects.popleft()
                try:
                    yield record, pool.submit(fn, record, cfg).result()
                except BrokenProcessPool:
                    pool.shutdown(wait=True)
                    pool = None
                    yield record, ("error", STEP_WORKER, "worker process died while processing this scan")
                continue
            inflight: deque = deque()
            try:
                while todo or inflight:
                    while todo and len(inflight) < limit:
                        record = todo.popleft()
                        inflight.append((record, pool.submit(fn, record, cfg)))
                    record, fut = inflight[0]
                    result = fut.result()
                    inflight.popleft()
                    yield record, result
            except BrokenProcessPool:
                suspects.extend(r for r, _ in inflight)
                pool.shutdown(wait=True)
                pool = None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def run_prep(records: Iterable[ScanRecord], out_path: str | os.PathLike, cfg: PrepConfig, *,
             workers: int | None = None, strict: bool = False, overwrite: bool = False,
             progress: bool = True, raw_root: str | os.PathLike | None = None) -> PrepSummary:
    """Preprocess ``records`` into the shard ``out_path`` (resumable, see docs/shards.md).

    workers   processes; None = every core; 0 or 1 = in this process (no pool).
    strict    any failed scan makes ``exit_code`` 1 (the shard is still written).
    overwrite start afresh even if ``out_path`` (or its ``.tmp``) holds another config.
    raw_root  the raw tree's root; ``source`` columns are relative to it.

    Samples whose ``sample_id`` is already in the shard are skipped. On KeyboardInterrupt
    the ``.tmp`` file is flushed and closed (a rerun resumes) and the interrupt re-raised.
    """
    records = list(records)
    t0 = time.monotonic()
    scheme, names = cfg.landmark_scheme()
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    failed: Counter = Counter()
    failures: list[tuple[str, str, str]] = []
    written = 0
    writer = ShardWriter(out_path, dataset=cfg.dataset, cfg=cfg, image_size=cfg.image_size,
                         landmark_scheme=scheme, landmark_names=names, overwrite=overwrite)
    done = writer.existing_ids()
    todo = [r for r in records if r.scan_id not in done]
    skipped = len(records) - len(todo)
    workers = max(0, min(int(workers), len(todo)))
    bar = _progress_bar(len(todo), progress)
    results = _results_serial(todo, cfg) if workers <= 1 else _results_parallel(todo, cfg, workers)
    try:
        # closing() shuts the pool down at once if writing fails or Ctrl-C arrives
        with contextlib.closing(results):
            for record, result in results:
                source = source_of(record, raw_root)
                if result[0] == "ok":
                    try:
                        writer.append(dataclasses.replace(result[1], source=source))
                        written += 1
                    except Fer3dDataError as e:  # e.g. an id longer than its index column
                        result = ("error", "sample", str(e))
                if result[0] == "error":
                    _, step_name, message = result
                    writer.add_error(source, step_name, message)
                    failed[step_name] += 1
                    failures.append((source, step_name, message))
                bar.update(1)
                if failed:
                    bar.set_postfix(failed=sum(failed.values()), refresh=False)
    except BaseException:
        bar.close()
        writer.close(complete=False)
        raise
    bar.close()
    n_samples = len(writer)
    writer.close(complete=True)
    return PrepSummary(out_path=Path(out_path), total=len(records), written=written, skipped=skipped,
                       failed_by_step=dict(failed), seconds=time.monotonic() - t0,
                       n_samples=n_samples, strict=strict, failures=failures)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="scan", desc="prep", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1,
                mininterval=0.1 if sys.stderr.isatty() else 30.0)  # logs: a line per 30 s
