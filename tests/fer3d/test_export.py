"""fer3d-export: ONNX (opset >= 17, three named inputs, dynamic batch, the card as metadata)
and torch.export files agree with PyTorch within 1e-3, and fer3d-predict runs an .onnx
file on raw scans and shards with torch blocked (prep + onnxruntime only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer3d.cli import export as export_cli
from fer3d.predict.export import example_inputs
from fer3d.predict.predictor import load_model
from fer3d.train.contract import INPUT_NAMES
from fer3d_data.schema import EXPRESSIONS

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.slow  # each export traces two ResNet18 pairs: about a minute

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def exported(synth_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    files = {"onnx": root / "model.onnx", "pt2": root / "model.pt2"}
    for path in files.values():
        assert export_cli.main([str(synth_models["final"]), "-o", str(path)]) == 0
    return files


def test_onnx_graph_inputs_opset_and_card(exported, synth_models):
    import onnx

    model = onnx.load(str(exported["onnx"]))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    names = [i.name for i in model.graph.input]
    assert names == list(INPUT_NAMES) and [o.name for o in model.graph.output] == ["logits"]
    for i in model.graph.input:
        assert i.type.tensor_type.shape.dim[0].dim_param, f"{i.name}: batch is not dynamic"
    card = json.loads({p.key: p.value for p in model.metadata_props}["fer3d_model_card"])
    on_disk = json.loads((synth_models["final"] / "model_card.json").read_text())
    assert card["prep_config"] == on_disk["prep_config"] and len(card["members"]) == 2


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_and_pt2_match_pytorch_logits(exported, synth_models, batch):
    torch_model = load_model(synth_models["final"], device="cpu")
    x = {k: t.numpy() for k, t in zip(INPUT_NAMES, example_inputs(32, batch))}
    want = torch_model.members.logits(x)
    assert want.shape == (batch, 2, len(EXPRESSIONS))
    for path in exported.values():
        got = load_model(path, device="cpu").members.logits(x)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-3, path.suffix


def test_exports_store_plain_nchw_weights_and_leave_the_predictor_channels_last(
        synth_models, tmp_path):
    """The predictor runs channels-last; the file gets NCHW copies (a channels-last weight
    would be saved as a strided view, with torch.export.save warning once per tensor)."""
    import torch

    from fer3d.predict.export import export_model

    model = load_model(synth_models["final"], device="cpu")
    program = torch.export.load(str(export_model(model, tmp_path / "m.pt2")))
    assert all(t.is_contiguous() for t in program.state_dict.values())
    conv = next(p for p in model.members.models[0].parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_predict_with_onnx_and_torch_blocked(exported, synth_models, tmp_path):
    """The same rows as PyTorch's, in a process where importing torch fails."""
    raw = sorted(Path(synth_models["raw"]).rglob("F0001_HA04*_F3D.wrl"))[:1]
    inputs = [str(p) for p in raw] + [str(synth_models["shard"])]
    out = tmp_path / "onnx.jl"
    code = ("import sys; sys.modules['torch'] = None\n"
            "from fer3d.cli import predict\n"
            f"code = predict.main([{str(exported['onnx'])!r}, *{inputs!r}, '--json', "
            f"'-o', {str(out)!r}, '--no-progress'])\n"
            "assert sys.modules['torch'] is None\n"
            "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO)}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    want = load_model(synth_models["final"], device="cpu").predict_scans(inputs)
    assert [r["sample_id"] for r in rows] == [r["sample_id"] for r in want]
    assert len(rows) == 1 + 24 and not any(r["error"] for r in rows)
    for got, ref in zip(rows, want):
        probs = np.array([got[f"p_{c}"] for c in EXPRESSIONS])
        np.testing.assert_allclose(probs, [ref[f"p_{c}"] for c in EXPRESSIONS], atol=1e-4)
        assert abs(probs.sum() - 1) < 1e-5 and got["predicted"] == ref["predicted"]


def test_export_refuses_what_it_cannot_write(exported, synth_models, tmp_path, capsys):
    assert export_cli.main([str(synth_models["final"]), "-o", str(tmp_path / "m.tflite")]) == 2
    assert "export to a .onnx or .pt2 file" in capsys.readouterr().err
    assert export_cli.main([str(exported["onnx"]), "-o", str(tmp_path / "again.onnx")]) == 2
    assert "export needs PyTorch weights" in capsys.readouterr().err
    pytest.importorskip("pytorch_grad_cam")
    from fer3d.cli import predict as predict_cli

    assert predict_cli.main([str(exported["onnx"]), str(synth_models["shard"]), "--cam",
                             str(tmp_path / "cams"), "--no-progress"]) == 2
    assert "--cam needs the PyTorch weights" in capsys.readouterr().err
    assert not (tmp_path / "cams").exists()  # refused before the first row
