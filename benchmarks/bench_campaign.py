"""The campaign engine on this machine, side by side in one run: data paths, cells alone
against cells packed, and a tiny campaign with the old settings and the new defaults.

Stage: training performance (docs/performance.md). Prints JSON:

- ``loader_sps``: the per-sample ShardDataset + DataLoader path (all cores as workers),
  ``device_data_sps``: device-resident batches incl. augmentation (same cores),
  ``auto_picks`` and ``data_speedup`` = the picked path over the other (>= 1: auto never
  picks the slower one);
- ``lone_sps`` (= ``train_sps``) and ``packed_sps``: training samples/s of one cell, and of
  ``--pack-k`` cells packed into one network, through the real data path, timed in turn
  for ``--rounds`` rounds (ABAB: both see the same load; best round and ``*_range``);
  ``pack_auto``: what ``--pack auto`` picks here; ``pack_speedup``: auto's choice over
  lone cells (>= 1: auto never picks the slower setting); ``packed_over_lone``;
- ``gflop_per_sample`` (forward + backward, counted by torch's FlopCounterMode on the meta
  device), ``achieved_gflops``;
- ``campaign_old_s`` (per-sample loader, a full checkpoint every epoch kept, a host sync
  every step) vs ``campaign_new_s`` (the defaults) for 4 cells x 2 epochs at small images,
  and ``campaign_speedup``.

    .venv/bin/python benchmarks/bench_campaign.py [--size 224] [--device cpu] [--pack-k 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _emit import emit, interleaved  # noqa: E402
from _packing import pack_trainer, sync  # noqa: E402
from bench_loader import fabricate_shard  # noqa: E402

from fer3d.campaign.run import run_campaign  # noqa: E402
from fer3d.models import create_model  # noqa: E402
from fer3d.settings import TrainConfig  # noqa: E402
from fer3d.train.packed import pack_size  # noqa: E402
from fer3d.train.runtime import resolve_amp, resolve_device  # noqa: E402
from fer3d.train.sources import DeviceData, make_source, use_device_data  # noqa: E402
from fer3d.train.transforms import Augment  # noqa: E402
from fer3d_data.shard_index import read_shard_index  # noqa: E402


def data_sps(shard: str, size: int, batch: int, device: torch.device, *, on_device: bool,
             workers: int, epochs: int = 2) -> float:
    """Training batches per second (in samples) of one path, after a warm-up epoch."""
    index = read_shard_index([shard])
    rows = np.arange(len(index))
    data = DeviceData(index, rows, device) if on_device else None
    src = make_source(index, rows, image_size=size, batch_size=batch, aug=Augment(),
                      workers=workers, device=device, data=data)
    for _ in src.train_batches(0):
        pass
    seen, t0 = 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        for b in src.train_batches(epoch):
            seen += b[3].shape[0]
    sync(device)
    secs = time.perf_counter() - t0
    src.close()
    return seen / secs


def gflop_per_sample(variant: str, size: int, device: torch.device | None = None) -> float:
    """Forward + backward GFLOP of one training sample (FlopCounterMode on the meta device:
    shapes only, no memory, no time; ``device`` is not needed)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = create_model(variant).train()
        inputs = (torch.rand(2, 3, size, size), torch.rand(2, 3, size, size),
                  torch.rand(2, 1, size // 4, size // 4))
        labels = torch.zeros(2, dtype=torch.int64)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(*inputs), labels).backward()
    return counter.get_total_flops() / 2 / 1e9


def lone_vs_packed(shard: str, args, device: torch.device) -> dict:
    """Samples/s of one cell and of ``--pack-k`` packed cells, timed in turn (ABAB)."""
    index = read_shard_index([shard])
    amp = resolve_amp("auto", device)
    data = DeviceData(index, np.arange(len(index)), device)
    rows = np.arange(min(len(index), args.steps * args.batch))
    epochs = {k: pack_trainer(data, rows, variant=args.variant, size=args.size,
                              batch=args.batch, k=k, device=device, amp=amp)
              for k in (1, args.pack_k)}
    for epoch in epochs.values():  # warm-up: first allocations, autotuning
        epoch()
    samples = {k: k * len(rows) // args.batch * args.batch for k in epochs}
    times = [t for t, _ in interleaved(list(epochs.values()), args.rounds)]
    out = {}
    for (k, t), name in zip(zip(epochs, times), ("lone", "packed")):
        out[f"{name}_sps"] = round(samples[k] / min(t), 3)
        out[f"{name}_sps_range"] = [round(samples[k] / max(t), 3), round(samples[k] / min(t), 3)]
    run = type("Run", (), {"device": device, "amp": amp, "data": data})()
    auto = pack_size(None, run)
    out.update(pack_k=args.pack_k, pack_auto=auto,
               packed_over_lone=round(out["packed_sps"] / out["lone_sps"], 3),
               pack_speedup=1.0 if auto == 1 else round(out["packed_sps"] / out["lone_sps"], 3))
    return out


def campaign_seconds(shard: str, out: str, **settings) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(shards=[shard], out=out, progress=False, **settings)
    t0 = time.perf_counter()
    run_campaign(cfg)
    return time.perf_counter() - t0


OLD_WAY = {"data_on_device": "off", "checkpoint_every": 1, "keep": "full", "nan_check_every": 1}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="afnet_m")
    p.add_argument("--size", type=int, default=224, help="data-path and step image size")
    p.add_argument("--n", type=int, default=96, help="samples in the fabricated shard")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=2, help="training steps per timed epoch")
    p.add_argument("--pack-k", type=int, default=2, help="cells packed against one alone")
    p.add_argument("--rounds", type=int, default=2, help="lone and packed epochs in turn")
    p.add_argument("--campaign-size", type=int, default=32, help="tiny campaign image size")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    workers = max(1, os.cpu_count() or 1)
    result = {"device": str(device), "variant": args.variant, "image_size": args.size,
              "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        shard = fabricate_shard(os.path.join(tmp, "bench.h5"), args.n, args.size)
        result["loader_sps"] = data_sps(shard, args.size, args.batch, device,
                                        on_device=False, workers=workers)
        result["device_data_sps"] = data_sps(shard, args.size, args.batch, device,
                                             on_device=True, workers=workers)
        picked = use_device_data("auto", device, args.n, args.size)
        result["auto_picks"] = "device" if picked else "loader"
        a, b = result["device_data_sps"], result["loader_sps"]
        result["data_speedup"] = a / b if picked else b / a
        result["gflop_per_sample"] = gflop_per_sample(args.variant, args.size)
        result.update(lone_vs_packed(shard, args, device))
        result["train_sps"] = result["lone_sps"]
        result["achieved_gflops"] = result["train_sps"] * result["gflop_per_sample"]

        small = fabricate_shard(os.path.join(tmp, "small.h5"), 48, args.campaign_size)
        tiny = dict(variant=args.variant, folds=2, repeats=2, subjects=4, epochs=2,
                    batch_size=12, image_size=args.campaign_size, device=str(device),
                    workers=min(2, workers))
        result["campaign_old_s"] = campaign_seconds(small, os.path.join(tmp, "old"),
                                                    **tiny, **OLD_WAY)
        result["campaign_new_s"] = campaign_seconds(small, os.path.join(tmp, "new"), **tiny)
        result["campaign_speedup"] = result["campaign_old_s"] / result["campaign_new_s"]
    return emit(result, args.out, device)


if __name__ == "__main__":
    main()
