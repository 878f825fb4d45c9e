"""Texture and 2D picture reader (BU-3DFE ``.bmp``, Bosphorus ``.png``) via OpenCV.

Stage: raw input. Every image comes back as (H, W, 3) uint8 RGB whatever its file holds
(grayscale, alpha, 16 bits). The size an image claims is read from its header and checked
against a pixel limit before anything is decoded, so a small file claiming a huge picture
costs nothing; only BMP, PNG and JPEG are accepted because only their headers are checked.
"""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np

from ..errors import RawFormatError
from ._common import DEFAULT_MAX_BYTES, read_bytes

# Largest picture decoded (width x height). Genuine textures are far smaller (BU-3DFE
# 512 x 512, Bosphorus about 1600 x 1200 = 1.9 M); 40 M pixels is 120 MB as RGB.
DEFAULT_MAX_PIXELS = 40_000_000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C0-CF except DHT C4, JPG C8, DAC CC) carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RSTn: no length field


def load_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read a BMP, PNG or JPEG file -> (H, W, 3) uint8 RGB.

    An image whose header claims more than ``max_pixels`` pixels is refused undecoded.

    Example:
        >>> load_image("F0001/F0001_AN01WH_F3D.bmp").shape  # doctest: +SKIP
        (512, 512, 3)
    """
    data = read_bytes(path, max_bytes=max_bytes)
    width, height = image_size(path, data)
    if width <= 0 or height <= 0:
        raise RawFormatError(path, f"header claims an empty image ({width} x {height})")
    if width * height > max_pixels:
        raise RawFormatError(path, f"header claims {width} x {height} pixels, over the limit "
                                   f"of {max_pixels} (max_pixels)")
    # imdecode from bytes, not imread: same errors for every path, non-ASCII paths work.
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise RawFormatError(path, f"not a readable image (OpenCV: {e.err})") from None
    if image is None:
        raise RawFormatError(path, "not a readable image (OpenCV could not decode it)")
    return _to_rgb8(path, image)


def image_size(path, data: bytes) -> tuple[int, int]:
    """(width, height) claimed by a BMP, PNG or JPEG header; any other file is refused."""
    try:
        if data.startswith(b"BM"):
            return _bmp_size(data)
        if data.startswith(_PNG_SIGNATURE):
            if data[12:16] != b"IHDR":
                raise RawFormatError(path, "PNG without IHDR header chunk")
            return struct.unpack_from(">II", data, 16)
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(path, data)
    except struct.error:
        raise RawFormatError(path, "truncated image header") from None
    raise RawFormatError(path, "not a BMP, PNG or JPEG image (unknown header)")


def _bmp_size(data: bytes) -> tuple[int, int]:
    """BITMAPCOREHEADER (12 bytes) stores uint16 sizes; later headers int32, height < 0
    meaning top-down rows."""
    (header,) = struct.unpack_from("<I", data, 14)
    if header == 12:
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return width, abs(height)


def _jpeg_size(path, data: bytes) -> tuple[int, int]:
    """Walk the marker segments to the first start-of-frame (each step skips a segment)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise RawFormatError(path, f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise RawFormatError(path, f"JPEG segment of length {length} at byte {pos}")
        pos += 2 + length
    raise RawFormatError(path, "JPEG without a start-of-frame header")


def _to_rgb8(path, image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA; 8 or 16 bits) -> (H, W, 3) uint8 RGB."""
    if image.dtype == np.uint16:  # rounded to nearest, one byte per value (no wide temporaries)
        image = cv2.convertScaleAbs(image, alpha=255 / 65535)
    elif image.dtype != np.uint8:
        raise RawFormatError(path, f"unsupported pixel type {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise RawFormatError(path, f"unsupported channel count {image.shape[2]}")
