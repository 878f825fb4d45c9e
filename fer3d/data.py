"""Samples of fer3d HDF5 shards as model inputs: the per-sample reader and the batch
transforms it shares with the device-resident path (:mod:`fer3d.device_data`).

Stage: shard -> tensors. :class:`ShardDataset` reads one sample per item from an HDF5
handle opened lazily in the process that uses it (each DataLoader worker opens its own;
an open handle is never pickled). Both paths run the same batch functions
(:func:`prepare`, :func:`augment`, :func:`normalise`): without augmentation they give the
same tensors, with it the same distribution. Schema: docs/shards.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from fer3d.settings import MAX_IMAGE_SIZE
from fer3d_data.shard_index import ShardIndex, read_shard_index

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def normalise_depth(depth: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """(H, W) mm -> (H, W) float32 in [0, 1], scaled by min/max over covered cells.

    Cells filled by the regulariser can overshoot the scanned range: they are clipped.
    A scan without any covered cell falls back to its whole grid. float16 depth (a shard
    option) is widened first: float16 arithmetic would cost ~1e-3 of the range.
    """
    assert depth.ndim == 2 and depth.shape == coverage.shape, (depth.shape, coverage.shape)
    depth = depth.astype(np.float32, copy=False)
    support = depth[coverage] if coverage.any() else depth.ravel()
    lo, hi = float(support.min()), float(support.max())
    scaled = (depth - lo) / max(hi - lo, 1e-6)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


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


def normalise(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """image (B, 4, s, s) in [0, 1] -> ImageNet-normalised texture (B, 3, s, s) and depth
    replicated to 3 channels (so ImageNet weights fit both branches), mask clamped."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(1, 3, 1, 1)
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


def _warp_points(points: np.ndarray, theta: np.ndarray, size: int) -> np.ndarray:
    """(K, 2) pixel (x, y) -> where _warp moves them (inverse of theta)."""
    a = np.vstack([theta, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(a)
    norm = (points + 0.5) * (2.0 / size) - 1.0
    moved = norm @ inv[:2, :2].T + inv[:2, 2]
    return ((moved + 1.0) * (size / 2.0) - 0.5).astype(np.float32)


class ShardDataset(torch.utils.data.Dataset):
    """Samples of one or more shards as ImageNet-normalised tensors, one per item.

    Items are dicts: ``texture`` (3, S, S) float32, ``depth`` (3, S, S) float32 (depth in
    [0, 1] over covered cells, replicated to 3 channels, ImageNet-normalised so pretrained
    weights fit both branches), ``mask`` (1, S/4, S/4) float32 in [0, 1] (area-resized
    ``/mask56``), ``label`` int64 expression code, ``index`` int64 position in this dataset
    (``landmarks`` (K, 2) in output pixels too when ``landmarks=True``; a flip mirrors their
    positions but keeps each row's name, so after a flip "left" rows lie on the right: the
    BU-3DFE 83-point mirror pairing is not documented well enough to swap rows safely).

    source      a :class:`ShardIndex` (read once per campaign) or shard path(s).
    indices     rows of the index to expose; default all.
    image_size  S; shards of another grid size are resized.
    train       apply ``augment`` (flip + small affine, one draw for all modalities).

    An item key may be ``(i, epoch_seed)``: the augmentation is then position ``i``'s draw of
    :func:`epoch_draws` (the same draw the device-resident path applies), independent of
    worker count and process (see fer3d.device_data.EpochSampler).

    >>> ds = ShardDataset(["bu3dfe.h5"], image_size=224)      # doctest: +SKIP
    >>> ds[0]["texture"].shape                                 # doctest: +SKIP
    torch.Size([3, 224, 224])
    """

    def __init__(self, source: ShardIndex | Sequence[str | os.PathLike] | str | os.PathLike,
                 indices: Sequence[int] | np.ndarray | None = None, *, image_size: int,
                 train: bool = False, augment: Augment = Augment(), landmarks: bool = False):
        check_image_size(image_size)
        if isinstance(source, (str, os.PathLike)):
            source = [source]
        if not isinstance(source, ShardIndex) or landmarks:
            paths = source.paths if isinstance(source, ShardIndex) else source
            source = read_shard_index(paths, landmarks=landmarks)
        self.index = source
        n_total = len(source)
        rows = np.arange(n_total) if indices is None else np.asarray(indices, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= n_total):
            raise IndexError(f"indices outside 0..{n_total - 1}")
        self.rows = rows
        self.image_size = int(image_size)
        self.augment = augment if train else NO_AUGMENT
        self.landmarks = bool(landmarks)
        self._files: list[h5py.File] | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def sample_ids(self) -> np.ndarray:
        return self.index.sample_id[self.rows]

    @property
    def labels(self) -> np.ndarray:
        return self.index.expression[self.rows]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = None, None
        return state

    def _file(self, shard: int) -> h5py.File:
        # A handle inherited through fork is not safe to use: reopen in every new process.
        if self._files is None or self._pid != os.getpid():
            self._files = [h5py.File(p, "r") for p in self.index.paths]
            self._pid = os.getpid()
        return self._files[shard]

    def close(self) -> None:
        if self._files is not None and self._pid == os.getpid():
            for f in self._files:
                f.close()
        self._files, self._pid = None, None

    def read(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Storage tensors of item ``i`` (see :func:`read_sample`)."""
        g = int(self.rows[i])
        return read_sample(self._file(int(self.index.shard[g])), int(self.index.row[g]))

    def _landmarks(self, i: int) -> np.ndarray:
        g = int(self.rows[i])
        f = self._file(int(self.index.shard[g]))
        points = f["landmarks"][int(self.index.row[g])].astype(np.float32)
        return (points + 0.5) * (self.image_size / f["texture"].shape[1]) - 0.5

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        s = self.image_size
        texture, depth01, mask56 = self.read(i)
        image, mask = prepare(texture[None], depth01[None], mask56[None], s)
        points = self._landmarks(i) if self.landmarks else None
        aug = self.augment
        if aug.active:
            seed = int(torch.randint(0, 2 ** 31 - 1, ())) if seed is None else int(seed)
            _, flips, thetas = epoch_draws(len(self), seed, aug)
            flip, theta = flips[i:i + 1], thetas[i:i + 1]
            image, mask = augment(image, mask, flip, theta if aug.has_affine else None)
            if points is not None:
                if flip[0]:
                    points[:, 0] = (s - 1) - points[:, 0]
                if aug.has_affine:
                    points = _warp_points(points, theta[0].numpy(), s)
        tex, dep, mask = normalise(image, mask)
        item = {"texture": tex[0], "depth": dep[0], "mask": mask[0],
                "label": torch.tensor(int(self.labels[i]), dtype=torch.int64),
                "index": torch.tensor(int(i), dtype=torch.int64)}
        if points is not None:
            item["landmarks"] = torch.from_numpy(points)
        return item
