"""ShardDataset + DataLoader throughput with training augmentation, beside the training step
it feeds.

Stage: training input pipeline (docs/performance.md). Fabricates a schema-conforming shard
(gzip + shuffle, one sample per chunk, as fer3d-prep writes), then, in turn for ``--rounds``
rounds (ABAB...: the same load for both), times one epoch of the engine's training loader
and the engine's training step (fer3d.train.step.train_epoch, its defaults) on ``--steps``
of that loader's batches: the same-run reference the target names (loader >= 10x the
step, so the loader never holds training up). Steady state: a warm-up epoch (worker
start-up, first file opens) and warm-up steps come first. Prints JSON {"loader_sps",
"train_step_sps", "loader_vs_train_step", ...}: best round, and the rounds' range.

    .venv/bin/python benchmarks/bench_loader.py --workers 2 --n 96
    .venv/bin/python benchmarks/bench_loader.py --smoke     # tiny sizes: does it run
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time

import h5py
import numpy as np
import torch
from _emit import emit, interleaved
from bench_train import engine_trainer

from fer3d.train.runtime import resolve_amp
from fer3d.train.sources import LoaderSource
from fer3d.train.transforms import Augment
from fer3d_data.schema import CLASS_NAMES, FORMAT, FORMAT_VERSION
from fer3d_data.shard_index import read_shard_index

TARGET_VS_STEP = 10.0
SMOKE = {"n": 24, "size": 32, "batch": 4, "workers": 1, "steps": 1, "rounds": 2}


def fabricate_shard(path: str, n: int, size: int, seed: int = 0) -> str:
    """A shard of ``n`` random-but-smooth samples with the production storage settings."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    comp = dict(compression="gzip", shuffle=True, fletcher32=True)
    with h5py.File(path, "w") as f:
        f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, dataset="bu3dfe",
                       image_size=size, class_names=list(CLASS_NAMES), depth_units="mm")
        f["config"] = "{}"
        tex = f.create_dataset("texture", (n, size, size, 3), np.uint8,
                               chunks=(1, size, size, 3), **comp)
        dep = f.create_dataset("depth", (n, size, size), np.float32, chunks=(1, size, size),
                               **comp)
        cov = f.create_dataset("coverage", (n, size, size), bool, chunks=(1, size, size),
                               **comp)
        m56 = f.create_dataset("mask56", (n, 56, 56), np.float16, chunks=(1, 56, 56), **comp)
        for i in range(n):
            base = 60.0 * np.sin(xx * (3 + i % 5)) * np.cos(yy * 2)
            noise = rng.normal(0, 6, (size, size, 3))
            tex[i] = np.clip(128 + base[..., None] + noise, 0, 255).astype(np.uint8)
            dep[i] = (40 * (1 - (xx - .5) ** 2 - (yy - .5) ** 2) + rng.normal(0, .3, xx.shape))
            cov[i] = (xx - .5) ** 2 + (yy - .5) ** 2 < 0.2
            m56[i] = (rng.random((56, 56)) > 0.7).astype(np.float16)
        g = f.create_group("index")
        g["sample_id"] = np.array([f"F{i // 12:04d}_S{i:04d}" for i in range(n)], "S64")
        g["subject"] = np.array([f"F{i // 12:04d}" for i in range(n)], "S16")
        g["expression"] = (np.arange(n) % 6).astype(np.int8)
        # subjects of 12: six expressions at intensities 3 and 4 (complete for the protocol)
        g["intensity"] = np.where(np.arange(n) % 12 < 6, 3, 4).astype(np.int8)
        g["source"] = np.array([f"s{i}.wrl" for i in range(n)], "S256")
        g["mask_source"] = np.zeros(n, np.int8)
    return path


def item_ms(src: LoaderSource, n: int) -> float:
    """Milliseconds per augmented sample read in this process (no worker)."""
    t = time.perf_counter()
    for i in range(n):
        src.train_ds[(i, i)]
    return 1000 * (time.perf_counter() - t) / n


def measure(path: str, args) -> dict:
    cpu = torch.device("cpu")
    src = LoaderSource(read_shard_index([path]), np.arange(args.n), args.size, args.batch,
                       Augment(), args.workers, cpu)
    step = engine_trainer(args.variant, cpu, resolve_amp("auto", cpu))
    batches = list(src.train_batches(0))  # warm-up epoch: worker start-up, first opens
    step(batches[:2])
    step_batches = [batches[i % len(batches)] for i in range(args.steps)]
    step_samples = sum(b[3].shape[0] for b in step_batches)
    seeds = itertools.count(1)  # a new epoch (order, augmentation) every round
    (loader_t, seen), (step_t, _) = interleaved(
        [lambda: sum(b[3].shape[0] for b in src.train_batches(next(seeds))),
         lambda: step(step_batches)], args.rounds)
    loader = [seen / t for t in loader_t]
    train = [step_samples / t for t in step_t]
    ratios = [a / b for a, b in zip(loader, train)]
    result = {"loader_sps": round(max(loader), 2),
              "loader_sps_range": [round(min(loader), 2), round(max(loader), 2)],
              "train_step_sps": round(max(train), 3),
              "loader_vs_train_step": round(max(loader) / max(train), 2),
              "loader_vs_train_step_range": [round(min(ratios), 2), round(max(ratios), 2)],
              "samples_per_epoch": seen, "single_process_item_ms":
              round(item_ms(src, min(32, args.n)), 2)}
    src.close()
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=96, help="samples in the fabricated shard")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variant", default="afnet_m", help="the model of the training step")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds of loader and step in turn")
    p.add_argument("--smoke", action="store_true", help=f"tiny sizes: {SMOKE}")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    with tempfile.TemporaryDirectory() as tmp:
        path = fabricate_shard(os.path.join(tmp, "bench.h5"), args.n, args.size)
        result = {"workers": args.workers, "batch": args.batch, "image_size": args.size,
                  "variant": args.variant, "steps": args.steps, "rounds": args.rounds,
                  **measure(path, args), "target_vs_train_step": TARGET_VS_STEP}
    return emit(result, args.out, torch.device("cpu"))


if __name__ == "__main__":
    main()
