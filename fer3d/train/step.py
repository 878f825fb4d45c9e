"""A training step, an epoch, and prediction: the model-facing half of a cell.

Stage: batches -> updated weights, logits. Paper settings (Adam, betas (0.9, 0.999), lr
1e-4 fixed, cross-entropy). A step trains K cells packed into one network (K = 1: a lone
cell; :mod:`fer3d.models.packed`), each on its own batch with its own loss. A training step
never waits for the host: losses and correct counts accumulate on the device and are read
once per epoch (a NaN check every ``nan_check_every`` steps). :func:`model_from_config` is
the one place settings become model-builder keywords.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from fer3d.errors import CheckpointError, ConfigError
from fer3d.models.packed import cell_logits, to_cells_layout
from fer3d.train.runtime import AmpMode
from fer3d_data.schema import MASKS


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, cells: int = 1) -> torch.Tensor:
    """``(B, K*C)`` logits of K packed cells, ``(K*B,)`` codes stacked cell-major -> each
    cell's mean cross-entropy ``(K,)`` in fp32 (K = 1: one cell, a 1-element tensor)."""
    per_sample = F.cross_entropy(cell_logits(logits, cells).flatten(0, 1).float(), labels,
                                 reduction="none")
    return per_sample.view(cells, -1).mean(1)


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class Totals:
    """Per-cell loss and correct-count sums of an epoch, kept on the device."""

    def __init__(self, cells: int, device: torch.device):
        self.loss = torch.zeros(cells, device=device)
        self.correct = torch.zeros(cells, dtype=torch.int64, device=device)
        self.seen = 0  # samples per cell so far


def train_step(model, batch, optimizer, scaler, amp: AmpMode, device: torch.device,
               totals: Totals, *, cells: int = 1, channels_last: bool) -> None:
    """One optimiser step of K packed cells on one batch of each (``(K*B, ...)`` tensors
    stacked cell-major); nothing in it waits for the host."""
    tex, dep, mask, labels = batch[:4]
    with amp.autocast(device):
        logits = model(_layout(to_cells_layout(tex, cells), channels_last),
                       _layout(to_cells_layout(dep, cells), channels_last),
                       to_cells_layout(mask, cells))
    losses = compute_loss(logits, labels, cells)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses.sum()).backward()  # cells share no weight: each gets its own gradient
    scaler.step(optimizer)
    scaler.update()
    b = labels.shape[0] // cells
    totals.loss += losses.detach() * b
    totals.correct += (cell_logits(logits.detach(), cells).argmax(2)
                       == labels.view(cells, b)).sum(1)
    totals.seen += b


def _nonfinite(totals: Totals, found: dict[int, str]) -> None:
    """Add the cells whose loss sum is no longer finite to ``found`` (one host read)."""
    bad = ~torch.isfinite(totals.loss)
    if bad.any():
        for k in torch.nonzero(bad).flatten().tolist():
            found.setdefault(k, f"loss is {float(totals.loss[k])} after {totals.seen} samples")


def train_epoch(model, batches, optimizer, scaler, amp: AmpMode, device: torch.device, *,
                cells: int = 1, channels_last: bool, nan_check_every: int = 0,
                bar=None) -> tuple[list[dict], dict[int, str]]:
    """One pass over ``batches`` of K packed cells: each cell's stats (loss, train_acc, time,
    samples_per_s) and, for the cells whose loss became non-finite, what was seen. The
    finite check reads the host every ``nan_check_every`` steps (0: at the end only); an
    epoch whose cells all diverged stops there."""
    model.train()
    totals, diverged, t0 = Totals(cells, device), {}, time.perf_counter()
    for step, batch in enumerate(batches, 1):
        train_step(model, batch, optimizer, scaler, amp, device, totals, cells=cells,
                   channels_last=channels_last)
        if nan_check_every and step % nan_check_every == 0:
            _nonfinite(totals, diverged)
            if len(diverged) == cells:
                break
        if bar is not None:
            bar.update(batch[3].shape[0])
    _nonfinite(totals, diverged)
    losses, correct = torch.stack([totals.loss, totals.correct.float()]).tolist()
    secs, seen = time.perf_counter() - t0, max(totals.seen, 1)
    stats = [{"loss": loss / seen, "train_acc": ok / seen, "time": secs,
              "samples_per_s": totals.seen / max(secs, 1e-9)}
             for loss, ok in zip(losses, correct)]
    return stats, diverged


@torch.no_grad()
def predict(model, batches, amp: AmpMode, device: torch.device,
            channels_last: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N, C) float32, labels (N,) int64, source positions (N,) int64)."""
    model.eval()
    logits, labels, where = [], [], []
    for tex, dep, mask, y, pos in batches:
        with amp.autocast(device):
            logits.append(model(_layout(tex, channels_last), _layout(dep, channels_last),
                                mask).float())
        labels.append(y)
        where.append(pos)
    if not logits:
        empty = np.zeros(0, np.int64)
        return np.zeros((0, model.num_classes), np.float32), empty, empty
    return (torch.cat(logits).cpu().numpy(), torch.cat(labels).cpu().numpy().astype(np.int64),
            torch.cat(where).cpu().numpy().astype(np.int64))


def check_variant(name: str) -> None:
    """ConfigError listing the registered variants unless ``name`` is one."""
    from fer3d.models import list_models

    names = list(list_models())
    if name not in names:
        raise ConfigError(f"unknown variant {name!r}; available: {', '.join(names)}")


def check_masks(name: str, index) -> None:
    """ConfigError when variant ``name`` uses mask attention and the shards of ``index``
    hold no salient-region masks (written with ``--masks none``: every mask is zero)."""
    from fer3d.models import create_model

    if index.masks == MASKS[0]:
        return
    with torch.device("meta"):  # the variant's structure only: no memory, no init cost
        uses_mask = create_model(name).uses_mask
    if uses_mask:
        raise ConfigError(f"variant {name} needs salient-region masks, but "
                          f"{index.paths[0]} has masks {index.masks!r} (prepared with "
                          "--masks none); train a variant without MA, e.g. afnet_m_no_ma")


def model_from_config(cfg, num_classes: int) -> torch.nn.Module:
    """The one place TrainConfig settings become model-builder keywords; ``--pretrained``
    is read by :func:`fer3d.train.checkpoint.read_pretrained`."""
    from fer3d.models import create_model
    from fer3d.train.checkpoint import read_pretrained

    state = None if cfg.pretrained is None else read_pretrained(cfg.pretrained)
    try:
        return create_model(cfg.variant, num_classes=num_classes, pretrained=state,
                            head_init=cfg.head_init)
    except ValueError as exc:  # the weights do not fit (the variant was checked before)
        raise CheckpointError(f"--pretrained: {cfg.pretrained}: {exc}") from None


def place_model(model: torch.nn.Module, device: torch.device,
                channels_last: bool) -> torch.nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model
