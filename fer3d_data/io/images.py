"""Texture and 2D picture reader (BU-3DFE ``.bmp``, Bosphorus ``.png``) via OpenCV.

Stage: raw input. Every image comes back as (H, W, 3) uint8 RGB whatever its file holds
(grayscale, alpha, 16 bits).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..errors import RawFormatError
from ._common import read_bytes


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> (H, W, 3) uint8 RGB.

    Example:
        >>> load_image("F0001/F0001_AN01WH_F3D.bmp").shape  # doctest: +SKIP
        (512, 512, 3)
    """
    # imdecode from bytes, not imread: same errors for every path, non-ASCII paths work.
    image = cv2.imdecode(np.frombuffer(read_bytes(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise RawFormatError(path, "not a readable image (OpenCV could not decode it)")
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise RawFormatError(path, f"unsupported pixel type {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise RawFormatError(path, f"unsupported channel count {image.shape[2]}")


_image_loaders = {"bmp": load_image, "png": load_image, "jpg": load_image, "jpeg": load_image}
