"""Grad-CAM (Fig. 6) and fusion weights: maps have the input's size, are finite, not constant
and change with the sample; checkpoints in every accepted form load; fer3d-cam writes both
figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("pytorch_grad_cam")

from fer3d.cli.cam import cam_command
from fer3d.models import create_model
from fer3d.paper import cam
from fer3d.train.checkpoint import load_model

S = 64
IDS = ["F0001_AN03WH", "F0001_HA04WH", "F0002_SU03WH"]


@pytest.fixture(scope="module")
def shard(shard_factory):
    return shard_factory("cam64.h5", n_subjects=2, size=S, extra_intensity=False)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """Engine-style checkpoints of AFNet-M and its without-MA variant in cell directories."""
    root = tmp_path_factory.mktemp("cells")
    out = {}
    for variant in ("afnet_m", "afnet_m_no_ma"):
        torch.manual_seed(0)
        model = create_model(variant)
        cell = root / variant / "cells" / "r0_f0"
        cell.mkdir(parents=True)
        torch.save({"model": model.state_dict(), "variant": variant, "num_classes": 6,
                    "image_size": S}, cell / "checkpoint.pt")
        fold = {"sample_ids": IDS + ["F0002_FE04WH"], "labels": [0, 3, 5, 2]}
        (cell / "fold.json").write_text(json.dumps(fold))
        out[variant] = cell
    return out


def test_branch_cams_size_finite_not_constant_and_sample_dependent(cells, shard):
    model, meta = load_model(cells["afnet_m"])
    assert meta["variant"] == "afnet_m"
    batch = cam.load_samples([shard], IDS, S)
    maps = cam.branch_cams(model, batch)
    assert set(maps) == {"texture", "depth"}
    for name, m in maps.items():
        assert m.shape == (len(IDS), S, S), name
        assert np.isfinite(m).all()
        assert all(m[i].max() - m[i].min() > 1e-3 for i in range(len(IDS))), name
        assert not np.allclose(m[0], m[1]) and not np.allclose(m[1], m[2]), name


def test_plain_state_dicts_load_and_infer_their_variant(cells, tmp_path):
    from safetensors.torch import save_file

    state = torch.load(cells["afnet_m_no_ma"] / "checkpoint.pt", weights_only=True)["model"]
    torch.save(state, tmp_path / "weights.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "weights.safetensors")
    for path in ("weights.pt", "weights.safetensors"):
        model, meta = load_model(tmp_path / path)
        assert meta["variant"] == "afnet_m_no_ma"
        assert torch.equal(model.fc.weight, state["fc.weight"])


def test_fusion_weights_per_class(cells, shard):
    model, _ = load_model(cells["afnet_m"])
    weights = cam.fusion_weights_by_class(model, cam.load_samples([shard], IDS, S))
    assert set(weights) == {"layer3", "layer4"}
    counts = [len(g) for g in weights["layer3"]["texture"]]
    assert counts == [1, 0, 0, 1, 0, 1]
    values = [v for g in weights["layer4"]["depth"] for v in g]
    assert all(0 < v < 1 for v in values)


def test_cam_command_writes_montage_and_fusion_plot(cells, shard, tmp_path):
    out, fusion = tmp_path / "cams.png", tmp_path / "fusion.png"
    result = CliRunner().invoke(cam_command, [
        str(cells["afnet_m"]), shard, "--samples", ",".join(IDS[:2]),
        "--compare", str(cells["afnet_m_no_ma"] / "checkpoint.pt"), "-o", str(out),
        "--fusion-weights", str(fusion)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 20000 and fusion.stat().st_size > 10000


def test_cam_command_errors_are_one_line(cells, shard, tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    result = CliRunner().invoke(cam_command, [str(bad), shard, "--samples", IDS[0]])
    assert result.exit_code == 2 and "notes.pt: not a PyTorch checkpoint" in result.output
    result = CliRunner().invoke(cam_command, [str(cells["afnet_m"]), shard, "--samples",
                                              "F0009_AN03WH", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "sample ids are not in the shards" in result.output
    assert "F0009_AN03WH" in result.output


def test_one_per_class_takes_classes_in_turn():
    ids = ["a0", "a1", "b0", "c0"]
    assert cam.one_per_class(ids, [0, 0, 1, 2], 3) == ["a0", "b0", "c0"]
    assert cam.one_per_class(ids, [0, 0, 1, 2], 10) == ["a0", "b0", "c0", "a1"]


def test_true_class_maps_and_bad_class(cells, shard):
    model, _ = load_model(cells["afnet_m"])
    batch = cam.load_samples([shard], IDS, S)
    maps = cam.branch_cams(model, batch, "true")
    assert all(m.shape == (len(IDS), S, S) and np.isfinite(m).all() for m in maps.values())
    with pytest.raises(ValueError, match="cam_class must be one of"):
        cam.branch_cams(model, batch, "best")
