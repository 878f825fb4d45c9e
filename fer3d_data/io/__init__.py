"""Raw-format readers: one module per format, each returning plain numpy containers.

``vrml`` reads BU-3DFE meshes (:class:`Mesh`), ``bnt`` Bosphorus range grids
(:class:`RangeGrid`), ``landmarks`` the native landmark files (``.bnd``, ``.pse``,
``.lm3``, ``.lm2`` -> :class:`Landmarks`) and ``images`` textures as (H, W, 3) uint8 RGB.
As in ``trimesh.exchange``, each module registers its loaders by suffix and :func:`load`
dispatches on a file's suffix. Every malformed file raises :class:`RawFormatError` naming
the file and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import RawFormatError
from .bnt import _bnt_loaders, load_bnt
from .images import _image_loaders, load_image
from .landmarks import (BOSPHORUS_LANDMARK_NAMES, _landmark_loaders, load_bnd,
                        load_lm2, load_lm3, load_pse)
from .types import Landmarks, Mesh, RangeGrid
from .vrml import _vrml_loaders, load_wrl

# suffix (lower case, no dot) -> loader
loaders = {**_vrml_loaders, **_bnt_loaders, **_landmark_loaders, **_image_loaders}


def load(path: str | os.PathLike):
    """Read any raw file by its suffix (``.wrl``, ``.bnt``, ``.bnd``, ``.pse``, ``.lm3``,
    ``.lm2``, ``.bmp``, ``.png``, ``.jpg``)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in loaders:
        known = ", ".join(sorted(loaders))
        raise RawFormatError(path, f"no reader for suffix {suffix!r} (known: {known})")
    return loaders[suffix](path)


__all__ = [
    "BOSPHORUS_LANDMARK_NAMES", "Landmarks", "Mesh", "RangeGrid",
    "RawFormatError", "load", "load_bnd", "load_bnt", "load_image", "load_lm2", "load_lm3",
    "load_pse", "load_wrl", "loaders",
]
