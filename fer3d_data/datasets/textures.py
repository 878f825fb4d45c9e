"""Where a scan's texture image is: the file its mesh or range grid names, else the
walker's companion; never outside the raw dataset tree unless the user allows it.

Stage: raw input. A BU-3DFE ``url`` or a Bosphorus header name is data from the file, so
an absolute path or ``../`` could pull any image on the machine into a shard.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ScanError
from ..io import load_image
from .records import ScanRecord


def load_texture(record: ScanRecord, named: str | None, cfg) -> np.ndarray:
    """(H, W, 3) uint8 RGB texture of ``record`` (:func:`resolve_texture`), size-limited by
    ``cfg.max_image_pixels``; outside the tree only with ``cfg.allow_outside_textures``."""
    path = resolve_texture(record, named, allow_outside=cfg.allow_outside_textures)
    return load_image(path, max_pixels=cfg.max_image_pixels)


def resolve_texture(record: ScanRecord, named: str | None, *, allow_outside: bool = False) -> Path:
    """The texture image of ``record``: ``named`` (the wrl ``url`` or the bnt header name)
    beside the mesh when that file exists, else the walker's ``record.texture``.

    Unless ``allow_outside``, a reference that is absolute, leaves the dataset root by
    ``..`` or resolves outside it through a symbolic link raises ScanError("read", ...)
    naming the mesh file. The root is ``record.root``, else the mesh's folder.
    """
    mesh = Path(record.mesh)
    root = Path(record.root) if record.root is not None else mesh.parent
    if named:
        path = mesh.parent / named
        if not allow_outside:
            _refuse_outside(record, root, path, f"texture reference {named!r}")
        if path.is_file():
            return path
    if record.texture is None:
        raise ScanError("read", f"missing texture image{f' {named}' if named else ''} for {mesh}",
                        record.scan_id)
    texture = Path(record.texture)
    if not allow_outside:
        _refuse_outside(record, root, texture, f"texture {texture}")
    return texture


def _refuse_outside(record: ScanRecord, root: Path, path: Path, what: str) -> None:
    """ScanError when ``path`` leaves ``root`` as written or once links are resolved."""
    if not Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root)):
        how = ""
    elif not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
        how = " through a symbolic link"
    else:
        return
    raise ScanError("read", f"{record.mesh}: {what} is outside the dataset root {root}{how} "
                            "(allow with --allow-outside-textures)", record.scan_id)
