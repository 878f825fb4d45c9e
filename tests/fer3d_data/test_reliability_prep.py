"""Issue 9, prep half: config validation and the per-sample sanity checks (a full disk:
test_reliability_prep_disk.py; time limits, kills, signals: test_reliability_prep_runner.py).
Fixtures from fer3d_data.synth only."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fer3d_data import shards, synth
from fer3d_data.datasets import ADAPTERS
from fer3d_data.errors import Fer3dDataError
from fer3d_data.prep import PrepConfig, process_scan, run_prep
from fer3d_data.prep.sanity import sanity_problems

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import fake_sample, writer  # noqa: E402

# ---------------------------------------------------------------- config validation


def test_config_strings_are_coerced_once():
    cfg = PrepConfig.from_dict({"pose": "no", "image_size": "64", "smoothness": "2.5",
                                "scan_timeout": 10})
    assert (cfg.pose, cfg.image_size, cfg.smoothness, cfg.scan_timeout) == (False, 64, 2.5, 10.0)
    assert PrepConfig(pose="TRUE").pose is True and PrepConfig(image_size=64.0).image_size == 64


def test_config_names_every_bad_key_once():
    with pytest.raises(Fer3dDataError) as e:
        PrepConfig.from_dict({"pose": "maybe", "image_size": 1.5, "interp": "cubic",
                              "crop_radius": -1, "scan_timeout": float("nan"), "min_points": True,
                              "compression_level": 10, "min_landmark_fraction": 1.5,
                              "smoothness": "abc", "dataset": "bu4dfe"})
    message = str(e.value)
    for key, problem in (("pose", "must be a boolean (true or false), got 'maybe'"),
                         ("image_size", "must be an integer, got 1.5"),
                         ("interp", "must be one of"),
                         ("crop_radius", "must be > 0, got -1"),
                         ("scan_timeout", "must be finite, got nan"),
                         ("min_points", "must be a number, got True"),
                         ("compression_level", "must be >= 0 and <= 9, got 10"),
                         ("min_landmark_fraction", "must be >= 0 and <= 1, got 1.5"),
                         ("smoothness", "must be a number, got 'abc'"),
                         ("dataset", "must be one of")):
        assert message.count(f" {key} must") == 1, key
        assert f"{key} {problem}" in message, key


def test_config_refuses_unknown_keys_and_non_mappings():
    with pytest.raises(Fer3dDataError, match="unknown preprocessing config keys \\['smoothnes'\\]"):
        PrepConfig.from_dict({"smoothnes": 1.0})
    with pytest.raises(Fer3dDataError, match="must be a mapping"):
        PrepConfig.from_dict([("pose", True)])


def test_scan_timeout_does_not_block_a_resume(tmp_path):
    """A time limit changes no sample: a rerun with another one resumes the same shard."""
    out = tmp_path / "a.h5"
    with writer(out, PrepConfig(image_size=32, scan_timeout=5)) as w:
        w.append(fake_sample(0))
    with writer(out, PrepConfig(image_size=32, scan_timeout=60)) as w:
        assert len(w) == 1
    with pytest.raises(Fer3dDataError, match="another config"):
        writer(out, PrepConfig(image_size=32, min_depth_relief=1.0))


# ---------------------------------------------------------------- sanity checks


def sane_arrays(size: int = 32) -> dict:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    mask = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 4) ** 2).astype(np.uint8)
    return {"texture": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "depth": (30 - 0.1 * ((xx - size / 2) ** 2 + (yy - size / 2) ** 2)).astype(np.float32),
            "coverage": np.ones((size, size), bool), "mask": mask,
            "landmarks": rng.uniform(0, size - 1, (83, 2)).astype(np.float32),
            "landmarks68": np.full((68, 2), np.nan, np.float32)}


@pytest.mark.parametrize("breakage, problem", [
    (lambda s: s.update(landmarks=s["landmarks"] + 500), "landmarks: 0/83 on the 32x32 grid"),
    (lambda s: s.update(texture=np.full_like(s["texture"], 77)),
     "texture: standard deviation 0.00"),
    (lambda s: s.update(mask=np.zeros_like(s["mask"])), "mask: empty"),
    (lambda s: s.update(depth=np.zeros_like(s["depth"])), "depth: relief 0.00 mm"),
    (lambda s: s["depth"].__setitem__((3, 3), np.nan), "depth: 1 non-finite cells"),
    (lambda s: s.update(coverage=np.zeros_like(s["coverage"])), "depth: no cell is covered"),
])
def test_sanity_fails_each_wrong_sample(breakage, problem):
    s = sane_arrays()
    assert sanity_problems(s, 0, PrepConfig().to_dict()) == []
    breakage(s)
    problems = sanity_problems(s, 0, PrepConfig().to_dict())
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_sanity_checks_the_landmarks_the_masks_came_from():
    s = sane_arrays()
    s["landmarks"][:] = np.nan  # dlib ran: the native rows are missing, dlib's count
    assert sanity_problems(s, 0, {})[0].startswith("landmarks: 0/83")
    s["landmarks68"] = np.full((68, 2), 10.0, np.float32)
    assert sanity_problems(s, 1, {}) == []
    s["landmarks68"][:40] = -300
    assert sanity_problems(s, 1, {})[0].startswith("dlib landmarks68: 28/68")
    assert sanity_problems(s, 1, {"min_landmark_fraction": 0.4}) == []


def bu_tree(root, expressions=("neutral", "anger")):
    synth.make_bu3dfe(root, subjects=1, vertices=3000, texture_size=128, f2d_size=8,
                      expressions=expressions)
    return ADAPTERS["bu3dfe"].walk(root)


def test_every_synthetic_variant_and_artifact_passes_with_a_wide_margin(tmp_path):
    """Genuine-like scans must never trip the checks: every file spelling variant, noise,
    holes, spikes, outliers and Bosphorus scans lacking landmarks, at the thresholds x 4."""
    artifacts = dict(noise=0.3, holes=2, spikes=0.01, outliers=0.005,
                     expressions=("neutral", "surprise"))
    synth.make_bu3dfe(tmp_path / "bu", subjects=1, vertices=3000, texture_size=128, f2d_size=8,
                      wrl_variants=synth.WRL_VARIANTS, **artifacts)
    synth.make_bosphorus(tmp_path / "bs", subjects=1, grid=(92, 76), texture_scale=1.0,
                         drop_landmarks=1.0, bnt_variants=synth.BNT_VARIANTS,
                         lm_variants=synth.LM_VARIANTS, **artifacts)
    strict = {"min_landmark_fraction": 0.75, "min_texture_std": 4.0, "min_depth_relief": 20.0}
    for dataset, folder in (("bu3dfe", "bu"), ("bosphorus", "bs")):
        records = ADAPTERS[dataset].walk(tmp_path / folder)
        assert len(records) >= 2
        for record in records:
            sample = process_scan(record, PrepConfig(dataset=dataset, image_size=48, **strict))
            assert sample.sample_id == record.scan_id


def test_wrong_scans_become_sanity_rows_not_samples(tmp_path):
    """Issue 9: landmarks 500 mm off the mesh and a 1x1 texture were written and verified OK."""
    import cv2

    records = bu_tree(tmp_path / "raw")[:3]
    off, flat, good = records
    lines = off.landmarks.read_text().splitlines()
    off.landmarks.write_text("\n".join(
        " ".join([c[0], *(f"{float(v) + 500:.4f}" for v in c[1:])])
        for c in (ln.split() for ln in lines) if c) + "\n")
    cv2.imwrite(str(flat.texture), np.full((1, 1, 3), 90, np.uint8))
    out = tmp_path / "bu.h5"
    summary = run_prep(records, out, PrepConfig(image_size=48), workers=0, progress=False,
                       raw_root=tmp_path / "raw")
    assert (summary.written, summary.failed_by_step) == (1, {"sanity": 2})
    with shards.open_shard(out) as shard:
        assert shard.index["sample_id"].tolist() == [good.scan_id]
        errors = {e["source"]: e for e in shard.errors()}
    assert errors[f"F0001/{off.mesh.name}"]["step"] == "sanity"
    assert "landmarks: 0/83 on the 48x48 grid" in errors[f"F0001/{off.mesh.name}"]["message"]
    assert "mask: empty" in errors[f"F0001/{off.mesh.name}"]["message"]
    assert "texture: standard deviation 0.00" in errors[f"F0001/{flat.mesh.name}"]["message"]
    assert shards.verify(out) == []
