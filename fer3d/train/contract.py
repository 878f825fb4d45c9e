"""The model's input contract: how a stored sample becomes the three inputs, without torch.

Stage: shard sample -> model inputs (torch-free). Training applies it batched in torch
(:mod:`fer3d.train.transforms` takes its constants and :func:`normalise_depth` from here);
a model card records it (:func:`input_contract`), and prediction without torch (an
exported ONNX file) applies it in numpy (:func:`model_inputs`): the same resampling as
``F.interpolate`` (antialiased bilinear for texture and depth, area for the mask), written
as one weight matrix per axis, so both give the same inputs to ~1e-6.

>>> x = model_inputs(texture, depth, coverage, mask56, size=224)   # doctest: +SKIP
>>> x["texture"].shape, x["depth"].shape, x["mask"].shape           # doctest: +SKIP
((N, 3, 224, 224), (N, 3, 224, 224), (N, 1, 56, 56))
"""

from __future__ import annotations

import functools

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_NAMES = ("texture", "depth", "mask")
MASK_GRID = 56  # the shard's /mask56: the stored mask every input path starts from


def input_contract(image_size: int) -> dict:
    """What a model of input side ``image_size`` takes, as data (a card's ``input``)."""
    s = int(image_size)
    return {"names": list(INPUT_NAMES), "image_size": s,
            "shapes": {"texture": [3, s, s], "depth": [3, s, s], "mask": [1, s // 4, s // 4]},
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "texture": "RGB / 255, resized (antialiased bilinear), normalised by mean/std",
            "depth": "mm scaled to [0, 1] by min/max over covered cells (clipped), resized, "
                     "replicated to 3 channels, normalised by mean/std",
            "mask": f"/mask{MASK_GRID} area-resized to S/4, in [0, 1]"}


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


# --------------------------------------------------------------------------- resampling

@functools.cache
def bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) rows of ``F.interpolate(mode="bilinear", antialias=True,
    align_corners=False)`` along one axis: a triangle filter widened by the scale when
    shrinking (PIL's filter, which torch's antialiased kernel follows)."""
    scale = n_in / n_out
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        j = np.arange(lo, hi)
        tri = np.clip(1.0 - np.abs((j - centre + 0.5) * inv), 0.0, None)
        w[i, lo:hi] = tri / tri.sum()
    return w


@functools.cache
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) rows of ``F.interpolate(mode="area")`` (adaptive average pooling)."""
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        w[i, lo:hi] = 1.0 / (hi - lo)
    return w


def resize(x: np.ndarray, size: int, weights=bilinear_weights) -> np.ndarray:
    """(..., H, W) float -> (..., size, size) float32 by ``weights`` along rows and columns."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x.astype(np.float32, copy=False)
    rows, cols = weights(h, size), weights(w, size)
    return np.einsum("ih,...hw,jw->...ij", rows, x, cols, optimize=True).astype(np.float32)


def model_inputs(texture: np.ndarray, depth: np.ndarray, coverage: np.ndarray | None,
                 mask56: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Stored samples -> the model's inputs as float32 arrays.

    texture (N, S, S, 3) uint8, depth (N, S, S) mm, coverage (N, S, S) bool or None (every
    cell covered), mask56 (N, 56, 56) in [0, 1] -> {"texture": (N, 3, s, s), "depth":
    (N, 3, s, s), "mask": (N, 1, s/4, s/4)} for ``size`` s, as training's eval batches.
    """
    if texture.ndim != 4 or texture.shape[-1] != 3 or depth.shape != texture.shape[:3]:
        raise ValueError(f"texture must be (N, S, S, 3) and depth (N, S, S), got "
                         f"{texture.shape} and {depth.shape}")
    if coverage is None:
        coverage = np.ones(depth.shape, bool)
    depth01 = np.stack([normalise_depth(d, c) for d, c in zip(depth, coverage)])
    image = np.concatenate([texture.transpose(0, 3, 1, 2) / np.float32(255.0),
                            depth01[:, None]], axis=1)
    image = np.clip(resize(image, size), 0.0, 1.0)
    mean = np.array(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.array(IMAGENET_STD, np.float32)[:, None, None]
    mask = resize(np.asarray(mask56, np.float32)[:, None], size // 4, area_weights)
    return {"texture": ((image[:, :3] - mean) / std).astype(np.float32),
            "depth": ((np.repeat(image[:, 3:], 3, axis=1) - mean) / std).astype(np.float32),
            "mask": np.clip(mask, 0.0, 1.0)}
