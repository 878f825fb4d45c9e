"""Using a trained model on new faces: the input contract without torch, final models and
their cards, fer3d-predict on raw scans, folders and shards (error rows, the dlib fallback,
refused configs), ensembles, Grad-CAM per input, and the --help of the new commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer3d.cli import predict as predict_cli
from fer3d.cli import train as train_cli
from fer3d.errors import ConfigError
from fer3d.predict import scans
from fer3d.predict.card import read_card
from fer3d.predict.predictor import load_model
from fer3d.train import contract
from fer3d.train.transforms import normalise, prepare
from fer3d_data.schema import EXPRESSIONS
from fer3d_data.synth import build_bosphorus_scan, build_bu3dfe_scan, write_bu3dfe_scan

REPO = Path(__file__).parents[2]


# ---------------------------------------------------------------- the input contract

@pytest.mark.parametrize("grid,size", [(40, 32), (32, 32), (24, 32), (64, 16)])
def test_numpy_inputs_equal_the_training_transforms(grid, size):
    rng = np.random.default_rng(grid)
    texture = rng.integers(0, 256, (3, grid, grid, 3), dtype=np.uint8)
    depth = rng.normal(0.0, 20.0, (3, grid, grid)).astype(np.float32)
    coverage = rng.random((3, grid, grid)) > 0.2
    mask56 = rng.random((3, 56, 56)).astype(np.float32)
    mine = contract.model_inputs(texture, depth, coverage, mask56, size)
    d01 = torch.stack([torch.from_numpy(contract.normalise_depth(d, c))[None]
                       for d, c in zip(depth, coverage)])
    image, mask = prepare(torch.from_numpy(texture).permute(0, 3, 1, 2), d01,
                          torch.from_numpy(mask56)[:, None], size)
    theirs = dict(zip(contract.INPUT_NAMES, normalise(image, mask)))
    for name in contract.INPUT_NAMES:
        assert mine[name].shape == tuple(theirs[name].shape), name
        np.testing.assert_allclose(mine[name], theirs[name].numpy(), atol=2e-5, err_msg=name)


def test_contract_describes_the_three_inputs():
    c = contract.input_contract(64)
    assert c["names"] == ["texture", "depth", "mask"]
    assert c["shapes"] == {"texture": [3, 64, 64], "depth": [3, 64, 64], "mask": [1, 16, 16]}
    assert c["mean"] == list(contract.IMAGENET_MEAN) and c["std"] == list(contract.IMAGENET_STD)


# ---------------------------------------------------------------- inputs

def test_find_inputs_pairs_companions_by_stem_and_skips_raw_captures(tmp_path):
    scan = build_bu3dfe_scan("F0100", "happiness", 4, vertices=300, texture_size=32,
                             f2d_size=16)
    write_bu3dfe_scan(scan, tmp_path, skip=("bnd",))
    (tmp_path / "F0100" / "F0100_HA04AE_RAW.wrl").write_text("raw capture")
    (tmp_path / "mine.wrl").write_text("#VRML V2.0 utf8\n")
    (tmp_path / "mine.bmp").write_bytes(b"BM")
    (tmp_path / "mine.bnd").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "upper.WRL").write_text("#VRML V2.0 utf8\n")
    (tmp_path / "upper.BMP").write_bytes(b"BM")
    found = scans.find_inputs([tmp_path])
    assert [r.scan_id for r in found.scans] == ["F0100_HA04AE", "mine", "upper"]
    assert not found.shards and found.scans[2].texture.name == "upper.BMP"
    named, mine, _ = found.scans
    assert (named.expression, named.intensity, named.landmarks) == ("happiness", 4, None)
    assert named.texture.name == "F0100_HA04AE_F3D.bmp" and named.capture == ""
    assert (mine.expression, mine.texture.name, mine.landmarks.name) == (None, "mine.bmp",
                                                                          "mine.bnd")
    with pytest.raises(ConfigError, match="notes.txt: not a raw scan"):
        scans.find_inputs([tmp_path / "notes.txt"])
    gone = scans.find_inputs([tmp_path / "gone.wrl"]).scans[0]  # an error row, not a stop
    assert gone.problem == f"{tmp_path / 'gone.wrl'}: no such file"
    with pytest.raises(ConfigError, match="gone.h5: no such file"):
        scans.find_inputs([tmp_path / "gone.h5"])


def test_prep_configs_differing_in_a_sample_field_are_refused_naming_it():
    model = {"image_size": 32, "landmarks": "native"}
    scans.check_same_prep(model, {"image_size": 32, "landmarks": "auto", "compression": "lzf",
                                  "scan_timeout": 5, "min_texture_std": 3.0}, "x.h5")
    with pytest.raises(ConfigError) as err:
        scans.check_same_prep(model, {"image_size": 64, "smoothness": 2.0}, "x.h5")
    assert "image_size: model 32, input 64" in str(err.value)
    assert "smoothness: model 1.0, input 2.0" in str(err.value)
    assert "compression" not in str(err.value)
    assert scans.prediction_config(model).landmarks == "auto"


# ---------------------------------------------------------------- final models

def test_final_model_directory_and_card(synth_models):
    import h5py
    from safetensors import safe_open

    final = synth_models["final"]
    members = sorted(p.name for p in final.glob("model-*.safetensors"))
    assert members == ["model-0.safetensors", "model-1.safetensors"]
    assert not list(final.glob("cells/*/weights.pt"))  # one copy of the weights
    with safe_open(final / members[0], framework="pt") as fh:
        meta = json.loads(fh.metadata()["fer3d"])
    assert (meta["variant"], meta["image_size"], meta["class_names"]) == \
        ("afnet_m", 32, list(EXPRESSIONS))
    card = read_card(final / "model_card.json")
    with h5py.File(synth_models["shard"]) as f:
        config = json.loads(f["config"][()])
        stored = json.loads(f.attrs["digests"])
    assert card["prep_config"] == config and card["prep_config"]["image_size"] == 64
    shard = card["data"]["shards"][0]
    assert shard["config_digest"] == stored["config"] and len(shard["digest"]) == 64
    assert (card["data"]["samples"], len(card["data"]["subjects"])) == (24, 2)
    assert card["training"]["final"] is True and "folds" not in card["training"]
    assert (card["training"]["epochs"], card["training"]["seeds"]) == (1, 2)
    assert card["versions"]["torch"] == torch.__version__ and card["versions"]["h5py"]
    assert [m["file"] for m in card["members"]] == members
    assert card["members"][0]["seed"] != card["members"][1]["seed"]
    assert card["expected_accuracy"] is None and card["input"]["image_size"] == 32
    assert "expected accuracy: unknown" in (final / "model_card.md").read_text()


def test_rerun_resumes_and_other_settings_are_refused(synth_models, capsys):
    final, args = synth_models["final"], synth_models["train_args"]
    before = {p: p.stat().st_mtime_ns for p in final.glob("cells/*/fold.json")}
    assert train_cli.main(args) == 0  # the same command: nothing to train
    assert {p: p.stat().st_mtime_ns for p in final.glob("cells/*/fold.json")} == before
    assert train_cli.main([*args, "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds a run of other settings (epochs: run has 1, asked 2)" in err


def test_expected_accuracy_from_a_campaign_of_the_same_settings(synth_models, tmp_path,
                                                                capsys):
    final, args, campaign = synth_models["final"], synth_models["train_args"], \
        synth_models["campaign"]
    assert train_cli.main([*args, "--campaign", str(campaign)]) == 0
    expected = read_card(final / "model_card.json")["expected_accuracy"]
    summary = json.loads((campaign / "summary.json").read_text())
    assert (expected["mean"], expected["spread"], expected["spread_name"], expected["folds"]) \
        == (summary["accuracy_mean"], summary["accuracy_spread"], "std over folds", 2)
    assert "expected accuracy: " in (final / "model_card.md").read_text()
    assert "std over folds" in (final / "model_card.md").read_text()
    other = tmp_path / "other"
    assert train_cli.main([str(synth_models["shard"]), "--epochs", "3", "--folds", "2",
                           "--image-size", "32", "--init-only", "--out", str(other)]) == 0
    assert train_cli.main([*args, "--campaign", str(other)]) == 2
    err = capsys.readouterr().err
    assert "other settings (epochs: campaign has 3, this model 1; batch_size:" in err
    cfg = json.loads((campaign / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(cfg))  # same settings, no summary.json
    assert train_cli.main([*args, "--campaign", str(other)]) == 2
    assert "not finished (no summary.json" in capsys.readouterr().err


def test_final_with_keep_none_is_refused(synth_models, tmp_path, capsys):
    argv = [str(synth_models["shard"]), "--final", "--keep", "none", "--out",
            str(tmp_path / "m")]
    assert train_cli.main(argv) == 2
    assert "--final with --keep none would keep no model" in capsys.readouterr().err


# ---------------------------------------------------------------- prediction

@pytest.fixture(scope="module")
def new_faces(tmp_path_factory):
    """Raw scans of a subject no model saw: happiness, surprise without its .bnd, and a
    truncated (broken) anger mesh."""
    root = tmp_path_factory.mktemp("new_faces")
    meshes = []
    for expression, skip in (("happiness", ()), ("surprise", ("bnd",)), ("anger", ())):
        scan = build_bu3dfe_scan("F0100", expression, 4, vertices=4000, texture_size=128,
                                 f2d_size=32)
        meshes += [p for p in write_bu3dfe_scan(scan, root, skip=skip) if p.suffix == ".wrl"]
    text = meshes[2].read_text()
    meshes[2].write_text(text[: len(text) // 3])
    return meshes


def test_raw_scans_rows_dlib_fallback_and_a_broken_scan(synth_models, new_faces):
    model = load_model(synth_models["final"])
    rows = model.predict_scans(new_faces)
    assert [r["sample_id"] for r in rows] == ["F0100_HA04AE", "F0100_SU04AE", "F0100_AN04AE"]
    assert [r["label"] for r in rows] == ["happiness", "surprise", "anger"]
    for row in rows[:2]:
        probs = [row[f"p_{c}"] for c in EXPRESSIONS]
        assert abs(sum(probs) - 1.0) < 1e-5 and row["predicted"] == EXPRESSIONS[np.argmax(probs)]
        assert row["error"] == ""
    assert (rows[0]["landmarks"], rows[0]["warning"]) == ("native", "")
    assert rows[1]["landmarks"] == "dlib" and "no landmark file" in rows[1]["warning"]
    broken = rows[2]
    assert broken["error"].startswith("read: ") and str(new_faces[2]) in broken["error"]
    assert broken["predicted"] == "" and broken["p_anger"] is None


def test_ensemble_is_the_mean_of_its_members_softmaxes(synth_models):
    import h5py

    from fer3d.train.checkpoint import load_model as load_weights

    model = load_model(synth_models["final"])
    with h5py.File(synth_models["shard"]) as f:
        batch = {"texture": f["texture"][:5], "depth": f["depth"][:5],
                 "mask": f["mask56"][:5], "coverage": f["coverage"][:5]}
    got = model.predict(batch).probabilities
    inputs = {k: torch.from_numpy(v) for k, v in model.inputs(
        {**batch, "mask56": batch["mask"]}, 0, 5).items()}
    members = [load_weights(p)[0] for p in sorted(synth_models["final"].glob("model-*"))]
    with torch.no_grad():
        want = torch.stack([m(inputs["texture"], inputs["depth"], inputs["mask"]).softmax(1)
                            for m in members]).mean(0).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(want, members[0](*inputs.values()).softmax(1).detach().numpy())
    one = model.predict({k: v[0] for k, v in batch.items()})  # one sample, no batch axis
    np.testing.assert_allclose(one.probabilities[0], got[0], atol=1e-6)


def test_a_run_directory_predicts_as_an_ensemble_of_its_cells(synth_models):
    run = load_model(synth_models["campaign"])
    assert len(run.members.models) == 2 and len(run.card["members"]) == 2
    assert run.card["expected_accuracy"]["folds"] == 2
    one = load_model(synth_models["campaign"], ensemble=1)
    assert len(one.members.models) == 1
    cell = load_model(synth_models["campaign"] / "cells" / "r0_f1")
    assert cell.card["prep_config"]["image_size"] == 64  # read from the cell's run


def test_predict_cli_csv_json_and_strict(synth_models, new_faces, tmp_path, capsys):
    import csv

    out = tmp_path / "p.csv"
    model = str(synth_models["final"])
    faces = [new_faces[0], new_faces[2], new_faces[1]]  # the broken scan between two batches
    assert predict_cli.main([model, *map(str, faces), "-o", str(out), "--progress",
                             "--workers", "2", "--batch-size", "2"]) == 0  # prep in a pool
    err = capsys.readouterr().err
    assert "3 input(s): 2 predicted, 1 failed; with a known expression:" in err
    assert "predict: 100%" in err and "3/3" in err  # the progress bar counts every row
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["input", "sample_id", "label", "predicted",
                      *[f"p_{c}" for c in EXPRESSIONS], "landmarks", "warning", "error"]
    pooled = list(csv.DictReader(out.open()))
    serial = load_model(model, batch_size=1).predict_scans(faces)  # here, batches of 1
    assert [r["sample_id"] for r in pooled] == [r["sample_id"] for r in serial] == [
        "F0100_HA04AE", "F0100_AN04AE", "F0100_SU04AE"]  # input order, the error row too
    for got, want in zip(pooled, serial):
        assert (got["sample_id"], got["landmarks"], got["error"]) == \
            (want["sample_id"], want["landmarks"], want["error"])
        for c in EXPRESSIONS:  # other batch sizes: other float sums, to ~1e-6
            if want[f"p_{c}"] is None:
                assert got[f"p_{c}"] == ""
            else:
                assert abs(float(got[f"p_{c}"]) - want[f"p_{c}"]) < 1e-5
    assert predict_cli.main([model, str(new_faces[0]), "--json", "-o", str(tmp_path / "p.jl"),
                             "--no-progress"]) == 0
    row = json.loads((tmp_path / "p.jl").read_text())
    assert row["sample_id"] == "F0100_HA04AE" and abs(sum(
        row[f"p_{c}"] for c in EXPRESSIONS) - 1) < 1e-5
    assert predict_cli.main([model, str(new_faces[2]), "--strict", "-o", str(tmp_path / "s"),
                             "--no-progress"]) == 1


def test_shards_as_input_and_a_differently_prepared_shard_refused(synth_models, make_shard):
    model = load_model(synth_models["final"])
    rows = model.predict_scans([synth_models["shard"]])
    assert len(rows) == 24 and {r["label"] for r in rows} == set(EXPRESSIONS)
    assert all(r["landmarks"] == "native" and abs(sum(r[f"p_{c}"] for c in EXPRESSIONS) - 1)
               < 1e-5 for r in rows)
    other = make_shard("other.h5", size=64, config={"image_size": 64, "smoothness": 2.0})
    with pytest.raises(ConfigError, match=r"other.h5: prepared differently .*smoothness: "
                                          r"model 1.0, input 2.0"):
        model.predict_scans([other])


def test_a_bosphorus_scan_for_a_bu3dfe_model_is_refused(synth_models, tmp_path):
    from fer3d_data.synth import write_bosphorus_scan

    scan = build_bosphorus_scan("bs100", "happiness", grid=(40, 30))
    bnt = next(p for p in write_bosphorus_scan(scan, tmp_path) if p.suffix == ".bnt")
    with pytest.raises(ConfigError, match=r"bs100_E_HAPPY_0.bnt: a bosphorus scan, prepared "
                                          r"differently .*dataset: model 'bu3dfe', input "
                                          r"'bosphorus'"):
        load_model(synth_models["final"]).predict_scans([bnt])


def test_bosphorus_scans_with_and_without_lm3(tmp_path):
    """A Bosphorus model (random weights: the rows, not the accuracy) predicts .bnt scans
    with their .png; without the .lm3, dlib's landmarks, said in the row."""
    from fer3d.models import create_model
    from fer3d.predict.eager import TorchMembers
    from fer3d.predict.predictor import Predictor
    from fer3d_data.prep import PrepConfig
    from fer3d_data.synth import write_bosphorus_scan

    meshes = []
    for expression, skip in (("happiness", ()), ("anger", ("lm3",))):
        scan = build_bosphorus_scan("bs100", expression)
        meshes += [p for p in write_bosphorus_scan(scan, tmp_path, skip=skip)
                   if p.suffix == ".bnt"]
    card = {"variant": "afnet_m", "class_names": list(EXPRESSIONS), "image_size": 32,
            "members": [{"file": "random"}],
            "prep_config": PrepConfig(dataset="bosphorus", image_size=64).to_dict()}
    torch.manual_seed(0)
    model = Predictor(card, TorchMembers([create_model("afnet_m").eval()], "cpu"))
    rows = model.predict_scans([tmp_path])  # a folder
    assert [(r["sample_id"], r["label"], r["landmarks"], r["error"]) for r in rows] == [
        ("bs100_E_ANGER_0", "anger", "dlib", ""), ("bs100_E_HAPPY_0", "happiness", "native", "")]
    assert rows[0]["warning"] == scans.DLIB_WARNING and rows[1]["warning"] == ""
    for row in rows:
        assert abs(sum(row[f"p_{c}"] for c in EXPRESSIONS) - 1.0) < 1e-5


def test_a_lone_weights_file_predicts_shards_only(synth_models, new_faces, tmp_path):
    import shutil

    lone = tmp_path / "weights.pt"  # outside its run: no preprocessing config with it
    shutil.copy(synth_models["campaign"] / "cells" / "r0_f0" / "weights.pt", lone)
    model = load_model(lone)
    assert model.card["prep_config"] == {} and model.class_names == tuple(EXPRESSIONS)
    with pytest.raises(ConfigError, match="records no preprocessing config .* shards only"):
        model.predict_scans(new_faces[:1])
    rows = model.predict_scans([synth_models["shard"]])
    assert len(rows) == 24 and not any(r["error"] for r in rows)


def test_cam_writes_each_inputs_branch_maps(synth_models, new_faces, tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    cams = tmp_path / "cams"
    assert predict_cli.main([str(synth_models["final"]), *map(str, new_faces[:2]), "--cam",
                             str(cams), "-o", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    assert sorted(p.name for p in cams.iterdir()) == ["F0100_HA04AE.png", "F0100_SU04AE.png"]
    from PIL import Image

    for png in cams.iterdir():  # texture, depth, and a Grad-CAM per branch: 4 square panels
        width, height = Image.open(png).size
        assert width / height > 3.2, (png.name, width, height)  # 3 panels: 2.5


def test_new_commands_help_and_fer3d_import_without_torch():
    code = ("import sys; import fer3d; from fer3d.cli import export, predict; "
            "r = predict.main(['--help']); e = export.main(['--help']); "
            "assert 'torch' not in sys.modules, 'torch'; sys.exit(r or e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for part in ("--ensemble K", "--cam DIR", "--strict", "AUTO|CPU|CUDA|CUDA:N", "--opset"):
        assert part in text, part
