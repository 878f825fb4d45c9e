"""Sparse Cholesky solves that reuse one symbolic analysis, for gridfit's normal equations.

Stage: preprocessing, inside gridfit (:class:`fer3d_data.surface.gridfit.GridFitter`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg  # noqa: F401 - sp.linalg.splu

SOLVERS = ("cholesky", "hea", "rslab", "scipy")


class Cholesky:
    """Solve ``M x = b`` for SPD matrices sharing one lower-triangle CSC pattern.

    The symbolic analysis (fill-reducing ordering, elimination tree) is done on the first
    ``solve`` and reused by every later one. Backends, fastest first: ``hea`` (a CHOLMOD
    port, supernodal and parallel; GPL-3, so only the opt-in extra ``fer3d[fast]`` installs
    it), ``rslab`` (MIT, supernodal LDL', a core dependency), ``scipy`` (SuperLU, no reuse).
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, n: int, backend: str, reuse: bool):
        self.indptr, self.indices, self.n = indptr, indices, n
        self.backend = self._pick(backend)
        # METIS costs more than AMD once and saves on every refactorisation
        self.order = "metis" if reuse else "amd"
        self._factor = None

    @staticmethod
    def _pick(backend: str) -> str:
        candidates = ("hea", "rslab", "scipy") if backend == "cholesky" else (backend,)
        for name in candidates:
            try:
                if name == "hea":
                    import hea.sparse  # noqa: F401
                elif name == "rslab":
                    import rslab  # noqa: F401
                return name
            except ImportError:
                if backend != "cholesky":
                    raise
        raise AssertionError("unreachable: scipy is always importable")

    def solve(self, data: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        lower = sp.csc_matrix((data, self.indices, self.indptr), shape=(self.n, self.n))
        try:
            return self._solve(lower, rhs)
        except (RuntimeError, ArithmeticError, np.linalg.LinAlgError) as err:
            raise ValueError(f"gridfit: the normal equations are singular ({err}); too few "
                             "points, collinear points, or an active region without data") from err

    def _solve(self, lower: sp.csc_matrix, rhs: np.ndarray) -> np.ndarray:
        if self.backend == "hea":
            import hea.sparse as hs
            try:
                if self._factor is None:
                    self._factor = hs.cho_factor(lower, lower=True, order=self.order)
                else:
                    self._factor.factorize(lower)
            except hs.CholmodError as err:
                self._factor = None
                raise ArithmeticError(str(err)) from err
            return self._factor.solve(rhs)
        if self.backend == "rslab":
            import rslab
            if self._factor is None:
                self._factor = rslab.analyze(lower, path="ldlt", ordering=self.order)
            factor = self._factor.factor(lower.data)
            if np.any(np.asarray(factor.inertia)[1:] != 0):
                raise ArithmeticError(f"matrix is not positive definite, inertia {factor.inertia}")
            return factor.solve(rhs)
        full = (lower + sp.tril(lower, -1).T).tocsc()
        x = sp.linalg.splu(full, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                           options={"SymmetricMode": True}).solve(rhs)
        if not np.all(np.isfinite(x)):
            raise ArithmeticError("SuperLU produced non-finite values")
        return x
