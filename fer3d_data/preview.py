"""A montage PNG of a few shard samples, to see at a glance whether alignment is right.

Stage: shard tools (after preprocessing). One row per sample: texture | depth coloured over
scanned cells (grey where gridfit filled) | salient-region mask over the texture | native
landmarks (green) and dlib points (red) over the texture. Texture and depth are
pixel-aligned, so the mask and landmarks must sit on the eyes, nose and mouth in every panel.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import Fer3dDataError
from .shards import MASK_SOURCES, open_shard

_MIN_CELL = 160  # upsample small grids (tests, S=32) so the montage stays readable
_LABEL_H = 22
_PANELS = ("texture", "depth", "mask", "landmarks")


def depth_colour(depth: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """(S, S) depth mm + (S, S) bool -> (S, S, 3) uint8 BGR, turbo over covered cells.

    Colours span the covered cells' depth range; uncovered cells show dark grey.
    """
    if depth.shape != coverage.shape or depth.ndim != 2:
        raise ValueError(f"depth and coverage must be the same (S, S), got {depth.shape}, "
                         f"{coverage.shape}")
    out = np.full((*depth.shape, 3), 48, np.uint8)
    if coverage.any():
        lo, hi = np.percentile(depth[coverage], (1, 99))
        scaled = np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1)
        coloured = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
        out[coverage] = coloured[coverage]
    return out


def _row(sample: dict, cell: int) -> np.ndarray:
    """(cell, 4 * cell, 3) uint8 BGR panels of one sample."""
    S = sample["depth"].shape[0]
    scale = cell / S
    resize = lambda img: cv2.resize(img, (cell, cell), interpolation=cv2.INTER_NEAREST)  # noqa: E731
    texture = resize(cv2.cvtColor(sample["texture"], cv2.COLOR_RGB2BGR))
    depth = resize(depth_colour(sample["depth"], sample["coverage"]))
    mask = resize(sample["mask"]).astype(bool)
    overlay = texture.copy()
    overlay[mask] = (0.5 * overlay[mask] + 0.5 * np.array([0, 0, 255])).astype(np.uint8)
    # region outlines stay visible on a red-ish texture
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(overlay, contours, -1, (0, 255, 255), 1)
    marks = texture.copy()
    radius = max(1, cell // 100)
    for points, colour in ((sample["landmarks"], (0, 255, 0)),
                           (sample["landmarks68"], (0, 0, 255))):
        for x, y in points[np.isfinite(points).all(axis=1)]:
            # pixel centres are at integers: scale (x + 0.5) so the dot sits on its cell
            centre = (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5)))
            cv2.circle(marks, centre, radius, colour, -1, lineType=cv2.LINE_AA)
    return np.concatenate([texture, depth, overlay, marks], axis=1)


def _label(texts: list[tuple[int, str]], width: int) -> np.ndarray:
    """A white (22, width, 3) bar with each text at its x offset."""
    bar = np.full((_LABEL_H, width, 3), 255, np.uint8)
    for x, text in texts:
        cv2.putText(bar, text, (x + 4, _LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return bar


def preview(path: str | os.PathLike, out_png: str | os.PathLike, *, n: int = 8) -> Path:
    """Write a montage of ``n`` samples spread evenly over the shard ``path``; returns out_png."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out_png = Path(out_png)
    with open_shard(path) as shard:
        if len(shard) == 0:
            raise Fer3dDataError(f"{path}: the shard holds no sample to preview")
        cell = max(shard.image_size, _MIN_CELL)
        rows = [_label([(k * cell, name) for k, name in enumerate(_PANELS)], 4 * cell)]
        for i in np.unique(np.linspace(0, len(shard) - 1, min(n, len(shard))).round().astype(int)):
            s = shard.sample(int(i))
            intensity = "" if s["intensity"] < 0 else f" intensity {s['intensity']}"
            source = MASK_SOURCES[s["mask_source"]]
            rows.append(_label([(0, f"#{i} {s['sample_id']}  {shard.class_names[s['label']]}"
                                    f"{intensity}  masks: {source}")], 4 * cell))
            rows.append(_row(s, cell))
    if not cv2.imwrite(str(out_png), np.concatenate(rows, axis=0)):
        raise Fer3dDataError(f"{out_png}: could not write the PNG "
                             "(folder missing or not writable?)")
    return out_png
