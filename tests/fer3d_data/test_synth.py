"""fer3d_data.synth: analytic face, landmarks, file trees, determinism, round trips
through fer3d_data.io for every format variant, learnability of the expressions."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from fer3d_data import synth
from fer3d_data.io import load_bnd, load_bnt, load_image, load_lm2, load_lm3, load_wrl
from fer3d_data.schema import EXPRESSIONS
from fer3d_data.synth import bosphorus as bos_mod

SMALL_BU = dict(vertices=300, texture_size=32, f2d_size=32)
SMALL_BS = dict(grid=(46, 38), texture_scale=1.0)
CLASSES = ("neutral",) + EXPRESSIONS


def digest(paths):
    return {p.relative_to(p.parents[1]).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in paths}


# ---------------------------------------------------------------- analytic face


@pytest.mark.parametrize("dataset,scheme,count", [("bu3dfe", "bu3dfe83", 83), ("bosphorus",
                                                                               "bosphorus", 22)])
@pytest.mark.parametrize("expression", CLASSES)
def test_landmarks_lie_on_the_surface(dataset, scheme, count, expression):
    truth = synth.scan_truth(dataset, "F0002" if dataset == "bu3dfe" else "bs002", expression, 3)
    lm = truth.landmarks
    assert lm.points.shape == (count, 3) and lm.scheme == scheme
    np.testing.assert_allclose(lm.points[:, 2], truth.height(lm.points[:, 0], lm.points[:, 1]),
                               atol=1e-9)
    assert np.all(synth.face_mask(truth.params, *(lm.points[:, :2] - truth.offset[:2]).T))


def test_nose_tip_is_the_surface_maximum_at_the_origin():
    p = synth.scan_truth("bu3dfe", "M0001", "surprise", 4).params
    x, y = np.meshgrid(np.linspace(-10, 10, 201), np.linspace(-10, 10, 201))
    z = synth.face_height(p, x, y)
    assert float(synth.face_height(p, 0.0, 0.0)) == 0.0
    assert z.max() <= 1e-4
    k = np.argmax(z)
    assert abs(x.flat[k]) <= 0.1 and abs(y.flat[k]) <= 0.1


def test_bu3dfe_landmark_regions_follow_formats_md():
    pts = synth.face_landmarks(synth.scan_truth("bu3dfe", "F0001", "neutral", 0).params,
                               "bu3dfe83").points
    r = lambda k: pts[k - 1]  # noqa: E731  1-based rows: docs/formats.md#landmark-schemes
    assert np.all(pts[0:8, 0] < 0) and np.all(pts[8:16, 0] > 0)            # eyes by side
    assert r(1)[0] > r(5)[0] and r(9)[0] < r(13)[0]                        # inner corners nearer 0
    assert np.all(pts[16:26, 0] < 0) and np.all(pts[26:36, 0] > 0)         # brows by side
    assert np.all(pts[16:36, 1] > pts[0:16, 1].max())                      # brows above eyes
    assert abs(r(43)[0]) < 1e-9 and r(43)[1] < -10                         # subnasale below the tip
    assert r(40)[0] < -10 and r(45)[0] > 10                                # alar crests
    assert not np.any(np.all(np.abs(pts[36:48]) < 1.0, axis=1))            # no nose tip in 37-48
    assert r(49)[0] < r(55)[0] and np.allclose(r(49)[1], r(55)[1])          # mouth corners
    assert np.all(np.abs(pts[60:68, 0]) < np.abs(r(49)[0]))                # inner lip inside outer
    assert np.argmin(pts[68:83, 1]) == 7 and abs(r(76)[0]) < 1e-9           # 76 chin lowest


def test_bosphorus_left_means_viewers_left():
    lm = synth.face_landmarks(synth.scan_truth("bosphorus", "bs000", "neutral").params, "bosphorus")
    assert lm.names == synth.BOSPHORUS_NAMES and len(lm) == 22
    for name in lm.names:
        if "left" in name.lower():
            assert lm.get(name)[0] < 0, name
        if "right" in name.lower():
            assert lm.get(name)[0] > 0, name
    np.testing.assert_allclose(lm.get("Nose tip"), 0.0, atol=1e-12)


def _depth_change(expression, intensity):
    x, y = np.meshgrid(np.linspace(-60, 60, 61), np.linspace(-90, 70, 81))
    ident = synth.subject_identity(0, "bu3dfe", "F0001")
    neutral = synth.face_height(synth.face_params(ident, "neutral"), x, y)
    return synth.face_height(synth.face_params(ident, expression, intensity), x, y) - neutral


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_deformation_grows_with_intensity(expression):
    size = [np.abs(_depth_change(expression, k)).mean() for k in (1, 2, 3, 4)]
    assert size[0] > 0.02 and np.all(np.diff(size) > 0), size


def test_expressions_are_distinct_deformations():
    d = np.stack([_depth_change(e, 4).ravel() for e in EXPRESSIONS])
    gaps = np.abs(d[:, None] - d[None]).mean(axis=2)
    assert np.all(gaps[~np.eye(6, dtype=bool)] > 0.15), np.round(gaps, 3)


def _loso_accuracy(features):
    """Leave-one-subject-out nearest centroid; features (subjects, 6, D), each subject's
    mean over its six scans removed (identity varies more than any one expression)."""
    features = features - features.mean(axis=1, keepdims=True)
    right = 0
    for s in range(len(features)):
        train = np.delete(features, s, axis=0).mean(axis=0)
        pred = np.argmin(((features[s][:, None] - train[None]) ** 2).sum(axis=2), axis=1)
        right += int((pred == np.arange(6)).sum())
    return right / features[..., 0].size


def test_expressions_learnable_from_depth_alone_and_texture_alone():
    import cv2
    depth, texture = [], []
    for subject in synth.bosphorus_subjects(5):
        d_s, t_s = [], []
        for e in EXPRESSIONS:
            scan = synth.build_bosphorus_scan(subject, e, grid=(40, 32), texture_scale=4.0)
            z = np.where(scan.valid, scan.xyz[..., 2], np.nan)
            z = np.nan_to_num(z - np.nanmax(z), nan=-80.0)  # nose tip at 0
            d_s.append(cv2.resize(z, (12, 15), interpolation=cv2.INTER_AREA).ravel())
            t = scan.texture.astype(np.float32) / 255
            t_s.append(cv2.resize(t, (12, 15), interpolation=cv2.INTER_AREA).ravel())
        depth.append(d_s)
        texture.append(t_s)
    # Chance is 1/6. Depth deformations are smooth and large; texture changes are thin
    # features (brows, lids, lips, wrinkles) whose place varies with identity.
    assert _loso_accuracy(np.array(depth)) == 1.0
    assert _loso_accuracy(np.array(texture)) >= 0.8


# ---------------------------------------------------------------- trees and determinism


def test_bu3dfe_tree_names():
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        paths = synth.make_bu3dfe(tmp, subjects=2, vertices=120, texture_size=8, f2d_size=8)
        assert time.perf_counter() - t < 8.0  # 50 scans, ~1 s on an idle core
        names = sorted(p.relative_to(tmp).as_posix() for p in paths)
        assert sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*.*")) == names
    assert len(names) == 2 * 25 * 4
    race = {s: synth.subject_identity(0, "bu3dfe", s).race for s in ("F0001", "M0001")}
    stems = [f"{s}/{s}_NE00{race[s]}" for s in ("F0001", "M0001")] + [
        f"{s}/{s}_{code}{k:02d}{race[s]}" for s in ("F0001", "M0001")
        for code in ("AN", "DI", "FE", "HA", "SA", "SU") for k in range(1, 5)]
    assert names == sorted(f"{st}_{t}" for st in stems for t in ("F3D.wrl", "F3D.bnd", "F3D.bmp",
                                                                 "F2D.bmp"))


def test_bosphorus_tree_names(tmp_path):
    t = time.perf_counter()
    paths = synth.make_bosphorus(tmp_path, subjects=2, grid=(16, 14), texture_scale=1.0)
    assert time.perf_counter() - t < 3.0  # 14 scans
    names = sorted(p.relative_to(tmp_path).as_posix() for p in paths)
    codes = ("N_N", "E_ANGER", "E_DISGUST", "E_FEAR", "E_HAPPY", "E_SADNESS", "E_SURPRISE")
    assert names == sorted(f"bs00{s}/bs00{s}_{c}_0.{ext}" for s in (0, 1) for c in codes
                           for ext in ("bnt", "png", "lm3", "lm2"))


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    opts = dict(subjects=2, expressions=("neutral", "happiness"), noise=0.2, holes=1, spikes=0.01,
                outliers=0.01, markers=True)
    a = digest(synth.make_bu3dfe(tmp_path / "a", seed=3, **SMALL_BU, **opts))
    b = digest(synth.make_bu3dfe(tmp_path / "b", seed=3, **SMALL_BU, **opts))
    c = digest(synth.make_bu3dfe(tmp_path / "c", seed=4, **SMALL_BU, **opts))
    assert a == b and len(a) == 2 * 5 * 4
    assert all(a[k] != c.get(k) for k in a)  # names differ too when the race code does
    a = digest(synth.make_bosphorus(tmp_path / "d", seed=3, **SMALL_BS, **opts))
    b = digest(synth.make_bosphorus(tmp_path / "e", seed=3, **SMALL_BS, **opts))
    c = digest(synth.make_bosphorus(tmp_path / "f", seed=4, **SMALL_BS, **opts))
    assert a == b and len(a) == 2 * 2 * 4
    assert all(a[k] != c[k] for k in a)


# ---------------------------------------------------------------- round trips


def _check_wrl(path, scan):
    mesh = load_wrl(path)
    faces, faces_uv = scan.triangles()
    assert mesh.vertices.shape == scan.vertices.shape
    np.testing.assert_allclose(mesh.vertices, scan.vertices, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_array_equal(mesh.faces_uv, faces_uv)
    np.testing.assert_allclose(mesh.uv, scan.uv, rtol=1e-5, atol=1e-4)
    assert mesh.texture == f"{scan.stem}_F3D.bmp"


@pytest.fixture(scope="module")
def bu_scan():
    return synth.build_bu3dfe_scan("M0002", "fear", 3, seed=5, vertices=400, texture_size=48,
                                   f2d_size=40, noise=0.1, holes=2, spikes=0.01, outliers=0.01)


def test_bu3dfe_mesh_shape(bu_scan):
    s = bu_scan
    assert {3, 4} <= set(np.unique(s.sizes).tolist()) <= {3, 4, 5}
    assert s.index.shape == s.index_uv.shape == (s.sizes.sum(),)
    assert len(s.uv) > len(s.vertices)  # seams
    assert s.index.max() == len(s.vertices) - 1 and s.index_uv.max() == len(s.uv) - 1
    faces, _ = s.triangles()
    a, b, c = (s.vertices[faces[:, k], :2] for k in range(3))
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    floating = np.arange(len(faces)) >= len(faces) - 3  # outlier triangles, appended last
    assert np.all(cross[~floating] > 0)  # ccw seen from +z, no degenerate fan triangle


@pytest.mark.parametrize("variants", [(), *[(v,) for v in synth.WRL_VARIANTS], synth.WRL_VARIANTS])
def test_bu3dfe_round_trip(tmp_path, bu_scan, variants):
    paths = synth.write_bu3dfe_scan(bu_scan, tmp_path, wrl_variants=variants)
    wrl, bnd, bmp, f2d = paths
    assert [p.name for p in paths] == [f"M0002_FE03{bu_scan.stem[-2:]}_{t}" for t in
                                       ("F3D.wrl", "F3D.bnd", "F3D.bmp", "F2D.bmp")]
    raw = wrl.read_bytes()
    assert raw.startswith(b"#VRML V2.0 utf8")
    assert (b"\r\n" in raw) == ("crlf" in variants)
    assert (b"e+" in raw or b"e-" in raw) == ("exponents" in variants)
    _check_wrl(wrl, bu_scan)
    lm = load_bnd(bnd)
    assert lm.names == synth.BU3DFE_NAMES
    np.testing.assert_allclose(lm.points, bu_scan.bnd_points, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(lm.extra["vertex_index"], bu_scan.bnd_index)
    np.testing.assert_array_equal(load_image(bmp), bu_scan.texture)
    np.testing.assert_array_equal(load_image(f2d), bu_scan.f2d)


def test_bu3dfe_default_size_matches_the_database():
    s = synth.build_bu3dfe_scan("F0001", "anger", 4, texture_size=16, f2d_size=16)
    assert 7600 <= len(s.vertices) <= 8400 and 14000 <= len(s.sizes) <= 16500
    text = synth.wrl_text("x.bmp", s.vertices, s.sizes, s.index, s.uv, s.index_uv)
    assert len(text) > 1_000_000


@pytest.fixture(scope="module")
def bs_scan():
    return synth.build_bosphorus_scan("bs004", "happiness", seed=2, grid=(60, 50), texture_scale=2,
                                      noise=0.1, holes=2, spikes=0.01, outliers=0.005,
                                      drop_landmarks=1.0, bnt_variants=("zonly",))


def test_bosphorus_bnt_bytes_layout(bs_scan):
    data = synth.bnt_bytes(bs_scan.xyz, bs_scan.uv, "bs004_E_HAPPY_0.png")
    import struct
    rows, cols, zmin, length = struct.unpack_from("<HHdH", data)
    assert (rows, cols, zmin, length) == (60, 50, -1e9, len("bs004_E_HAPPY_0.png"))
    assert data[14:14 + length] == b"bs004_E_HAPPY_0.png"
    assert struct.unpack_from("<I", data, 14 + length)[0] == 5 * 60 * 50
    assert len(data) == 18 + length + 8 * 5 * 60 * 50
    planes = np.frombuffer(data, "<f8", offset=18 + length).reshape(5, 60, 50)
    valid = bs_scan.valid
    assert np.all(np.diff(planes[1][:, 25][valid[:, 25]]) > 0)  # Y grows with row: row 0 = bottom
    assert np.all(planes[3:] >= 0) and np.all(planes[3:] <= 1)
    assert np.sum((planes[2] == zmin) & (planes[0] != zmin)) == 3  # "zonly" cells


@pytest.mark.parametrize("variants", [(), ("lf",), ("info",), ("tabs",), synth.LM_VARIANTS])
def test_bosphorus_round_trip(tmp_path, bs_scan, variants):
    paths = synth.write_bosphorus_scan(bs_scan, tmp_path, lm_variants=variants)
    bnt, png, lm3, lm2 = paths
    assert [p.name for p in paths] == [f"bs004_E_HAPPY_0.{e}" for e in ("bnt", "png", "lm3", "lm2")]
    grid = load_bnt(bnt)
    assert grid.texture == "bs004_E_HAPPY_0.png" and grid.zmin == -1e9
    np.testing.assert_array_equal(grid.xyz, bs_scan.xyz[::-1])
    np.testing.assert_array_equal(grid.uv, bs_scan.uv[::-1])
    np.testing.assert_array_equal(grid.valid, bs_scan.valid[::-1])
    assert grid.uv[0, 0, 1] < grid.uv[-1, 0, 1]  # origin top-left after the flip
    tex = load_image(png)
    np.testing.assert_array_equal(tex, bs_scan.texture)
    assert tex.shape == (120, 100, 3)
    raw = lm3.read_bytes()
    assert raw.startswith(b"# 3D Landmark File")
    assert (raw.count(b"\r\n") == raw.count(b"\n")) == ("lf" not in variants)
    assert (b"\n*" in raw) == ("info" in variants)
    p3, p2 = load_lm3(lm3), load_lm2(lm2)
    assert len(bs_scan.names) in (20, 21)  # drop_landmarks=1.0 removes 1-2 points
    assert p3.names == p2.names == bs_scan.names
    np.testing.assert_allclose(p3.points, bs_scan.lm3, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(p2.points, bs_scan.lm2, rtol=1e-5, atol=1e-4)


def test_lm3_points_are_grid_vertices_and_lm2_their_uv(bs_scan):
    cells = bs_scan.xyz.reshape(-1, 3)
    for p3, p2 in zip(bs_scan.lm3, bs_scan.lm2):
        k = np.flatnonzero(np.all(cells == p3, axis=1))
        assert len(k) == 1
        np.testing.assert_allclose(p2, bs_scan.uv.reshape(-1, 2)[k[0]] * (100, 120))


def test_lm_file_text_matches_formats_md():
    names, pts = ("Nose tip", "Chin middle"), np.array([[-90.275, 13.1, -6.515], [1, 2, 3.5]])
    assert synth.lm3_text(names, pts) == ("# 3D Landmark File\n\n2 landmarks:\nNose tip\n"
                                          "-90.275 13.1 -6.515\nChin middle\n1 2 3.5\n")
    assert synth.lm2_text(names, pts[:, :2]) == ("# 2D Landmark File\n\n2 landmarks\n\nLabels:\n"
                                                 "Nose tip\nChin middle\n\n2D Image coordinates:\n"
                                                 "-90.275 13.1\n1 2\n")


def test_artifacts_change_the_surface():
    clean = synth.build_bosphorus_scan("bs001", "anger", **SMALL_BS)
    holed = synth.build_bosphorus_scan("bs001", "anger", holes=3, **SMALL_BS)
    noisy = synth.build_bosphorus_scan("bs001", "anger", noise=0.5, **SMALL_BS)
    spiky = synth.build_bosphorus_scan("bs001", "anger", spikes=0.02, **SMALL_BS)
    assert holed.valid.sum() < clean.valid.sum()
    v = clean.valid
    dz = noisy.xyz[..., 2][v] - clean.xyz[..., 2][v]
    assert 0.4 < dz.std() < 0.6
    jumps = np.abs(spiky.xyz[..., 2][v] - clean.xyz[..., 2][v])
    assert np.sum(jumps >= 5) == round(0.02 * v.sum()) and np.all(jumps[jumps < 5] == 0)
    bu = synth.build_bu3dfe_scan("F0001", "anger", 2, **SMALL_BU)
    bu_holes = synth.build_bu3dfe_scan("F0001", "anger", 2, holes=3, **SMALL_BU)
    assert len(bu_holes.vertices) < len(bu.vertices)


def test_truth_matches_clean_surface():
    s = synth.build_bu3dfe_scan("F0001", "sadness", 4, **SMALL_BU)
    np.testing.assert_allclose(s.vertices[:, 2], s.truth.height(s.vertices[:, 0], s.vertices[:, 1]),
                               atol=1e-9)
    b = synth.build_bosphorus_scan("bs000", "surprise", **SMALL_BS)
    xyz = b.xyz[b.valid]
    np.testing.assert_allclose(xyz[:, 2], b.truth.height(xyz[:, 0], xyz[:, 1]), atol=1e-9)


def test_markers_sit_on_their_landmarks():
    scan = synth.build_bosphorus_scan("bs000", "fear", texture_scale=1.0, markers=True,
                                      drop_landmarks=0)
    for name, colour in synth.MARKERS_BOSPHORUS.items():
        c, r = np.floor(scan.lm2[scan.names.index(name)]).astype(int)
        assert tuple(scan.texture[r, c]) == colour, name
    bu = synth.build_bu3dfe_scan("F0001", "happiness", 4, vertices=2000, texture_size=256,
                                 f2d_size=128, markers=True)
    faces, faces_uv = bu.triangles()
    size = np.array([256, 256])
    for name, colour in synth.MARKERS_BU3DFE.items():
        v = bu.bnd_index[int(name) - 1]
        uv = bu.uv[faces_uv[faces == v]]  # every UV of the nearest vertex (both charts at seams)
        px = np.column_stack([uv[:, 0], 1 - uv[:, 1]]) * size
        hits = np.all(bu.texture == colour, axis=2)
        rr, cc = np.nonzero(hits)
        assert len(rr) > 0 and np.all(np.all(bu.f2d == colour, axis=2).sum() > 0), name
        d = np.hypot(cc[None] + 0.5 - px[:, :1], rr[None] + 0.5 - px[:, 1:]).min()
        assert d < 4.0, (name, d)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown wrl variant"):
        synth.wrl_text("x.bmp", np.zeros((3, 3)), np.array([3]), np.arange(3), np.zeros((3, 2)),
                       np.arange(3), variants=("yaml",))
    with pytest.raises(ValueError, match="unknown lm variant"):
        synth.lm3_text(("Nose tip",), np.zeros((1, 3)), variants=("crlf",))
    with pytest.raises(ValueError, match="unknown expression"):
        synth.face_params(synth.subject_identity(0, "bu3dfe", "F0001"), "contempt")
    with pytest.raises(ValueError, match="subjects"):
        synth.make_bosphorus("/nonexistent", subjects=0)
    with pytest.raises(ValueError, match="grid"):
        synth.build_bosphorus_scan("bs000", "fear", grid=(4, 4))


def test_missing_companions_are_skipped_deterministically(tmp_path):
    paths = synth.make_bosphorus(tmp_path, subjects=2, missing=0.5, **SMALL_BS)
    exts = [p.suffix for p in paths]
    assert exts.count(".bnt") == 14 and len(paths) < 14 * 4


def test_synth_command_line(tmp_path):
    from click.testing import CliRunner

    from fer3d_data.synth.command import synth_group

    def run(*args):
        return CliRunner().invoke(synth_group, [str(a) for a in args])
    r = run("bosphorus", tmp_path / "bs", "--subjects", 1, "--grid", 20, 16, "--texture-scale", 1,
            "--variant", "info", "--variant", "zonly", "--seed", 9, "--markers")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "bs" / "bs000").iterdir())) == 28
    assert b"\r\n*\r\n" in (tmp_path / "bs" / "bs000" / "bs000_N_N_0.lm3").read_bytes()
    r = run("bu3dfe", tmp_path / "bu", "--subjects", 1, "--vertices", 100, "--texture-size", 8,
            "--f2d-size", 8, "--variant", "crlf")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "bu" / "F0001").iterdir())) == 100
    assert "wrote 100 files" in r.output
    # a variant of the other dataset, or a misspelt one: a usage error listing the valid ones
    for bad in ("info", "crlff"):
        r = run("bu3dfe", tmp_path / "x", "--variant", bad)
        assert r.exit_code == 2 and "Traceback" not in r.output and "crlf" in r.output
        assert not (tmp_path / "x").exists()
    # options only where they apply
    assert run("bosphorus", tmp_path / "y", "--vertices", 100).exit_code == 2
    help_text = run("bu3dfe", "--help").output
    assert "default: 8000" in help_text and "nocommas" in help_text
    assert bos_mod.ZMIN == -1e9
