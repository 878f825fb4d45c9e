"""Texture resampled onto the depth grid, pixel for pixel.

Stage: preprocessing step 7, after pose and gridfit. Each grid node (pixel (row, col) of
:class:`~fer3d_data.surface.grid.Grid`, row 0 = y = +radius, col 0 = x = -radius) looks
down -z at the aligned surface: the front-most triangle under it (largest z) gives
barycentric weights, which interpolate the per-corner UV, at which the image is sampled
bilinearly. One rasteriser serves BU-3DFE meshes and Bosphorus range grids.

UV convention (OpenGL/VRML): u = 0 is the left edge of the image and u = 1 its right
edge, so the centre of image column j is at u = (j + 0.5) / W. With ``uv_origin``
"bottom-left" (VRML) v = 0 is the bottom edge; with "top-left" (Bosphorus) the top edge.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

from ..errors import ScanError
from .grid import Grid


def _check(array: np.ndarray, shape: tuple, name: str) -> np.ndarray:
    """``shape`` uses None for a free axis."""
    array = np.asarray(array)
    if array.ndim != len(shape) or any(s not in (None, a) for s, a in zip(shape, array.shape)):
        expected = tuple('*' if s is None else s for s in shape)
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array


# Grid nodes the rasteriser may visit, in grids' worth. A scanned surface's triangles tile it
# once: their boxes hold 0.75-1.1 grids' worth of nodes (synthetic BU-3DFE and Bosphorus
# scans, S = 8 to 1024). Each visited node costs ~160 bytes at the peak, so this bounds one
# scan at ~65 MB for S = 224 and 1.3 GB for S = 1024, where random connectivity claimed 6 GB.
MAX_BOX_NODES = 8


def rasterize(vertices: np.ndarray, faces: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Front-most triangle under every grid node.

    vertices (V, 3) aligned mm, faces (F, 3) int -> face (S, S) int64 (-1 where no
    triangle covers the node) and bary (S, S, 3) float64 weights of the face's corners.
    Triangles are projected on xy; where several cover a node the largest z wins. The nodes
    visited (every node of each triangle's bounding box) are at most ``MAX_BOX_NODES``
    grids' worth, else ScanError("texture"): the work is bounded whatever the connectivity.
    """
    vertices = _check(vertices, (None, 3), "vertices").astype(np.float64)
    faces = _check(faces, (None, 3), "faces").astype(np.int64)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"faces index vertices outside [0, {len(vertices)})")
    size = grid.size
    face_out, bary_out = np.full((size, size), -1, dtype=np.int64), np.zeros((size, size, 3))
    px = grid.to_pixels(vertices[:, :2])  # (V, 2) col, row; nodes sit on integer pixels
    a, b, c = px[faces[:, 0]], px[faces[:, 1]], px[faces[:, 2]]
    e1, e2 = b - a, c - a
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    lo = np.clip(np.ceil(np.minimum(np.minimum(a, b), c)), 0, size)
    hi = np.clip(np.floor(np.maximum(np.maximum(a, b), c)), -1, size - 1)
    span = (hi - lo + 1).clip(min=0).astype(np.int64)  # (F, 2) nodes per axis in the box
    count = span[:, 0] * span[:, 1] * (np.abs(area) > 1e-12)  # edge-on triangles cover nothing
    if count.sum() > MAX_BOX_NODES * size * size:
        raise ScanError("texture", f"the triangles' bounding boxes hold {count.sum()} grid nodes, "
                                   f"over {MAX_BOX_NODES} times the {size}x{size} grid: "
                                   "triangles join distant vertices (broken connectivity)")
    tri = np.repeat(np.arange(len(faces)), count)
    if len(tri) == 0:
        return face_out, bary_out
    k = np.arange(len(tri)) - np.repeat(np.cumsum(count) - count, count)
    drow, dcol = np.divmod(k, span[tri, 0])
    col, row = lo[tri, 0].astype(np.int64) + dcol, lo[tri, 1].astype(np.int64) + drow
    dx, dy = col - a[tri, 0], row - a[tri, 1]
    w1 = (dx * e2[tri, 1] - dy * e2[tri, 0]) / area[tri]
    w2 = (dy * e1[tri, 0] - dx * e1[tri, 1]) / area[tri]
    w0 = 1.0 - w1 - w2
    eps = -1e-9  # nodes on a shared edge belong to both triangles, never to neither
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    tri, node = tri[inside], (row * size + col)[inside]
    w = np.stack([w0[inside], w1[inside], w2[inside]], axis=1)
    zc = vertices[:, 2][faces]  # (F, 3) corner depths
    z = w[:, 0] * zc[tri, 0] + w[:, 1] * zc[tri, 1] + w[:, 2] * zc[tri, 2]
    zbuffer = np.full(size * size, -np.inf)
    np.maximum.at(zbuffer, node, z)
    # Exact z ties (a node on an edge shared by two triangles) may go to either triangle.
    front = z == zbuffer[node]
    face_out.ravel()[node[front]] = tri[front]
    bary_out.reshape(-1, 3)[node[front]] = w[front]
    return face_out, bary_out


def surface_uv_from_mesh(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray,
                         faces_uv: np.ndarray | None, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """UV of the surface under every grid node.

    vertices (V, 3) aligned mm, faces (F, 3), uv (T, 2), faces_uv (F, 3) per-corner UV
    indices (None: ``faces``, as VRML without texCoordIndex) -> uv (S, S, 2) and hit
    (S, S) bool. Nodes no triangle covers take the UV of the nearest hit node, so
    sampling gives no holes; ``hit`` tells them apart.
    """
    return surface_values(vertices, faces, _check(uv, (None, 2), "uv"), faces_uv, grid)


def surface_values(vertices: np.ndarray, faces: np.ndarray, values: np.ndarray,
                   faces_values: np.ndarray | None, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Per-corner ``values`` (T, C) (uv, colours) interpolated under every grid node, as
    :func:`surface_uv_from_mesh` does for uv: -> (S, S, C) float64 and hit (S, S) bool."""
    uv = _check(values, (None, None), "values").astype(np.float64)
    faces_uv = faces if faces_values is None else faces_values
    faces_uv = _check(faces_uv, (len(faces), 3), "faces_uv").astype(np.int64)
    if len(faces_uv) and (faces_uv.min() < 0 or faces_uv.max() >= len(uv)):
        raise ValueError(f"faces_uv index uv outside [0, {len(uv)})")
    face, bary = rasterize(vertices, faces, grid)
    hit = face >= 0
    if not hit.any():
        raise ScanError("texture", f"no triangle projects onto the {grid.size}x{grid.size} grid")
    if not hit.all():  # every node takes the nearest hit node's surface point
        rows, cols = distance_transform_edt(~hit, return_distances=False, return_indices=True)
        face, bary = face[rows, cols], bary[rows, cols]
    corners, bary = faces_uv[face.ravel()], bary.reshape(-1, 3, 1)  # (S*S, 3)
    surface_uv = sum(bary[:, i] * uv[corners[:, i]] for i in range(3))
    return surface_uv.reshape(grid.size, grid.size, uv.shape[1]), hit


def sample_bilinear(image: np.ndarray, uv: np.ndarray, *,
                    uv_origin: str = "bottom-left") -> np.ndarray:
    """(H, W, C) image, (..., 2) uv -> (..., C) float64 bilinear samples.

    Image column j spans u in [j/W, (j+1)/W); samples beyond the outer pixel centres
    repeat the border pixel.
    """
    image, uv = _check(image, (None, None, None), "image"), np.asarray(uv, dtype=np.float64)
    if uv.shape[-1:] != (2,) or uv_origin not in ("bottom-left", "top-left"):
        raise ValueError(f"uv must be (..., 2), uv_origin bottom-left or top-left; "
                         f"got {uv.shape}, {uv_origin!r}")
    h, w = image.shape[:2]
    v = 1.0 - uv[..., 1] if uv_origin == "bottom-left" else uv[..., 1]
    x = np.clip(uv[..., 0] * w - 0.5, 0, w - 1)
    y = np.clip(v * h - 0.5, 0, h - 1)
    x0 = np.minimum(x.astype(np.int64), max(w - 2, 0))
    y0 = np.minimum(y.astype(np.int64), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    corners = np.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
    c00, c01, c10, c11 = np.take(image.reshape(h * w, -1), corners, axis=0).astype(np.float64)
    return (c00 * (1 - fx) + c01 * fx) * (1 - fy) + (c10 * (1 - fx) + c11 * fx) * fy


def texture_from_mesh(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray,
                      faces_uv: np.ndarray | None, image: np.ndarray, grid: Grid, *,
                      uv_origin: str = "bottom-left") -> tuple[np.ndarray, np.ndarray]:
    """Texture of an aligned mesh on the depth grid.

    vertices (V, 3) aligned mm, faces (F, 3), uv (T, 2) (VRML: origin bottom-left),
    faces_uv (F, 3) or None, image (H, W, 3) uint8 -> texture (S, S, 3) uint8 and hit
    (S, S) bool (False where the colour comes from the nearest covered node).

    >>> v = np.array([[-99, -99, 0], [99, -99, 0], [0, 99, 0]], float)
    >>> uv = np.array([[0, 0], [1, 0], [0.5, 1]], float)
    >>> tex, hit = texture_from_mesh(v, np.array([[0, 1, 2]]), uv, None,
    ...                              np.full((4, 4, 3), 7, np.uint8), Grid(8, 90.0))
    >>> tex.shape, int(tex.max()), bool(hit[-1].all())
    ((8, 8, 3), 7, True)
    """
    _check(image, (None, None, 3), "image")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    surface_uv, hit = surface_uv_from_mesh(vertices, faces, uv, faces_uv, grid)
    texture = sample_bilinear(image, surface_uv, uv_origin=uv_origin)
    return np.clip(np.rint(texture), 0, 255).astype(np.uint8), hit


def texture_from_colors(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray,
                        grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Texture of an aligned mesh with vertex colours (a PLY without texture image).

    vertices (V, 3) aligned mm, faces (F, 3), colors (V, 3) uint8 RGB -> texture (S, S, 3)
    uint8 (colours interpolated across each triangle) and hit (S, S) bool.
    """
    colors = _check(colors, (len(vertices), 3), "colors")
    values, hit = surface_values(vertices, faces, colors, None, grid)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8), hit


def grid_triangles(valid: np.ndarray) -> np.ndarray:
    """(H, W) bool valid cells of a range grid -> (F, 3) int64 triangles indexing the
    flattened grid: two per quad (split along the (r, c)-(r+1, c+1) diagonal), each kept
    when its three corners are valid."""
    valid = _check(valid, (None, None), "valid").astype(bool)
    h, w = valid.shape
    idx = np.arange(h * w).reshape(h, w)
    tl, tr = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    bl, br = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([tl, bl, br], axis=1), np.stack([tl, br, tr], axis=1)])
    return tris[valid.ravel()[tris].all(axis=1)]


def texture_from_grid(xyz: np.ndarray, uv: np.ndarray, valid: np.ndarray, image: np.ndarray,
                      grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Texture of an aligned Bosphorus range grid on the depth grid.

    xyz (H, W, 3) aligned mm, uv (H, W, 2) origin top-left, valid (H, W) bool, image
    (H', W', 3) uint8 -> texture (S, S, 3) uint8 and hit (S, S) bool, as
    :func:`texture_from_mesh` on the grid's valid quads.
    """
    xyz, uv = _check(xyz, (None, None, 3), "xyz"), _check(uv, (None, None, 2), "uv")
    valid = _check(valid, (None, None), "valid")
    if uv.shape[:2] != xyz.shape[:2] or valid.shape != xyz.shape[:2]:
        raise ValueError(f"xyz {xyz.shape}, uv {uv.shape}, valid {valid.shape} must share (H, W)")
    faces = grid_triangles(valid)
    if len(faces) == 0:
        raise ScanError("texture", f"range grid {valid.shape} has no valid quad to triangulate")
    # Invalid cells hold the zmin sentinel: zero them so no arithmetic ever sees it.
    vertices = np.where(valid[..., None], xyz, 0.0).reshape(-1, 3)
    return texture_from_mesh(vertices, faces, uv.reshape(-1, 2), None, image, grid,
                             uv_origin="top-left")
