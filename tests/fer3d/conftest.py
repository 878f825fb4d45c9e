"""Fabricated schema-conforming shards for the fer3d tests (docs/shards.md, version 1).

Each expression has its own texture colour/stripe pattern and its own depth bump, plus
per-sample noise, so a small network can learn the classes in a few epochs.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from fer3d_data.schema import CLASS_NAMES, FORMAT, FORMAT_VERSION

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny CPU models run several times faster on one intra-op thread than on two that
    spin against each other (and against DataLoader workers) on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# Salient-region rectangles (row0, row1, col0, col1) as fractions of S: eyes, nose, mouth.
REGIONS = ((0.20, 0.40, 0.10, 0.90), (0.35, 0.65, 0.40, 0.60), (0.70, 0.85, 0.25, 0.75))
COLOURS = np.array([[200, 40, 40], [40, 160, 40], [60, 60, 200],
                    [220, 200, 40], [120, 40, 160], [40, 200, 200], [128, 128, 128]], np.uint8)


def _area_resize(a: np.ndarray, n: int) -> np.ndarray:
    s = a.shape[0]
    assert s % n == 0
    return a.reshape(n, s // n, n, s // n).mean(axis=(1, 3))


def _mask(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, S) uint8 union mask, (3, S, S) uint8 regions; left half heavier so flips show."""
    regions = np.zeros((3, size, size), np.uint8)
    for k, (r0, r1, c0, c1) in enumerate(REGIONS):
        regions[k, int(r0 * size):int(r1 * size), int(c0 * size):int(c1 * size)] = 1
    regions[0, int(0.20 * size):int(0.40 * size), int(0.55 * size):int(0.90 * size)] = 0
    return regions.max(axis=0), regions


def _sample(code: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Texture (S, S, 3) uint8 and depth (S, S) float32 mm of one expression."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1.0) * 2.0 - 1.0
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(code) + yy * np.sin(code)) * 3.0 * np.pi)
    tex = COLOURS[code][None, None, :] * (0.6 + 0.4 * stripes[..., None])
    tex = tex + rng.normal(0.0, 12.0, tex.shape)
    angle = 2.0 * np.pi * code / 7.0
    bx, by = 0.5 * np.cos(angle), 0.5 * np.sin(angle)
    dome = 40.0 * np.clip(1.0 - (xx ** 2 + yy ** 2), 0.0, None)
    bump = 25.0 * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / 0.05)
    depth = dome + bump - 40.0 + rng.normal(0.0, 0.5, dome.shape)
    return np.clip(tex, 0, 255).astype(np.uint8), depth.astype(np.float32)


def write_shard(path, *, dataset: str = "bu3dfe", n_subjects: int = 6, size: int = 32,
                seed: int = 0, format_version: int = FORMAT_VERSION,
                drop: tuple[str, ...] = (), extra_intensity: bool = True,
                first_subject: int = 0, config: dict | None = None) -> str:
    """Write a small shard; returns its path.

    bu3dfe: per subject the six expressions at intensities 3 and 4 (+ intensity 1 and a
    neutral that the protocol must ignore when ``extra_intensity``). bosphorus: per subject
    the six emotions once (subject 0 has a second anger scan), plus a neutral.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(first_subject, first_subject + n_subjects):
        subject = f"F{s + 1:04d}" if dataset == "bu3dfe" else f"bs{s:03d}"
        for code in range(6):
            name = CLASS_NAMES[code][:2].upper()
            if dataset == "bu3dfe":
                levels = (1, 3, 4) if extra_intensity else (3, 4)
                rows += [(f"{subject}_{name}{i:02d}WH", subject, code, i) for i in levels]
            else:
                rows.append((f"{subject}_E_{CLASS_NAMES[code].upper()}_0", subject, code, -1))
                if s == 0 and code == 0:
                    rows.append((f"{subject}_E_ANGER_1", subject, code, -1))
        rows.append((f"{subject}_NE00WH" if dataset == "bu3dfe" else f"{subject}_N_N_0",
                     subject, 6, 0 if dataset == "bu3dfe" else -1))
    n = len(rows)
    mask, regions = _mask(size)
    with h5py.File(path, "w") as f:
        f.attrs.update(format=FORMAT, format_version=format_version, dataset=dataset,
                       producer="tests", created="2024-01-01T00:00:00Z", image_size=size,
                       crop_radius=90.0, depth_units="mm", class_names=list(CLASS_NAMES))
        f["config"] = json.dumps(config or {"image_size": size})
        tex = np.empty((n, size, size, 3), np.uint8)
        dep = np.empty((n, size, size), np.float32)
        for i, (_, _, code, _) in enumerate(rows):
            tex[i], dep[i] = _sample(code, size, rng)
        cov = np.ones((n, size, size), bool)
        cov[:, :, : size // 8] = False          # uncovered border filled by "regulariser"
        dep[:, :, : size // 8] += 100.0         # overshoot there: must be clipped
        data = {
            "texture": tex, "depth": dep, "coverage": cov,
            "mask": np.broadcast_to(mask, (n, size, size)),
            "regions": np.broadcast_to(regions, (n, 3, size, size)),
            "mask56": np.broadcast_to(_area_resize(np.kron(mask, np.ones((7, 7))), 56)
                                      if size % 56 else _area_resize(mask, 56),
                                      (n, 56, 56)).astype(np.float16),
            "mask28": np.zeros((n, 28, 28), np.float16),
            "landmarks": np.broadcast_to(np.array([[3.0, 5.0], [size - 4.0, 7.0]], np.float32),
                                         (n, 2, 2)),
        }
        for name, arr in data.items():
            if name not in drop:
                f.create_dataset(name, data=arr, chunks=(1, *arr.shape[1:]))
        g = f.create_group("index")
        g["sample_id"] = np.array([r[0] for r in rows], dtype="S64")
        g["subject"] = np.array([r[1] for r in rows], dtype="S16")
        g["expression"] = np.array([r[2] for r in rows], np.int8)
        g["intensity"] = np.array([r[3] for r in rows], np.int8)
        g["source"] = np.array([f"{r[0]}.wrl" for r in rows], dtype="S256")
        g["mask_source"] = np.zeros(n, np.int8)
    return str(path)


@pytest.fixture
def make_shard(tmp_path):
    """Factory: make_shard(name="x.h5", **write_shard kwargs) -> path."""
    def make(name: str = "shard.h5", **kwargs) -> str:
        return write_shard(tmp_path / name, **kwargs)
    return make


@pytest.fixture(scope="session")
def shard_factory(tmp_path_factory):
    """Session-wide factory for shards shared by module-scoped fixtures."""
    root = tmp_path_factory.mktemp("shards")

    def make(name: str, **kwargs) -> str:
        path = root / name
        return str(path) if path.exists() else write_shard(path, **kwargs)
    return make


@pytest.fixture(scope="session")
def bu3dfe_shard(shard_factory) -> str:
    return shard_factory("bu3dfe.h5", n_subjects=6, size=32)


# ---------------------------------------------------------------- models from raw scans

# Grid of the synthetic-raw shard and input size of its models (tests of fer3d.predict):
# dlib finds no face on a 32 px aligned texture, and a grid larger than the input also
# exercises the input contract's resampling.
RAW_GRID, RAW_SIZE = 64, 32


@pytest.fixture(scope="session")
def synth_models(tmp_path_factory):
    """A shard prepared from a synthetic raw BU-3DFE tree (2 subjects, six expressions at
    intensities 3 and 4), a 2-fold campaign and a final model of 2 members with the same
    settings (1 epoch, 32 px inputs of a 64 px grid): {"raw", "shard", "campaign", "final",
    "train_args"}."""
    from fer3d.cli import train
    from fer3d_data import cli as prep
    from fer3d_data.schema import EXPRESSIONS
    from fer3d_data.synth import make_bu3dfe

    root = tmp_path_factory.mktemp("synth_models")
    raw, shard = root / "raw", root / "train.h5"
    make_bu3dfe(raw, subjects=2, vertices=4000, texture_size=128, f2d_size=32,
                expressions=EXPRESSIONS)
    assert prep.main(["bu3dfe", str(raw), str(shard), "--size", str(RAW_GRID), "--quiet",
                      "--intensities", "3,4", "--workers", "0"]) == 0
    args = [str(shard), "--epochs", "1", "--image-size", str(RAW_SIZE), "--batch-size", "8",
            "--workers", "0", "--no-progress", "--lr", "1e-3"]
    assert train.main(args + ["--folds", "2", "--out", str(root / "campaign")]) == 0
    final = args + ["--final", "--seeds", "2", "--out", str(root / "final")]
    assert train.main(final) == 0
    return {"raw": raw, "shard": shard, "campaign": root / "campaign", "final": root / "final",
            "train_args": final}
