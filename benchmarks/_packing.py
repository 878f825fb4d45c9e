"""Shared by bench_campaign.py and gpu_check.py: K cells' training through the engine's real
data path (samples resident on the device, augmentation in batches, packed steps), timed.

Stage: training performance (docs/performance.md). :func:`pack_trainer` builds what one
process of a campaign builds (a network packed K ways, fused Adam, per-cell sources) and
returns a callable that trains one epoch of every cell and returns samples/s over all K.
"""

from __future__ import annotations

import numpy as np
import torch

from fer3d.models import create_model
from fer3d.models.packed import pack_models
from fer3d.train.runtime import AmpMode, make_optimizer
from fer3d.train.sources import DeviceData, DeviceSource, pack_batches
from fer3d.train.step import place_model, train_epoch
from fer3d.train.transforms import Augment


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pack_trainer(data: DeviceData, rows: np.ndarray, *, variant: str, size: int, batch: int,
                 k: int, device: torch.device, amp: AmpMode, compile_mode: str | None = None):
    """A callable: one epoch of ``k`` packed cells (each on ``rows`` with its own draws)
    -> samples/s over all cells, the host waiting for the device at the end."""
    sources = [DeviceSource(data, rows, size, batch, Augment()) for _ in range(k)]
    with torch.device("meta"):
        template = create_model(variant)
    torch.manual_seed(0)
    state = create_model(variant).state_dict()
    raw = place_model(pack_models([state] * k, template, device), device, True)
    runner = torch.compile(raw, mode=compile_mode) if compile_mode else raw
    optimizer = make_optimizer(raw.parameters(), 1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp.scaler)
    epoch = [0]

    def one_epoch() -> float:
        epoch[0] += 1
        batches = pack_batches(sources, [1000 * epoch[0] + i for i in range(k)])
        stats, _ = train_epoch(runner, batches, optimizer, scaler, amp, device, cells=k,
                               channels_last=True)
        return k * stats[0]["samples_per_s"]
    return one_epoch
