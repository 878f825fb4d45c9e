"""Samples of fer3d HDF5 shards as model inputs, one per item (a torch Dataset).

Stage: shard -> tensors. :class:`ShardDataset` reads one sample per item from an HDF5
handle opened lazily in the process that uses it (each DataLoader worker opens its own; an
open handle is never pickled) and runs the batch transforms of
:mod:`fer3d.train.transforms` on a batch of one. Schema: docs/shards.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import h5py
import numpy as np
import torch

from fer3d.errors import ShardReadError
from fer3d.train.transforms import (
    NO_AUGMENT,
    Augment,
    augment,
    check_image_size,
    epoch_draws,
    normalise,
    prepare,
    read_sample,
)
from fer3d_data.shard_index import ShardIndex, read_shard_index


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
    ``/mask56``), ``label`` int64 code into ``index.class_names`` (a campaign passes its
    relabelled index: :func:`fer3d.campaign.protocol.relabel`), ``index`` int64 position in
    this dataset (``landmarks`` (K, 2) in output pixels too when ``landmarks=True``; a flip
    mirrors their positions but keeps each row's name, so after a flip "left" rows lie on
    the right: the BU-3DFE 83-point mirror pairing is not documented well enough to swap
    rows safely).

    source      a :class:`ShardIndex` (read once per campaign) or shard path(s).
    indices     rows of the index to expose; default all.
    image_size  S; shards of another grid size are resized.
    train       apply ``augment`` (flip + small affine, one draw for all modalities).

    An item key may be ``(i, epoch_seed)``: the augmentation is then position ``i``'s draw of
    :func:`epoch_draws` (the same draw the device-resident path applies), independent of
    worker count and process (see fer3d.train.sources.EpochSampler).

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
        return self.index.label[self.rows]

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
        """Storage tensors of item ``i`` (see :func:`read_sample`); ShardReadError naming
        the shard and the sample when HDF5 cannot read it (a damaged chunk)."""
        g = int(self.rows[i])
        shard, row = int(self.index.shard[g]), int(self.index.row[g])
        try:
            return read_sample(self._file(shard), row)
        except OSError as exc:  # h5py's error for a chunk that fails its checksum or gzip
            path = self.index.paths[shard]
            detail = " ".join(str(exc).split())[:160]
            raise ShardReadError(f"{path}: sample {str(self.index.sample_id[g])!r} (row {row}) "
                                 f"cannot be read ({detail}); the shard is damaged: check it "
                                 f"with `fer3d-prep verify {path}` and prepare it again") from None

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
