"""Training and test batches of a cell, from samples resident on the device or from the
per-sample loader.

Stage: shard -> batches on the training device. :class:`DeviceData` loads the selected
samples of a campaign once (uint8 texture, depth in [0, 1], mask) onto the device;
normalisation and augmentation then run batched there, one draw per sample applied to
every modality, drawn from (cell seed, epoch) by sample position so that a run is
reproducible and independent of batch layout. :class:`LoaderSource` keeps the per-sample
``ShardDataset`` + DataLoader path for what does not fit. Both yield the same
``(texture, depth, mask, labels, positions)`` batches through the same transforms
(:mod:`fer3d.train.transforms`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from fer3d.train.dataset import ShardDataset
from fer3d.train.transforms import (
    NO_AUGMENT,
    Augment,
    augment,
    epoch_draws,
    imagenet_stats,
    normalise,
    prepare,
)
from fer3d_data.shard_index import ShardIndex

# auto: keep samples on a GPU while they take at most this share of its free memory.
CUDA_MEMORY_SHARE = 0.5
# On a CPU, batches from RAM (no gzip decode per sample and epoch, one batched warp) beat
# the per-sample loader with every core as a worker, at 64 and at 224 px
# (benchmarks/bench_campaign.py: device_data_sps vs loader_sps): auto keeps samples in RAM
# while they take at most this share of the available memory.
CPU_MEMORY_SHARE = 0.25

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def resident_bytes(n: int, grid: int, depth_dtype: torch.dtype) -> int:
    """Bytes :class:`DeviceData` holds for ``n`` samples on a ``grid``-pixel shard."""
    return n * (3 * grid * grid + torch.finfo(depth_dtype).bits // 8 * grid * grid
                + 4 * 56 * 56 + 8)


def depth_dtype_for(device: torch.device) -> torch.dtype:
    """float16 halves GPU memory; on a CPU float32 keeps batches bit-identical to the
    per-sample path (and CPU float16 arithmetic is slow)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _available_ram() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest machine
        return 4 << 30


def use_device_data(mode: str, device: torch.device, n: int, grid: int) -> bool:
    """Resolve ``--data-on-device auto|on|off`` for ``n`` samples of a ``grid`` shard."""
    if mode in ("on", "off"):
        return mode == "on"
    need = resident_bytes(n, grid, depth_dtype_for(device))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return need <= CUDA_MEMORY_SHARE * free
    return need <= CPU_MEMORY_SHARE * _available_ram()


class DeviceData:
    """Rows ``rows`` of ``index`` on ``device``: texture uint8 (N, 3, S, S), depth in
    [0, 1] (N, 1, S, S) (float16 on CUDA), mask56 (N, 1, 56, 56), labels (N,)."""

    def __init__(self, index: ShardIndex, rows: np.ndarray, device: torch.device):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.where = {int(r): i for i, r in enumerate(self.rows)}
        reader = ShardDataset(index, self.rows, image_size=index.image_size)
        try:
            parts = [reader.read(i) for i in range(len(self.rows))]
        finally:
            reader.close()
        dtype = depth_dtype_for(device)
        self.texture = torch.stack([p[0] for p in parts]).to(device)
        self.depth = torch.stack([p[1] for p in parts]).to(device, dtype)
        self.mask56 = torch.stack([p[2] for p in parts]).to(device)
        self.labels = torch.from_numpy(index.label[self.rows]).to(device)
        self.device = device

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size()
                   for t in (self.texture, self.depth, self.mask56, self.labels))

    def positions(self, rows: np.ndarray) -> torch.Tensor:
        """Positions of index ``rows`` in this store (on the CPU)."""
        return torch.tensor([self.where[int(r)] for r in rows], dtype=torch.int64)

    def batch(self, pos: torch.Tensor, size: int, flip: torch.Tensor | None = None,
              theta: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Normalised (texture, depth, mask, labels) of positions ``pos`` at ``size``."""
        image, mask = prepare(self.texture[pos], self.depth[pos], self.mask56[pos], size)
        if flip is not None:
            image, mask = augment(image, mask, flip, theta)
        return (*normalise(image, mask), self.labels[pos])


def n_batches(n: int, batch_size: int, train: bool) -> int:
    """Training drops the last partial batch (fixed shapes for cudnn.benchmark, compile
    and CUDA graphs; the next epoch's shuffle trains those samples), unless all samples
    fit in less than one batch."""
    if not train or n < batch_size:
        return -(-n // batch_size)
    return n // batch_size


def train_shape(n: int, batch_size: int) -> tuple[int, int]:
    """(training batches per epoch, samples per batch) of ``n`` samples: cells that agree
    can train as one pack (each step takes one batch of each)."""
    return n_batches(n, batch_size, train=True), min(n, batch_size)


class DeviceSource:
    """Batches of one cell from a :class:`DeviceData`."""

    def __init__(self, data: DeviceData, rows: np.ndarray, image_size: int, batch_size: int,
                 aug: Augment):
        self.data, self.pos_cpu = data, data.positions(rows)
        self.pos = self.pos_cpu.to(data.device)
        self.size, self.batch_size, self.aug = image_size, batch_size, aug

    def __len__(self) -> int:
        return len(self.pos)

    def epoch(self, epoch_seed: int) -> tuple[torch.Tensor, ...]:
        """This epoch's training batches as store positions (batches, B), flips (batches, B),
        affine maps (batches, B, 2, 3) and positions among this cell's rows (batches, B), on
        the CPU."""
        order, flip, theta = epoch_draws(len(self.pos), epoch_seed, self.aug)
        nb, b = train_shape(len(self.pos), self.batch_size)
        take = order[:nb * b]
        return (self.pos_cpu[take].view(nb, b), flip[take].view(nb, b),
                theta[take].view(nb, b, 2, 3), take.view(nb, b))

    def train_batches(self, epoch_seed: int):
        return pack_batches([self], [epoch_seed])

    def eval_batches(self):
        bs = self.batch_size
        for b in range(n_batches(len(self.pos), bs, train=False)):
            idx = torch.arange(b * bs, min((b + 1) * bs, len(self.pos)), device=self.data.device)
            yield (*self.data.batch(self.pos[idx], self.size), idx)

    def close(self) -> None:
        """Nothing to release: the samples belong to the campaign's DeviceData."""


def pack_batches(sources: list[DeviceSource], epoch_seeds: list[int]):
    """Training batches of K cells for one epoch each (cell k's order and draws from
    ``epoch_seeds[k]``, exactly as it alone would take them): step b yields the K cells'
    b-th batches stacked cell-major, ``(K*B, ...)`` tensors and labels, plus each sample's
    position among its cell's rows. Every draw moves to the device here, before the first
    step (four copies per epoch);
    a step itself only indexes and transforms on the device (tests/fer3d/test_sync.py)."""
    first = sources[0]
    assert len({train_shape(len(s), s.batch_size) for s in sources}) == 1, sources
    parts = [s.epoch(seed) for s, seed in zip(sources, epoch_seeds)]
    dev, affine = first.data.device, first.aug.has_affine
    pos, flip, theta, local = (torch.cat([p[i] for p in parts], dim=1).to(dev)
                               for i in range(4))
    imagenet_stats(dev)  # made now if not yet, not inside a step

    def batches():
        for b in range(pos.shape[0]):
            out = first.data.batch(pos[b], first.size, flip[b], theta[b] if affine else None)
            yield (*out, local[b])
    return batches()


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(position, epoch seed)`` keys in the order :func:`epoch_draws` gives.

    Order and augmentation depend only on the epoch's seed, not on worker count, persistent
    workers or process history (what makes resume exact), and are those of the
    device-resident path.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool = True):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, 0

    def set_epoch_seed(self, seed: int) -> None:
        self.seed = seed

    def __len__(self) -> int:
        return min(self.n, n_batches(self.n, self.batch_size, self.shuffle) * self.batch_size)

    def __iter__(self):
        order = epoch_draws(self.n, self.seed, NO_AUGMENT, self.shuffle)[0][:len(self)]
        return iter((i, self.seed) for i in order.tolist())


def _worker_init(_: int) -> None:
    # Loader workers decode and resize; one thread each leaves the cores to the model.
    torch.set_num_threads(1)


class LoaderSource:
    """Batches of one cell from the per-sample ShardDataset through a DataLoader."""

    def __init__(self, index: ShardIndex, rows: np.ndarray, image_size: int, batch_size: int,
                 aug: Augment, workers: int, device: torch.device):
        self.device = device
        self.train_ds = ShardDataset(index, rows, image_size=image_size, train=True, augment=aug)
        self.eval_ds = ShardDataset(index, rows, image_size=image_size)
        self.sampler = EpochSampler(len(rows), batch_size)
        self.train_loader = self._loader(self.train_ds, self.sampler, batch_size, workers)
        self.eval_loader = self._loader(self.eval_ds, EpochSampler(len(rows), batch_size, False),
                                        batch_size, 0)

    def _loader(self, ds, sampler, batch_size, workers):
        return torch.utils.data.DataLoader(
            ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init)

    def __len__(self) -> int:
        return len(self.train_ds)

    def _on_device(self, batch: dict) -> Batch:
        nb = self.device.type == "cuda"
        return tuple(batch[k].to(self.device, non_blocking=nb)
                     for k in ("texture", "depth", "mask", "label", "index"))

    def train_batches(self, epoch_seed: int):
        self.sampler.set_epoch_seed(epoch_seed)
        return (self._on_device(b) for b in self.train_loader)

    def eval_batches(self):
        return (self._on_device(b) for b in self.eval_loader)

    def close(self) -> None:
        self.train_ds.close()
        self.eval_ds.close()


def make_source(index: ShardIndex, rows: np.ndarray, *, image_size: int, batch_size: int,
                aug: Augment = NO_AUGMENT, workers: int = 0, device: torch.device,
                data: DeviceData | None = None):
    """A DeviceSource when ``data`` holds the samples, else a LoaderSource."""
    if data is not None:
        return DeviceSource(data, rows, image_size, batch_size, aug)
    return LoaderSource(index, rows, image_size, batch_size, aug, workers, device)
