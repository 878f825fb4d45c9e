"""Synthetic Bosphorus scans: ``.bnt`` range grid, ``.png`` texture, ``.lm3``/``.lm2``
named landmarks, in the formats of docs/formats.md (#bnt, #lm3-and-lm2, #images)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import BOSPHORUS_CAPTURES
from ..schema import EXPRESSIONS, NEUTRAL
from ._common import (
    MARKERS_BOSPHORUS,
    check_variants,
    format_rows,
    hole_centres,
    in_holes,
    render,
    write_image,
    write_text,
)
from .face import face_bounds, face_height, face_mask
from .truth import ScanTruth, scan_truth

LM_VARIANTS = ("lf", "info", "tabs")
BNT_VARIANTS = ("zonly",)
ZMIN = -1e9
GRID = (230, 190)
SPACING = 0.76
TEXTURE_BACKGROUND = (60, 55, 50)


@dataclass(frozen=True)
class BosphorusScan:
    """One synthetic Bosphorus scan, arrays exactly as written.

    xyz       (rows, cols, 3) float64 X, Y, Z planes in FILE order (row 0 = bottom of the
              face); background cells hold ZMIN.
    uv        (rows, cols, 2) normalised U, V (origin top-left), valid everywhere.
    texture   (H, W, 3) uint8 RGB of the ``.png``.
    names     landmark names present in ``.lm3``/``.lm2`` (some may be dropped).
    lm3       (K, 3) mm: the grid vertex each landmark snapped to; lm2 (K, 2) pixels.
    """

    stem: str
    subject: str
    expression: str
    truth: ScanTruth
    xyz: np.ndarray
    uv: np.ndarray
    texture: np.ndarray
    names: tuple
    lm3: np.ndarray
    lm2: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(rows, cols) bool in file order: no coordinate at ZMIN."""
        return ~np.any(self.xyz == ZMIN, axis=2)


def bosphorus_subjects(n: int) -> list[str]:
    return [f"bs{k:03d}" for k in range(n)]


def build_bosphorus_scan(subject: str, expression: str, *, seed: int = 0, capture: int = 0,
                         grid: tuple = GRID, spacing: float | None = None,
                         texture_scale: float = 6.0, noise: float = 0.0, holes: int = 0,
                         spikes: float = 0.0, outliers: float = 0.0, drop_landmarks: float = 0.15,
                         markers: bool = False, bnt_variants=()) -> BosphorusScan:
    """Generate one scan in memory (see :func:`make_bosphorus` for the options)."""
    rows, cols = (int(g) for g in grid)
    if rows < 8 or cols < 8 or texture_scale <= 0:
        raise ValueError(f"grid must be at least 8x8 and texture_scale > 0, "
                         f"got {grid}, {texture_scale}")
    bv = check_variants(bnt_variants, BNT_VARIANTS, "bnt")
    sp = SPACING * GRID[0] / rows if spacing is None else float(spacing)
    truth = scan_truth("bosphorus", subject, expression, seed=seed, capture=capture)
    p = truth.params
    stem = f"{subject}_{BOSPHORUS_CAPTURES[expression]}_{capture}"
    rng = np.random.default_rng([seed, 2, 7, capture] + [ord(ch) for ch in stem])
    bounds = face_bounds(p)
    # Face-frame node positions; row 0 is the bottom of the face (file order).
    xs = (np.arange(cols) - (cols - 1) / 2) * sp
    # Centred on the neutral face so that a subject's scans share the grid whatever the jaw does.
    ys = p.identity.face_cy - p.tip[1] - 5 + (np.arange(rows) - (rows - 1) / 2) * sp
    gx, gy = np.meshgrid(xs, ys)
    valid = face_mask(p, gx, gy)
    if holes > 0:
        valid &= ~in_holes(gx, gy, hole_centres(rng, holes, bounds))
    z = face_height(p, gx, gy)
    idx = np.flatnonzero(valid)
    if noise > 0:
        z.flat[idx] += rng.normal(0.0, noise, len(idx))
    for frac, lo, hi in ((spikes, 5.0, 20.0), (outliers, 30.0, 80.0)):
        if frac > 0:
            k = rng.choice(idx, max(1, int(round(frac * len(idx)))), replace=False)
            z.flat[k] += rng.choice([-1.0, 1.0], len(k)) * rng.uniform(lo, hi, len(k))
    o = truth.offset
    xyz = np.stack([gx + o[0], gy + o[1], z + o[2]], axis=-1)
    xyz[~valid] = ZMIN
    if "zonly" in bv:
        # One genuine file has cells with only Z at the sentinel.
        xyz[..., 2].flat[rng.choice(idx, min(3, len(idx)), replace=False)] = ZMIN
    u = (np.arange(cols) + 0.5) / cols
    v = 1 - (np.arange(rows) + 0.5) / rows
    uv = np.stack(np.broadcast_arrays(u[None, :], v[:, None]), axis=-1).astype(np.float64)
    th, tw = int(round(rows * texture_scale)), int(round(cols * texture_scale))
    width, height = cols * sp, rows * sp
    texture = render(p, xs[0] - sp / 2 + width / (2 * tw), ys[-1] + sp / 2 - height / (2 * th),
                     width / tw, -height / th, (th, tw), background=TEXTURE_BACKGROUND,
                     markers=MARKERS_BOSPHORUS if markers else None, scheme="bosphorus")
    names, lm3, lm2 = _snap_landmarks(truth, xyz, uv, rng, drop_landmarks, sp, (tw, th))
    return BosphorusScan(stem, subject, expression, truth, xyz, uv, texture, names, lm3, lm2)


def _snap_landmarks(truth, xyz, uv, rng, drop, sp, size):
    """Each landmark -> the nearest valid grid vertex (Bosphorus ``.lm3`` points are
    vertices); left out when that vertex is > 2 cells away (a hole) or when dropped."""
    valid = ~np.any(xyz == ZMIN, axis=2)
    cells = np.flatnonzero(valid)
    pts = xyz.reshape(-1, 3)[cells]
    names, p3, p2 = [], [], []
    n = len(truth.landmarks)
    dropped = set(rng.choice(n, int(rng.integers(1, 3)), replace=False).tolist()) \
        if rng.random() < drop else set()
    for k, (name, q) in enumerate(zip(truth.landmarks.names, truth.landmarks.points)):
        d2 = ((pts[:, :2] - q[:2]) ** 2).sum(axis=1)
        j = int(np.argmin(d2))
        if k in dropped or d2[j] > (2 * sp) ** 2:
            continue
        names.append(name)
        p3.append(pts[j])
        p2.append(uv.reshape(-1, 2)[cells[j]] * size)
    return tuple(names), np.array(p3).reshape(-1, 3), np.array(p2).reshape(-1, 2)


# ---------------------------------------------------------------- writers


def bnt_bytes(xyz: np.ndarray, uv: np.ndarray, texture_name: str, zmin: float = ZMIN) -> bytes:
    """The ``.bnt`` file: header, then the X, Y, Z, U, V planes (rows, cols) in file order."""
    rows, cols = xyz.shape[:2]
    name = texture_name.encode("ascii")
    header = struct.pack("<HHdH", rows, cols, zmin, len(name)) + name + struct.pack("<I",
                                                                                    5 * rows * cols)
    planes = np.concatenate([np.moveaxis(xyz, -1, 0), np.moveaxis(uv, -1, 0)]).astype("<f8")
    return header + planes.tobytes()


def _info(stem: str) -> str:
    return f"*\nSynthetic scan {stem}\nwritten by fer3d_data.synth\n"


def lm3_text(names, points: np.ndarray, variants=(), stem: str = "") -> str:
    """``# 3D Landmark File``, optional ``*`` info block, ``N landmarks:``, name/xyz pairs."""
    v = check_variants(variants, LM_VARIANTS, "lm")
    rows = format_rows(points, sep="\t" if "tabs" in v else " ")
    head = "# 3D Landmark File\n" + (_info(stem) if "info" in v else "") + "\n"
    return head + f"{len(names)} landmarks:\n" + "".join(f"{n}\n{r}\n" for n, r in zip(names, rows))


def lm2_text(names, points: np.ndarray, variants=(), stem: str = "") -> str:
    """``# 2D Landmark File``, ``N landmarks``, ``Labels:`` block, then the
    ``2D Image coordinates:`` block."""
    v = check_variants(variants, LM_VARIANTS, "lm")
    rows = format_rows(points, sep="\t" if "tabs" in v else " ")
    head = "# 2D Landmark File\n" + (_info(stem) if "info" in v else "") + "\n"
    return (head + f"{len(names)} landmarks\n\nLabels:\n" + "".join(f"{n}\n" for n in names)
            + "\n2D Image coordinates:\n" + "".join(f"{r}\n" for r in rows))


def write_bosphorus_scan(scan: BosphorusScan, out_dir, *, lm_variants=(), skip=()) -> list[Path]:
    """Write ``<subject>/<stem>.bnt``, ``.png``, ``.lm3``, ``.lm2``; roles in ``skip``
    ("texture", "lm3", "lm2") are left out."""
    folder = Path(out_dir) / scan.subject
    folder.mkdir(parents=True, exist_ok=True)
    crlf = "lf" not in check_variants(lm_variants, LM_VARIANTS, "lm")
    base = folder / scan.stem
    bnt = Path(f"{base}.bnt")
    bnt.write_bytes(bnt_bytes(scan.xyz, scan.uv, f"{scan.stem}.png"))
    out = [bnt]
    if "texture" not in skip:
        out.append(write_image(Path(f"{base}.png"), scan.texture))
    if "lm3" not in skip:
        out.append(write_text(Path(f"{base}.lm3"),
                              lm3_text(scan.names, scan.lm3, lm_variants, scan.stem), crlf))
    if "lm2" not in skip:
        out.append(write_text(Path(f"{base}.lm2"),
                              lm2_text(scan.names, scan.lm2, lm_variants, scan.stem), crlf))
    return out


def make_bosphorus(out_dir, *, subjects: int = 2, seed: int = 0, grid: tuple = GRID,
                   spacing: float | None = None, texture_scale: float = 6.0, noise: float = 0.0,
                   holes: int = 0, spikes: float = 0.0, outliers: float = 0.0,
                   drop_landmarks: float = 0.15, lm_variants=(), bnt_variants=(),
                   markers: bool = False, missing: float = 0.0, expressions=None) -> list[Path]:
    """Write a synthetic Bosphorus tree: per subject N_N_0 and the six E_*_0 emotions.

    grid            (rows, cols) of the range grid (Bosphorus: ~230×190 at 0.76 mm).
    spacing         mm between grid nodes; default keeps the face size: 0.76·230/rows.
    texture_scale   texture pixels per grid cell (Bosphorus: ~6).
    noise           gaussian sigma (mm) on Z; holes: disc holes per scan (background);
    spikes          fraction of valid cells moved 5-20 mm in Z; outliers: 30-80 mm.
    drop_landmarks  probability that a scan lacks 1-2 of its 22 landmarks.
    lm_variants     LM_VARIANTS: "lf" (LF instead of CRLF), "info" (``*`` block), "tabs".
    bnt_variants    BNT_VARIANTS: "zonly" (3 cells with only Z at the sentinel).
    markers         coloured dots at MARKERS_BOSPHORUS landmarks in the texture.
    missing         probability that each companion file (png, lm3, lm2) is not written.
    Same arguments -> same bytes. Returns the written paths.
    """
    if subjects < 1:
        raise ValueError(f"subjects must be >= 1, got {subjects}")
    written = []
    for subject in bosphorus_subjects(subjects):
        for expression in (NEUTRAL,) + EXPRESSIONS:
            if expressions is not None and expression not in expressions:
                continue
            scan = build_bosphorus_scan(subject, expression, seed=seed, grid=grid, spacing=spacing,
                                        texture_scale=texture_scale, noise=noise, holes=holes,
                                        spikes=spikes, outliers=outliers,
                                        drop_landmarks=drop_landmarks, markers=markers,
                                        bnt_variants=bnt_variants)
            rng = np.random.default_rng([seed, 2, 11] + [ord(ch) for ch in scan.stem])
            skip = [r for r, u in zip(("texture", "lm3", "lm2"), rng.random(3)) if u < missing]
            written += write_bosphorus_scan(scan, out_dir, lm_variants=lm_variants, skip=skip)
    return written
