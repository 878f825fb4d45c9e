"""Raw readers under hostile input (issue 9): each case once hung, ran for minutes, decoded a
gigapixel or escaped as another exception type. Time guards are hang guards far above the
fixed cost (the old code took minutes), not speed targets."""

import contextlib
import os
import signal
import struct
import zlib

import cv2
import numpy as np
import pytest

from fer3d_data.io import (
    RawFormatError,
    load_bnd,
    load_bnt,
    load_image,
    load_lm2,
    load_lm3,
    load_pse,
    load_wrl,
)
from fer3d_data.io import images as images_module
from fer3d_data.synth import build_bu3dfe_scan, write_bu3dfe_scan

READERS = [load_wrl, load_bnt, load_bnd, load_pse, load_lm3, load_lm2, load_image]


class Hang(Exception):
    pass


@contextlib.contextmanager
def within(seconds: float):
    """Fail with Hang instead of hanging: SIGALRM interrupts Python code and blocking calls."""
    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def genuine_wrl(tmp_path_factory):
    scan = build_bu3dfe_scan("F0001", "anger", 3, vertices=2000, texture_size=8, f2d_size=8)
    return write_bu3dfe_scan(scan, tmp_path_factory.mktemp("bu"),
                             skip=("f2d", "bnd"))[0].read_bytes()


def test_nested_brackets_are_linear(tmp_path):
    path = tmp_path / "nested.wrl"
    path.write_bytes(b"#VRML V2.0 utf8\nGroup { children " + b"[ " * 90_000)
    with within(5), pytest.raises(RawFormatError, match="truncated: 90001 unclosed"):
        load_wrl(path)   # 40 KB took 12.7 s with the quadratic scan, 200 KB 516 s


@pytest.mark.parametrize("body, problem", [
    (b"Group { children [" + b"[]" * 150_000 + b"] }", "over 100000 structural tokens"),
    (b"Group { children [" + b"[" * 150_000, "over 100000 structural tokens"),
    (b"#\n" * 1_000_000, "1000001 '#' comment marks, over the cap of 1000000"),  # + header
])
def test_vrml_work_caps(tmp_path, body, problem):
    path = tmp_path / "hostile.wrl"
    path.write_bytes(b"#VRML V2.0 utf8\n" + body)
    with within(5), pytest.raises(RawFormatError, match=problem):
        load_wrl(path)


def test_comment_on_every_line_is_linear(tmp_path, genuine_wrl):
    comments = b"# a comment line, as some exporters write\n" * 100_000
    path = tmp_path / "comments.wrl"
    head, body = genuine_wrl.split(b"\n", 1)
    path.write_bytes(head + b"\n" + comments + body.replace(b"\n", b"  # why\n"))
    (tmp_path / "plain.wrl").write_bytes(genuine_wrl)
    with within(5):
        mesh = load_wrl(path)
    plain = load_wrl(tmp_path / "plain.wrl")
    np.testing.assert_array_equal(mesh.vertices, plain.vertices)
    np.testing.assert_array_equal(mesh.faces, plain.faces)


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_fifo_refused_at_once(tmp_path, reader):
    path = tmp_path / "scan.wrl"
    os.mkfifo(path)
    with within(2), pytest.raises(RawFormatError, match="not a regular file \\(a FIFO\\)") as info:
        reader(path)
    assert str(info.value).startswith(str(path))


def test_device_refused_at_once(tmp_path):
    path = tmp_path / "scan.wrl"
    path.symlink_to("/dev/urandom")
    with within(2), pytest.raises(RawFormatError, match="a character device"):
        load_wrl(path)


def test_folder_refused(tmp_path):
    (tmp_path / "scan.bnt").mkdir()
    with pytest.raises(RawFormatError, match="not a regular file \\(a folder\\)"):
        load_bnt(tmp_path / "scan.bnt")


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_size_limit(tmp_path, reader):
    path = tmp_path / "big.file"
    path.write_bytes(b"#" * 1001)
    with pytest.raises(RawFormatError, match="1001 bytes, over the limit of 1000"):
        reader(path, max_bytes=1000)


def test_lm3_count_of_5000_digits(tmp_path):
    path = tmp_path / "bs000_E_ANGER_0.lm3"
    path.write_text("# 3D Landmark File\n\n" + "7" * 5000 + " landmarks:\nNose tip\n1 2 3\n")
    with pytest.raises(RawFormatError, match="landmark count of 5000 digits"):
        load_lm3(path)


def test_landmark_value_too_long(tmp_path):
    path = tmp_path / "a.bnd"
    rows = [f"{i} 1 2 3" for i in range(83)]
    rows[4] = "4 1 2 " + "3" * 400
    path.write_text("\n".join(rows))
    with pytest.raises(RawFormatError, match="row 5 has a value over 64 characters"):
        load_bnd(path)


def bmp_header(width: int, height: int) -> bytes:
    """A 66-byte 24-bit BMP whose header claims width x height pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 66, 0, 0, 54) + info + b"\x00" * 12


def png_header(width: int, height: int) -> bytes:
    """A PNG signature, IHDR claiming width x height RGB pixels, and one small IDAT."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A genuine small JPEG whose start-of-frame is rewritten to claim width x height."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(*args):
        raise AssertionError("image decoded although its header is over the pixel limit")
    monkeypatch.setattr(images_module.cv2, "imdecode", refuse)


@pytest.mark.parametrize("name, data, size", [
    ("huge.bmp", bmp_header(65535, 65535), "65535 x 65535"),
    ("huge.bmp", bmp_header(65535, -65535), "65535 x 65535"),       # top-down rows
    ("huge.png", png_header(20000, 20000), "20000 x 20000"),
    ("huge.jpg", jpeg_claiming(65000, 65000), "65000 x 65000"),
], ids=["bmp", "bmp-top-down", "png", "jpg"])
def test_pixel_limit_checked_before_decoding(tmp_path, no_decoding, name, data, size):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(RawFormatError, match=f"header claims {size} pixels, over the limit "
                                             "of 40000000"):
        load_image(path)


def test_bmp_header_of_66_bytes_gives_our_error(tmp_path):
    (tmp_path / "huge.bmp").write_bytes(bmp_header(65535, 65535))
    with pytest.raises(RawFormatError, match="over the limit"):
        load_image(tmp_path / "huge.bmp")  # cv2.error before the header check


def test_pixel_limit_is_a_keyword(tmp_path):
    path = tmp_path / "t.png"
    cv2.imwrite(str(path), np.zeros((30, 40, 3), np.uint8))
    assert load_image(path, max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(RawFormatError, match="40 x 30 pixels, over the limit of 1199"):
        load_image(path, max_pixels=1199)


def test_jpeg_size_read_past_other_segments(tmp_path):
    path = tmp_path / "t.jpg"
    cv2.imwrite(str(path), np.full((12, 20, 3), 128, np.uint8))
    data = path.read_bytes()
    comment = b"\xff\xfe" + struct.pack(">H", 7) + b"hello"   # a COM segment before the frame
    path.write_bytes(data[:2] + comment + b"\xff\xff\x01" + data[2:])  # fill byte, TEM marker
    assert load_image(path).shape == (12, 20, 3)
