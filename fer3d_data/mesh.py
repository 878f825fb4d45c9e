"""trimesh where it serves a user: raw meshes to and from ``trimesh.Trimesh``, and textured
PLY/OBJ files of a face for a look in MeshLab.

Stage: tools around preprocessing (``fer3d-prep export``). :func:`to_trimesh` turns a raw
:class:`fer3d_data.io.Mesh` (or any vertices/faces/uv) into a textured ``Trimesh``, splitting
vertices on texture seams as trimesh stores one uv per vertex; :func:`from_trimesh` is the
inverse; :func:`write_textured` writes ``face.ply`` or ``face.obj`` with ``face.png`` beside it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import Fer3dDataError
from .io.types import Mesh

EXPORT_SUFFIXES = (".ply", ".obj")


def to_trimesh(vertices: np.ndarray | Mesh, faces: np.ndarray | None = None, *,
               uv: np.ndarray | None = None, faces_uv: np.ndarray | None = None,
               image: np.ndarray | None = None, uv_origin: str = "bottom-left"):
    """A ``trimesh.Trimesh`` of (V, 3) vertices and (F, 3) faces, textured when uv and image
    are given; unreferenced vertices are dropped.

    uv         (T, 2) texture coordinates; ``faces_uv`` (F, 3) indexes them per corner (seams),
               None when uv is per vertex (T = V).
    image      (H, W, 3) uint8 RGB texture.
    uv_origin  "bottom-left" (VRML, OBJ, PLY) or "top-left" (Bosphorus .bnt): flipped to
               trimesh's bottom-left.

    >>> tm = to_trimesh(np.eye(3), np.array([[0, 1, 2]]))
    >>> tm.vertices.shape, tm.faces.shape
    ((3, 3), (1, 3))
    """
    import trimesh

    if isinstance(vertices, Mesh):
        mesh = vertices
        return to_trimesh(mesh.vertices, mesh.faces, uv=mesh.uv, faces_uv=mesh.faces_uv,
                          image=image,
                          uv_origin=uv_origin)
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"need (V, 3) vertices and (F, 3) faces, got {vertices.shape}, "
                         f"{faces.shape}")
    if uv is None or image is None:
        used, faces = np.unique(faces, return_inverse=True)
        return trimesh.Trimesh(vertices[used], faces.reshape(-1, 3), process=False)
    uv = np.asarray(uv, np.float64)
    if uv_origin == "top-left":
        uv = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]])
    corners = np.stack([faces.ravel(),
                        (faces if faces_uv is None else np.asarray(faces_uv)).ravel()], 1)
    # one vertex per (xyz, uv) pair
    pairs, inverse = np.unique(corners, axis=0, return_inverse=True)
    from PIL import Image

    visual = trimesh.visual.TextureVisuals(uv=uv[pairs[:, 1]], image=Image.fromarray(image))
    return trimesh.Trimesh(vertices[pairs[:, 0]], inverse.reshape(-1, 3), visual=visual,
                           process=False)


def from_trimesh(tm) -> Mesh:
    """A ``trimesh.Trimesh`` -> :class:`fer3d_data.io.Mesh` (uv per vertex when textured)."""
    uv = getattr(tm.visual, "uv", None)
    return Mesh(vertices=np.asarray(tm.vertices, np.float64), faces=np.asarray(tm.faces, np.int64),
                uv=None if uv is None else np.asarray(uv, np.float64))


def write_textured(tm, path: str | os.PathLike) -> list[Path]:
    """Write ``tm`` as ``path`` (.ply or .obj) plus its texture ``<stem>.png`` (and
    ``<stem>.mtl`` for OBJ), named after ``path`` so several faces share a folder. Returns
    the written files. PLY names its texture in a ``comment TextureFile`` line (MeshLab)."""
    import trimesh

    path = Path(path)
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise Fer3dDataError(f"{path}: export writes {' or '.join(EXPORT_SUFFIXES)} files")
    image = getattr(tm.visual, "material", None) and tm.visual.material.image
    png = path.with_suffix(".png")
    written = [path]
    if path.suffix.lower() == ".obj":
        text, files = trimesh.exchange.obj.export_obj(tm, return_texture=True,
                                                      mtl_name=f"{path.stem}.mtl")
        mtl = files.pop(f"{path.stem}.mtl", None)
        if mtl is not None:  # the texture is written below as <stem>.png, not trimesh's name
            for name in files:
                mtl = mtl.replace(name.encode(), png.name.encode())
            path.with_suffix(".mtl").write_bytes(mtl)
            written.append(path.with_suffix(".mtl"))
        path.write_text(text)
    else:
        data = trimesh.exchange.ply.export_ply(tm)
        if image is not None:
            head, sep, body = data.partition(b"\n")
            head2, sep2, rest = body.partition(b"\n")
            data = head + sep + head2 + sep2 + f"comment TextureFile {png.name}\n".encode() + rest
        path.write_bytes(data)
    if image is not None:
        rgb = np.asarray(image.convert("RGB"))
        if not cv2.imwrite(str(png), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):  # OpenCV: no error
            raise OSError(errno.EIO, "the texture image could not be written", str(png))
        written.append(png)
    return written
