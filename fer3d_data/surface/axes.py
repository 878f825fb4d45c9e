"""Raw coordinates into the databases' frame: millimetres, +y up, +z toward the camera.

Stage: raw input (scans of a labelled folder whose frame is not the databases'). The
chain (nose tip, pose, gridfit) expects a face roughly looking down +z with +y up, in mm.
"""

from __future__ import annotations

import numpy as np

# Millimetres per unit of the raw coordinates.
UNITS = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
AXES = ("+x", "-x", "+y", "-y", "+z", "-z")


def axis_vector(axis: str) -> np.ndarray:
    """"+y" -> (0, 1, 0), "-x" -> (-1, 0, 0)."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    v = np.zeros(3)
    v["xyz".index(axis[1])] = 1.0 if axis[0] == "+" else -1.0
    return v


def frame_matrix(units: str, up: str, front: str) -> np.ndarray:
    """(3, 3) M with ``frame = raw @ M.T``: rows are the new x (up × front), y (up) and z
    (front) in raw axes, scaled to mm.

    >>> frame_matrix("cm", "+z", "-y") @ np.array([0.0, -1.0, 2.0])
    array([ 0., 20., 10.])
    """
    if units not in UNITS:
        raise ValueError(f"units must be one of {tuple(UNITS)}, got {units!r}")
    y, z = axis_vector(up), axis_vector(front)
    if abs(y @ z) > 0:
        raise ValueError(f"up {up} and front {front} must be different axes")
    return UNITS[units] * np.stack([np.cross(y, z), y, z])


def to_frame(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 3) raw points -> (N, 3) float64 in the databases' frame (``points @ matrix.T``)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    return points @ matrix.T
