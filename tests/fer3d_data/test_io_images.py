"""load_image: BMP/PNG, grayscale/alpha/16-bit converted to (H, W, 3) uint8 RGB."""

import cv2
import numpy as np
import pytest

from fer3d_data.io import RawFormatError, load_image


def rgb_image():
    image = np.zeros((5, 7, 3), np.uint8)
    image[..., 0] = 200      # red
    image[1, 2] = (1, 2, 3)
    return image


@pytest.mark.parametrize("suffix", [".bmp", ".png"])
def test_rgb_order_kept(tmp_path, suffix):
    path = tmp_path / f"tex{suffix}"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb_image(), cv2.COLOR_RGB2BGR))
    image = load_image(path)
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, rgb_image())


def test_grayscale_alpha_and_16_bit(tmp_path):
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    expected = np.repeat(gray[..., None], 3, axis=2)
    np.testing.assert_array_equal(load_image(tmp_path / "g.png"), expected)
    bgra = np.dstack([cv2.cvtColor(rgb_image(), cv2.COLOR_RGB2BGR), np.full((5, 7), 9, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb_image())
    deep = np.full((4, 3, 3), 65535, np.uint16)
    deep[0, 0] = (0, 257, 65535)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    out = load_image(tmp_path / "d.png")
    assert out.dtype == np.uint8 and out.shape == (4, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 1, 0])


@pytest.mark.parametrize("data, problem", [
    (b"", "empty file"),
    (b"BM not really a bitmap", "truncated image header"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "PNG without IHDR"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x02\x00\x00\x00\x02" + b"\x00" * 9,
     "not a readable image"),
    (b"GIF89a" + b"\x00" * 20, "not a BMP, PNG or JPEG"),
])
def test_errors_name_file(tmp_path, data, problem):
    path = tmp_path / "bad.bmp"
    path.write_bytes(data)
    with pytest.raises(RawFormatError, match=problem) as info:
        load_image(path)
    assert str(info.value).startswith(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(RawFormatError, match="cannot read"):
        load_image(tmp_path / "absent.png")
