"""Raw-format readers: one module per format, each returning plain numpy containers.

``vrml`` reads BU-3DFE meshes (:class:`Mesh`), ``bnt`` Bosphorus range grids
(:class:`RangeGrid`), ``landmarks`` the native landmark files (``.bnd``, ``.pse``,
``.lm3``, ``.lm2`` -> :class:`Landmarks`; text rows and ``.npy`` of a labelled folder),
``images`` textures as (H, W, 3) uint8 RGB and ``meshes`` the formats trimesh reads (OBJ,
PLY, OFF, STL, GLB/glTF -> :class:`TexturedMesh`).
Callers pick the reader for the role a file plays in a scan (the dataset walkers know it),
not by suffix. Every reader opens only regular files of at most ``max_bytes``
(:data:`DEFAULT_MAX_BYTES`), does work linear in the file's size, and raises only
:class:`RawFormatError` naming the file and the problem (docs/reliability.md).
"""

from __future__ import annotations

from ..errors import RawFormatError
from ._common import DEFAULT_MAX_BYTES
from .bnt import load_bnt
from .images import DEFAULT_MAX_PIXELS, load_image
from .landmarks import (
    BOSPHORUS_LANDMARK_NAMES,
    load_bnd,
    load_lm2,
    load_lm3,
    load_npy,
    load_pse,
    load_xyz,
)
from .meshes import MESH_SUFFIXES, TexturedMesh, load_mesh
from .types import Landmarks, Mesh, RangeGrid
from .vrml import load_wrl

__all__ = [
    "BOSPHORUS_LANDMARK_NAMES", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "Landmarks",
    "MESH_SUFFIXES", "Mesh", "RangeGrid", "RawFormatError", "TexturedMesh", "load_bnd",
    "load_bnt", "load_image", "load_lm2", "load_lm3", "load_mesh", "load_npy", "load_pse",
    "load_wrl", "load_xyz",
]
