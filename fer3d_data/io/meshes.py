"""Meshes in the formats trimesh reads (OBJ + MTL + texture image, PLY with vertex colours
or a texture, OFF, STL, GLB/glTF) -> :class:`TexturedMesh`.

Stage: raw input (scans of a labelled folder). Every file trimesh asks for (the mesh, an
OBJ's material library, a texture, a glTF buffer) goes through the bounded reader
(:func:`~fer3d_data.io._common.read_bytes`), may not leave the raw tree unless allowed,
and an image's claimed size is checked before it is decoded. Whatever trimesh raises on a
broken file becomes one :class:`RawFormatError` naming it.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RawFormatError
from ._common import DEFAULT_MAX_BYTES, read_bytes
from .images import DEFAULT_MAX_PIXELS, image_size

# Suffixes read here (lower case); trimesh names the format by the suffix without its dot.
MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class TexturedMesh:
    """A triangle mesh as read, in the file's own units and axes.

    vertices  (V, 3) float64; faces (F, 3) int64 indices into ``vertices``.
    uv        (V, 2) float64 texture coordinates per vertex (origin bottom-left) or None.
    image     (H, W, 3) uint8 RGB texture (from the material) or None.
    colors    (V, 3) uint8 RGB vertex colours or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    image: np.ndarray | None = None
    colors: np.ndarray | None = None


def load_mesh(path: str | os.PathLike, *, root: str | os.PathLike | None = None,
              max_bytes: int = DEFAULT_MAX_BYTES,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> TexturedMesh:
    """Read one mesh file of MESH_SUFFIXES; files it references must lie under ``root``
    (None: anywhere).

    Example:
        >>> load_mesh("p01/smile.obj", root=".").vertices.shape  # doctest: +SKIP
        (3000, 3)
    """
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise RawFormatError(path, f"not a mesh format read here ({', '.join(MESH_SUFFIXES)})")
    data = read_bytes(path, max_bytes=max_bytes)
    resolver = _BoundedResolver(path.parent, root, max_bytes, max_pixels)
    try:
        mesh = trimesh.load_mesh(io.BytesIO(data), file_type=suffix[1:], resolver=resolver,
                                 process=False)
    except Exception as e:  # noqa: BLE001 - trimesh raises many types on a broken file
        if resolver.refused:
            raise resolver.refused[0] from None
        raise RawFormatError(path, f"not a readable {suffix[1:].upper()} mesh "
                                   f"({type(e).__name__}: {e})") from None
    if resolver.refused:  # trimesh logs a texture it could not load and goes on: we do not
        raise resolver.refused[0]
    return _arrays(path, mesh, max_pixels)


def _arrays(path: Path, mesh, max_pixels: int) -> TexturedMesh:
    """The numpy arrays of a trimesh.Trimesh; refuses an empty or non-triangle mesh."""
    vertices = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
    if len(vertices) == 0 or faces.ndim != 2 or faces.shape[1:] != (3,) or len(faces) == 0:
        raise RawFormatError(path, "no triangles (a point cloud or an empty scene)")
    if not np.isfinite(vertices).all():
        raise RawFormatError(path, "non-finite vertex coordinates")
    visual = mesh.visual
    uv = getattr(visual, "uv", None)
    uv = None if uv is None or len(uv) != len(vertices) else np.asarray(uv, np.float64)
    material = getattr(visual, "material", None)
    picture = getattr(material, "image", None)
    if picture is None:  # a glTF PBR material
        picture = getattr(material, "baseColorTexture", None)
    colors = None
    if getattr(visual, "kind", None) == "vertex":
        colors = np.asarray(visual.vertex_colors, np.uint8)[:, :3]
    return TexturedMesh(vertices, faces, uv, _rgb(path, picture, max_pixels), colors)


def _rgb(path: Path, picture, max_pixels: int) -> np.ndarray | None:
    """A PIL image -> (H, W, 3) uint8 RGB; refused above ``max_pixels`` before decoding."""
    if picture is None:
        return None
    width, height = picture.size
    if width * height > max_pixels:
        raise RawFormatError(path, f"texture of {width} x {height} pixels, over the limit of "
                                   f"{max_pixels} (max_pixels)")
    return np.asarray(picture.convert("RGB"), dtype=np.uint8)


class _BoundedResolver:
    """The files a mesh references (trimesh's resolver interface), read with the same
    bounds as the mesh and kept inside ``root``; each refusal is also kept in ``refused``
    (trimesh swallows a texture's failure)."""

    def __init__(self, folder: Path, root, max_bytes: int, max_pixels: int):
        self.folder, self.max_bytes, self.max_pixels = folder, max_bytes, max_pixels
        self.root = None if root is None else Path(os.path.realpath(root))
        self.refused: list[RawFormatError] = []

    def get(self, name: str) -> bytes:
        try:
            return self._read(self.folder / name)
        except RawFormatError as e:
            self.refused.append(e)
            raise

    def _read(self, path: Path) -> bytes:
        if self.root is not None and not Path(os.path.realpath(path)).is_relative_to(self.root):
            raise RawFormatError(path, f"referenced file is outside the raw folder {self.root} "
                                       "(allow with --allow-outside-textures)")
        data = read_bytes(path, max_bytes=self.max_bytes)
        if path.suffix.lower() in _IMAGE_SUFFIXES:
            width, height = image_size(path, data)
            if width * height > self.max_pixels:
                raise RawFormatError(path, f"header claims {width} x {height} pixels, over the "
                                           f"limit of {self.max_pixels} (max_pixels)")
        return data

    __getitem__ = get  # trimesh reads an OBJ's material library as resolver[name]

    def __contains__(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def namespaced(self, namespace: str) -> "_BoundedResolver":
        inner = _BoundedResolver(self.folder / namespace, self.root, self.max_bytes,
                                 self.max_pixels)
        inner.refused = self.refused
        return inner

    def keys(self):
        return iter(())

    def write(self, name: str, data) -> None:
        raise RawFormatError(self.folder / name, "reading a mesh never writes a file")
