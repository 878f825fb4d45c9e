"""Weights files that are broken, foreign or crafted, for the tests of the one weights reader
(fer3d.train.checkpoint): each must give one line naming the file, never a traceback and
never advice to load it with weights_only=False."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import torch


class Payload:
    """An object whose unpickling would run code: weights_only must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _zip(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(member, data)
    return buf.getvalue()


def crafted_files(root: Path, good: dict[str, torch.Tensor]) -> dict[str, Path]:
    """name -> path of each bad file, written under ``root``; ``good`` is a valid resnet18
    state dict some of them are cut from."""
    root.mkdir(parents=True, exist_ok=True)
    torch.save(good, root / "good.pth")
    whole = (root / "good.pth").read_bytes()
    raw = {"empty.pth": b"", "text.pth": b"# notes\n", "truncated.pth": whole[: len(whole) // 2],
           "foreign_zip.pth": _zip("notes.txt", b"x"),
           "bad_header.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage",
           "huge_header.safetensors": b"\xff" * 16}
    objects = {"code.pth": {"model": Payload()}, "tensor.pth": torch.zeros(3),
               "plain_values.pth": {"a": 1, "b": "x"},
               "int_names.pth": {"model": {1: torch.zeros(1)}, "variant": "afnet_m"},
               "variant_number.pth": {"model": {"x": torch.zeros(1)}, "variant": 5},
               "unknown_variant.pth": {"model": {"x": torch.zeros(1)}, "variant": "resnet99"},
               "image_size_text.pth": {"model": {"x": torch.zeros(1)}, "variant": "afnet_m",
                                       "image_size": "big"},
               "subjects_number.pth": {"model": {"x": torch.zeros(1)}, "variant": "afnet_m",
                                       "test_subjects": 5},
               "seven_classes.pth": {"model": {"x": torch.zeros(1)}, "variant": "afnet_m",
                                     "num_classes": 7},
               "wrong_names.pth": {"model": {"x": torch.zeros(1)}, "variant": "afnet_m"},
               "no_layer4.pth": {k: v for k, v in good.items() if not k.startswith("layer4")},
               "flat_conv1.pth": {"conv1.weight": torch.zeros(3)}}
    paths = {}
    for name, data in raw.items():
        (root / name).write_bytes(data)
        paths[name] = root / name
    for name, obj in objects.items():
        torch.save(obj, root / name)
        paths[name] = root / name
    os.mkfifo(root / "fifo.pth")
    paths["fifo.pth"] = root / "fifo.pth"
    paths["folder.pth"] = root / "folder.pth"
    paths["folder.pth"].mkdir()
    paths["missing.pth"] = root / "missing.pth"
    return paths
