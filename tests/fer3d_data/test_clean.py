import numpy as np
import pytest

from fer3d_data.errors import ScanError
from fer3d_data.surface.clean import (
    clean_points,
    depth_spikes,
    finite_points,
    grid_depth_spikes,
    statistical_outliers,
)


def face_cloud(seed=0, step=2.5):
    """A noisy face-like surface (ellipsoidal cap + steep nose), mm."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(-70, 70.1, step), np.arange(-90, 90.1, step))
    x, y = x.ravel(), y.ravel()
    keep = (x / 70) ** 2 + (y / 90) ** 2 <= 1
    x, y = x[keep], y[keep]
    z = 80 * np.sqrt(1 - (x / 95) ** 2 - (y / 115) ** 2) - 80
    z += 25 * np.exp(-(x / 9) ** 2 - (y / 18) ** 2)
    return np.stack([x, y, z], axis=1) + rng.normal(scale=[0.4, 0.4, 0.2], size=(len(x), 3))


def with_spikes(points, offsets):
    """Extra points on the surface's xy with z moved by ``offsets`` mm, away from the border."""
    inner = points[(np.abs(points[:, 0]) < 50) & (np.abs(points[:, 1]) < 65)]
    spikes = inner[:: len(inner) // len(offsets)][: len(offsets)].copy()
    spikes[:, :2] += 0.5
    spikes[:, 2] += offsets
    return np.vstack([points, spikes])


def test_finite_points():
    points = np.zeros((5, 3))
    points[1, 0], points[3, 2] = np.nan, np.inf
    np.testing.assert_array_equal(finite_points(points), [True, False, True, False, True])


def test_statistical_outliers_removes_far_points_keeps_surface():
    face = face_cloud()
    far = np.random.default_rng(1).uniform(-60, 60, size=(25, 3)) + [0, 0, 120]
    keep = statistical_outliers(np.vstack([face, far]))
    assert keep.shape == (len(face) + 25,)
    assert not keep[len(face):].any()
    assert keep[: len(face)].all()


def test_statistical_outliers_tiny_cloud_keeps_everything():
    np.testing.assert_array_equal(statistical_outliers(np.zeros((1, 3))), [True])


@pytest.mark.parametrize("offset", [6.0, -6.0, 15.0])
def test_depth_spikes_removes_spikes_and_pits(offset):
    face = face_cloud()
    points = with_spikes(face, np.full(12, offset))
    keep = depth_spikes(points)
    assert not keep[len(face):].any()
    assert keep[: len(face)].mean() >= 0.995  # the steep nose sides stay


def test_depth_spikes_keeps_small_deviations():
    face = face_cloud()
    points = with_spikes(face, np.full(12, 2.0))
    assert depth_spikes(points)[len(face):].all()


def test_clean_points_chain():
    face = face_cloud()
    far = np.random.default_rng(2).uniform(-60, 60, size=(20, 3)) + [0, 0, 150]
    points = with_spikes(np.vstack([face, far]), np.full(10, 8.0))
    points[[5, 50, 500]] = np.nan
    keep = clean_points(points, min_points=100)
    assert keep.shape == (len(points),) and keep.dtype == bool
    assert not keep[[5, 50, 500]].any()
    assert not keep[len(face):].any()
    assert keep[: len(face)].sum() >= 0.99 * len(face) - 3


def test_clean_points_steps_can_be_skipped():
    points = np.vstack([face_cloud(), [[0, 0, 500]]])
    assert clean_points(points, std_ratio=None, max_dev_mm=None, min_points=10).all()


def test_too_few_points_is_a_scan_error():
    with pytest.raises(ScanError, match="need 100000") as err:
        clean_points(face_cloud(), min_points=100000)
    assert err.value.step == "clean"
    with pytest.raises(ScanError):
        clean_points(np.full((50, 3), np.nan), min_points=1)


def test_bad_shape_raises_value_error():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        clean_points(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="finite"):
        depth_spikes(np.full((4, 3), np.nan))


def _nanmedian_spikes(z, valid, max_dev):
    """Direct reference for grid_depth_spikes: nanmedian of the 24 other cells of a 5x5 window."""
    pad = np.pad(np.where(valid, z, np.nan), 2, constant_values=np.nan)
    win = np.lib.stride_tricks.sliding_window_view(pad, (5, 5)).reshape(*z.shape, -1)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        med = np.nanmedian(np.delete(win, 12, axis=-1), axis=-1)
    return valid & ~(np.abs(z - med) > max_dev)


def test_grid_depth_spikes_matches_nanmedian_reference_and_drops_spikes():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 0.5, (40, 30))
    valid = rng.random((40, 30)) > 0.3
    valid[5, 5] = valid[20, 20] = True
    valid[0:4, 0:4] = False
    valid[1, 1] = True                        # isolated: no valid neighbour, must stay
    z[5, 5], z[20, 20], z[1, 1] = 30.0, -25.0, 99.0
    keep = grid_depth_spikes(z, valid, max_dev_mm=4.0)
    assert keep.shape == (40, 30) and keep.dtype == bool
    assert not keep[5, 5] and not keep[20, 20] and keep[1, 1]
    assert not keep[~valid].any()
    np.testing.assert_array_equal(keep, _nanmedian_spikes(z, valid, 4.0))


def test_clean_points_grid_valid_uses_the_grid():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:50, 0:40] * 0.76
    z = 0.01 * xx + rng.normal(0, 0.1, xx.shape)
    valid = np.ones(xx.shape, bool)
    z[25, 20] += 20.0
    points = np.stack([xx, yy, z], axis=-1)[valid]
    keep = clean_points(points, std_ratio=None, min_points=10, grid_valid=valid)
    assert keep.sum() == valid.sum() - 1 and not keep[25 * 40 + 20]
    with pytest.raises(ValueError, match="valid cells"):
        clean_points(points[:-1], std_ratio=None, min_points=10, grid_valid=valid)


def test_grid_depth_spikes_bad_input():
    with pytest.raises(ValueError, match="odd size"):
        grid_depth_spikes(np.zeros((4, 4)), np.ones((4, 4), bool), size=4)
    with pytest.raises(ValueError):
        grid_depth_spikes(np.zeros((4, 4)), np.ones((3, 4), bool))


def test_range_grid_keeps_a_steep_cavity_and_drops_its_spike():
    """Regression: the 3-D outlier statistic removed the walls of an open mouth in Bosphorus
    range grids; on a grid, cleaning judges depth against the grid neighbours only."""
    yy, xx = np.mgrid[0:80, 0:60] * 0.76
    r = np.hypot(xx - 22.8, yy - 30.4)
    z = np.where(r < 8.0, -25.0 * (1 - (r / 8.0) ** 2), 0.0)   # a 25 mm deep, steep-walled pit
    z[5, 5] = 40.0                                              # a spike on the flat part
    valid = np.ones(z.shape, bool)
    points = np.stack([xx, yy, z], axis=-1)[valid]
    keep = clean_points(points, std_ratio=2.0, min_points=10, grid_valid=valid).reshape(z.shape)
    assert keep[r < 8.0].all() and not keep[5, 5]
    assert keep.sum() == valid.sum() - 1
