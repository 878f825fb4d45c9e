"""A training step, an epoch, and prediction: the model-facing half of a cell.

Stage: batches -> updated weights, logits. Paper settings (Adam, betas (0.9, 0.999), lr
1e-4 fixed, cross-entropy). A training step never waits for the host: loss and correct
counts accumulate on the device and are read once per epoch (a NaN check every
``nan_check_every`` steps). :func:`model_from_config` is the one place settings become
model-builder keywords.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from fer3d.errors import CheckpointError, ConfigError, DivergedError
from fer3d.train.runtime import AmpMode
from fer3d_data.schema import MASKS


def compute_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, C) logits, (B,) codes -> scalar cross-entropy in fp32."""
    return F.cross_entropy(logits.float(), labels)


def _check_finite(loss_sum: torch.Tensor, where: str, seen: int) -> None:
    if not torch.isfinite(loss_sum):  # the one host read of a NaN check
        raise DivergedError(f"{where}: loss is {float(loss_sum)} after {seen} samples; the "
                            "cell stopped (its last checkpoint is kept)")


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def train_epoch(model, batches, optimizer, scaler, amp: AmpMode, device: torch.device, *,
                channels_last: bool, where: str, nan_check_every: int = 0, bar=None) -> dict:
    """One pass over ``batches``; DivergedError naming ``where`` on a non-finite loss."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, t0 = 0, time.perf_counter()
    for step, (tex, dep, mask, labels, _) in enumerate(batches, 1):
        with amp.autocast(device):
            logits = model(_layout(tex, channels_last), _layout(dep, channels_last), mask)
        loss = compute_loss(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        b = labels.shape[0]
        loss_sum += loss.detach() * b
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += b
        if nan_check_every and step % nan_check_every == 0:
            _check_finite(loss_sum, where, seen)
        if bar is not None:
            bar.update(b)
    _check_finite(loss_sum, where, seen)
    total_loss, total_correct = torch.stack([loss_sum, correct.float()]).tolist()
    secs = time.perf_counter() - t0
    return {"loss": total_loss / max(seen, 1), "train_acc": total_correct / max(seen, 1),
            "time": secs, "samples_per_s": seen / max(secs, 1e-9)}


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
