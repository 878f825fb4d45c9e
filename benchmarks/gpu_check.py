"""One short, ready script for a CUDA machine: is the campaign engine fast enough there?

Stage: training performance (docs/performance.md, docs/cluster.md). Prints JSON with the
training step's samples/s and MFU (bf16 dense peak of the GPU) at batch 32/64/128 (eager,
and compiled with ``--compile``), the device-resident data path's samples/s, a 10-cell
mini-campaign's wall time on a fabricated 720-sample shard, and the projected hours of the
1,000-cell BU-3DFE campaign (648 training samples x 30 epochs per cell). Targets on one
H200-class GPU: >= 35 % bf16 MFU, the full campaign in <= 1 hour.

    python benchmarks/gpu_check.py                       # CUDA, ~3-5 minutes
    python benchmarks/gpu_check.py --parallel-cells 4     # four cells share the GPU
    python benchmarks/gpu_check.py --device cpu --size 32 --batches 4 --subjects 4 \\
        --cells 2 --epochs 1 --steps 1                    # smoke test (the test suite's)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _emit import emit  # noqa: E402
from bench_campaign import (  # noqa: E402
    campaign_seconds,
    data_sps,
    gflop_per_sample,
    machine,
    train_sps,
)
from bench_loader import fabricate_shard  # noqa: E402

from fer3d.train.runtime import resolve_device  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "B200": 2250.0,
                    "A100": 312.0, "L40S": 362.0, "L40": 181.0, "A10": 125.0,
                    "RTX 4090": 165.0, "RTX 6000 Ada": 364.0, "V100": 125.0}
# The paper's BU-3DFE protocol: 60 subjects x 12 samples, 10 folds, 100 repeats, 30 epochs.
CAMPAIGN = {"cells": 1000, "train_samples": 648, "epochs": 30}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def step_figures(args, device, gflop: float, peak: float | None) -> dict:
    out = {}
    modes = [False, True] if args.compile else [False]
    for batch in args.batch_sizes:
        for compiled in modes:
            sps = train_sps(args.variant, args.size, batch, device, steps=args.steps,
                            compile=compiled)
            key = f"b{batch}{'_compiled' if compiled else ''}"
            out[f"train_sps_{key}"] = sps
            if peak:
                out[f"mfu_{key}"] = sps * gflop / (peak * 1e3)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--variant", default="afnet_m")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--steps", type=int, default=20, help="timed steps per batch size")
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--subjects", type=int, default=60, help="fabricated shard: 12 samples each")
    p.add_argument("--cells", type=int, default=10, help="mini-campaign cells (>= 2)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batches", type=int, default=32, help="campaign batch size")
    p.add_argument("--parallel-cells", type=int, default=1)
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="bf16 dense peak when the GPU is not in the table")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    peak = peak_tflops(device, args.peak_tflops)
    gflop = gflop_per_sample(args.variant, args.size, device)
    result = {**machine(device), "variant": args.variant, "image_size": args.size,
              "gflop_per_sample": gflop, "peak_bf16_tflops": peak}
    result.update(step_figures(args, device, gflop, peak))
    folds = min(10, args.subjects)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        shard = fabricate_shard(os.path.join(tmp, "bu3dfe.h5"), 12 * args.subjects, args.size)
        result["fabricate_s"] = time.perf_counter() - t0
        result["device_data_sps"] = data_sps(shard, args.size, max(args.batch_sizes), device,
                                             on_device=True, workers=0)
        settings = dict(folds=folds, repeats=-(-args.cells // folds), subjects=args.subjects,
                        epochs=args.epochs, batch_size=args.batches, image_size=args.size,
                        device=str(device), parallel_cells=args.parallel_cells)
        # one cell, then all: the difference is the cells' cost without the one-time setup
        # (index, samples onto the GPU, process start) that 1,000 cells amortise
        one = campaign_seconds(shard, os.path.join(tmp, "one"), cells="0", **settings)
        secs = campaign_seconds(shard, os.path.join(tmp, "run"), cells=f"0-{args.cells - 1}",
                                **settings)
    per_cell = (secs - one) / max(args.cells - 1, 1)
    result.update({"campaign_cells": args.cells, "campaign_epochs": args.epochs,
                   "campaign_wall_s": secs, "one_cell_wall_s": one,
                   "seconds_per_cell": per_cell,
                   "projected_bu3dfe_hours": per_cell * CAMPAIGN["cells"] * CAMPAIGN["epochs"]
                   / args.epochs / 3600})
    return emit(result, args.out)


if __name__ == "__main__":
    main()
