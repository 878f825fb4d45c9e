"""A fixed-size point cloud sampled on a triangulated surface, for point-based 3D FER.

Stage: preprocessing, after pose (the surface is the cleaned, cropped, frontal one). Two
samplings: ``fps`` (farthest-point sampling over a dense area-uniform sample: points spread
evenly, the usual input of PointNet++-style methods) and ``uniform`` (i.i.d. uniform by
area). Both are seeded, so a scan always gives the same points.
"""

from __future__ import annotations

import numpy as np

SAMPLINGS = ("fps", "uniform")
# fps picks P of OVERSAMPLE * P area-uniform candidates.
OVERSAMPLE = 4


def sample_points(vertices: np.ndarray, faces: np.ndarray, n: int, method: str = "fps",
                  seed: int = 0) -> np.ndarray:
    """(V, 3) vertices and (F, 3) triangles -> (n, 3) float32 points on the surface.

    >>> v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    >>> sample_points(v, np.array([[0, 1, 2]]), 8).shape
    (8, 3)
    """
    import trimesh

    if method not in SAMPLINGS:
        raise ValueError(f"method must be one of {SAMPLINGS}, got {method!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces), process=False)
    if not mesh.area > 0:
        raise ValueError(f"the surface has no area ({len(faces)} triangles)")
    count = n if method == "uniform" else OVERSAMPLE * n
    candidates, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    if method == "uniform":
        return candidates.astype(np.float32)
    return candidates[farthest_point_indices(candidates, n)].astype(np.float32)


def farthest_point_indices(points: np.ndarray, n: int) -> np.ndarray:
    """(M, D) points -> (n,) indices of a farthest-point sample, starting nearest the origin.

    Each next point is the one farthest from all chosen so far (O(n * M), vectorised).
    """
    m = len(points)
    if not 1 <= n <= m:
        raise ValueError(f"cannot pick {n} of {m} points")
    chosen = np.empty(n, np.int64)
    chosen[0] = int(np.argmin(np.einsum("ij,ij->i", points, points)))
    dist = np.full(m, np.inf)
    for k in range(1, n):
        d = points - points[chosen[k - 1]]
        dist = np.minimum(dist, np.einsum("ij,ij->i", d, d))
        chosen[k] = int(np.argmax(dist))
    return chosen
