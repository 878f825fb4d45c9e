"""Channel layout of feature maps holding several packed cells, and fusion-input checks.

Stage: training. A network packed ``groups = G`` ways (:mod:`fer3d.models.packed`) holds
the G cells' channels cell-major, ``(B, G*C, H, W)``; concatenating or splitting channels
must stay within each cell. With G = 1 these are plain ``torch.cat`` and ``split``.
"""

from __future__ import annotations

import torch


def cat_channels(parts: list[torch.Tensor], groups: int = 1) -> torch.Tensor:
    """Concatenate ``(B, G*C_i, ...)`` maps along channels within each of ``groups`` packed
    cells (cell-major channels stay cell-major): ``(B, G*sum(C_i), ...)``."""
    if groups == 1:
        return torch.cat(parts, dim=1)
    return torch.cat([p.unflatten(1, (groups, -1)) for p in parts], dim=2).flatten(1, 2)


def split_channels(x: torch.Tensor, sizes: list[int], groups: int = 1) -> list[torch.Tensor]:
    """The inverse of :func:`cat_channels`: ``(B, G*sum(sizes), ...)`` -> ``(B, G*size, ...)``
    per size."""
    if groups == 1:
        return list(x.split(sizes, dim=1))
    return [p.flatten(1, 2) for p in x.unflatten(1, (groups, -1)).split(sizes, dim=2)]


def check_pair(x_t: torch.Tensor, x_d: torch.Tensor, channels: int) -> None:
    """ValueError unless ``x_t`` and ``x_d`` are both ``(B, channels, H, W)``."""
    if x_t.shape != x_d.shape or x_t.ndim != 4 or x_t.shape[1] != channels:
        raise ValueError(f"x_t and x_d must both be (B, {channels}, H, W), "
                         f"got {tuple(x_t.shape)} and {tuple(x_d.shape)}")
