"""One face as a textured PLY/OBJ, from a raw tree or from a shard (``fer3d-prep export``).

Stage: tools around preprocessing. From a raw tree the scan goes through the first steps
of the chain (read, clean, nose tip, crop, pose: :func:`fer3d_data.prep.process.frontal_surface`)
and its kept triangles are written with the scan's own texture; from a shard the sample's
depth grid is triangulated over its covered cells and textured with its aligned texture.
Both are in the frontal frame: mm, nose tip at the origin, x right, y up, z toward the camera.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import Fer3dDataError
from .mesh import to_trimesh, write_textured
from .surface.grid import Grid
from .surface.texture import grid_triangles


def export_face(source: str | os.PathLike, scan_id: str, out: str | os.PathLike,
                cfg=None) -> list[Path]:
    """Write the frontal surface of ``scan_id`` to ``out`` (.ply or .obj, + .png texture).

    source  a raw BU-3DFE/Bosphorus tree (folder) or a shard (file).
    cfg     :class:`fer3d_data.prep.PrepConfig` of the raw steps (its dataset is found from
            the tree); ignored for a shard, whose surface is already made.
    Returns the written files.
    """
    source = Path(source)
    if source.is_dir():
        tm = _raw_trimesh(source, scan_id, cfg)
    elif source.is_file():
        tm = _shard_trimesh(source, scan_id)
    else:
        raise Fer3dDataError(f"{source}: no such raw folder or shard")
    return write_textured(tm, out)


def _raw_trimesh(root: Path, scan_id: str, cfg):
    import dataclasses

    from .datasets import ADAPTERS
    from .prep import PrepConfig
    from .prep.process import frontal_surface, read_raw_scan

    # adapters whose tree alone names its scans (a labelled folder needs its labels file)
    for dataset, adapter in ((n, a) for n, a in ADAPTERS.items() if not a.options):
        try:
            records = adapter.walk(root)
        except Fer3dDataError:  # not a tree of this dataset
            continue
        record = next((r for r in records if r.scan_id == scan_id), None)
        if record is not None:
            cfg = dataclasses.replace(cfg or PrepConfig(), dataset=dataset)
            raw = read_raw_scan(record, cfg)
            vertices, faces, uv, faces_uv, origin = frontal_surface(raw, cfg, scan_id).triangles()
            return to_trimesh(vertices, faces, uv=uv, faces_uv=faces_uv, image=raw.image,
                              uv_origin=origin)
    raise Fer3dDataError(f"{root}: no BU-3DFE or Bosphorus scan {scan_id!r} in this tree")


def _shard_trimesh(path: Path, sample_id: str):
    from .shards import open_shard

    with open_shard(path) as shard:
        rows = np.flatnonzero(shard.index["sample_id"] == sample_id)
        if not len(rows):
            raise Fer3dDataError(f"{path}: no sample {sample_id!r}")
        s = shard.sample(int(rows[0]))
        grid = Grid(shard.image_size, float(shard.attrs["crop_radius"]))
    x, y = grid.mesh()
    vertices = np.column_stack([x.ravel(), y.ravel(), s["depth"].astype(np.float64).ravel()])
    rows_, cols = np.mgrid[0:grid.size, 0:grid.size]
    # pixel centres, origin bottom-left as trimesh wants it
    uv = np.column_stack([(cols.ravel() + 0.5) / grid.size,
                          1.0 - (rows_.ravel() + 0.5) / grid.size])
    faces = grid_triangles(s["coverage"])
    if not len(faces):
        raise Fer3dDataError(f"{path}: sample {sample_id!r} has no covered cell to export")
    return to_trimesh(vertices, faces, uv=uv, image=s["texture"])
