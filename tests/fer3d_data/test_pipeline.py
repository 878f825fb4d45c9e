"""Acceptance tests of the preprocessing chain (process_scan + run_prep) on synthetic raw
trees whose ground truth is known: geometry against the analytic surface, texture/depth
pixel alignment by coloured markers, salient masks, the dlib fallback, artifacts and
corrupt files, resume after Ctrl-C, determinism."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from scipy import ndimage
from scipy.optimize import least_squares
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from fer3d_data import cli, shards, synth
from fer3d_data.datasets import ADAPTERS
from fer3d_data.errors import ScanError
from fer3d_data.io import load_bnd, load_lm3
from fer3d_data.landmarks import GROUPS, canonical_points, group_points
from fer3d_data.masks import area_resize
from fer3d_data.prep import PrepConfig, process_scan, run_prep, runner
from fer3d_data.surface import Grid

# Small but real: BU-3DFE meshes of 5,000 vertices (database: ~8,000) and Bosphorus grids
# at 1.27 mm (database: 0.76 mm); textures fine enough that a 1.2 mm marker spans pixels.
BU = dict(vertices=5000, texture_size=512, f2d_size=8)
BS = dict(grid=(138, 114), texture_scale=4.0, drop_landmarks=0.0)
ARRAYS = tuple(shards.array_spec(2, 1))
DATASETS = ("bu3dfe", "bosphorus")
MARKERS = {"bu3dfe": synth.MARKERS_BU3DFE, "bosphorus": synth.MARKERS_BOSPHORUS}


def make_tree(dataset: str, root: Path, expressions, **kw) -> list:
    """Write a one-subject synthetic tree under ``root``; its records, sorted by scan id."""
    if dataset == "bu3dfe":
        synth.make_bu3dfe(root, subjects=1, expressions=expressions, **{**BU, **kw})
    else:
        synth.make_bosphorus(root, subjects=1, expressions=expressions, **{**BS, **kw})
    return ADAPTERS[dataset].walk(root)


def truth_of(record):
    return synth.scan_truth(record.dataset, record.subject, record.expression,
                            record.intensity if record.dataset == "bu3dfe" else 4)


def native_points(record) -> np.ndarray:
    """(K, 3) the scan's landmark file in canonical order (the rows of ``/landmarks``)."""
    load = load_bnd if record.dataset == "bu3dfe" else load_lm3
    return canonical_points(load(record.landmarks))


def read_shard(path: Path) -> dict:
    """Every per-sample array, index column and error row of a shard."""
    with shards.open_shard(path) as shard:
        out = {name: shard.file[name][()] for name in ARRAYS}
        out.update({f"index/{k}": v for k, v in shard.index.items()})
        out["errors"] = sorted((e["source"], e["step"], e["message"]) for e in shard.errors())
    return out


def assert_same_shards(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # NaN == NaN here
            assert a[key].dtype == b[key].dtype, key
        else:
            assert a[key] == b[key], key


def bilinear(image: np.ndarray, px: np.ndarray) -> np.ndarray:
    """(H, W) image at (n, 2) float pixels (col, row) -> (n,)."""
    return ndimage.map_coordinates(image.astype(np.float64), [px[:, 1], px[:, 0]], order=1,
                                   mode="nearest")


def kabsch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) minimising |a @ R + t - b| over proper rotations; a, b (n, 3)."""
    a0, b0 = a.mean(axis=0), b.mean(axis=0)
    u, _, vt = np.linalg.svd((a - a0).T @ (b - b0))
    R = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return R, b0 - a0 @ R


def recovered_pose(depth: np.ndarray, landmarks: np.ndarray, native: np.ndarray, grid: Grid):
    """The pipeline's (R, tip), recovered from its outputs only: each native landmark's
    grid pixel and the depth there give its aligned 3D point; Kabsch between those and
    the scan-frame landmarks gives ``scan = aligned @ R + tip``. Landmarks on steep edges
    (lips around an open mouth) have poor sampled depth: the worst third is dropped."""
    ok = np.isfinite(landmarks).all(axis=1) & np.isfinite(native).all(axis=1)
    px = landmarks[ok].astype(np.float64)
    aligned, scan = np.column_stack([grid.to_mm(px), bilinear(depth, px)]), native[ok]
    R, tip = kabsch(aligned, scan)
    residual = np.linalg.norm(aligned @ R + tip - scan, axis=1)
    best = residual <= np.quantile(residual, 0.67)
    return kabsch(aligned[best], scan[best])


def rotation_degrees(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def surface_error(depth: np.ndarray, landmarks: np.ndarray, coverage: np.ndarray, record,
                  grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, S) depth error (mm) of every cell against the analytic surface, in the scan
    frame after undoing the pipeline's transform; and that transform (R, tip).

    The transform starts from :func:`recovered_pose` and is refined by a rigid least-squares
    registration of the covered cells onto the surface (6 parameters against thousands of
    cells: it cannot absorb a shape error, a flip or over-smoothing).
    """
    R0, t0 = recovered_pose(depth, landmarks, native_points(record), grid)
    height = truth_of(record).height
    x, y = grid.mesh()
    cells = np.stack([x, y, depth.astype(np.float64)], axis=-1)

    def transform(p):
        R = Rotation.from_rotvec(p[:3]).as_matrix() @ R0
        return R, t0 + p[3:]

    def residual(p, pts):
        R, t = transform(p)
        q = pts @ R + t
        return q[:, 2] - height(q[:, 0], q[:, 1])

    fit = least_squares(residual, np.zeros(6), args=(cells[coverage][::3],),
                        x_scale=[0.01] * 3 + [1.0] * 3)
    R, tip = transform(fit.x)
    return residual(fit.x, cells.reshape(-1, 3)).reshape(depth.shape), R, tip


# ---------------------------------------------------------------- trees and shards


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Clean trees with colour markers: BU-3DFE 5 scans, Bosphorus 3 scans."""
    root = tmp_path_factory.mktemp("raw")
    return {"bu3dfe": make_tree("bu3dfe", root / "bu3dfe", ("neutral", "happiness"), markers=True),
            "bosphorus": make_tree("bosphorus", root / "bosphorus",
                                   ("neutral", "happiness", "surprise"), markers=True)}


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    """Each clean tree prepared at the training size (224) in this process."""
    out = {}
    for dataset, records in raw.items():
        path = tmp_path_factory.mktemp("shards") / f"{dataset}.h5"
        summary = run_prep(records, path, PrepConfig(dataset=dataset), workers=0, progress=False,
                           raw_root=records[0].mesh.parents[1])
        assert (summary.written, summary.failed, summary.exit_code) == (len(records), 0, 0)
        out[dataset] = path
    return out


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("dataset", DATASETS)
def test_depth_matches_the_analytic_surface_without_pose(raw, dataset):
    grid = Grid(96, 90.0)
    cfg = PrepConfig(dataset=dataset, image_size=96, pose=False)
    for record in raw[dataset][:2]:
        sample = process_scan(record, cfg)
        error, R, tip = surface_error(sample.depth, sample.landmarks, sample.coverage, record, grid)
        assert rotation_degrees(R) < 0.2  # pose=False: a pure translation
        np.testing.assert_allclose(tip, truth_of(record).nose_tip, atol=1.0)  # nose tip found
        assert abs(float(bilinear(sample.depth, grid.to_pixels(np.zeros((1, 2))))[0])) < 0.2
        covered = sample.coverage
        assert 0.3 < covered.mean() < 0.7, covered.mean()
        rms = np.sqrt(np.mean(error[covered] ** 2))
        assert rms < 0.5, (record.scan_id, rms)
        assert np.isfinite(sample.depth).all() and sample.depth.max() < 1.0


@pytest.mark.parametrize("dataset", DATASETS)
def test_pose_is_a_small_rotation_and_keeps_the_surface(raw, dataset):
    grid = Grid(96, 90.0)
    cfg = PrepConfig(dataset=dataset, image_size=96, pose=True)
    record = raw[dataset][-1]
    sample = process_scan(record, cfg)
    error, R, tip = surface_error(sample.depth, sample.landmarks, sample.coverage, record, grid)
    # Synthetic scans are frontal: the plane fit / eye line may tilt them a few degrees.
    assert rotation_degrees(R) < 3.0
    assert R[2, 2] > 0.99  # the face still looks toward the camera
    rms = np.sqrt(np.mean(error[sample.coverage] ** 2))
    assert rms < 0.5, rms
    # left-right and up-down are kept: native landmarks left of / above others stay so
    lm = sample.landmarks
    names = {"bu3dfe": ("1", "9", "49"),
             "bosphorus": ("Inner left eye corner", "Inner right eye corner", "Left mouth corner"),
             }[dataset]
    index = {n: i for i, n in enumerate(cfg.scheme().names)}
    left, right, mouth = (lm[index[n]] for n in names)
    assert left[0] < right[0] and mouth[1] > left[1]


def _scan_xy(dataset: str, record, holes: int) -> np.ndarray:
    """(n, 2) scan-frame xy of the points of ``record``'s scan built again with ``holes``
    (tiny textures: only the geometry is needed, and it does not depend on them)."""
    if dataset == "bu3dfe":
        scan = synth.build_bu3dfe_scan(record.subject, record.expression, record.intensity,
                                       holes=holes, vertices=BU["vertices"], texture_size=8,
                                       f2d_size=8)
        return scan.vertices[:, :2]
    scan = synth.build_bosphorus_scan(record.subject, record.expression, holes=holes,
                                      grid=BS["grid"], texture_scale=0.1)
    return scan.xyz[scan.valid][:, :2]


def _hole_cells(dataset: str, record, grid: Grid, tip: np.ndarray) -> np.ndarray:
    """(S, S) bool: grid cells deep inside a hole the generator cut (from the same scan
    built with and without holes: the removed points, minus a 2-step rim)."""
    full, holed = (_scan_xy(dataset, record, holes) for holes in (0, 3))
    step = np.median(cKDTree(full).query(full, k=2)[0][:, 1])
    x, y = grid.mesh()
    cells = np.column_stack([x.ravel(), y.ravel()]) + tip[:2]
    d_full, _ = cKDTree(full).query(cells)
    d_holed, _ = cKDTree(holed).query(cells)
    return ((d_full < step) & (d_holed > 2 * step)).reshape(grid.size, grid.size)


@pytest.mark.parametrize("dataset", DATASETS)
def test_holes_are_filled_smoothly(tmp_path, dataset):
    records = make_tree(dataset, tmp_path, ("happiness",), holes=3)
    grid = Grid(96, 90.0)
    cfg = PrepConfig(dataset=dataset, image_size=96, pose=False)
    enclosed = 0
    for record in records[:2]:
        sample = process_scan(record, cfg)
        error, _, tip = surface_error(sample.depth, sample.landmarks, sample.coverage, record, grid)
        hole = _hole_cells(dataset, record, grid, tip)
        assert not sample.coverage[hole].any()  # no data there: the regulariser filled it
        assert np.isfinite(sample.depth).all()
        # smooth: the fill stays close to the surface the hole cut, no dip, no step
        assert np.abs(error[hole]).max() < 1.5, (record.scan_id, np.abs(error[hole]).max())
        uncovered, _ = ndimage.label(~sample.coverage)
        for k in np.unique(uncovered[hole]):
            region = uncovered == k
            if region[[0, -1]].any() or region[:, [0, -1]].any():
                continue  # a hole cut through the face outline is open to the background
            rim = ndimage.binary_dilation(region, iterations=2) & sample.coverage
            lo, hi = sample.depth[rim].min(), sample.depth[rim].max()
            fill = sample.depth[region]
            assert lo - 0.2 <= fill.min() and fill.max() <= hi + 0.2, (record.scan_id, lo, hi, fill)
            enclosed += 1
        rms = np.sqrt(np.mean(error[sample.coverage] ** 2))
        assert rms < 0.5, rms
    assert enclosed >= 2  # the generator's holes did land inside the crop


# ---------------------------------------------------------------- alignment and masks


def marker_centroid(texture: np.ndarray, colour) -> tuple[np.ndarray, int]:
    """(col, row) centroid of the pixels close to a pure marker colour, and their count."""
    close = np.abs(texture.astype(np.int16) - np.asarray(colour, np.int16)).max(axis=2) < 48
    rows, cols = np.nonzero(close)
    return np.array([cols.mean(), rows.mean()]) if len(rows) else np.full(2, np.nan), len(rows)


@pytest.mark.parametrize("dataset", DATASETS)
def test_texture_markers_land_on_their_landmarks(prepared, dataset):
    with shards.open_shard(prepared[dataset]) as shard:
        index = {name: i for i, name in enumerate(shard.landmark_names)}
        for i in range(len(shard)):
            s = shard.sample(i)
            for name, colour in MARKERS[dataset].items():
                expected = s["landmarks"][index[name]]
                assert np.isfinite(expected).all(), (s["sample_id"], name)
                centre, count = marker_centroid(s["texture"], colour)
                assert count >= 2, (s["sample_id"], name, count)
                distance = float(np.hypot(*(centre - expected)))
                assert distance < 2.0, (s["sample_id"], name, distance)


@pytest.mark.parametrize("dataset", DATASETS)
def test_masks_cover_the_salient_landmarks(prepared, dataset):
    with shards.open_shard(prepared[dataset]) as shard:
        scheme, size = shard.landmark_scheme, shard.image_size
        for i in range(len(shard)):
            s = shard.sample(i)
            assert s["mask_source"] == 0
            mask56 = s["mask56"].astype(np.float32)
            for group in GROUPS[scheme]:
                px = group_points(s["landmarks"], scheme, group)
                assert len(px) >= 2, group
                col, row = np.floor((px + 0.5) * 56 / size).astype(int).T
                assert (mask56[row, col] > 0).all(), (s["sample_id"], group)
                col, row = np.round(px).astype(int).T
                assert (s["mask"][row, col] == 1).all(), (s["sample_id"], group)
            face = area_resize(s["coverage"], 56).sum()
            assert 0.10 < mask56.sum() / face < 0.60, mask56.sum() / face
            np.testing.assert_array_equal(s["mask"], s["regions"].max(axis=0))
            np.testing.assert_allclose(mask56, area_resize(s["mask"], 56), atol=1e-3)  # float16
            np.testing.assert_allclose(s["mask28"].astype(np.float32),
                                       mask56.reshape(28, 2, 28, 2).mean(axis=(1, 3)), atol=1e-3)


# ---------------------------------------------------------------- dlib fallback


def test_dlib_landmarks_or_a_landmarks_error_never_a_crash(tmp_path):
    pytest.importorskip("dlib")
    records = make_tree("bu3dfe", tmp_path / "raw", ("neutral", "surprise"), vertices=3000,
                        texture_size=256)
    records = records[:4]
    grey = records[1]
    cv2.imwrite(str(grey.texture), np.full((256, 256, 3), 128, np.uint8))  # no face to find
    cfg = PrepConfig(image_size=64, landmarks="dlib")
    out = tmp_path / "dlib.h5"
    summary = run_prep(records, out, cfg, workers=0, progress=False, raw_root=tmp_path / "raw")
    assert summary.exit_code == 0
    assert summary.failed_by_step == {"landmarks": 1}
    data = read_shard(out)
    assert [row[:2] for row in data["errors"]] == [(f"F0001/{grey.mesh.name}", "landmarks")]
    assert "no face found" in data["errors"][0][2]
    assert data["index/sample_id"].tolist() == [r.scan_id for r in records if r is not grey]
    assert (data["index/mask_source"] == 1).all()
    lm68 = data["landmarks68"]
    assert lm68.shape == (3, 68, 2) and np.isfinite(lm68).all()
    assert ((lm68 >= 0) & (lm68 <= 63)).all()
    # dlib's mouth and eyes sit near the native ones (which the shard still carries)
    for group in ("mouth", "eye_left", "eye_right"):
        for native, dlib68 in zip(data["landmarks"], lm68):
            gap = (group_points(native, "bu3dfe83", group).mean(axis=0)
                   - group_points(dlib68, "dlib68", group).mean(axis=0))
            assert np.hypot(*gap) < 4.0, (group, gap)


# ---------------------------------------------------------------- robustness


def summary_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_artifacts_and_broken_files(tmp_path, capsys):
    bu = make_tree("bu3dfe", tmp_path / "bu", ("neutral", "anger"), vertices=4000, texture_size=128,
                   noise=0.3, spikes=0.01, outliers=0.005)
    bs = make_tree("bosphorus", tmp_path / "bs", ("neutral", "anger", "fear"), grid=(92, 76),
                   texture_scale=1.0, noise=0.3, spikes=0.01, outliers=0.005)
    truncated, no_texture, bad_bnt = bu[1], bu[3], bs[0]
    truncated.mesh.write_bytes(truncated.mesh.read_bytes()[:200_000])
    no_texture.texture.unlink()
    bad_bnt.mesh.write_bytes(bad_bnt.mesh.read_bytes()[:5000])
    common = ["--size", "64", "--workers", "0", "--quiet"]
    for dataset, root, broken in (("bu3dfe", tmp_path / "bu", (truncated, no_texture)),
                                  ("bosphorus", tmp_path / "bs", (bad_bnt,))):
        out = tmp_path / f"{dataset}.h5"
        assert cli.main([dataset, str(root), str(out), *common]) == 0
        records = ADAPTERS[dataset].walk(root)
        data = read_shard(out)
        bad_ids = {r.scan_id for r in broken}
        good = [r for r in records if r.scan_id not in bad_ids]
        assert data["index/sample_id"].tolist() == [r.scan_id for r in good]
        errors = {source: (step, message) for source, step, message in data["errors"]}
        assert sorted(errors) == sorted(runner.source_of(r, root) for r in broken)
        line = summary_line(capsys)
        assert line.startswith(f"written {len(good)}, skipped 0, failed {len(broken)} (read")
        for r in broken:
            step, message = errors[runner.source_of(r, root)]
            assert step == "read"
            assert r.mesh.name in message
        if dataset == "bu3dfe":
            assert "missing texture" in errors[runner.source_of(no_texture, root)][1]
        # spikes and outliers did not reach the depth: it still follows the surface
        grid = Grid(64, 90.0)
        with shards.open_shard(out) as shard:
            for i, record in enumerate(good):
                s = shard.sample(i)
                error, _, _ = surface_error(s["depth"], s["landmarks"], s["coverage"], record, grid)
                rms = np.sqrt(np.mean(error[s["coverage"]] ** 2))
                assert rms < 0.6, (record.scan_id, rms)
        assert shards.verify(out) == []
        # --strict: the same failures (retried on resume) make the exit status 1
        assert cli.main([dataset, str(root), str(out), *common, "--strict"]) == 1
        line = summary_line(capsys)
        assert line.startswith(f"written 0, skipped {len(good)}, failed {len(broken)} (read")
        assert read_shard(out)["index/sample_id"].tolist() == [r.scan_id for r in good]


# ---------------------------------------------------------------- resume and determinism


@pytest.fixture(scope="module")
def uninterrupted(raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("uninterrupted") / "bu.h5"
    run_prep(raw["bu3dfe"], path, PrepConfig(image_size=64), workers=0, progress=False)
    return read_shard(path)


def test_resume_after_interrupt_gives_the_same_shard(raw, uninterrupted, tmp_path, monkeypatch):
    records, calls = raw["bu3dfe"], []
    real = runner.process_scan

    def interrupted_after_two(record, cfg):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(record.scan_id)
        return real(record, cfg)

    monkeypatch.setattr(runner, "process_scan", interrupted_after_two)
    out = tmp_path / "bu.h5"
    with pytest.raises(KeyboardInterrupt):
        run_prep(records, out, PrepConfig(image_size=64), workers=0, progress=False)
    assert shards.tmp_path(out).exists() and not out.exists()
    monkeypatch.setattr(runner, "process_scan", real)
    summary = run_prep(records, out, PrepConfig(image_size=64), workers=0, progress=False)
    assert (summary.skipped, summary.written, summary.failed) == (2, len(records) - 2, 0)
    assert_same_shards(read_shard(out), uninterrupted)


def test_same_tree_twice_gives_identical_arrays(raw, uninterrupted, tmp_path):
    """Again in two spawn-started workers: no state of this process leaks into a sample."""
    out = tmp_path / "again.h5"
    summary = run_prep(raw["bu3dfe"], out, PrepConfig(image_size=64), workers=2, progress=False)
    assert summary.written == len(raw["bu3dfe"])
    again = read_shard(out)
    assert_same_shards(again, uninterrupted)
    assert again["depth"].std() > 1.0 and again["texture"].std() > 10  # not trivially equal


def test_bosphorus_prepared_twice_is_identical(raw, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for path in (a, b):
        run_prep(raw["bosphorus"], path, PrepConfig(dataset="bosphorus", image_size=64), workers=0,
                 progress=False)
    assert_same_shards(read_shard(a), read_shard(b))


@pytest.mark.parametrize("dataset", DATASETS)
def test_coverage_is_the_scanned_surface_without_speckle(prepared, dataset):
    """Regression: coverage once meant "a vertex falls in a touching cell", which left
    thousands of uncovered cells inside the face at 224 px (mesh vertices ~2 mm apart,
    cells 0.8 mm). It is the set of cells under a scanned triangle: one solid region."""
    with h5py.File(prepared[dataset], "r") as f:
        coverage = f["coverage"][:]
    for cov in coverage:
        inside_gaps = int(ndimage.binary_fill_holes(cov).sum() - cov.sum())
        assert inside_gaps < 10, f"{inside_gaps} uncovered cells inside the covered face"
        assert 0.25 < cov.mean() < 0.95


def test_texture_named_outside_the_scan_folder_is_refused_unless_allowed(tmp_path):
    records = make_tree("bu3dfe", tmp_path / "raw", ("neutral",), vertices=2500, texture_size=64)
    record = records[0]
    wrl = record.mesh.read_text()
    name = record.texture.name
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / name).write_bytes(record.texture.read_bytes())
    record.texture.unlink()
    record.mesh.write_text(wrl.replace(f'"{name}"', f'"../../elsewhere/{name}"'))
    cfg = PrepConfig(image_size=32, min_points=500)
    with pytest.raises(ScanError,
                       match=r"texture reference '../../elsewhere/.*' is outside the dataset root"):
        process_scan(record, cfg)
    sample = process_scan(record, PrepConfig(image_size=32, min_points=500,
                                             allow_outside_textures=True))
    assert sample.texture.shape == (32, 32, 3)
