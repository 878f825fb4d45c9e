"""Torch Dataset over fer3d HDF5 shards: the training side's only reader of samples.

Stage: shard -> tensors. The index (sample ids, subjects, labels) is read once when the
dataset is built; sample arrays are read per item from an HDF5 handle opened lazily in
the process that uses it (each DataLoader worker opens its own; an open handle is never
pickled). Schema: docs/shards.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from fer3d_data.errors import Fer3dDataError
from fer3d_data.schema import CLASS_NAMES, FORMAT, FORMAT_VERSION, INDEX_COLUMNS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What the training reader needs from a shard (landmarks only when asked for).
REQUIRED_DATASETS = ("texture", "depth", "coverage", "mask56")


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


NO_AUGMENT = Augment(hflip=0.0, degrees=0.0, translate=0.0, scale=0.0)


def _decode(column: np.ndarray) -> np.ndarray:
    """Fixed-length UTF-8 bytes (h5py 'S' dtype) -> numpy str array."""
    if column.dtype.kind == "S":
        return np.char.decode(column, "utf-8")
    return column.astype(str)


def _shard_error(path: str | os.PathLike, problem: str) -> Fer3dDataError:
    return Fer3dDataError(f"{os.fspath(path)}: {problem}")


def check_shard(path: str | os.PathLike, f: h5py.File, *, landmarks: bool = False) -> None:
    """Raise Fer3dDataError naming ``path`` unless ``f`` is a readable fer3d shard."""
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        raise _shard_error(path, f"not a {FORMAT} file (format attribute is {fmt!r})")
    version = f.attrs.get("format_version")
    version = version.item() if isinstance(version, np.generic) else version
    if version is None or int(version) != FORMAT_VERSION:
        raise _shard_error(
            path, f"shard format_version {version!r}; this fer3d reads version {FORMAT_VERSION}"
        )
    needed = REQUIRED_DATASETS + (("landmarks",) if landmarks else ())
    missing = [name for name in needed if name not in f]
    missing += [f"index/{c}" for c in INDEX_COLUMNS if f"index/{c}" not in f]
    if missing:
        raise _shard_error(path, f"missing datasets: {', '.join(missing)}")
    n = f["index/sample_id"].shape[0]
    wrong = [name for name in needed if f[name].shape[0] != n]
    if wrong:
        raise _shard_error(path, f"datasets {wrong} do not have one row per index row ({n})")
    s = f["texture"].shape
    if len(s) != 4 or s[1] != s[2] or s[3] != 3:
        raise _shard_error(path, f"/texture has shape {s}; expected (N, S, S, 3)")
    if f["depth"].shape != s[:3] or f["coverage"].shape != s[:3]:
        raise _shard_error(path, f"/depth or /coverage shape differs from /texture {s[:3]}")


def read_index(paths: Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
    """The concatenated ``/index`` of one or more shards, checked.

    Returns arrays of length N (rows of all shards in order): ``sample_id``, ``subject``
    (str), ``expression``, ``intensity`` (int64), ``shard`` (position in ``paths``), ``row``
    (row inside that shard); plus the scalar-per-file ``dataset`` names as ``datasets``.
    """
    if not paths:
        raise ValueError("no shard given")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("sample_id", "subject", "expression",
                                           "intensity", "shard", "row")}
    datasets, sizes = [], []
    for i, path in enumerate(paths):
        if not os.path.exists(path):
            raise Fer3dDataError(f"{path}: no such shard")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise _shard_error(path, f"not an HDF5 file ({exc})") from None
        with f:
            check_shard(path, f)
            names = tuple(str(n) for n in f.attrs.get("class_names", CLASS_NAMES))
            if names[: len(CLASS_NAMES)] != CLASS_NAMES:
                raise _shard_error(path, f"class_names {names} differ from {CLASS_NAMES}")
            n = f["index/sample_id"].shape[0]
            parts["sample_id"].append(_decode(f["index/sample_id"][...]))
            parts["subject"].append(_decode(f["index/subject"][...]))
            parts["expression"].append(f["index/expression"][...].astype(np.int64))
            parts["intensity"].append(f["index/intensity"][...].astype(np.int64))
            parts["shard"].append(np.full(n, i, dtype=np.int64))
            parts["row"].append(np.arange(n, dtype=np.int64))
            ds = f.attrs.get("dataset", "")
            datasets.append(ds.decode() if isinstance(ds, bytes) else str(ds))
            sizes.append(int(f["texture"].shape[1]))
    index = {k: np.concatenate(v) for k, v in parts.items()}
    index["datasets"] = np.array(datasets)
    index["image_sizes"] = np.array(sizes)
    return index


def normalise_depth(depth: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """(H, W) mm -> (H, W) float32 in [0, 1], scaled by min/max over covered cells.

    Cells filled by the regulariser can overshoot the scanned range: they are clipped.
    A scan without any covered cell falls back to its whole grid.
    """
    assert depth.ndim == 2 and depth.shape == coverage.shape, (depth.shape, coverage.shape)
    support = depth[coverage] if coverage.any() else depth.ravel()
    lo, hi = float(support.min()), float(support.max())
    scaled = (depth - lo) / max(hi - lo, 1e-6)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _imagenet(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) -> (C, size, size), bilinear with antialiasing when shrinking."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x[None], size=(size, size), mode="bilinear",
                         align_corners=False, antialias=True)[0]


def _affine_theta(rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Draw a (2, 3) output->input map in normalised coordinates (affine_grid's theta)."""
    angle = math.radians(rng.uniform(-aug.degrees, aug.degrees))
    zoom = rng.uniform(1.0 - aug.scale, 1.0 + aug.scale)
    tx, ty = rng.uniform(-aug.translate, aug.translate, size=2) * 2.0
    c, s = math.cos(angle) / zoom, math.sin(angle) / zoom
    return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float32)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(C, H, W) resampled through theta; normalised coordinates make one theta fit every
    resolution, so texture, depth and the S/4 mask stay aligned."""
    grid = F.affine_grid(theta[None], [1, *x.shape], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="border",
                         align_corners=False)[0]


def _warp_points(points: np.ndarray, theta: np.ndarray, size: int) -> np.ndarray:
    """(K, 2) pixel (x, y) -> where _warp moves them (inverse of theta)."""
    a = np.vstack([theta, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(a)
    norm = (points + 0.5) * (2.0 / size) - 1.0
    moved = norm @ inv[:2, :2].T + inv[:2, 2]
    return ((moved + 1.0) * (size / 2.0) - 0.5).astype(np.float32)


class ShardDataset(torch.utils.data.Dataset):
    """Samples of one or more shards as ImageNet-normalised tensors.

    Items are dicts: ``texture`` (3, S, S) float32, ``depth`` (3, S, S) float32 (depth in
    [0, 1] over covered cells, replicated to 3 channels, ImageNet-normalised so pretrained
    weights fit both branches), ``mask`` (1, S/4, S/4) float32 in [0, 1] (area-resized
    ``/mask56``), ``label`` int64 expression code, ``index`` int64 position in this dataset
    (``landmarks`` (K, 2) in output pixels too when ``landmarks=True``; a flip mirrors their
    positions but keeps each row's name, so after a flip "left" rows lie on the right: the
    BU-3DFE 83-point mirror pairing is not documented well enough to swap rows safely).

    paths       shard files; their rows are concatenated in order.
    indices     global row numbers (into the concatenation) to expose; default all.
    image_size  S; shards of another grid size are resized.
    train       apply ``augment`` (flip + small affine, one draw for all modalities).

    An item key may be ``(i, seed)``: the augmentation is then drawn from ``seed``, which
    makes it independent of worker count and process (see fer3d.engine.EpochSampler).

    >>> ds = ShardDataset(["bu3dfe.h5"], image_size=224)      # doctest: +SKIP
    >>> ds[0]["texture"].shape                                 # doctest: +SKIP
    torch.Size([3, 224, 224])
    """

    def __init__(self, paths: Sequence[str | os.PathLike] | str | os.PathLike,
                 indices: Sequence[int] | np.ndarray | None = None, *, image_size: int,
                 train: bool = False, augment: Augment = Augment(), landmarks: bool = False):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if image_size < 8 or image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 and >= 8, got {image_size}")
        self.paths = [os.fspath(p) for p in paths]
        self.index = read_index(self.paths)
        if landmarks:
            for p in self.paths:
                with h5py.File(p, "r") as f:
                    check_shard(p, f, landmarks=True)
        n_total = len(self.index["sample_id"])
        rows = np.arange(n_total) if indices is None else np.asarray(indices, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= n_total):
            raise IndexError(f"indices outside 0..{n_total - 1}")
        self.rows = rows
        self.image_size = int(image_size)
        self.train = bool(train)
        self.augment = augment if train else NO_AUGMENT
        self.landmarks = bool(landmarks)
        self._files: list[h5py.File] | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def sample_ids(self) -> np.ndarray:
        return self.index["sample_id"][self.rows]

    @property
    def labels(self) -> np.ndarray:
        return self.index["expression"][self.rows]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = None, None
        return state

    def _file(self, shard: int) -> h5py.File:
        # A handle inherited through fork is not safe to use: reopen in every new process.
        if self._files is None or self._pid != os.getpid():
            self._files = [h5py.File(p, "r") for p in self.paths]
            self._pid = os.getpid()
        return self._files[shard]

    def close(self) -> None:
        if self._files is not None and self._pid == os.getpid():
            for f in self._files:
                f.close()
        self._files, self._pid = None, None

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        g = int(self.rows[i])
        f = self._file(int(self.index["shard"][g]))
        row = int(self.index["row"][g])
        s = self.image_size

        texture = torch.from_numpy(f["texture"][row]).permute(2, 0, 1).float() / 255.0
        depth01 = torch.from_numpy(normalise_depth(f["depth"][row], f["coverage"][row]))
        # Texture and depth share the grid: one (4, S, S) stack is resized/warped at once.
        image = _resize(torch.cat([texture, depth01[None]]), s)
        mask = torch.from_numpy(f["mask56"][row].astype(np.float32))[None]
        mask = F.interpolate(mask[None], size=(s // 4, s // 4), mode="area")[0]
        points = None
        if self.landmarks:
            src = f["texture"].shape[1]
            points = f["landmarks"][row].astype(np.float32)
            points = (points + 0.5) * (s / src) - 0.5

        aug = self.augment
        if aug.hflip > 0 or aug.has_affine:
            rng = np.random.default_rng(seed)
            if rng.random() < aug.hflip:
                image, mask = image.flip(-1), mask.flip(-1)
                if points is not None:
                    points[:, 0] = (s - 1) - points[:, 0]
            if aug.has_affine:
                theta = _affine_theta(rng, aug)
                t = torch.from_numpy(theta)
                image, mask = _warp(image, t), _warp(mask, t)
                if points is not None:
                    points = _warp_points(points, theta, s)
        image = image.clamp(0.0, 1.0)

        item = {
            "texture": _imagenet(image[:3]),
            "depth": _imagenet(image[3:].expand(3, -1, -1)),
            "mask": mask.clamp(0.0, 1.0),
            "label": torch.tensor(int(self.index["expression"][g]), dtype=torch.int64),
            "index": torch.tensor(int(i), dtype=torch.int64),
        }
        if points is not None:
            item["landmarks"] = torch.from_numpy(points)
        return item
