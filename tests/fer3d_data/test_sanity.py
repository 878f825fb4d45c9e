"""The sanity checks (fer3d_data.prep.sanity): each wrong sample or scan fails its check, and
no genuine-like synthetic scan fails any check even at stricter thresholds (issues 9 and 15).
Fixtures from fer3d_data.synth only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fer3d_data import shards, synth
from fer3d_data.datasets import ADAPTERS
from fer3d_data.errors import ScanError
from fer3d_data.prep import PrepConfig, process_scan, run_prep
from fer3d_data.prep.sanity import THRESHOLDS, sanity_problems
from fer3d_data.surface import Grid
from fer3d_data.synth.bosphorus import ZMIN

# ---------------------------------------------------------------- one sample's arrays


def sane_arrays(size: int = 32) -> dict:
    """A sample that passes every check: the synthetic face's landmarks, a dome of depth."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    r2 = (xx - size / 2) ** 2 + (yy - size / 2) ** 2
    face = synth.face_params(synth.subject_identity(0, "bu3dfe", "F0001"), "neutral", 0)
    points = synth.face_landmarks(face, "bu3dfe83").points[:, :2]
    return {"texture": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "depth": (-0.1 * r2).astype(np.float32), "coverage": np.ones((size, size), bool),
            "mask": (r2 < (size / 4) ** 2).astype(np.uint8),
            "landmarks": Grid(size, 90.0).to_pixels(points).astype(np.float32),
            "landmarks68": np.full((68, 2), np.nan, np.float32)}


def problems_of(s: dict, scheme: str = "bu3dfe83", **cfg) -> list[str]:
    """The sample's problems; masks from ``scheme`` (dlib68: from dlib's landmarks68)."""
    size, dlib = s["depth"].shape[0], scheme == "dlib68"
    return sanity_problems(s, int(dlib), "bu3dfe83" if dlib else scheme, Grid(size, 90.0),
                           {**PrepConfig().to_dict(), **cfg})


def rotated90(px: np.ndarray, size: int = 32) -> np.ndarray:
    """(K, 2) pixels turned 90 degrees about the grid centre (the nose tip)."""
    c = (size - 1) / 2
    return np.column_stack([c + (px[:, 1] - c), c - (px[:, 0] - c)]).astype(np.float32)


def moved(rows, by):
    """A breakage: landmark rows (0-based) moved by ``by`` pixels."""
    return lambda s: s["landmarks"].__setitem__(rows, s["landmarks"][rows] + by)


@pytest.mark.parametrize("breakage, problem", [
    (lambda s: s.update(landmarks=s["landmarks"] + 500), "landmarks: 0/83 on the 32x32 grid"),
    (lambda s: s.update(texture=np.full_like(s["texture"], 77)),
     "texture: standard deviation 0.00"),
    (lambda s: s.update(mask=np.zeros_like(s["mask"])), "mask: empty"),
    (lambda s: s.update(depth=np.zeros_like(s["depth"])), "depth: relief 0.00 mm"),
    (lambda s: s["depth"].__setitem__((3, 3), np.nan), "depth: 1 non-finite cells"),
    (lambda s: s.update(coverage=np.zeros_like(s["coverage"])), "depth: no cell is covered"),
    # issue 15
    (lambda s: s.update(depth=-s["depth"]), "depth: the median covered cell lies -"),
    (lambda s: s.update(landmarks=np.repeat(s["landmarks"][40:41], 83, axis=0)),
     "landmarks: eye centres 0.0 mm apart"),
    (lambda s: s.update(landmarks=rotated90(s["landmarks"])), "landmarks: eye line at 90"),
    (lambda s: s.update(landmarks=np.ascontiguousarray(s["landmarks"][:, ::-1])),  # transposed
     "landmarks: eye line at"),
    (lambda s: s.update(landmarks=s["landmarks"][np.random.default_rng(1).permutation(83)]),
     "landmarks: an eye's landmarks spread"),
    (moved(slice(None), (0, 12)), "landmarks: the nose tip is not between"),  # 60 mm up
    (moved(slice(None), (0, -12)), "landmarks: the nose tip is not between"),
    (moved(slice(None), (12, 0)), "landmarks: the nose tip is not between"),
])
def test_sanity_fails_each_wrong_sample(breakage, problem):
    s = sane_arrays()
    assert problems_of(s) == []
    breakage(s)
    problems = problems_of(s)
    assert problems and problems[0].startswith(problem), problems


def test_sanity_checks_the_landmarks_the_masks_came_from():
    s = sane_arrays()
    s["landmarks"][:] = np.nan  # dlib ran: the native rows are missing, dlib's count
    assert problems_of(s)[0].startswith("landmarks: 0/83")
    # dlib's 68 points where the face's own points of the same regions are
    native = np.concatenate([np.arange(66, 83), np.arange(16, 26), np.arange(36, 45),
                             np.arange(0, 6), np.arange(8, 14), np.arange(48, 68)])
    s["landmarks68"] = sane_arrays()["landmarks"][native]
    assert problems_of(s, "dlib68") == []
    s["landmarks68"][:36] = -300  # jaw, brows and nose off the grid
    assert problems_of(s, "dlib68")[0].startswith("dlib landmarks68: 32/68")
    assert problems_of(s, "dlib68", min_landmark_fraction=0.4) == []


def test_a_scan_lacking_an_eye_skips_the_layout_checks_it_cannot_make():
    """Bosphorus names only the points a scan shows: an occluded eye is not a wrong face."""
    s = sane_arrays()
    s["landmarks"][0:8] = np.nan
    assert problems_of(s) == []


# ---------------------------------------------------------------- whole synthetic scans

def bu_scan():
    return synth.build_bu3dfe_scan("F0001", "happiness", 4, vertices=3000, texture_size=128,
                                   f2d_size=8)


def bs_scan():
    return synth.build_bosphorus_scan("bs000", "happiness", grid=(92, 76), texture_scale=1.0,
                                      drop_landmarks=0.0)


def tip_moved(by):
    def move(s):
        lm3 = s.lm3.copy()
        lm3[s.names.index("Nose tip")] += by
        return dataclasses.replace(s, lm3=lm3)
    return move


def noise_texture(shape):
    return lambda s: dataclasses.replace(
        s, texture=np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))


BU_BROKEN = {  # name -> (breakage of a Bu3dfeScan, start of the expected problem)
    "shuffled landmark rows": (lambda s: dataclasses.replace(
        s, bnd_points=s.bnd_points[np.random.default_rng(3).permutation(83)]),
        "landmarks: eye centres"),
    "landmarks at one point": (lambda s: dataclasses.replace(
        s, bnd_points=np.repeat(s.bnd_points[40:41], 83, axis=0)),
        "landmarks: eye centres 0.0 mm apart"),
    "mirrored in depth": (lambda s: dataclasses.replace(s, vertices=s.vertices * [1, 1, -1]),
                          "depth: the median covered cell lies"),
    "uv outside [0, 1]": (lambda s: dataclasses.replace(s, uv=s.uv + 2.0),
                          "texture coordinates: 0% inside [0, 1]"),
    "2x2 texture": (noise_texture((2, 2, 3)), "texture image: 2x2 pixels"),
    "4000x30 texture": (noise_texture((30, 4000, 3)), "texture image: 4000x30 pixels"),
    "random connectivity": (lambda s: dataclasses.replace(
        s, index=np.random.default_rng(0).integers(0, len(s.vertices), len(s.index))),
        "mesh: median triangle edge"),
}
BS_BROKEN = {
    "shuffled landmark rows": (lambda s: dataclasses.replace(
        s, lm3=s.lm3[np.random.default_rng(1).permutation(len(s.lm3))]),
        "landmarks: an eye's landmarks spread"),
    "landmarks at one point": (lambda s: dataclasses.replace(
        s, lm3=np.repeat(s.lm3[:1], len(s.lm3), axis=0)), "landmarks: eye centres 0.0 mm"),
    "nose tip 60 mm up": (tip_moved([0, 60, 0]), "landmarks: the nose tip is not between"),
    "nose tip 60 mm down": (tip_moved([0, -60, 0]), "landmarks: the nose tip is not between"),
    "nose tip 60 mm aside": (tip_moved([60, 0, 0]), "landmarks: the nose tip is not between"),
    "mirrored in depth": (lambda s: dataclasses.replace(
        s, xyz=np.where(s.xyz == ZMIN, ZMIN, s.xyz * [1, 1, -1])),
        "depth: the median covered cell lies -"),
    "uv outside [0, 1]": (lambda s: dataclasses.replace(s, uv=s.uv - 1.5),
                          "texture coordinates: 0% inside [0, 1]"),
    "2x2 texture": (noise_texture((2, 2, 3)), "texture image: 2x2 pixels"),
    "4000x30 texture": (noise_texture((30, 4000, 3)), "texture image: 4000x30 pixels"),
}


def prepared(dataset: str, scan, root, **cfg):
    """process_scan of one synthetic scan written under ``root``."""
    write = synth.write_bu3dfe_scan if dataset == "bu3dfe" else synth.write_bosphorus_scan
    write(scan, root)
    (record,) = ADAPTERS[dataset].walk(root)
    return process_scan(record, PrepConfig(dataset=dataset, image_size=48, **cfg))


@pytest.mark.parametrize("dataset, name", [("bu3dfe", n) for n in BU_BROKEN]
                         + [("bosphorus", n) for n in BS_BROKEN])
def test_each_wrong_synthetic_scan_is_a_sanity_error(tmp_path, dataset, name):
    """Issue 15: each of these was written as a sample and verified OK."""
    breakage, problem = (BU_BROKEN if dataset == "bu3dfe" else BS_BROKEN)[name]
    scan = bu_scan() if dataset == "bu3dfe" else bs_scan()
    assert prepared(dataset, scan, tmp_path / "good").sample_id
    with pytest.raises(ScanError) as e:
        prepared(dataset, breakage(scan), tmp_path / "broken")
    assert e.value.step == "sanity" and problem in e.value.message, e.value.message


def test_random_connectivity_past_the_sanity_check_is_a_bounded_texture_error(tmp_path):
    """Issue 15: the rasteriser visited every node of every triangle's box (6.4 GB for a
    3 MB mesh at S = 224); with the edge check off it still refuses such a mesh."""
    breakage, _ = BU_BROKEN["random connectivity"]
    with pytest.raises(ScanError) as e:
        prepared("bu3dfe", breakage(bu_scan()), tmp_path, max_edge_ratio=1e9)
    assert e.value.step == "texture" and "triangles join distant vertices" in e.value.message


# Every threshold tightened (x 1.5 to 4 past its default): good scans must still pass.
STRICT = {"min_landmark_fraction": 0.75, "min_texture_std": 4.0, "min_depth_relief": 20.0,
          "min_face_depth": 20.0, "min_eye_distance": 30.0, "max_eye_distance": 100.0,
          "max_roll": 7.5, "max_tip_offset": 10.0, "min_uv_inside": 0.99,
          "min_texture_side": 32, "max_texture_aspect": 2.0, "max_edge_ratio": 2.0}


def test_strict_thresholds_are_stricter_than_the_defaults():
    assert STRICT.keys() == THRESHOLDS.keys()
    for key, value in STRICT.items():
        default = THRESHOLDS[key][0]
        tighter = value > default if key.startswith("min_") else value < default
        assert tighter, key


def good_trees(root) -> list:
    """Records of every synthetic file variant and artifact, two expressions each."""
    artifacts = dict(noise=0.3, holes=2, spikes=0.01, outliers=0.005,
                     expressions=("neutral", "surprise"))
    synth.make_bu3dfe(root / "bu", subjects=1, vertices=3000, texture_size=128, f2d_size=8,
                      wrl_variants=synth.WRL_VARIANTS, **artifacts)
    synth.make_bu3dfe(root / "bu_small", subjects=1, seed=5, vertices=1500, texture_size=64,
                      f2d_size=8, markers=True, expressions=("neutral",))
    synth.make_bosphorus(root / "bs", subjects=1, grid=(92, 76), texture_scale=1.0,
                         drop_landmarks=1.0, bnt_variants=synth.BNT_VARIANTS,
                         lm_variants=synth.LM_VARIANTS, **artifacts)
    synth.make_bosphorus(root / "bs_markers", subjects=1, seed=2, grid=(138, 114),
                         texture_scale=2.0, markers=True, expressions=("fear", "sadness"))
    return [r for dataset, folder in (("bu3dfe", "bu"), ("bu3dfe", "bu_small"),
                                      ("bosphorus", "bs"), ("bosphorus", "bs_markers"))
            for r in ADAPTERS[dataset].walk(root / folder)]


@pytest.mark.parametrize("pose", [True, False])
def test_every_synthetic_variant_and_artifact_passes_strict_thresholds(tmp_path, pose):
    """Genuine-like scans never trip the checks: every file spelling variant, noise, holes,
    spikes, outliers, markers, Bosphorus scans lacking landmarks, with and without pose."""
    records = good_trees(tmp_path)
    assert len(records) == 10
    for record in records:
        cfg = PrepConfig(dataset=record.dataset, image_size=48, pose=pose, min_points=1000,
                         **STRICT)
        assert process_scan(record, cfg).sample_id == record.scan_id


@pytest.mark.slow
def test_dlib_landmarks_pass_strict_thresholds(tmp_path):
    pytest.importorskip("dlib")
    synth.make_bu3dfe(tmp_path, subjects=1, vertices=3000, texture_size=256, f2d_size=8,
                      expressions=("neutral", "surprise"))
    for record in ADAPTERS["bu3dfe"].walk(tmp_path)[:2]:
        cfg = PrepConfig(image_size=64, landmarks="dlib", **STRICT)
        assert process_scan(record, cfg).mask_source == 1


def test_wrong_scans_become_sanity_rows_not_samples(tmp_path):
    """Issue 9: landmarks 500 mm off the mesh and a 1x1 texture were written and verified OK."""
    import cv2

    synth.make_bu3dfe(tmp_path / "raw", subjects=1, vertices=3000, texture_size=128,
                      f2d_size=8, expressions=("neutral", "anger"))
    off, flat, good = ADAPTERS["bu3dfe"].walk(tmp_path / "raw")[:3]
    lines = off.landmarks.read_text().splitlines()
    off.landmarks.write_text("\n".join(
        " ".join([c[0], *(f"{float(v) + 500:.4f}" for v in c[1:])])
        for c in (ln.split() for ln in lines) if c) + "\n")
    cv2.imwrite(str(flat.texture), np.full((32, 32, 3), 90, np.uint8))
    out = tmp_path / "bu.h5"
    summary = run_prep([off, flat, good], out, PrepConfig(image_size=48), workers=0,
                       progress=False, raw_root=tmp_path / "raw")
    assert (summary.written, summary.failed_by_step) == (1, {"sanity": 2})
    with shards.open_shard(out) as shard:
        assert shard.index["sample_id"].tolist() == [good.scan_id]
        errors = {e["source"]: e for e in shard.errors()}
    assert errors[f"F0001/{off.mesh.name}"]["step"] == "sanity"
    assert "landmarks: 0/83 on the 48x48 grid" in errors[f"F0001/{off.mesh.name}"]["message"]
    assert "mask: empty" in errors[f"F0001/{off.mesh.name}"]["message"]
    assert "texture: standard deviation 0.00" in errors[f"F0001/{flat.mesh.name}"]["message"]
    assert shards.verify(out) == []
