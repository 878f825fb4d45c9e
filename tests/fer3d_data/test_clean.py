import numpy as np
import pytest

from fer3d_data.errors import ScanError
from fer3d_data.surface.clean import clean_points, depth_spikes, finite_points, statistical_outliers


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
