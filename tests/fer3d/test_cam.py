"""Grad-CAM (Fig. 6) and fusion weights: maps have the input's size, are finite, not constant
and change with the sample; checkpoints in every accepted form load; fer3d-cam writes both
figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner

pytest.importorskip("pytorch_grad_cam")

sys.path.insert(0, str(Path(__file__).parent))
from crafted import crafted_files

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
    assert result.exit_code == 2 and "samples not in the shards" in result.output
    assert "'F0009_AN03WH' (did you mean 'F0002_AN03WH'?)" in result.output


def test_output_paths_are_checked_before_any_work(cells, shard, tmp_path, monkeypatch):
    def never(*a, **k):
        raise AssertionError("Grad-CAM computed before the output paths were checked")

    monkeypatch.setattr("fer3d.paper.cam.make_figures", never)
    for option in ("-o", "--fusion-weights"):
        out = tmp_path / "missing" / "x.png"
        result = CliRunner().invoke(cam_command, [str(cells["afnet_m"]), shard, "--samples",
                                                  IDS[0], option, str(out)])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"{out}: its folder {out.parent} does not exist" in result.output


@pytest.mark.parametrize("name", ["truncated.pth", "code.pth", "int_names.pth",
                                  "image_size_text.pth", "unknown_variant.pth",
                                  "wrong_names.pth", "huge_header.safetensors"])
def test_crafted_checkpoints_are_one_line(name, shard, tmp_path):
    path = crafted_files(tmp_path, torchvision.models.resnet18().state_dict())[name]
    result = CliRunner().invoke(cam_command, [str(path), shard, "--samples", IDS[0], "-o",
                                              str(tmp_path / "x.png")])
    assert result.exit_code == 2, result.output
    errors = [x for x in result.output.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {path}: "), result.output
    assert "weights_only" not in result.output


def test_small_inputs_warn_of_flat_maps(cells, shard, tmp_path, caplog):
    for size in (32, 36, 64, 224):  # the side layer4 really has
        trunk = torchvision.models.resnet18().eval()
        x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(torch.zeros(1, 3, size, size)))))
        out = trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(x))))
        assert out.shape[-1] == cam.layer4_side(size), size
    assert cam.MIN_CAM_SIZE == 36 and cam.flat_maps_warning(36) is None
    assert cam.flat_maps_warning(32) == (
        "Grad-CAM at 32 px: layer4 maps are 1x1, so every map is flat (one value); use "
        "--image-size 36 or more (2x2 maps; the paper's 224 gives 7x7)")
    caplog.set_level("WARNING")
    result = CliRunner().invoke(cam_command, [str(cells["afnet_m"]), shard, "--samples",
                                              ",".join(IDS[:2]), "--image-size", "32", "-o",
                                              str(tmp_path / "flat.png")])
    assert result.exit_code == 0, result.output
    assert "Grad-CAM at 32 px: layer4 maps are 1x1" in caplog.text


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
