"""Batch transforms from stored samples to model inputs, shared by both input paths.

Stage: shard rows -> tensors. :func:`read_sample` turns one shard row into storage
tensors; :func:`prepare` (resize), :func:`augment` (one flip + affine draw per sample for
every modality) and :func:`normalise` (ImageNet statistics) run batched, on whichever device
the batch is on; the constants and the depth scaling are the input contract of
:mod:`fer3d.train.contract`. The per-sample reader (:mod:`fer3d.train.dataset`) and the
device-resident path (:mod:`fer3d.train.sources`) both call them, so without augmentation
they give the same tensors and with it the same draws (:func:`epoch_draws`). Schema:
docs/shards.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from fer3d.settings import MAX_IMAGE_SIZE
from fer3d.train.contract import IMAGENET_MEAN, IMAGENET_STD, normalise_depth


@dataclass(frozen=True)
class Augment:
    """Training augmentation; one draw of parameters is applied to every modality.

    hflip       probability of a horizontal flip.
    degrees     rotation drawn uniformly in [-degrees, degrees].
    translate   shift drawn uniformly in [-translate, translate] of the image size.
    scale       zoom drawn uniformly in [1 - scale, 1 + scale].
    """

    hflip: float = 0.5
    degrees: float = 10.0
    translate: float = 0.05
    scale: float = 0.05

    @property
    def has_affine(self) -> bool:
        return self.degrees > 0 or self.translate > 0 or self.scale > 0

    @property
    def active(self) -> bool:
        return self.hflip > 0 or self.has_affine


NO_AUGMENT = Augment(hflip=0.0, degrees=0.0, translate=0.0, scale=0.0)


def check_image_size(image_size: int) -> None:
    if not 8 <= image_size <= MAX_IMAGE_SIZE or image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 in 8..{MAX_IMAGE_SIZE}, "
                         f"got {image_size}")


# --------------------------------------------------------------------------- batch transforms

def prepare(texture: torch.Tensor, depth01: torch.Tensor, mask56: torch.Tensor,
            size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, 3, S, S), depth in [0, 1] (B, 1, S, S), (B, 1, 56, 56) -> image (B, 4, s, s)
    float32 in [0, 1] (texture + depth), mask (B, 1, s/4, s/4) float32."""
    image = torch.cat([texture.float() / 255.0, depth01.float()], dim=1)
    if image.shape[-1] != size:  # texture and depth share the grid: resized at once
        image = F.interpolate(image, size=(size, size), mode="bilinear",
                              align_corners=False, antialias=True)
    mask = F.interpolate(mask56.float(), size=(size // 4, size // 4), mode="area")
    return image, mask


def affine_theta(angle: torch.Tensor, zoom: torch.Tensor, tx: torch.Tensor,
                 ty: torch.Tensor) -> torch.Tensor:
    """(B,) radians, zoom, shifts in normalised units -> (B, 2, 3) output->input maps
    (affine_grid's theta)."""
    c, s = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([torch.stack([c, -s, tx], -1), torch.stack([s, c, ty], -1)], -2)


def draw_params(gen: torch.Generator, n: int, aug: Augment) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` draws of (flip (n,) bool, theta (n, 2, 3) float32) from ``gen``."""
    u = torch.rand(n, 5, generator=gen, dtype=torch.float64)
    flip = u[:, 0] < aug.hflip
    angle = torch.deg2rad((2 * u[:, 1] - 1) * aug.degrees)
    zoom = 1.0 + (2 * u[:, 2] - 1) * aug.scale
    shift = (2 * u[:, 3:] - 1) * aug.translate * 2.0
    return flip, affine_theta(angle, zoom, shift[:, 0], shift[:, 1]).float()


def epoch_draws(n: int, seed: int, aug: Augment, shuffle: bool = True):
    """Order (n,) and per-position (flip (n,), theta (n, 2, 3)) of one epoch, from ``seed``
    alone: both input paths take a sample's augmentation from here, by its position."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    flip, theta = draw_params(gen, n, aug)
    return order, flip, theta


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) resampled through theta; normalised coordinates make one theta fit every
    resolution, so texture, depth and the S/4 mask stay aligned."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment(image: torch.Tensor, mask: torch.Tensor, flip: torch.Tensor,
            theta: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw per sample applied to image (B, 4, s, s) and mask (B, 1, s/4, s/4) alike:
    flip where ``flip`` (B,), then the affine ``theta`` (B, 2, 3) unless None."""
    f = flip.view(-1, 1, 1, 1)
    image, mask = torch.where(f, image.flip(-1), image), torch.where(f, mask.flip(-1), mask)
    if theta is not None:
        image, mask = _warp(image, theta), _warp(mask, theta)
    return image, mask


@functools.cache
def imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std (1, 3, 1, 1) on ``device``, made once per device: a tensor
    built from Python numbers in every batch would be a host-to-device copy (a stream sync
    on CUDA, and a break in a captured CUDA graph)."""
    return (torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1))


def normalise(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """image (B, 4, s, s) in [0, 1] -> ImageNet-normalised texture (B, 3, s, s) and depth
    replicated to 3 channels (so ImageNet weights fit both branches), mask clamped."""
    mean, std = imagenet_stats(image.device)
    image = image.clamp(0.0, 1.0)
    texture = (image[:, :3] - mean) / std
    depth = (image[:, 3:].expand(-1, 3, -1, -1) - mean) / std
    return texture, depth, mask.clamp(0.0, 1.0)


def read_sample(f: h5py.File, row: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One shard row -> texture uint8 (3, S, S), depth in [0, 1] (1, S, S) float32,
    mask56 (1, 56, 56) float32: the storage both input paths start from."""
    texture = torch.from_numpy(f["texture"][row]).permute(2, 0, 1)
    depth01 = torch.from_numpy(normalise_depth(f["depth"][row], f["coverage"][row]))[None]
    return texture, depth01, torch.from_numpy(f["mask56"][row].astype(np.float32))[None]
