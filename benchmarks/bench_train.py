"""AFNet-M training throughput on this machine: our engine's step vs a plain fp32 loop.

Stage: training performance (docs/performance.md). Both train the same model on the same
batches in one process, in turn (ABAB..., ``--rounds`` rounds: the same load for both):
``naive`` is a textbook fp32 loop (contiguous tensors, no autocast, the loss read every
step) and the same-run reference; ``ours`` is fer3d.train.step.train_epoch with the
engine's defaults (``--amp auto`` resolved for this device, channels_last, foreach/fused
Adam, no host sync per step). Steady state: each first trains ``--warmup`` untimed steps
(allocations, oneDNN primitive creation). Figures are the best round; ``*_range`` the
rounds' spread. Prints JSON: {"naive_fp32_sps", "ours_sps", "ours_speedup", ...}.

    .venv/bin/python benchmarks/bench_train.py --size 224 --batch 8 --steps 3
    .venv/bin/python benchmarks/bench_train.py --smoke     # tiny sizes: does it run
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _emit import emit, interleaved

from fer3d.models import create_model
from fer3d.train.runtime import AmpMode, make_optimizer, resolve_amp, resolve_device
from fer3d.train.step import train_epoch

SMOKE = {"size": 32, "batch": 2, "steps": 1, "warmup": 1, "rounds": 2}


def fake_batches(n: int, batch: int, size: int, seed: int = 0, device="cpu") -> list[tuple]:
    """(texture, depth, mask, labels, positions) batches, as the engine's sources give."""
    g = torch.Generator().manual_seed(seed)
    return [tuple(t.to(device) for t in (
        torch.randn(batch, 3, size, size, generator=g),
        torch.randn(batch, 3, size, size, generator=g),
        torch.rand(batch, 1, size // 4, size // 4, generator=g),
        torch.randint(0, 6, (batch,), generator=g), torch.arange(batch))) for _ in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive_trainer(variant: str, device):
    """A textbook fp32 loop over a list of batches (the reference)."""
    torch.manual_seed(0)
    model = create_model(variant).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train(batches):
        for tex, dep, mask, labels, _ in batches:
            loss = F.cross_entropy(model(tex, dep, mask), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the textbook loop logs its loss every step
    return train


def engine_trainer(variant: str, device, amp: AmpMode, channels_last: bool = True):
    """The engine's epoch (fer3d.train.step.train_epoch) over a list of batches."""
    torch.manual_seed(0)
    model = create_model(variant).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), 1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp.scaler)

    def train(batches):
        train_epoch(model, batches, opt, scaler, amp, device, channels_last=channels_last)
        _sync(device)
    return train


def compare(trainers: dict, batches: list, warmup: int, rounds: int) -> dict:
    """Samples/s of each trainer over the same timed batches after its warm-up steps, in
    turn for ``rounds`` rounds: best round, the rounds' range, and each over the first's."""
    warm, timed = batches[:warmup], batches[warmup:]
    for train in trainers.values():
        train(warm)
    samples = sum(b[3].shape[0] for b in timed)
    times = [t for t, _ in interleaved([lambda f=f: f(timed) for f in trainers.values()],
                                       rounds)]
    ref, out = times[0], {}
    for i, (name, t) in enumerate(zip(trainers, times)):
        out[f"{name}_sps"] = round(samples / min(t), 3)
        out[f"{name}_sps_range"] = [round(samples / max(t), 3), round(samples / min(t), 3)]
        if i:  # over the reference, per round (same load) and best over best
            ratios = [r / x for r, x in zip(ref, t)]
            out[f"{name}_speedup"] = round(min(ref) / min(t), 3)
            out[f"{name}_speedup_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="afnet_m")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per mode first")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the modes in turn")
    p.add_argument("--device", default="auto")
    p.add_argument("--also-bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="also time forced bf16 when auto resolves to fp32 here")
    p.add_argument("--smoke", action="store_true", help=f"tiny sizes: {SMOKE}")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)

    device = resolve_device(args.device)
    amp = resolve_amp("auto", device)
    trainers = {"naive_fp32": naive_trainer(args.variant, device),
                "ours": engine_trainer(args.variant, device, amp)}
    if args.also_bf16 and amp.dtype is None:
        trainers["forced_bf16"] = engine_trainer(args.variant, device, AmpMode(torch.bfloat16))
    batches = fake_batches(args.warmup + args.steps, args.batch, args.size, device=device)
    result = {"variant": args.variant, "image_size": args.size, "batch": args.batch,
              "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
              "ours_amp": amp.name, "ours_channels_last": True,
              **compare(trainers, batches, args.warmup, args.rounds)}
    return emit(result, args.out, device)


if __name__ == "__main__":
    main()
