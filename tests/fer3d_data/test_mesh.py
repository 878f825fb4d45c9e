"""trimesh conversion, textured PLY/OBJ export, and point clouds on the frontal surface."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from scipy import ndimage

from fer3d_data import cli, synth
from fer3d_data.datasets import ADAPTERS
from fer3d_data.errors import Fer3dDataError
from fer3d_data.io import load_wrl
from fer3d_data.mesh import from_trimesh, to_trimesh, write_textured
from fer3d_data.prep import PrepConfig, run_prep
from fer3d_data.surface.grid import Grid
from fer3d_data.surface.points import farthest_point_indices, sample_points

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import write_shard  # noqa: E402

SMALL_BU = dict(vertices=2500, texture_size=64, f2d_size=8)


@pytest.fixture(scope="module")
def bu_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("bu")
    synth.make_bu3dfe(root, subjects=1, expressions=["happiness"], **SMALL_BU)
    return root, ADAPTERS["bu3dfe"].walk(root)


def test_raw_mesh_round_trips_through_trimesh_with_seams(bu_tree):
    mesh = load_wrl(bu_tree[1][0].mesh)
    assert mesh.faces_uv is not None
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8)
    tm = to_trimesh(mesh, image=image)
    assert isinstance(tm.visual, trimesh.visual.TextureVisuals)
    # every face corner keeps its position and its own texture coordinate (seams split)
    np.testing.assert_allclose(tm.vertices[tm.faces], mesh.vertices[mesh.faces])
    np.testing.assert_allclose(tm.visual.uv[tm.faces], mesh.uv[mesh.faces_uv])
    back = from_trimesh(tm)
    np.testing.assert_array_equal(back.faces, tm.faces)
    np.testing.assert_allclose(back.uv, tm.visual.uv)
    plain = to_trimesh(mesh)  # no texture: unreferenced vertices dropped, geometry kept
    np.testing.assert_allclose(plain.vertices[plain.faces], mesh.vertices[mesh.faces])


def test_top_left_uv_is_flipped():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    tm = to_trimesh(v, np.array([[0, 1, 2]]), uv=np.array([[0, 0], [1, 0], [0, 0.25]]),
                    image=np.zeros((2, 2, 3), np.uint8), uv_origin="top-left")
    np.testing.assert_allclose(tm.visual.uv[:, 1], [1.0, 1.0, 0.75])


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_write_textured_names_files_after_the_output(tmp_path, suffix):
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], float)
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 200
    tm = to_trimesh(v, np.array([[0, 1, 2], [1, 3, 2]]), uv=v[:, :2], image=image)
    written = write_textured(tm, tmp_path / f"face{suffix}")
    names = sorted(p.name for p in written)
    assert names == sorted([f"face{suffix}",
                            "face.png"] + (["face.mtl"] if suffix == ".obj" else []))
    if suffix == ".ply":
        assert b"comment TextureFile face.png\n" in (tmp_path / "face.ply").read_bytes()[:200]
    else:
        assert "map_Kd face.png" in (tmp_path / "face.mtl").read_text()
    back = trimesh.load(tmp_path / f"face{suffix}", process=False)
    assert len(back.faces) == 2 and back.visual.uv is not None
    with pytest.raises(Fer3dDataError, match="writes .ply or .obj"):
        write_textured(tm, tmp_path / "face.stl")


def test_export_from_raw_and_from_shard(bu_tree, tmp_path):
    root, records = bu_tree
    sid = records[-1].scan_id
    r = CliRunner().invoke(cli.fer3d_prep, ["export", str(root), sid, "-o",
                                            str(tmp_path / "raw.ply"),
                                            "--crop-radius", "60", "--min-points", "500"])
    assert r.exit_code == 0, r.output
    tm = trimesh.load(tmp_path / "raw.ply", process=False)
    # frontal frame: nose tip at the origin and the most forward point, cropped at 60 mm
    assert np.linalg.norm(tm.vertices, axis=1).max() <= 60.0 + 1e-6
    assert abs(tm.vertices[:, 2].max()) < 1.0 and tm.visual.uv is not None
    assert (tmp_path / "raw.png").exists()
    # a shard's /config reproduces its surface parameters (keys of later steps are ignored)
    conf = tmp_path / "shard_config.json"
    conf.write_text(json.dumps(PrepConfig(crop_radius=50.0, min_points=500, points=8).to_dict()))
    r = CliRunner().invoke(cli.fer3d_prep, ["export", str(root), sid, "-o", str(tmp_path / "c.ply"),
                                            "--config", str(conf)])
    assert r.exit_code == 0, r.output
    radius = np.linalg.norm(trimesh.load(tmp_path / "c.ply", process=False).vertices, axis=1)
    assert 45.0 < radius.max() <= 50.0 + 1e-6

    shard = write_shard(tmp_path / "s.h5", n=2)
    with h5py.File(shard) as f:
        depth, coverage = f["depth"][1], f["coverage"][1]
        sid = f["index/sample_id"].asstr()[1]
    r = CliRunner().invoke(cli.fer3d_prep, ["export", str(shard), sid, "-o",
                                            str(tmp_path / "s.obj")])
    assert r.exit_code == 0, r.output
    tm = trimesh.load(tmp_path / "s.obj", process=False)
    grid = Grid(depth.shape[0], 90.0)
    px = np.rint(grid.to_pixels(tm.vertices[:, :2])).astype(int)
    assert coverage[px[:, 1], px[:, 0]].all()  # only covered cells become vertices
    np.testing.assert_allclose(tm.vertices[:, 2], depth[px[:, 1], px[:, 0]], atol=1e-4)
    for args, message in [((shard, "nope"), "no sample 'nope'"),
                          ((root, "F0009_HA04WH"), "no BU-3DFE or Bosphorus scan")]:
        r = CliRunner().invoke(cli.fer3d_prep, ["export", str(args[0]), args[1], "-o",
                                                str(tmp_path / "x.ply")])
        assert r.exit_code == 2 and message in r.output


def test_farthest_point_sampling_spreads_points():
    plane = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    fps = sample_points(plane, faces, 64, "fps", seed=1)
    uniform = sample_points(plane, faces, 64, "uniform", seed=1)
    assert fps.shape == uniform.shape == (64, 3) and fps.dtype == np.float32
    assert np.all(np.abs(fps[:, :2]) <= 1) and np.all(fps[:, 2] == 0)
    np.testing.assert_array_equal(fps, sample_points(plane, faces, 64, "fps", seed=1))

    def nearest(p):
        d = np.linalg.norm(p[:, None] - p[None], axis=2) + np.eye(len(p)) * 9
        return d.min(axis=1).min()
    assert nearest(fps) > 2 * nearest(uniform)
    pts = np.array([[0, 0], [1, 0], [0.1, 0], [5, 0]], float)
    assert farthest_point_indices(pts, 3).tolist() == [0, 3, 1]
    with pytest.raises(ValueError, match="method"):
        sample_points(plane, faces, 4, "poisson")


def test_points_lie_on_the_depth_surface(bu_tree, tmp_path):
    """/points and /depth describe one surface: each point's z is the depth at its (x, y)."""
    records = bu_tree[1][:2]
    cfg = PrepConfig(image_size=64, points=128, depth_dtype="float16", min_points=500)
    summary = run_prep(records, tmp_path / "p.h5", cfg, workers=0, progress=False)
    assert summary.failed == 0, summary.failures
    grid = Grid(64, cfg.crop_radius)
    with h5py.File(tmp_path / "p.h5") as f:
        assert f["points"].shape == (2, 128, 3) and f["points"].dtype == np.float32
        assert f["depth"].dtype == np.float16
        for i in range(2):
            pts, depth = f["points"][i], f["depth"][i].astype(np.float64)
            px = grid.to_pixels(pts[:, :2])
            z = ndimage.map_coordinates(depth, [px[:, 1], px[:, 0]], order=1)
            assert np.median(np.abs(z - pts[:, 2])) < 0.5
            assert np.linalg.norm(pts, axis=1).max() <= cfg.crop_radius + 1e-3
    from fer3d_data.shards import verify

    assert verify(tmp_path / "p.h5") == []
    with h5py.File(tmp_path / "p.h5", "r+") as f:
        f["points"][1, 5] = np.nan
    assert any("sample 1" in p and "points has non-finite values" in p
               for p in verify(tmp_path / "p.h5"))
