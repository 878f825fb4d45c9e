"""The regular grid depth maps, textures and masks live on.

A square of side 2·radius mm centred on the nose tip, ``size`` nodes per side. Pixel
(row, col) = (0, 0) is the top-left node at (x, y) = (-radius, +radius); x grows with
col, y decreases with row, so images look like the face seen from the camera (+z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    size: int = 224
    radius: float = 90.0

    def __post_init__(self):
        if self.size < 2 or self.radius <= 0:
            raise ValueError(f"Grid needs size >= 2 and radius > 0, got {self.size}, {self.radius}")

    @property
    def spacing(self) -> float:
        """mm between neighbouring nodes."""
        return 2.0 * self.radius / (self.size - 1)

    @property
    def xnodes(self) -> np.ndarray:
        """(size,) x of each column, increasing."""
        return np.linspace(-self.radius, self.radius, self.size)

    @property
    def ynodes(self) -> np.ndarray:
        """(size,) y of each row in gridfit's increasing order (row 0 = bottom).

        Depth maps are stored top-down: ``image = gridfit_result[::-1]``.
        """
        return np.linspace(-self.radius, self.radius, self.size)

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) mm (x, y) -> (..., 2) float pixels (col, row) in the top-down image."""
        xy = np.asarray(xy, dtype=np.float64)
        col = (xy[..., 0] + self.radius) / self.spacing
        row = (self.radius - xy[..., 1]) / self.spacing
        return np.stack([col, row], axis=-1)

    def to_mm(self, px: np.ndarray) -> np.ndarray:
        """(..., 2) pixels (col, row) -> (..., 2) mm (x, y); inverse of :meth:`to_pixels`."""
        px = np.asarray(px, dtype=np.float64)
        return np.stack([px[..., 0] * self.spacing - self.radius,
                         self.radius - px[..., 1] * self.spacing], axis=-1)

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """(size, size) x and y of every node of the top-down image."""
        x, y = np.meshgrid(self.xnodes, self.ynodes[::-1])
        return x, y
