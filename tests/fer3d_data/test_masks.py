import numpy as np
import pytest

from fer3d_data.errors import ScanError
from fer3d_data.landmarks import BOSPHORUS_NAMES, GROUPS, SCHEME_NAMES, group_points
from fer3d_data.masks import REGION_NAMES, area_resize, region_masks, salient_masks

SIZE = 112


def ring(n, centre, radii, start=0.0):
    t = start + 2 * np.pi * np.arange(n) / n
    return np.stack([centre[0] + radii[0] * np.cos(t), centre[1] + radii[1] * np.sin(t)], axis=1)


def arc(n, centre, half_width, lift):
    x = np.linspace(-half_width, half_width, n)
    return np.stack([centre[0] + x, centre[1] - lift * (1 - (x / half_width) ** 2)], axis=1)


def face_points(scheme):
    """Plausible landmarks (x = col, y = row) of a face filling a SIZE x SIZE grid."""
    parts = {
        "eye_left": lambda n: ring(n, (35, 42), (8, 3.5)),
        "eye_right": lambda n: ring(n, (77, 42), (8, 3.5)),
        "brow_left": lambda n: arc(n, (35, 32), 11, 4),
        "brow_right": lambda n: arc(n, (77, 32), 11, 4),
        "nose": lambda n: ring(n, (56, 60), (8, 12), 0.3),
        "mouth": lambda n: ring(n, (56, 84), (15, 6)),
    }
    index = {name: i for i, name in enumerate(SCHEME_NAMES[scheme])}
    # Points outside the groups (contour, chin) on the bottom row.
    points = np.column_stack([np.linspace(10, 100, len(index)), np.full(len(index), 108.0)])
    for group, names in GROUPS[scheme].items():
        points[[index[n] for n in names]] = parts[group](len(names))
    return points


@pytest.mark.parametrize("scheme", ["bu3dfe83", "bosphorus", "dlib68"])
def test_every_region_landmark_inside_its_region(scheme):
    points = face_points(scheme)
    regions = region_masks(points, scheme, SIZE, margin_px=2)
    assert regions.shape == (3, SIZE, SIZE) and regions.dtype == np.uint8
    assert set(np.unique(regions)) == {0, 1}
    channel_groups = {0: ("eye_left", "eye_right", "brow_left", "brow_right"),
                      1: ("nose",), 2: ("mouth",)}
    for channel, groups in channel_groups.items():
        for group in groups:
            x, y = np.round(group_points(points, scheme, group)).astype(int).T
            assert regions[channel, y, x].all(), (scheme, group)
    # Contour points (chin row) are in no region; regions do not bleed into each other.
    assert not regions[:, 108].any()
    assert not regions[2, 42].any() and not regions[0, 84].any()


@pytest.mark.parametrize("margin", [0, 1.5])
def test_landmarks_inside_even_without_margin(margin):
    points = face_points("bu3dfe83")
    regions = region_masks(points, "bu3dfe83", SIZE, margin_px=margin)
    x, y = np.round(points[:68]).astype(int).T
    assert regions.max(axis=0)[y, x].all()


def test_margin_is_a_disc_dilation():
    points = face_points("dlib68")
    tight = region_masks(points, "dlib68", SIZE, margin_px=0)
    wide = region_masks(points, "dlib68", SIZE, margin_px=5)
    assert (wide >= tight).all() and wide.sum() > tight.sum()
    # Mouth: rightmost corner at x = 71; the margin reaches x = 76 on that row, not 77.
    assert wide[2, 84, 76] == 1 and wide[2, 84, 77] == 0 and tight[2, 84, 72] == 0


def test_eyes_are_one_hull_per_side():
    regions = region_masks(face_points("bu3dfe83"), "bu3dfe83", SIZE, margin_px=1)
    assert regions[0, 38, 56] == 0  # between the eyes: not joined into one hull


def test_salient_masks_scales():
    out = salient_masks(face_points("bu3dfe83"), "bu3dfe83", SIZE, margin_px=3)
    assert out["mask"].shape == (SIZE, SIZE) and out["mask"].dtype == np.uint8
    np.testing.assert_array_equal(out["mask"], out["regions"].max(axis=0))
    assert out["mask56"].shape == (56, 56) and out["mask56"].dtype == np.float32
    assert out["mask28"].shape == (28, 28) and out["mask28"].dtype == np.float32
    # 112 -> 56 -> 28 are exact 2x2 means, and mask28 is the area-resize of mask56.
    def halve(m):
        return m.reshape(len(m) // 2, 2, len(m) // 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out["mask56"], halve(out["mask"]), atol=1e-6)
    np.testing.assert_allclose(out["mask28"], halve(out["mask56"]), atol=1e-6)
    np.testing.assert_array_equal(out["mask28"], area_resize(out["mask56"], 28))
    assert 0.0 < out["mask56"].mean() < 0.5


def test_area_resize_values_in_unit_range():
    mask = (np.random.default_rng(0).random((50, 50)) > 0.5).astype(np.uint8)
    resized = area_resize(mask, 28)
    assert resized.shape == (28, 28) and resized.dtype == np.float32
    assert resized.min() >= 0 and resized.max() <= 1
    assert abs(resized.mean() - mask.mean()) < 0.02


def test_bosphorus_missing_points_are_skipped():
    points = face_points("bosphorus")
    points[BOSPHORUS_NAMES.index("Middle left eyebrow")] = np.nan
    points[BOSPHORUS_NAMES.index("Nose tip")] = np.nan
    regions = region_masks(points, "bosphorus", SIZE, margin_px=1)
    assert regions[1].any() and regions[0].any()


def test_too_few_points_raise_scan_error():
    points = face_points("bosphorus")
    for name in ("Left mouth corner", "Upper lip outer middle", "Right mouth corner",
                 "Upper lip inner middle"):
        points[BOSPHORUS_NAMES.index(name)] = np.nan
    with pytest.raises(ScanError, match="mouth") as err:
        salient_masks(points, "bosphorus", SIZE)
    assert err.value.step == "masks"


def test_bad_input():
    with pytest.raises(ScanError, match="bu3dfe_pse"):
        region_masks(np.zeros((8, 2)), "bu3dfe_pse", SIZE)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        region_masks(np.zeros((67, 2)), "dlib68", SIZE)
    assert REGION_NAMES == ("eyes", "nose", "mouth")
