"""Tests of fer3d_data.surface.gridfit against pygridfit (the reference port of gridfit.m)
and on known answers."""

from __future__ import annotations

import numpy as np
import pytest

from fer3d_data.surface.gridfit import GridFitter, gridfit

XN = np.linspace(-1.0, 1.3, 40)
YN = np.linspace(-0.8, 1.0, 30)
REFERENCE_AGREEMENT = 1e-12  # of the data range, against pygridfit's solver "normal"


def cloud(n=700, seed=0, hole=0.3):
    """(n',) x, y, z inside the XN x YN rectangle, with a round hole at the origin."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(XN[0], XN[-1], n), rng.uniform(YN[0], YN[-1], n)
    keep = np.hypot(x, y) > hole
    x, y = x[keep], y[keep]
    return x, y, np.sin(3 * x) * np.cos(2 * y) + rng.normal(0, 0.05, x.size)


@pytest.mark.parametrize("interp", ["triangle", "bilinear"])
@pytest.mark.parametrize("regularizer", ["gradient", "laplacian", "springs"])
@pytest.mark.parametrize("smoothness", [1.0, 0.2, (0.5, 3.0)])
def test_matches_pygridfit(interp, regularizer, smoothness):
    pygridfit = pytest.importorskip("pygridfit")
    x, y, z = cloud()
    ref = pygridfit.GridFit(x, y, z, XN, YN, smoothness=smoothness, interp=interp,
                            regularizer=regularizer, solver="normal").fit().zgrid
    ours = gridfit(x, y, z, XN, YN, smoothness=smoothness, interp=interp, regularizer=regularizer)
    assert ours.shape == (30, 40) and ours.dtype == np.float64
    # measured: <= 3e-14 of the range (every backend); a 0.5 % change of lambda moves 4e-4
    assert np.abs(ours - ref).max() <= REFERENCE_AGREEMENT * np.ptp(z)


@pytest.mark.parametrize("solver", ["hea", "rslab", "scipy"])
def test_backends_agree(solver):
    pytest.importorskip({"hea": "hea.sparse", "rslab": "rslab", "scipy": "scipy"}[solver])
    x, y, z = cloud()
    ref = gridfit(x, y, z, XN, YN, solver="scipy")
    assert (np.abs(gridfit(x, y, z, XN, YN, solver=solver) - ref).max()
            <= REFERENCE_AGREEMENT * np.ptp(z))  # measured: <= 4e-15


@pytest.mark.parametrize("interp", ["triangle", "bilinear", "nearest"])
@pytest.mark.parametrize("regularizer", ["gradient", "laplacian", "springs"])
def test_null_space_surface_reproduced_exactly(interp, regularizer):
    # a plane is in the gradient and laplacian null spaces (springs: only constants), and
    # every interpolation reproduces it at the nodes (nearest: when points sit on nodes)
    rng = np.random.default_rng(3)
    if interp == "nearest":
        x, y = XN[rng.integers(0, 40, 2000)], YN[rng.integers(0, 30, 2000)]
    else:
        x, y = rng.uniform(XN[0], XN[-1], 500), rng.uniform(YN[0], YN[-1], 500)
    slope = (0.0, 0.0) if regularizer == "springs" else (2.0, -3.0)
    zg = gridfit(x, y, slope[0] * x + slope[1] * y + 0.5, XN, YN, interp=interp,
                 regularizer=regularizer)
    np.testing.assert_allclose(zg, slope[0] * XN[None, :] + slope[1] * YN[:, None] + 0.5,
                               atol=1e-9)


def test_hole_filled_smoothly():
    # a paraboloid with a big hole: the fill follows the bowl, without jumps
    x, y, _ = cloud(n=3000, hole=0.5)
    z = x ** 2 + y ** 2
    zg = gridfit(x, y, z, XN, YN, smoothness=0.5)
    X, Y = np.meshgrid(XN, YN)
    hole = np.hypot(X, Y) < 0.4
    assert np.abs(zg - (X ** 2 + Y ** 2))[hole].max() < 0.1
    # no spike: second differences inside the hole stay like the surface's (2 * h^2)
    d2 = np.abs(np.diff(zg, 2, axis=1))[:, 1:-1][hole[:, 2:-2]]
    assert d2.max() < 4 * 2 * (XN[1] - XN[0]) ** 2


def test_fitter_equals_gridfit_and_is_reusable():
    fitter = GridFitter(XN, YN, smoothness=0.7, interp="bilinear", regularizer="laplacian")
    for seed in (0, 1, 2):
        x, y, z = cloud(seed=seed)
        one_shot = gridfit(x, y, z, XN, YN, smoothness=0.7, interp="bilinear",
                           regularizer="laplacian")
        np.testing.assert_allclose(fitter.fit(x, y, z), one_shot, rtol=0, atol=1e-10)


def test_active_mask():
    X, Y = np.meshgrid(XN, YN)
    active = np.hypot(X, Y) < 0.9
    x, y, _ = cloud(n=2000, hole=0.0)
    z = 1.0 + x - y
    fitter = GridFitter(XN, YN, active=active)
    zg = fitter.fit(x, y, z)
    assert zg.shape == (30, 40)
    assert np.all(np.isnan(zg[~active])) and np.all(np.isfinite(zg[active]))
    np.testing.assert_allclose(zg[active], (1.0 + X - Y)[active], atol=1e-9)
    # same as the full fit when every node is active
    x, y, z = cloud()
    np.testing.assert_allclose(gridfit(x, y, z, XN, YN, mask=np.ones((30, 40), bool)),
                               gridfit(x, y, z, XN, YN), atol=1e-12)


def test_active_region_without_data_is_an_error():
    active = np.zeros((30, 40), dtype=bool)
    active[:, :5] = True     # left strip with data
    active[:, 30:] = True    # right strip, disconnected, no data
    x, y = np.full(50, XN[1]) + np.linspace(0, 0.1, 50), np.linspace(YN[0], YN[-1], 50)
    with pytest.raises(ValueError, match="an active region of 300 nodes holds 0 points"):
        GridFitter(XN, YN, active=active).fit(x, y, np.ones(50))


def test_points_outside_grid_ignored():
    x, y, z = cloud()
    ref = gridfit(x, y, z, XN, YN)
    out = gridfit(np.r_[x, 9.0, -9.0], np.r_[y, 0.0, 0.0], np.r_[z, 1e6, -1e6], XN, YN)
    np.testing.assert_allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("args, match", [
    ((np.zeros(5), np.zeros(4), np.zeros(5), XN, YN), "lengths differ"),
    ((np.r_[0.0, np.nan, 0, 0, 0], np.zeros(5), np.zeros(5), XN, YN), "finite"),
    ((np.zeros(5), np.zeros(5), np.r_[0.0, np.inf, 0, 0, 0], XN, YN), "finite"),
    ((np.zeros(5), np.zeros(5), np.zeros(5), XN[::-1], YN), "xnodes must be strictly increasing"),
    ((np.zeros(5), np.zeros(5), np.zeros(5), XN, np.r_[YN[:3], YN[2:]]), "ynodes must be strictly"),
    ((np.zeros(5), np.zeros(5), np.zeros(5), XN, YN[:2]), "ynodes must be 1-D with >= 3"),
    ((np.zeros(3), np.zeros(3), np.zeros(3), XN, YN), r"need >= 4 points"),
])
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        gridfit(*args)


@pytest.mark.parametrize("kwargs, match", [
    ({"smoothness": 0.0}, "smoothness"),
    ({"smoothness": (1.0, 2.0, 3.0)}, "smoothness"),
    ({"interp": "cubic"}, "interp"),
    ({"regularizer": "tv"}, "regularizer"),
    ({"solver": "lsqr"}, "solver"),
    ({"active": np.ones((40, 30), dtype=bool)}, "active must be a bool array of shape"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridFitter(XN, YN, **kwargs)


def test_uniform_cell_lookup_equals_searchsorted_at_node_boundaries():
    from fer3d_data.surface.gridfit import _cell_index
    rng = np.random.default_rng(0)
    for nodes in (np.linspace(-90, 90, 224), np.linspace(0.1, 0.7, 7), np.array([0.0, 1.0, 3.0,
                                                                                 3.5])):
        v = np.concatenate([rng.uniform(nodes[0], nodes[-1], 20000), nodes,
                            np.nextafter(nodes, np.inf)[:-1], np.nextafter(nodes, -np.inf)[1:]])
        ref = np.minimum(np.searchsorted(nodes, v, side="right") - 1, nodes.size - 2)
        np.testing.assert_array_equal(_cell_index(v, nodes), ref)
