"""AFNet-M training throughput on this machine: our engine's step vs a plain fp32 loop.

Stage: training performance (docs/performance.md). Both run the same model, batch and
inputs in one process, one after the other: ``naive`` is a textbook fp32 loop (contiguous
tensors, no autocast); ``ours`` is fer3d.train.step.train_epoch with the engine's defaults
(``--amp auto`` resolved for this device, channels_last, foreach/fused Adam, no host
sync per step). Prints JSON:
{"naive_fp32_sps", "ours_sps", "speedup", ...}.

    .venv/bin/python benchmarks/bench_train.py --size 224 --batch 8 --steps 3
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _emit import emit

from fer3d.models import create_model
from fer3d.train.runtime import AmpMode, make_optimizer, resolve_amp, resolve_device
from fer3d.train.step import train_epoch


def fake_batches(n: int, batch: int, size: int, seed: int = 0, device="cpu") -> list[tuple]:
    """(texture, depth, mask, labels, positions) batches, as the engine's sources give."""
    g = torch.Generator().manual_seed(seed)
    return [tuple(t.to(device) for t in (
        torch.randn(batch, 3, size, size, generator=g),
        torch.randn(batch, 3, size, size, generator=g),
        torch.rand(batch, 1, size // 4, size // 4, generator=g),
        torch.randint(0, 6, (batch,), generator=g), torch.arange(batch))) for _ in range(n)]


def naive_sps(variant: str, batches: list[dict], warmup: int, device) -> float:
    torch.manual_seed(0)
    model = create_model(variant).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    seen, t0 = 0, 0.0
    for i, b in enumerate(batches):
        if i == warmup:
            t0, seen = time.perf_counter(), 0
        tex, dep, mask, labels, _ = (t.to(device) for t in b)
        loss = F.cross_entropy(model(tex, dep, mask), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # the textbook loop logs its loss every step
        seen += labels.shape[0]
    return seen / (time.perf_counter() - t0)


def ours_sps(variant: str, batches: list[dict], warmup: int, device, amp: AmpMode,
             channels_last: bool) -> float:
    torch.manual_seed(0)
    model = create_model(variant).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), 1e-4, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp.scaler)
    train_epoch(model, batches[:warmup], opt, scaler, amp, device,
                channels_last=channels_last, where="warm-up")
    stats = train_epoch(model, batches[warmup:], opt, scaler, amp, device,
                        channels_last=channels_last, where="bench")
    return stats["samples_per_s"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="afnet_m")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--also-bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="also time forced bf16 when auto resolves to fp32 here")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    amp = resolve_amp("auto", device)
    batches = fake_batches(args.warmup + args.steps, args.batch, args.size)
    result = {"variant": args.variant, "image_size": args.size, "batch": args.batch,
              "steps": args.steps, "device": str(device), "threads": torch.get_num_threads(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "ours_amp": amp.name, "ours_channels_last": True}
    result["naive_fp32_sps"] = naive_sps(args.variant, batches, args.warmup, device)
    result["ours_sps"] = ours_sps(args.variant, batches, args.warmup, device, amp, True)
    result["speedup"] = result["ours_sps"] / result["naive_fp32_sps"]
    if args.also_bf16 and amp.dtype is None:
        result["forced_bf16_sps"] = ours_sps(args.variant, batches, args.warmup, device,
                                             AmpMode(torch.bfloat16), True)
        result["forced_bf16_speedup"] = result["forced_bf16_sps"] / result["naive_fp32_sps"]
    return emit(result, args.out)


if __name__ == "__main__":
    main()
