import numpy as np
import pytest

from fer3d_data.errors import ScanError
from fer3d_data.surface import texture
from fer3d_data.surface.grid import Grid
from fer3d_data.surface.texture import (
    grid_triangles,
    rasterize,
    sample_bilinear,
    texture_from_grid,
    texture_from_mesh,
)

GRID = Grid(size=48, radius=40.0)
IMAGE_SIZE = 200


def height_mesh(n=41, extent=50.0, uv_lo=0.1, uv_hi=0.9):
    """A bumpy height field over [-extent, extent]^2 whose UV is linear in (x, y)."""
    x, y = np.meshgrid(np.linspace(-extent, extent, n), np.linspace(-extent, extent, n))
    z = 20 * np.exp(-(x**2 + y**2) / 300) + 0.1 * x
    vertices = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    faces = grid_triangles(np.ones((n, n), dtype=bool))
    t = (vertices[:, :2] + extent) / (2 * extent)
    return vertices, faces, uv_lo + (uv_hi - uv_lo) * t


def uv_image():
    """Colour encodes the pixel: red = column, green = row (linear, so bilinear is exact)."""
    row, col = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    return np.stack([col, row, np.full_like(col, 50)], axis=-1).astype(np.uint8)


def expected_colour(u, v_image_down):
    return np.stack([u * IMAGE_SIZE - 0.5, v_image_down * IMAGE_SIZE - 0.5], axis=-1)


def node_uv(extent=50.0, uv_lo=0.1, uv_hi=0.9):
    x, y = GRID.mesh()
    return (uv_lo + (uv_hi - uv_lo) * (x + extent) / (2 * extent),
            uv_lo + (uv_hi - uv_lo) * (y + extent) / (2 * extent))


def test_mesh_texture_samples_uv_of_every_cell():
    vertices, faces, uv = height_mesh()
    texture, hit = texture_from_mesh(vertices, faces, uv, faces, uv_image(), GRID)
    assert texture.shape == (48, 48, 3) and texture.dtype == np.uint8
    assert hit.shape == (48, 48) and hit.all()
    u, v = node_uv()
    expected = expected_colour(u, 1 - v)  # VRML: v = 0 at the image bottom
    assert np.abs(texture[..., :2] - expected).max() <= 0.51
    assert (texture[..., 2] == 50).all()


def test_faces_uv_none_means_per_vertex_uv():
    vertices, faces, uv = height_mesh()
    with_index, _ = texture_from_mesh(vertices, faces, uv, faces, uv_image(), GRID)
    without, _ = texture_from_mesh(vertices, faces, uv, None, uv_image(), GRID)
    np.testing.assert_array_equal(with_index, without)


def test_coloured_dot_lands_on_its_grid_pixel():
    vertices, faces, uv = height_mesh()
    point = np.array([12.3, -7.9])
    u, v = 0.1 + 0.8 * (point + 50) / 100
    image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 128, dtype=np.uint8)
    row, col = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    dot = (col + 0.5 - u * IMAGE_SIZE) ** 2 + (row + 0.5 - (1 - v) * IMAGE_SIZE) ** 2 <= 2.5**2
    image[dot] = (255, 0, 0)
    texture, _ = texture_from_mesh(vertices, faces, uv, faces, image, GRID)
    redness = np.clip(texture[..., 0].astype(float) - texture[..., 1], 0, None)
    rows, cols = np.mgrid[:48, :48]
    centroid = np.array([(redness * cols).sum(), (redness * rows).sum()]) / redness.sum()
    assert np.linalg.norm(centroid - GRID.to_pixels(point)) <= 1.0


def plane(z, u_lo, u_hi):
    """Two triangles covering the grid at height z, UV spanning [u_lo, u_hi] x [0, 1]."""
    vertices = np.array([[-60, -60, z], [60, -60, z], [60, 60, z], [-60, 60, z]], dtype=float)
    uv = np.array([[u_lo, 0], [u_hi, 0], [u_hi, 1], [u_lo, 1]], dtype=float)
    return vertices, np.array([[0, 1, 2], [0, 2, 3]]), uv


@pytest.mark.parametrize("front_first", [True, False])
def test_front_most_surface_wins(front_first):
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[:, :5] = (255, 0, 0)  # u < 0.5: back plane samples red
    image[:, 5:] = (0, 0, 255)  # u > 0.5: front plane samples blue
    back, front = plane(-5.0, 0.0, 0.3), plane(10.0, 0.7, 1.0)
    first, second = (front, back) if front_first else (back, front)
    vertices = np.vstack([first[0], second[0]])
    faces = np.vstack([first[1], second[1] + 4])
    uv = np.vstack([first[2], second[2]])
    texture, hit = texture_from_mesh(vertices, faces, uv, None, image, GRID)
    assert hit.all()
    assert (texture == (0, 0, 255)).all()


def test_tilted_surface_z_buffer_per_node():
    # Two crossing planes: the one with the larger z at each node must win there.
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[:, :5], image[:, 5:] = (255, 0, 0), (0, 0, 255)
    a = plane(0.0, 0.0, 0.3)
    b = plane(0.0, 0.7, 1.0)
    b[0][:, 2] = 0.5 * b[0][:, 0]  # z = x / 2: in front of plane a where x > 0
    vertices, faces = np.vstack([a[0], b[0]]), np.vstack([a[1], b[1] + 4])
    uv = np.vstack([a[2], b[2]])
    texture, _ = texture_from_mesh(vertices, faces, uv, None, image, GRID)
    x, _ = GRID.mesh()
    assert (texture[x > 1][:, 2] == 255).all()
    assert (texture[x < -1][:, 0] == 255).all()


def test_uncovered_cells_take_nearest_colour_and_are_reported():
    vertices, faces, uv = height_mesh(extent=20.0)
    texture, hit = texture_from_mesh(vertices, faces, uv, None, uv_image(), GRID)
    x, y = GRID.mesh()
    assert hit[(np.abs(x) < 19.5) & (np.abs(y) < 19.5)].all()
    assert not hit[(np.abs(x) > 20.5) | (np.abs(y) > 20.5)].any()
    # The top-left corner copies the nearest covered node, the mesh's top-left corner.
    corner = GRID.to_pixels(np.array([-20.0, 20.0])).round().astype(int)
    np.testing.assert_array_equal(texture[0, 0], texture[corner[1], corner[0]])


def test_bosphorus_grid_path_top_left_uv_and_hole():
    h, w = 60, 70
    x, y = np.meshgrid(np.linspace(-45, 45, w), np.linspace(45, -45, h))  # row 0 = top
    xyz = np.stack([x, y, 10 * np.cos(x / 30)], axis=-1)
    uv = np.stack([0.1 + 0.8 * (x + 45) / 90, 0.1 + 0.8 * (45 - y) / 90], axis=-1)  # v down
    valid = np.ones((h, w), dtype=bool)
    valid[25:35, 30:40] = False
    xyz[~valid] = -1e9  # the .bnt sentinel must not disturb the rasteriser
    texture, hit = texture_from_grid(xyz, uv, valid, uv_image(), GRID)
    gx, gy = GRID.mesh()
    u, v = 0.1 + 0.8 * (gx + 45) / 90, 0.1 + 0.8 * (45 - gy) / 90
    expected = expected_colour(u, v)
    assert np.abs(texture[hit][:, :2] - expected[hit]).max() <= 0.51
    hole_x, hole_y = x[25:35, 30:40], y[25:35, 30:40]
    centre = GRID.to_pixels(np.array([hole_x.mean(), hole_y.mean()])).round().astype(int)
    assert not hit[centre[1], centre[0]]
    assert texture[centre[1], centre[0], 2] == 50  # filled from a neighbour, not black


def test_rasterize_barycentrics_sum_to_one():
    vertices, faces, _ = height_mesh()
    face, bary = rasterize(vertices, faces, GRID)
    assert face.shape == (48, 48) and bary.shape == (48, 48, 3)
    np.testing.assert_allclose(bary.sum(axis=-1), 1.0, atol=1e-9)
    assert (bary >= -1e-9).all()


def test_sample_bilinear_pixel_centres_and_clamp():
    image = uv_image()
    # Column 3, row 7 (counted from the top) at its centre; v counts from the bottom.
    centre = sample_bilinear(image, np.array([[3.5 / IMAGE_SIZE, 1 - 7.5 / IMAGE_SIZE]]))
    np.testing.assert_allclose(centre, [[3, 7, 50]])
    top_left = sample_bilinear(image, np.array([0.0, 0.0]), uv_origin="top-left")
    np.testing.assert_allclose(top_left, [0, 0, 50])


def test_nothing_projects_raises_scan_error():
    vertices, faces, uv = height_mesh(extent=5.0)
    with pytest.raises(ScanError) as err:
        texture_from_mesh(vertices + [500, 0, 0], faces, uv, None, uv_image(), GRID)
    assert err.value.step == "texture"


def test_bad_shapes_raise_value_error():
    vertices, faces, uv = height_mesh()
    with pytest.raises(ValueError, match="image"):
        texture_from_mesh(vertices, faces, uv, None, np.zeros((4, 4), np.uint8), GRID)
    with pytest.raises(ValueError, match="vertices"):
        texture_from_mesh(vertices[:, :2], faces, uv, None, uv_image(), GRID)
    with pytest.raises(ValueError, match="faces_uv"):
        texture_from_mesh(vertices, faces, uv, faces[:-1], uv_image(), GRID)
    with pytest.raises(ValueError, match="share"):
        texture_from_grid(np.zeros((4, 4, 3)), np.zeros((4, 5, 2)), np.ones((4, 4), bool),
                          uv_image(), GRID)


def random_connectivity(n_vertices=120_000, n_faces=240_000, seed=0):
    """A 3 MB BU-3DFE-sized mesh on a face-sized patch whose triangles join random vertices."""
    rng = np.random.default_rng(seed)
    vertices = np.column_stack([rng.uniform(-80, 80, (n_vertices, 2)),
                                rng.uniform(-40, 0, n_vertices)])
    return vertices, rng.integers(0, n_vertices, (n_faces, 3))


def test_random_connectivity_is_refused_in_bounded_time_and_memory():
    """Issue 15: such a mesh took 6.4 GB and 22 s at S = 224 (every node of every box)."""
    import time
    import tracemalloc

    vertices, faces = random_connectivity()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ScanError, match="triangles join distant vertices") as e:
            rasterize(vertices, faces, Grid(224, 90.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.value.step == "texture"
    # generous guards, far above the cost of the refusal (~60 MB, well under a second)
    assert peak < 200e6 and time.perf_counter() - start < 20


def test_a_scanned_surface_stays_well_inside_the_node_budget(monkeypatch):
    """A mesh tiling the grid visits about one grid's worth of nodes: it fits a budget of
    two (the default allows eight)."""
    monkeypatch.setattr(texture, "MAX_BOX_NODES", 2)
    vertices, faces, *_ = height_mesh(n=81, extent=89.0)
    face, _ = rasterize(vertices, faces, Grid(224, 90.0))
    assert (face >= 0).mean() > 0.95
