"""Gridfit: scattered points (x, y, z) -> depth z on a regular (ny, nx) grid.

Stage: preprocessing, step 6 (after crop and pose, before texture resampling).

The regularised least squares of John D'Errico's MATLAB ``gridfit``, with its conventions
(as ported by ``pygridfit``): nodes numbered column-major (node of row ``iy``, column
``ix`` is ``iy + ny * ix``), one data row per point interpolating the node values
(``triangle``: the cell split along its (0,0)-(1,1) diagonal; ``bilinear``; ``nearest``),
regulariser rows (``gradient``: second differences along x and y; ``laplacian``: their
sum; ``springs``), smoothness scaling ``lambda = s * |A|_1 / |R|_1`` (max absolute column
sums), solved through the normal equations ``(A'A + lambda^2 R'R) z = A'b``.

:class:`GridFitter` keeps everything that does not depend on the data (regulariser,
``R'R``, one sparsity pattern holding any data term, symbolic Cholesky analysis) so that a
scan costs one scatter, one numeric factorisation and one solve. :func:`gridfit` is the
one-shot form.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .cholesky import SOLVERS, Cholesky

INTERPS = ("triangle", "bilinear", "nearest")
REGULARIZERS = ("gradient", "laplacian", "springs")
MIN_POINTS = 4  # the gradient regulariser leaves 1, x, y and xy free: 4 points pin them

# Corners of a cell as offsets (rows, cols) from its lower-left node: ll, ul, lr, ur.
_CORNER_DY = np.array([0, 1, 0, 1])
_CORNER_DX = np.array([0, 0, 1, 1])
# The 10 unordered corner pairs (a <= b) whose products w_a * w_b make A'A.
_PAIR_A, _PAIR_B = np.triu_indices(4)
_PAIRS_USED = {
    "bilinear": np.ones(10, dtype=bool),
    "triangle": ~((_PAIR_A == 1) & (_PAIR_B == 2)),   # ul and lr never share a triangle
    "nearest": _PAIR_A == _PAIR_B,
}


def _check_nodes(xnodes, ynodes) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for name, nodes in (("xnodes", xnodes), ("ynodes", ynodes)):
        nodes = np.asarray(nodes, dtype=np.float64)
        if nodes.ndim != 1 or nodes.size < 3:
            raise ValueError(f"gridfit: {name} must be 1-D with >= 3 nodes, "
                             f"got shape {nodes.shape}")
        if not np.all(np.isfinite(nodes)):
            raise ValueError(f"gridfit: {name} has non-finite values")
        if np.any(np.diff(nodes) <= 0):
            raise ValueError(f"gridfit: {name} must be strictly increasing")
        out.append(nodes)
    return out[0], out[1]


def _check_smoothness(smoothness) -> tuple[float, np.ndarray]:
    """Scalar or (sx, sy) -> (gridfit's smoothparam sqrt(sx*sy), (2,) x/y relative weights)."""
    s = np.atleast_1d(np.asarray(smoothness, dtype=np.float64))
    if s.ndim != 1 or s.size not in (1, 2) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"gridfit: smoothness must be a positive scalar or (sx, sy), "
                         f"got {smoothness!r}")
    if s.size == 1:
        return float(s[0]), np.ones(2)
    param = float(np.sqrt(s[0] * s[1]))
    return param, s / param


def _check_choice(name: str, value: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"gridfit: {name} must be one of {options}, got {value!r}")
    return value


def _check_points(x, y, z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, z = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, z))
    if not (x.size == y.size == z.size):
        raise ValueError(f"gridfit: x, y, z lengths differ: {x.size}, {y.size}, {z.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(z))):
        raise ValueError("gridfit: x, y, z must be finite (drop NaN/inf points first)")
    return x, y, z


def _check_active(active, shape: tuple[int, int]) -> np.ndarray:
    """(ny, nx) bool or None -> (ny*nx,) bool in column-major node order."""
    if active is None:
        return np.ones(shape[0] * shape[1], dtype=bool)
    active = np.asarray(active)
    if active.shape != shape or active.dtype != bool:
        raise ValueError(f"gridfit: active must be a bool array of shape {shape}, "
                         f"got {active.dtype} {active.shape}")
    return active.ravel(order="F")


def _locate(x, y, xnodes, ynodes):
    """(n,) points -> inside (n,) bool, and for inside points: cell (m,) lower-left node
    index (column-major), tx, ty (m,) in [0, 1] as gridfit's ``digitize`` does."""
    ny = ynodes.size
    inside = (x >= xnodes[0]) & (x <= xnodes[-1]) & (y >= ynodes[0]) & (y <= ynodes[-1])
    x, y = x[inside], y[inside]
    ix, iy = _cell_index(x, xnodes), _cell_index(y, ynodes)
    tx = np.clip((x - xnodes[ix]) / (xnodes[ix + 1] - xnodes[ix]), 0.0, 1.0)
    ty = np.clip((y - ynodes[iy]) / (ynodes[iy + 1] - ynodes[iy]), 0.0, 1.0)
    return inside, iy + ny * ix, tx, ty


def _cell_index(v, nodes):
    """(m,) coordinates inside [nodes[0], nodes[-1]] -> (m,) index of the cell holding each."""
    step = (nodes[-1] - nodes[0]) / (nodes.size - 1)
    if np.allclose(np.diff(nodes), step, rtol=1e-9, atol=0):
        # uniform nodes (every fer3d grid): arithmetic, then a one-cell fix-up for rounding
        i = np.clip(((v - nodes[0]) / step).astype(np.int64), 0, nodes.size - 2)
        i -= v < nodes[i]
        i += (v >= nodes[i + 1]) & (i < nodes.size - 2)
        return i
    return np.minimum(np.searchsorted(nodes, v, side="right") - 1, nodes.size - 2)


def _corner_weights(tx, ty, interp: str) -> np.ndarray:
    """(m,) local coordinates -> (m, 4) weights of corners ll, ul, lr, ur."""
    w = np.zeros((tx.size, 4))
    if interp == "bilinear":
        w[:, 0] = (1 - tx) * (1 - ty)
        w[:, 1] = (1 - tx) * ty
        w[:, 2] = tx * (1 - ty)
        w[:, 3] = tx * ty
    elif interp == "triangle":
        # gridfit's split: tx > ty is the lower-right triangle (ll, lr, ur), else (ll, ul, ur)
        t1, t2 = np.minimum(tx, ty), np.maximum(tx, ty)
        lower_right = tx > ty
        w[:, 0] = 1 - t2
        w[:, 3] = t1
        w[lower_right, 2] = (t2 - t1)[lower_right]
        w[~lower_right, 1] = (t2 - t1)[~lower_right]
    else:
        # True nearest corner; gridfit.m/pygridfit's round(1 - t) picks the far one.
        w[np.arange(tx.size), np.rint(ty).astype(int) + 2 * np.rint(tx).astype(int)] = 1.0
    return w


def _second_diff_rows(nodes: np.ndarray, scale: float):
    """Interior nodes k=1..n-2 of one axis -> (k, (n-2, 3) coefficients on k-1, k, k+1)."""
    d = np.diff(nodes) / scale
    d1, d2 = d[:-1], d[1:]
    coef = np.stack([-2.0 / (d1 * (d1 + d2)), 2.0 / (d1 * d2), -2.0 / (d2 * (d1 + d2))], axis=1)
    return np.arange(1, nodes.size - 1), coef


def _regularizer(xnodes, ynodes, kind: str, rel: np.ndarray) -> sp.csr_matrix:
    """(m, ny*nx) regulariser rows of gridfit (autoscale on: distances in mean spacings)."""
    nx, ny = xnodes.size, ynodes.size
    node = np.arange(nx * ny).reshape(ny, nx, order="F")
    xs, ys = np.diff(xnodes).mean(), np.diff(ynodes).mean()
    if kind in ("gradient", "laplacian"):
        jy, cy = _second_diff_rows(ynodes, ys)
        jx, cx = _second_diff_rows(xnodes, xs)
        # y part: rows at nodes (jy, all cols); x part: rows at nodes (all rows, jx)
        rows_y = node[jy, :]                                   # (ny-2, nx)
        cols_y = np.stack([node[jy - 1, :], rows_y, node[jy + 1, :]], axis=-1)
        vals_y = rel[1] * np.broadcast_to(cy[:, None, :], cols_y.shape)
        rows_x = node[:, jx]                                   # (ny, nx-2)
        cols_x = np.stack([node[:, jx - 1], rows_x, node[:, jx + 1]], axis=-1)
        vals_x = rel[0] * np.broadcast_to(cx[None, :, :], cols_x.shape)
        if kind == "laplacian":
            # one row per node, the two parts summed; the 4 corner nodes have no row
            rows = np.concatenate([np.repeat(rows_y.ravel(), 3), np.repeat(rows_x.ravel(), 3)])
        else:
            rows = np.concatenate([np.repeat(rows_y.ravel(), 3),
                                   nx * ny + np.repeat(rows_x.ravel(), 3)])
        cols = np.concatenate([cols_y.ravel(), cols_x.ravel()])
        vals = np.concatenate([vals_y.ravel(), vals_x.ravel()])
        R = sp.csr_matrix((vals, (rows, cols)), shape=(2 * nx * ny, nx * ny))
        return R[np.diff(R.indptr) > 0]
    # springs: zero-rest-length springs along edges and both cell diagonals
    dy = np.diff(ynodes) / ys
    dx = np.diff(xnodes) / xs
    parts = []
    a, b = node[:-1, :], node[1:, :]
    parts.append((a, b, rel[1] / np.broadcast_to(dy[:, None], a.shape)))
    a, b = node[:, :-1], node[:, 1:]
    parts.append((a, b, rel[0] / np.broadcast_to(dx[None, :], a.shape)))
    diag = 1.0 / np.hypot((dx / rel[0])[None, :], (dy / rel[1])[:, None])
    parts.append((node[:-1, :-1], node[1:, 1:], diag))
    parts.append((node[1:, :-1], node[:-1, 1:], diag))
    a = np.concatenate([p[0].ravel() for p in parts])
    b = np.concatenate([p[1].ravel() for p in parts])
    k = np.concatenate([p[2].ravel() for p in parts])
    r = np.arange(a.size)
    rows, cols = np.concatenate([r, r]), np.concatenate([a, b])
    return sp.csr_matrix((np.concatenate([-k, k]), (rows, cols)), shape=(a.size, nx * ny))


class GridFitter:
    """Gridfit many scans onto one grid, reusing everything that does not depend on data.

    Args:
        xnodes: (nx,) strictly increasing x of the grid columns.
        ynodes: (ny,) strictly increasing y of the grid rows (row 0 = smallest y).
        smoothness: gridfit's ``s`` (scalar) or (sx, sy) for anisotropic smoothing.
        interp: data term, ``"triangle"`` (gridfit's default), ``"bilinear"`` or ``"nearest"``.
        regularizer: ``"gradient"`` (default), ``"laplacian"`` or ``"springs"``.
        active: optional (ny, nx) bool: the unknowns. Inactive nodes are NaN in the output,
            regulariser rows touching them are dropped, and so are points whose
            interpolation puts weight on them.
        solver: ``"cholesky"`` (best available backend), ``"hea"``, ``"rslab"`` or ``"scipy"``.

    ``fit(x, y, z) -> (ny, nx)`` equals :func:`gridfit` with the same arguments. Points
    outside the node rectangle are ignored (the grid is fixed, unlike gridfit's 'extend').

    Example:
        >>> g = GridFitter(np.linspace(0, 1, 20), np.linspace(0, 1, 15))
        >>> rng = np.random.default_rng(0); x, y = rng.random((2, 500))
        >>> z = g.fit(x, y, 2 * x - y + 1)
        >>> z.shape, bool(np.allclose(z[0, 0], 1.0))
        ((15, 20), True)
    """

    def __init__(self, xnodes, ynodes, *, smoothness=1.0, interp: str = "triangle",
                 regularizer: str = "gradient", active=None, solver: str = "cholesky",
                 _reuse: bool = True):
        self.xnodes, self.ynodes = _check_nodes(xnodes, ynodes)
        self.smoothparam, rel = _check_smoothness(smoothness)
        self.interp = _check_choice("interp", interp, INTERPS)
        _check_choice("regularizer", regularizer, REGULARIZERS)
        _check_choice("solver", solver, SOLVERS)
        nx, ny = self.xnodes.size, self.ynodes.size
        self.shape = (ny, nx)
        self.active = _check_active(active, self.shape)
        # unknown index of every node, -1 if inactive
        self.unknown = np.full(nx * ny, -1, dtype=np.int64)
        self.unknown[self.active] = np.arange(int(self.active.sum()))
        n = int(self.active.sum())
        if n == 0:
            raise ValueError("gridfit: active mask has no node")

        R = _regularizer(self.xnodes, self.ynodes, regularizer, rel).tocsr()
        keep = np.asarray(abs(R) @ (~self.active).astype(np.float64)).ravel() == 0
        R = R[keep][:, self.active]
        self.norm_r = float(abs(R).sum(axis=0).max()) if R.nnz else 0.0
        RtR = sp.tril(R.T @ R).tocoo()

        # Fixed pattern: R'R plus every pair of active corners of every cell that the
        # interpolation can couple, so any scan's A'A fits in it.
        cells = (np.arange(ny - 1)[:, None] + ny * np.arange(nx - 1)[None, :]).ravel(order="F")
        corners = self.unknown[cells[:, None] + _CORNER_DY + ny * _CORNER_DX]     # (ncell, 4)
        ua, ub = corners[:, _PAIR_A], corners[:, _PAIR_B]                        # (ncell, 10)
        # only pairs the data term can make non-zero: fewer couplings, less fill
        ok = (ua >= 0) & (ub >= 0) & _PAIRS_USED[self.interp]
        row, col = np.maximum(ua, ub), np.minimum(ua, ub)
        pattern = sp.csc_matrix(
            (np.ones(RtR.nnz + int(ok.sum())),
             (np.concatenate([RtR.row, row[ok]]), np.concatenate([RtR.col, col[ok]]))),
            shape=(n, n))
        pattern.sum_duplicates()
        pattern.sort_indices()
        keys = pattern.indices.astype(np.int64) + n * np.repeat(
            np.arange(n, dtype=np.int64), np.diff(pattern.indptr))
        nnz = keys.size
        # data-array slot of each (cell, corner pair); slot nnz collects pairs with an inactive node
        self._pair_slot = np.full(ua.shape, nnz, dtype=np.int64)
        self._pair_slot[ok] = np.searchsorted(keys, row[ok] + n * col[ok].astype(np.int64))
        self._rtr_data = np.zeros(nnz + 1)
        np.add.at(self._rtr_data, np.searchsorted(keys, RtR.row + n * RtR.col.astype(np.int64)),
                  RtR.data)
        self._cell_of_lowerleft = np.full(nx * ny, -1, dtype=np.int64)
        self._cell_of_lowerleft[cells] = np.arange(cells.size)
        self._corners = corners
        # disconnected active regions are separate problems; each needs its own data
        self._n_regions, self._region = connected_components(pattern, directed=False)
        self._solver = Cholesky(pattern.indptr, pattern.indices, n, solver, _reuse)

    @property
    def backend(self) -> str:
        """Name of the sparse Cholesky backend in use."""
        return self._solver.backend

    def fit(self, x, y, z) -> np.ndarray:
        """(n,) scattered x, y, z -> (ny, nx) fitted z (row 0 at ynodes[0]; NaN if inactive)."""
        x, y, z = _check_points(x, y, z)
        inside, lowerleft, tx, ty = _locate(x, y, self.xnodes, self.ynodes)
        z = z[inside]
        w = _corner_weights(tx, ty, self.interp)
        cell = self._cell_of_lowerleft[lowerleft]
        unknown = self._corners[cell]                                            # (m, 4)
        usable = ~np.any((unknown < 0) & (w != 0), axis=1)
        if usable.sum() < MIN_POINTS:
            raise ValueError(f"gridfit: need >= {MIN_POINTS} points inside the active grid, "
                             f"got {int(usable.sum())} of {x.size}")
        w, z, cell, unknown = w[usable], z[usable], cell[usable], unknown[usable]
        if self._n_regions > 1:
            self._check_regions(w, unknown)
        n = self._solver.n
        slot = np.where(unknown >= 0, unknown, n).ravel()
        norm_a = np.bincount(slot, weights=np.abs(w).ravel(), minlength=n + 1)[:n].max()
        lam = self.smoothparam * norm_a / self.norm_r if self.norm_r > 0 else 0.0
        data = lam * lam * self._rtr_data
        data += np.bincount(self._pair_slot[cell].ravel(),
                            weights=(w[:, _PAIR_A] * w[:, _PAIR_B]).ravel(), minlength=data.size)
        rhs = np.bincount(slot, weights=(w * z[:, None]).ravel(), minlength=n + 1)[:n]
        sol = self._solver.solve(data[:-1], rhs)
        out = np.full(self.active.size, np.nan)
        out[self.active] = sol
        return out.reshape(self.shape, order="F")

    def _check_regions(self, w: np.ndarray, unknown: np.ndarray) -> None:
        """Disconnected active regions are separate problems: each needs its own data."""
        per_region = np.bincount(self._region[unknown[np.arange(w.shape[0]), w.argmax(axis=1)]],
                                 minlength=self._n_regions)
        if per_region.min() < MIN_POINTS:
            size = int(np.sum(self._region == per_region.argmin()))
            raise ValueError(f"gridfit: an active region of {size} "
                             f"nodes holds {per_region.min()} points (need >= {MIN_POINTS}); "
                             "its surface is undetermined")


def gridfit(x, y, z, xnodes, ynodes, *, smoothness=1.0, interp: str = "triangle",
            regularizer: str = "gradient", solver: str = "cholesky", mask=None) -> np.ndarray:
    """Fit z(x, y) on the grid ``xnodes x ynodes`` as D'Errico's gridfit does.

    Args:
        x, y, z: (n,) finite scattered points; points outside the node rectangle are ignored.
        xnodes, ynodes: (nx,), (ny,) strictly increasing node coordinates.
        smoothness, interp, regularizer, solver: see :class:`GridFitter`.
        mask: optional (ny, nx) bool of the nodes to solve for (``GridFitter``'s ``active``).

    Returns:
        (ny, nx) float64, row i at ``ynodes[i]``, column j at ``xnodes[j]``; NaN where
        ``mask`` is False.

    Example:
        >>> xn = np.linspace(-1, 1, 9); rng = np.random.default_rng(1)
        >>> x, y = rng.uniform(-1, 1, (2, 300))
        >>> zg = gridfit(x, y, 3 * x + 2 * y, xn, xn)
        >>> bool(np.allclose(zg, 3 * xn[None, :] + 2 * xn[:, None]))
        True
    """
    fitter = GridFitter(xnodes, ynodes, smoothness=smoothness, interp=interp,
                        regularizer=regularizer, active=mask, solver=solver, _reuse=False)
    return fitter.fit(x, y, z)

