"""Benchmark: fer3d-predict on the CPU, per raw scan and per shard sample.

Stage: benchmarks (docs/performance.md, docs/predict.md). A synthetic BU-3DFE tree at the
default synth size (meshes of ~8,000 vertices, a 512x512 texture) and AFNet-M at
S = --size (grid and input, the paper's 224), its weights a random initialisation (the
time does not depend on them), exported to ONNX once (not timed). One core throughout:
torch and onnxruntime on one thread, the prep in this process. Measured after a warm-up
scan (the per-process gridfit factorisation, dlib and library imports; their cost is
``first_scan_s``), medians over --repeats, torch and onnxruntime timed in alternation
(the same load for both):

- ``prep_s``: the prep chain of one raw scan (process_scan with the model's config);
- ``forward_torch_s``, ``forward_onnx_s``: one sample's forward, batch 1; ``*_b{B}``: per
  sample at batch --batch-size;
- ``end_to_end_s``: ``Predictor.predict_scans([mesh])`` for one scan: finding its files,
  prep, the input contract, the forward pass and the row (torch; onnx beside it);
- ``folder_scans_per_s``: a folder of --scans scans in one call (one core);
- ``shard_samples_per_s``: those scans' shard (written at S) in one call.

Targets: end to end <= 0.3 s per scan per core including prep; onnxruntime's forward not
slower than torch eager. ``--smoke`` runs tiny scans at S = 32 (does it run).

    .venv/bin/python benchmarks/bench_predict.py [--size 224] [--scans 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _emit import emit, interleaved

from fer3d.models import create_model
from fer3d.predict.eager import TorchMembers
from fer3d.predict.export import example_inputs, export_model
from fer3d.predict.onnxrt import OnnxMembers
from fer3d.predict.predictor import Predictor
from fer3d.predict.scans import find_inputs, prediction_config
from fer3d.train.contract import INPUT_NAMES, input_contract
from fer3d_data import synth
from fer3d_data.prep import PrepConfig, process_scan, run_prep
from fer3d_data.schema import EXPRESSIONS

TARGET_END_TO_END_S = 0.3
SMOKE = {"size": 32, "scans": 4, "repeats": 1, "batch_size": 2}
SMOKE_SYNTH = {"vertices": 2500, "texture_size": 64, "expressions": ["anger"]}  # 4 scans


def make_scans(root: Path, n: int, smoke: bool) -> list[Path]:
    """Raw BU-3DFE meshes of the default synth size, 25 per subject, at least ``n``."""
    synth.make_bu3dfe(root, subjects=-(-n // 25), f2d_size=8,  # _F2D is never read
                      **(SMOKE_SYNTH if smoke else {}))
    return sorted(root.rglob("*_F3D.wrl"))


def make_predictors(size: int, root: Path, batch: int) -> dict[str, Predictor]:
    """The same random AFNet-M as PyTorch members and as an exported ONNX file."""
    torch.manual_seed(0)
    card = {"variant": "afnet_m", "class_names": list(EXPRESSIONS), "image_size": size,
            "input": input_contract(size), "members": [{"file": "random"}],
            "prep_config": PrepConfig(image_size=size).to_dict()}
    eager = Predictor(card, TorchMembers([create_model("afnet_m").eval()], "cpu"), batch)
    path = export_model(eager, root / "model.onnx")
    return {"torch": eager, "onnx": Predictor(card, OnnxMembers(path, "cpu", threads=1), batch)}


def forward_seconds(models: dict, size: int, batch: int, repeats: int) -> dict:
    """Median seconds per sample of each backend's forward at batch 1 and ``batch``."""
    out = {}
    for b in (1, batch):
        x = {k: t.numpy() for k, t in zip(INPUT_NAMES, example_inputs(size, b))}
        fns = [lambda m=m: m.members.logits(x) for m in models.values()]
        for fn in fns:
            fn()  # warm-up: first-call allocations, oneDNN primitive creation
        for name, (times, _) in zip(models, interleaved(fns, repeats)):
            out[f"forward_{name}_s" + ("" if b == 1 else f"_b{b}")] = statistics.median(times) / b
    return out


def scan_seconds(models: dict, meshes: list[Path], repeats: int) -> dict:
    """Prep of one scan, and one scan end to end with each backend (medians)."""
    cfg = prediction_config(models["torch"].card["prep_config"])
    record = find_inputs([meshes[1]]).scans[0]
    fns = [lambda: process_scan(record, cfg)] + [
        lambda m=m: m.predict_scans([meshes[1]]) for m in models.values()]
    timed = interleaved(fns, repeats)
    out = {"prep_s": statistics.median(timed[0][0])}
    for name, (times, rows) in zip(models, timed[1:]):
        assert not rows[0]["error"], rows[0]["error"]
        out[f"end_to_end_{name}_s"] = statistics.median(times)
    return out


def throughput(models: dict, folder: Path, shard: Path, n: int) -> dict:
    out = {}
    for name, model in models.items():
        for what, path, count in (("folder_scans", folder, n), ("shard_samples", shard, n)):
            t = time.perf_counter()
            rows = model.predict_scans([path])
            assert len(rows) == count and not any(r["error"] for r in rows)
            out[f"{what}_per_s_{name}"] = count / (time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--scans", type=int, default=50, help="scans in the folder and the shard")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--smoke", action="store_true", help="tiny scans at S = 32: does it run")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meshes = make_scans(root / "raw", args.scans, args.smoke)
        models = make_predictors(args.size, root, args.batch_size)
        t = time.perf_counter()
        models["torch"].predict_scans([meshes[0]])  # warm-up: factorisation, imports
        result = {"size": args.size, "scans": len(meshes), "batch_size": args.batch_size,
                  "first_scan_s": time.perf_counter() - t, "threads": 1}
        result.update(forward_seconds(models, args.size, args.batch_size, args.repeats))
        result.update(scan_seconds(models, meshes, args.repeats))
        records = find_inputs([root / "raw"]).scans
        run_prep(records, root / "scans.h5", prediction_config(models["torch"].card[
            "prep_config"]), workers=0, progress=False)
        result.update(throughput(models, root / "raw", root / "scans.h5", len(meshes)))
    result["targets"] = {
        "end_to_end_s_per_scan_per_core": TARGET_END_TO_END_S,
        "end_to_end_met": result["end_to_end_torch_s"] <= TARGET_END_TO_END_S,
        "onnx_forward_not_slower_met": result["forward_onnx_s"] <= result["forward_torch_s"]}
    return emit(result, args.out)


if __name__ == "__main__":
    main()
