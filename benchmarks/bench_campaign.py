"""The campaign engine on this machine, side by side in one run: data paths, the training
step, and a tiny campaign with the old settings and the new defaults.

Stage: training performance (docs/performance.md). Prints JSON:

- ``loader_sps``: the per-sample ShardDataset + DataLoader path (all cores as workers),
  ``device_data_sps``: device-resident batches incl. augmentation (same cores),
  ``auto_picks`` and ``data_speedup`` = the picked path over the other (>= 1: auto never
  picks the slower one);
- ``train_sps``, ``gflop_per_sample`` (forward + backward, counted by torch's
  FlopCounterMode), ``achieved_gflops``;
- ``campaign_old_s`` (per-sample loader, a full checkpoint every epoch kept, a host sync
  every step) vs ``campaign_new_s`` (the defaults) for 4 cells x 2 epochs at small images,
  and ``campaign_speedup``.

    .venv/bin/python benchmarks/bench_campaign.py [--size 224] [--device cpu]
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
from _emit import emit  # noqa: E402
from bench_loader import fabricate_shard  # noqa: E402
from bench_train import fake_batches  # noqa: E402

from fer3d.campaign.run import run_campaign  # noqa: E402
from fer3d.models import create_model  # noqa: E402
from fer3d.settings import TrainConfig  # noqa: E402
from fer3d.train.runtime import make_optimizer, resolve_amp, resolve_device  # noqa: E402
from fer3d.train.sources import (  # noqa: E402
    DeviceData,
    LoaderSource,
    make_source,
    use_device_data,
)
from fer3d.train.step import place_model, train_epoch  # noqa: E402
from fer3d.train.transforms import Augment  # noqa: E402
from fer3d_data.shard_index import read_shard_index  # noqa: E402


def machine(device: torch.device) -> dict:
    """What the figures ran on: CPU capability (probed), threads, GPU name."""
    info = {"device": str(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    _sync(device)
    secs = time.perf_counter() - t0
    if isinstance(src, LoaderSource):
        src.close()
    return seen / secs


def gflop_per_sample(variant: str, size: int, device: torch.device) -> float:
    """Forward + backward GFLOP of one training sample (FlopCounterMode, batch 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(variant).to(device).train()
    tex, dep, mask, labels, _ = fake_batches(1, 2, size, device=device)[0]
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(tex, dep, mask), labels).backward()
    return counter.get_total_flops() / 2 / 1e9


def train_sps(variant: str, size: int, batch: int, device: torch.device, *, steps: int,
              warmup: int = 2, compile: bool = False) -> float:
    """Samples/s of the engine's step with its defaults for ``device``."""
    torch.manual_seed(0)
    model = place_model(create_model(variant), device, True)
    run = torch.compile(model) if compile else model
    opt = make_optimizer(model.parameters(), 1e-4, device)
    amp = resolve_amp("auto", device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp.scaler)
    batches = fake_batches(warmup + steps, batch, size, device=device)
    train_epoch(run, batches[:warmup], opt, scaler, amp, device, channels_last=True,
                where="warm-up")
    _sync(device)
    t0 = time.perf_counter()
    train_epoch(run, batches[warmup:], opt, scaler, amp, device, channels_last=True,
                where="bench")
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


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
    p.add_argument("--steps", type=int, default=2, help="timed training steps")
    p.add_argument("--campaign-size", type=int, default=32, help="tiny campaign image size")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    workers = max(1, os.cpu_count() or 1)
    result = {**machine(device), "variant": args.variant, "image_size": args.size,
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
        result["gflop_per_sample"] = gflop_per_sample(args.variant, args.size, device)
        result["train_sps"] = train_sps(args.variant, args.size, args.batch, device,
                                        steps=args.steps)
        result["achieved_gflops"] = result["train_sps"] * result["gflop_per_sample"]

        small = fabricate_shard(os.path.join(tmp, "small.h5"), 48, args.campaign_size)
        tiny = dict(variant=args.variant, folds=2, repeats=2, subjects=4, epochs=2,
                    batch_size=12, image_size=args.campaign_size, device=str(device),
                    workers=min(2, workers))
        result["campaign_old_s"] = campaign_seconds(small, os.path.join(tmp, "old"),
                                                    **tiny, **OLD_WAY)
        result["campaign_new_s"] = campaign_seconds(small, os.path.join(tmp, "new"), **tiny)
        result["campaign_speedup"] = result["campaign_old_s"] / result["campaign_new_s"]
    return emit(result, args.out)


if __name__ == "__main__":
    main()
