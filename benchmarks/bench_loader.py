"""ShardDataset + DataLoader throughput at 224 with training augmentation.

Stage: training input pipeline (docs/performance.md). Fabricates a schema-conforming
224x224 shard (gzip + shuffle, one sample per chunk, as fer3d-prep writes), then times
full epochs of the engine's training loader. Prints JSON {"loader_sps", ...}; compare
with bench_train.py's "ours_sps" (target: loader >= 10x the training step).

    .venv/bin/python benchmarks/bench_loader.py --workers 2 --n 96
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import h5py
import numpy as np
import torch
from _emit import emit

from fer3d.train.sources import LoaderSource
from fer3d.train.transforms import Augment
from fer3d_data.schema import CLASS_NAMES, FORMAT, FORMAT_VERSION
from fer3d_data.shard_index import read_shard_index


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


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=96, help="samples in the fabricated shard")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = fabricate_shard(os.path.join(tmp, "bench.h5"), args.n, args.size)
        index = read_shard_index([path])
        src = LoaderSource(index, np.arange(args.n), args.size, args.batch, Augment(),
                           args.workers, torch.device("cpu"))
        for _ in src.train_batches(0):  # warm-up: worker start-up and first file opens
            pass
        seen, t0 = 0, time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            for batch in src.train_batches(epoch):
                seen += batch[3].shape[0]
        secs = time.perf_counter() - t0
        t1 = time.perf_counter()
        for i in range(min(32, args.n)):
            src.train_ds[(i, i)]
        item_ms = 1000 * (time.perf_counter() - t1) / min(32, args.n)
        src.close()
        del src
    result = {"loader_sps": seen / secs, "workers": args.workers, "batch": args.batch,
              "image_size": args.size, "samples": seen, "seconds": secs,
              "single_process_item_ms": item_ms}
    return emit(result, args.out)


if __name__ == "__main__":
    main()
