"""Issue 9, prep half: config validation (the sanity checks: test_sanity.py; a full disk:
test_reliability_prep_disk.py; time limits, kills, signals: test_reliability_prep_runner.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fer3d_data.errors import Fer3dDataError
from fer3d_data.prep import PrepConfig

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
