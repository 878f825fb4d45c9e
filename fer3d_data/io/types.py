"""Plain-numpy containers returned by the raw-format readers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Mesh:
    """A BU-3DFE VRML IndexedFaceSet, polygons triangulated by fan.

    vertices   (V, 3) float64, mm, +y up, face toward +z.
    faces      (F, 3) int64 indices into ``vertices``.
    uv         (T, 2) float64 texture coordinates, VRML origin bottom-left; None without texCoord.
    faces_uv   (F, 3) int64 indices into ``uv``, per face corner (seams); None without
               texCoordIndex.
    texture    the ImageTexture ``url`` (a file name relative to the wrl), or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    faces_uv: np.ndarray | None = None
    texture: str | None = None


@dataclass(frozen=True)
class RangeGrid:
    """A Bosphorus ``.bnt`` range grid, rows flipped to image order (row 0 = top).

    xyz      (H, W, 3) float64 mm; X right, Y up, Z toward the camera.
    uv       (H, W, 2) float64 normalised texture coordinates, origin top-left.
    valid    (H, W) bool, False where X, Y or Z equals the ``zmin`` sentinel.
    texture  texture file name stored in the header (``<stem>.png``).
    zmin     background sentinel value read from the header.
    """

    xyz: np.ndarray
    uv: np.ndarray
    valid: np.ndarray
    texture: str
    zmin: float


@dataclass(frozen=True)
class Landmarks:
    """Landmarks of one scan.

    points   (K, D) float64, D = 3 (mm, scan frame) or 2 (pixels, origin top-left).
    names    K names: BU-3DFE ``.bnd`` rows are named "1".."83" (1-based row numbers),
             Bosphorus points by their file names, dlib points "0".."67".
    scheme   "bu3dfe83", "bosphorus", "dlib68" or "bu3dfe_pse".
    """

    points: np.ndarray
    names: tuple[str, ...]
    scheme: str
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def get(self, name: str) -> np.ndarray | None:
        """The point called ``name``, or None when the scan does not have it."""
        try:
            return self.points[self.names.index(name)]
        except ValueError:
            return None
