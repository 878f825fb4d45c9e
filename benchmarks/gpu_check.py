"""One short, prepared script for a CUDA machine: how fast is the campaign engine there?

Stage: training performance (docs/performance.md, docs/cluster.md). Stages, each adding
to one JSON that is printed (one line on stderr, ``"partial": true``) and written to
``--out`` after every stage, so that a crash or a lost machine still leaves every figure
measured so far; a stage that raises is recorded under ``errors`` and the next one runs:

1. ``machine``: the GPU's name and the dense bf16 peak of the SKU it matched (``peak``).
2. ``data``: a fabricated 720-sample BU-3DFE-sized shard (h5py + numpy only, gzip chunks as
   fer3d-prep writes) decoded onto the device as a campaign does (``DeviceData``).
3. ``step``: training samples/s and MFU at batch 32 through the real data path (batched
   augmentation, packed steps, fused Adam, ``configure()``'s cuDNN autotuning and TF32):
   eager K = 1, 4, 8, 16 cells per pack, then compiled (CUDA graphs) at K = 1 and the best K.
4. ``campaign``: 20 cells through ``run_campaign`` with ``--pack auto``.
5. ``projection``: hours of the 1,000-cell BU-3DFE campaign and of ``fer3d-reproduce all``.

``--budget`` seconds (default 330: the whole script within 6 minutes of a machine): a stage
that would not fit in what is left is skipped and named. Imports only torch, torchvision,
h5py, numpy, click and fer3d (no open3d, trimesh, dlib or ray).

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out gpu.json          # CUDA, <= 6 min
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --size 32 --packs 1 2 \\
        --batch 4 --cells 2 --subjects 2 --epochs 2 --epoch-samples 8 \
        --variant texture_only --no-compile                             # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _emit import emit  # noqa: E402
from _packing import pack_trainer, sync  # noqa: E402
from bench_campaign import gflop_per_sample  # noqa: E402
from bench_loader import fabricate_shard  # noqa: E402

from fer3d.campaign.run import run_campaign  # noqa: E402
from fer3d.paper.catalog import target_variants  # noqa: E402
from fer3d.settings import TrainConfig  # noqa: E402
from fer3d.train.runtime import configure, resolve_amp, resolve_device  # noqa: E402
from fer3d.train.sources import DeviceData  # noqa: E402
from fer3d_data.shard_index import read_shard_index  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks by SKU, TFLOP/s, from the vendors' data sheets;
# the first pattern that matches torch's device name wins (GH200 before H200, NVL and PCIe
# before the SXM part, whose name is plain "H100 80GB HBM3" / "H200").
PEAKS = [(r"GH200", "GH200", 989.0), (r"H200 NVL", "H200 NVL", 835.5),
         (r"H200", "H200 SXM", 989.0), (r"H100 NVL", "H100 NVL", 835.5),
         (r"H100.*PCIe", "H100 PCIe", 756.0), (r"H100", "H100 SXM", 989.0),
         (r"B200", "B200", 2250.0), (r"A100", "A100", 312.0), (r"L40S", "L40S", 362.0),
         (r"L40\b", "L40", 181.0), (r"A10\b", "A10", 125.0),
         (r"RTX 6000 Ada", "RTX 6000 Ada", 364.2), (r"RTX 4090", "RTX 4090", 165.2),
         (r"RTX 3070 Ti", "RTX 3070 Ti", 43.5), (r"RTX 3070", "RTX 3070", 40.6)]
# The paper's BU-3DFE protocol: 60 subjects x 12 samples, 10 folds, 100 repeats, 30 epochs;
# Bosphorus: 60 x 6, half the training samples per cell.
CAMPAIGN = {"cells": 1000, "train_samples": 648, "epochs": 30, "bosphorus_share": 324 / 648}
# Rough seconds each stage needs on an H200 (compile: two torch.compile graphs).
STAGE_NEEDS = {"data": 40, "step": 60, "compiled": 150, "campaign": 60}


def peak_for(name: str) -> dict | None:
    """The SKU and dense bf16 peak of the GPU torch names ``name``; None if unknown."""
    for pattern, sku, tflops in PEAKS:
        if re.search(pattern, name):
            return {"device_name": name, "sku": sku, "bf16_dense_tflops": tflops}
    return None


class Run:
    """The result so far, written after every stage; the budget left."""

    def __init__(self, out: str | None, budget: float):
        self.result, self.out, self.t0, self.budget = {"errors": {}, "skipped": []}, out, \
            time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def stage(self, name: str, fn, *args) -> None:
        if self.left() < STAGE_NEEDS.get(name, 0):
            self.result["skipped"].append(f"{name} (needs ~{STAGE_NEEDS[name]} s, "
                                          f"{self.left():.0f} s left)")
        else:
            try:
                self.result.update(fn(*args) or {})
            except Exception as exc:  # noqa: BLE001 (recorded; the next stage still runs)
                self.result["errors"][name] = f"{type(exc).__name__}: {exc}"
        self.result["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        print(json.dumps({"partial": True, "after": name, **self.result}), file=sys.stderr,
              flush=True)
        if self.out:
            with open(self.out, "w", encoding="utf-8") as fh:
                json.dump({"partial": True, **self.result}, fh, indent=1)


def machine_stage(args, device: torch.device) -> dict:
    out = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
           "variant": args.variant, "image_size": args.size, "batch": args.batch}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        name = torch.cuda.get_device_name(device)
        out.update(gpu=name, gpu_memory_gb=round(props.total_memory / 1e9, 1),
                   multiprocessors=props.multi_processor_count, peak=peak_for(name))
    if args.peak_tflops:
        out["peak"] = {"device_name": out.get("gpu", str(device)), "sku": "given",
                       "bf16_dense_tflops": args.peak_tflops}
    out.setdefault("peak", None)
    print(f"peak: {out['peak'] or 'no known SKU: pass --peak-tflops for MFU'}",
          file=sys.stderr, flush=True)
    return out


def data_stage(args, device: torch.device, tmp: str, state: dict) -> dict:
    t0 = time.perf_counter()
    state["shard"] = fabricate_shard(os.path.join(tmp, "bu3dfe.h5"), 12 * args.subjects,
                                     args.size)
    made = time.perf_counter() - t0
    index = read_shard_index([state["shard"]])
    t1 = time.perf_counter()
    state["data"] = DeviceData(index, np.arange(len(index)), device)
    sync(device)
    return {"fabricate_s": round(made, 1), "decode_to_device_s":
            round(time.perf_counter() - t1, 1), "samples": len(index),
            "gflop_per_sample": gflop_per_sample(args.variant, args.size, device)}


def _time(args, state, device, amp, k: int, mode: str | None) -> dict:
    """Samples/s of K packed cells, first epoch (warm-up, autotune, compile) apart."""
    rows = np.arange(min(args.epoch_samples, len(state["data"].rows)))
    epoch = pack_trainer(state["data"], rows, variant=args.variant, size=args.size,
                         batch=args.batch, k=k, device=device, amp=amp, compile_mode=mode)
    t0 = time.perf_counter()
    epoch()
    warm = time.perf_counter() - t0
    rates = [epoch() for _ in range(args.timed_epochs)]
    return {"sps": round(float(np.median(rates)), 1), "first_epoch_s": round(warm, 1)}


def _mfu(result: dict, sps: float) -> float | None:
    peak = (result.get("peak") or {}).get("bf16_dense_tflops")
    return round(sps * result["gflop_per_sample"] / (peak * 1e3), 4) if peak else None


def step_stage(args, state, device, amp, result: dict, compiled: bool) -> dict:
    """eager K = --packs (or compiled: K = 1 and the best eager K), samples/s and MFU."""
    eager = result.get("step", {})
    packs = args.packs if not compiled else sorted({1, max(
        eager, key=lambda k: eager[k]["sps"], default="1")}, key=int)
    out = {}
    for k in map(int, packs):
        mode = ("reduce-overhead" if device.type == "cuda" else "default") if compiled else None
        out[str(k)] = {**_time(args, state, device, amp, k, mode)}
        out[str(k)]["mfu"] = _mfu(result, out[str(k)]["sps"])
        torch.cuda.empty_cache() if device.type == "cuda" else None
    return {"compiled" if compiled else "step": out}


def campaign_config(shard: str, out: str, args, device: torch.device) -> TrainConfig:
    """The mini-campaign's settings: --pack auto on ``device`` (e.g. "cuda:0")."""
    folds = min(10, args.subjects)
    return TrainConfig(shards=[shard], out=out, folds=folds, repeats=-(-args.cells // folds),
                       cells=f"0-{args.cells - 1}", subjects=args.subjects, epochs=args.epochs,
                       batch_size=args.batch, image_size=args.size, device=str(device),
                       variant=args.variant, keep="none", progress=False, pack=None)


def campaign_stage(args, state, device, tmp: str) -> dict:
    """Wall time of ``--cells`` cells and the engine's own per-epoch times."""
    cfg = campaign_config(state["shard"], os.path.join(tmp, "run"), args, device)
    t0 = time.perf_counter()
    run_campaign(cfg)
    wall = time.perf_counter() - t0
    folds = [json.load(open(os.path.join(cfg.out, "cells", c, "fold.json"), encoding="utf-8"))
             for c in sorted(os.listdir(os.path.join(cfg.out, "cells")))]
    steady, train, trained = [], 0.0, []
    for rec in folds:
        cell = os.path.join(cfg.out, "cells", f"r{rec['repeat']}_f{rec['fold']}", "epochs.csv")
        rows = _epochs(cell)
        times = [r["time"] for r in rows]
        train += sum(times) / rec["pack"]
        steady += [t / rec["pack"] for t in times[1:]] or [times[0] / rec["pack"]]
        trained.append(rows[0]["samples_per_s"] * rows[0]["time"])  # after the dropped batch
    return {"campaign": {"cells": len(folds), "epochs": args.epochs, "wall_s": round(wall, 1),
                         "pack": max(r["pack"] for r in folds), "train_s": round(train, 1),
                         "cell_epoch_s": float(np.mean(steady)),
                         "cell_epoch_samples": round(float(np.mean(trained))),
                         "overhead_per_cell_s": max(0.0, (wall - train) / len(folds))}}


def _epochs(path: str) -> list[dict[str, float]]:
    """A cell's epochs.csv: time and samples_per_s of each epoch."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(row[k]) for k in ("time", "samples_per_s")}
                for row in csv.DictReader(fh)]


def projection(args, device, result: dict) -> dict:
    """Hours of the paper's campaigns at the mini-campaign's steady rate per training
    sample (variants other than AFNet-M scaled by their FLOPs: an estimate)."""
    camp = result["campaign"]
    cell_s = camp["cell_epoch_s"] * CAMPAIGN["epochs"] * CAMPAIGN["train_samples"] / (
        camp["cell_epoch_samples"]) + camp["overhead_per_cell_s"]
    bu3dfe = cell_s * CAMPAIGN["cells"] / 3600
    units = sum(gflop_per_sample(v, args.size, device) for v in target_variants("all")) / \
        result["gflop_per_sample"]
    return {"projected_bu3dfe_hours": round(bu3dfe, 2),
            "projected_reproduce_all_hours": round(
                bu3dfe * units * (1 + CAMPAIGN["bosphorus_share"]), 2),
            "reproduce_all_afnet_units": round(units, 2)}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--variant", default="afnet_m")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--packs", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--epoch-samples", type=int, default=648, help="training samples per cell")
    p.add_argument("--timed-epochs", type=int, default=2)
    p.add_argument("--subjects", type=int, default=60, help="fabricated shard: 12 samples each")
    p.add_argument("--cells", type=int, default=20, help="mini-campaign cells")
    p.add_argument("--epochs", type=int, default=6, help="mini-campaign epochs per cell")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--peak-tflops", type=float, default=None, help="when the GPU is unknown")
    p.add_argument("--budget", type=float, default=330.0, help="seconds for every stage")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    device = resolve_device(args.device)
    configure(device)
    amp = resolve_amp("auto", device)
    run, state = Run(args.out, args.budget), {}
    with tempfile.TemporaryDirectory() as tmp:
        run.stage("machine", machine_stage, args, device)
        run.result["amp"] = amp.name
        run.stage("data", data_stage, args, device, tmp, state)
        run.stage("step", step_stage, args, state, device, amp, run.result, False)
        if args.compile:
            run.stage("compiled", step_stage, args, state, device, amp, run.result, True)
        state.pop("data", None)
        run.stage("campaign", campaign_stage, args, state, device, tmp)
        run.stage("projection", projection, args, device, run.result)
    return emit(run.result, args.out, device)


if __name__ == "__main__":
    main()
