import numpy as np
import pytest

from fer3d_data.io.types import Landmarks
from fer3d_data.landmarks import BOSPHORUS_NAMES
from fer3d_data.surface.pose import apply_pose, crop_sphere, frontal_rotation, nose_tip


def surface_z(x, y):
    """Face-like height: ellipsoidal cap + nose bump whose tip is (0, 0, 25)."""
    cap = 80 * np.sqrt(1 - (x / 95) ** 2 - (y / 115) ** 2) - 80
    return cap + 25 * np.exp(-(x / 9) ** 2 - (y / 18) ** 2)


def face_cloud(step=2.0):
    x, y = np.meshgrid(np.arange(-70, 70.1, step), np.arange(-90, 90.1, step))
    x, y = x.ravel(), y.ravel()
    keep = (x / 70) ** 2 + (y / 90) ** 2 <= 1
    return np.stack([x[keep], y[keep], surface_z(x[keep], y[keep])], axis=1)


def on_surface(xy):
    xy = np.asarray(xy, dtype=float)
    return np.column_stack([xy, surface_z(xy[:, 0], xy[:, 1])])


def ring(n, centre, radius):
    t = 2 * np.pi * np.arange(n) / n
    return np.column_stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)])


def bu3dfe_landmarks():
    xy = np.column_stack([np.linspace(-60, 60, 83), np.full(83, -70.0)])  # contour along the chin
    xy[0:8], xy[8:16] = ring(8, (-32, 35), 6), ring(8, (32, 35), 6)
    xy[16:26] = np.column_stack([np.linspace(-45, -20, 10), np.full(10, 48.0)])
    xy[26:36] = np.column_stack([np.linspace(20, 45, 10), np.full(10, 48.0)])
    xy[36:48] = ring(12, (0, 2), 12)
    xy[48:68] = ring(20, (0, -40), 14)
    return Landmarks(on_surface(xy), tuple(str(i) for i in range(1, 84)), "bu3dfe83")


def rotation(ax, ay, az):
    ax, ay, az = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def angle_deg(R):
    return np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))


def rotated(landmarks, Q):
    return Landmarks(landmarks.points @ Q.T, landmarks.names, landmarks.scheme)


def test_frontal_rotation_of_frontal_face_is_identity():
    np.testing.assert_allclose(frontal_rotation(face_cloud()), np.eye(3), atol=1e-9)
    R = frontal_rotation(face_cloud(), bu3dfe_landmarks())
    np.testing.assert_allclose(R, np.eye(3), atol=1e-9)


@pytest.mark.parametrize("angles", [(4, 0, 0), (0, -5, 0), (0, 0, 6), (3, -4, 5), (-5, 5, -3)])
def test_frontal_rotation_recovers_rotation_with_eye_landmarks(angles):
    Q = rotation(*angles)
    R = frontal_rotation(face_cloud() @ Q.T, rotated(bu3dfe_landmarks(), Q))
    assert angle_deg(R @ Q) < 1.0
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)


@pytest.mark.parametrize("angles", [(4, 0, 0), (0, -5, 0), (5, 5, 0), (-4, 3, 0)])
def test_frontal_rotation_recovers_pitch_and_yaw_without_landmarks(angles):
    Q = rotation(*angles)
    assert angle_deg(frontal_rotation(face_cloud() @ Q.T) @ Q) < 1.0


def test_bosphorus_eye_landmarks_set_the_eye_line():
    Q = rotation(2, -3, 7)
    names = ("Outer left eye corner", "Inner left eye corner",
             "Inner right eye corner", "Outer right eye corner")
    lm = Landmarks(on_surface([[-45, 35], [-18, 35], [18, 35], [45, 35]]) @ Q.T, names, "bosphorus")
    assert angle_deg(frontal_rotation(face_cloud() @ Q.T, lm) @ Q) < 1.0


def test_apply_pose_puts_origin_at_zero_and_faces_camera():
    Q = rotation(3, -4, 5)
    points = face_cloud() @ Q.T + [10, -20, 30]
    tip = np.array([0, 0, 25.0]) @ Q.T + [10, -20, 30]
    R = frontal_rotation(points, rotated(bu3dfe_landmarks(), Q))
    aligned = apply_pose(points, R, tip)
    assert aligned.shape == points.shape
    np.testing.assert_allclose(aligned[np.argmax(aligned[:, 2])], 0, atol=1e-6)
    np.testing.assert_allclose(aligned, (face_cloud() - [0, 0, 25]) @ (R @ Q).T, atol=1e-9)


def test_crop_sphere():
    points = np.array([[0, 0, 0], [89.9, 0, 0], [0, 90.1, 0], [55, 55, 55]], dtype=float)
    expected = [True, True, False, False]
    np.testing.assert_array_equal(crop_sphere(points, np.zeros(3), 90.0), expected)
    np.testing.assert_array_equal(crop_sphere(points + 5, np.full(3, 5.0), 90.0), expected)


def test_nose_tip_bosphorus_landmark_wins():
    tip = np.array([1.5, -2.0, 24.0])
    names = ("Nose tip", "Inner left eye corner")
    lm = Landmarks(np.array([tip, [-30, 35, 5.0]]), names, "bosphorus")
    np.testing.assert_array_equal(nose_tip(face_cloud(), lm), tip)


def with_distractor(points, xy, height):
    """A protrusion (hair, collar) higher than the nose tip."""
    x, y = np.meshgrid(np.arange(-4, 4.1, 2.0), np.arange(-4, 4.1, 2.0))
    bump = np.column_stack([x.ravel() + xy[0], y.ravel() + xy[1], np.full(x.size, height)])
    return np.vstack([points, bump])


def test_nose_tip_in_bu3dfe_nose_region_not_at_global_max():
    points = with_distractor(face_cloud(), (0, 60), 40.0)
    np.testing.assert_allclose(nose_tip(points, bu3dfe_landmarks()), [0, 0, 25], atol=1e-9)
    Q = rotation(4, -3, 5)
    tip = nose_tip(points @ Q.T, rotated(bu3dfe_landmarks(), Q))
    np.testing.assert_allclose(tip, np.array([0, 0, 25.0]) @ Q.T, atol=1e-9)


def test_nose_tip_bosphorus_without_tip_uses_saddles_and_peaks():
    names = ("Nose saddle left", "Nose saddle right", "Left nose peak", "Right nose peak")
    lm = Landmarks(on_surface([[-8, 22], [8, 22], [-14, -8], [14, -8]]), names, "bosphorus")
    points = with_distractor(face_cloud(), (0, 60), 40.0)
    np.testing.assert_allclose(nose_tip(points, lm), [0, 0, 25], atol=1e-9)


def test_nose_tip_without_landmarks_near_centre():
    points = with_distractor(face_cloud(), (55, -60), 40.0)
    np.testing.assert_allclose(nose_tip(points), [0, 0, 25], atol=1e-9)
    # 2D (pixel) landmarks cannot locate anything in 3D: same answer.
    lm2 = Landmarks(np.zeros((len(BOSPHORUS_NAMES), 2)), BOSPHORUS_NAMES, "bosphorus")
    np.testing.assert_allclose(nose_tip(points, lm2), [0, 0, 25], atol=1e-9)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        nose_tip(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="origin"):
        apply_pose(np.zeros((4, 3)), np.eye(3), np.zeros(2))
    with pytest.raises(ValueError, match="radius"):
        crop_sphere(np.zeros((4, 3)), np.zeros(3), 0.0)
