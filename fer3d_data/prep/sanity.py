"""Sanity checks every written sample passes and a wrong one fails.

Stage: preprocessing (the last step of each scan) and ``fer3d-prep verify``. A sample can be
well formed (shapes, dtypes: the writer's check) and still wrong: landmarks 500 mm off the
mesh leave no landmark on the grid and an empty mask; a 1x1 texture stretched over the face
gives a constant texture; a corrupt chunk index reads a depth of zeros. The thresholds are
:class:`~fer3d_data.prep.PrepConfig` keys stored in the shard's ``/config``
(docs/preprocessing.md, "Sanity checks"). Only numpy: :mod:`fer3d_data.shards` calls it too.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# PrepConfig keys of the thresholds, with their defaults (for a config dict lacking them).
THRESHOLDS = {"min_landmark_fraction": 0.5, "min_texture_std": 1.0, "min_depth_relief": 5.0}
_NO_MASKS = 2  # mask_source of a sample written with --masks none (shards.MASK_SOURCES)


def sanity_problems(s: Mapping[str, np.ndarray], mask_source: int, cfg: Mapping, *,
                    textured: bool = True) -> list[str]:
    """Every failed check of one sample, as readable strings; [] when it is sane.

    s            the sample's arrays (``texture`` (S, S, 3), ``depth``, ``coverage``, ``mask``
                 (S, S), ``landmarks`` (K, 2), ``landmarks68`` (68, 2)).
    mask_source  0: the masks came from ``landmarks``; 1: from ``landmarks68`` (dlib); 2: no
                 masks (``--masks none``: neither masks nor landmarks are checked).
    cfg          a config dict (or PrepConfig.to_dict()) holding the thresholds.
    textured     False for a scan without texture image or colours: its black texture is
                 not checked.
    """
    t = {k: float(cfg.get(k, v)) for k, v in THRESHOLDS.items()}
    covered = np.asarray(s["coverage"], dtype=bool)
    problems = depth_problems(s["depth"], covered, cfg)
    if textured:
        problems += _texture_problems(np.asarray(s["texture"]), covered, t["min_texture_std"])
    if mask_source == _NO_MASKS:
        return problems
    if not np.asarray(s["mask"]).any():
        problems.append("mask: empty (no salient region on the grid)")
    problems += _landmark_problems(np.asarray(s["landmarks68" if mask_source else "landmarks"]),
                                   covered.shape[0], t["min_landmark_fraction"], mask_source)
    return problems


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
    min_relief = float(cfg.get("min_depth_relief", THRESHOLDS["min_depth_relief"]))
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


def _landmark_problems(points: np.ndarray, size: int, min_fraction: float,
                       mask_source: int) -> list[str]:
    """The landmarks the masks came from must lie on the S x S grid, enough of them."""
    # on the grid: within half a pixel of its outer pixel centres
    inside = (np.isfinite(points).all(axis=1) & (points >= -0.5).all(axis=1)
              & (points <= size - 0.5).all(axis=1))
    if len(points) and inside.sum() < min_fraction * len(points):
        which = "dlib landmarks68" if mask_source else "landmarks"
        return [(f"{which}: {int(inside.sum())}/{len(points)} on the {size}x{size} grid, below "
                 f"min_landmark_fraction {min_fraction:g}")]
    return []
