"""ShardDataset: shapes, normalisation, joint flips, lazy per-process open, schema checks."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from fer3d.train.dataset import ShardDataset
from fer3d.train.sources import DeviceData, make_source
from fer3d.train.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_AUGMENT,
    Augment,
    normalise_depth,
)
from fer3d_data.errors import Fer3dDataError
from fer3d_data.schema import FORMAT_VERSION
from fer3d_data.shard_index import read_shard_index

FLIP_ONLY = Augment(hflip=1.0, degrees=0.0, translate=0.0, scale=0.0)


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)


def test_read_index_columns(bu3dfe_shard):
    index = read_shard_index([bu3dfe_shard])
    # 6 subjects x (6 expressions x 3 intensities + neutral)
    assert len(index) == len(index.sample_id) == 6 * 19
    assert index.sample_id[0] == "F0001_AN01WH"
    assert index.subject[0] == "F0001"
    assert index.expression.dtype == np.int64
    assert sorted(set(index.expression.tolist())) == list(range(7))
    assert index.datasets == ("bu3dfe",)
    assert index.image_size == 32 and index.configs == ({"image_size": 32},)


def test_item_shapes_and_normalisation(bu3dfe_shard):
    ds = ShardDataset([bu3dfe_shard], image_size=32)
    item = ds[5]
    assert item["texture"].shape == (3, 32, 32) and item["texture"].dtype == torch.float32
    assert item["depth"].shape == (3, 32, 32)
    assert item["mask"].shape == (1, 8, 8)
    assert item["label"].item() == ds.index.expression[5] and item["index"].item() == 5
    with h5py.File(bu3dfe_shard) as f:
        tex = torch.from_numpy(f["texture"][5]).permute(2, 0, 1).float() / 255
        depth, cov = f["depth"][5], f["coverage"][5]
    torch.testing.assert_close(_unnormalise(item["texture"]), tex, atol=1e-5, rtol=0)
    d01 = _unnormalise(item["depth"])
    torch.testing.assert_close(d01[0], d01[2])
    torch.testing.assert_close(d01[0], torch.from_numpy(normalise_depth(depth, cov)),
                               atol=1e-5, rtol=0)
    assert 0.0 <= float(item["mask"].min()) and float(item["mask"].max()) == 1.0


def test_normalise_depth_uses_covered_cells_and_clips():
    depth = np.array([[0.0, 10.0], [20.0, 500.0]], np.float32)
    cov = np.array([[True, True], [True, False]])
    out = normalise_depth(depth, cov)
    np.testing.assert_allclose(out, [[0.0, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(normalise_depth(depth, np.zeros((2, 2), bool)),
                               [[0.0, 0.02], [0.04, 1.0]], atol=1e-6)
    # float16 shards: computed in float32 (float16 arithmetic would round 0.02 to 0.0195)
    half = np.array([[0.0, 1.0], [2.0, 50.0]], np.float16)
    np.testing.assert_array_equal(normalise_depth(half, np.ones((2, 2), bool)),
                                  normalise_depth(half.astype(np.float32), np.ones((2, 2), bool)))


def test_resize_to_other_image_size(bu3dfe_shard):
    item = ShardDataset([bu3dfe_shard], [0, 1], image_size=64)[1]
    assert item["texture"].shape == (3, 64, 64)
    assert item["depth"].shape == (3, 64, 64)
    assert item["mask"].shape == (1, 16, 16)


def test_flip_is_applied_to_every_modality_together(bu3dfe_shard):
    plain = ShardDataset([bu3dfe_shard], image_size=32, landmarks=True)
    flipped = ShardDataset([bu3dfe_shard], image_size=32, train=True, augment=FLIP_ONLY,
                           landmarks=True)
    a, b = plain[7], flipped[(7, 123)]
    for key in ("texture", "depth", "mask"):
        torch.testing.assert_close(b[key], a[key].flip(-1))
    # the fixture's mask is asymmetric: a flip that missed the mask would show
    assert not torch.equal(a["mask"], a["mask"].flip(-1))
    torch.testing.assert_close(b["landmarks"][:, 0], 31.0 - a["landmarks"][:, 0])
    torch.testing.assert_close(b["landmarks"][:, 1], a["landmarks"][:, 1])


def test_affine_is_seeded_and_shared(bu3dfe_shard):
    ds = ShardDataset([bu3dfe_shard], image_size=32, train=True,
                      augment=Augment(hflip=0.0, degrees=15.0, translate=0.1, scale=0.1))
    a, b, c = ds[(3, 11)], ds[(3, 11)], ds[(3, 12)]
    for key in ("texture", "depth", "mask"):
        torch.testing.assert_close(a[key], b[key])
    assert not torch.equal(a["texture"], c["texture"])
    # same warp on texture and depth: the uncovered (clipped to 1) left border moves alike
    plain = ShardDataset([bu3dfe_shard], image_size=32)[3]
    assert not torch.equal(a["depth"], plain["depth"])


def test_eval_dataset_ignores_augment(bu3dfe_shard):
    ds = ShardDataset([bu3dfe_shard], image_size=32, train=False, augment=FLIP_ONLY)
    assert ds.augment == NO_AUGMENT
    torch.testing.assert_close(ds[(2, 5)]["texture"], ds[2]["texture"])


def test_lazy_open_survives_pickling(bu3dfe_shard):
    ds = ShardDataset([bu3dfe_shard], [4, 9, 11], image_size=32)
    assert ds._files is None          # nothing opened at construction
    first = ds[0]["texture"]
    assert ds._files is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._files is None and len(clone) == 3
    torch.testing.assert_close(clone[0]["texture"], first)
    assert clone.sample_ids.tolist() == ds.sample_ids.tolist()
    ds.close()
    clone.close()


def test_dataloader_with_workers(bu3dfe_shard):
    ds = ShardDataset([bu3dfe_shard], list(range(8)), image_size=32)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    batches = list(loader)
    assert [b["index"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert batches[1]["texture"].shape == (4, 3, 32, 32)
    torch.testing.assert_close(batches[0]["depth"][2], ds[2]["depth"])


def test_several_shards_concatenate(make_shard):
    a = make_shard("a.h5", n_subjects=2)
    b = make_shard("b.h5", n_subjects=3, seed=1, first_subject=2)
    ds = ShardDataset([a, b], image_size=32)
    assert len(ds) == 5 * 19
    assert ds.index.shard.tolist().count(1) == 3 * 19
    assert ds.index.row[2 * 19] == 0
    assert ds[2 * 19]["label"].item() == ds.index.expression[2 * 19]


def test_shards_of_other_configs_or_repeated_samples_are_refused(make_shard):
    """Regression: the same subjects at 64 and 224 px trained together, duplicated."""
    a = make_shard("a.h5", n_subjects=2)
    with pytest.raises(Fer3dDataError, match=r"b.h5: preprocessing config differs from .*a.h5 "
                                             r"\(image_size\)"):
        read_shard_index([a, make_shard("b.h5", n_subjects=2, size=64, first_subject=2)])
    with pytest.raises(Fer3dDataError, match="38 sample ids occur more than once "
                                             "\\(e.g. 'F0001_AN01WH'\\)"):
        read_shard_index([a, make_shard("c.h5", n_subjects=2, seed=3)])


@pytest.mark.parametrize("kwargs, problem", [
    ({"format_version": FORMAT_VERSION + 1}, "format_version"),
    ({"drop": ("coverage",)}, "missing datasets: coverage"),
])
def test_bad_shard_names_file_and_problem(make_shard, kwargs, problem):
    path = make_shard("bad.h5", n_subjects=1, **kwargs)
    with pytest.raises(Fer3dDataError, match=problem) as err:
        ShardDataset([path], image_size=32)
    assert "bad.h5" in str(err.value)


def test_not_a_shard(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(Fer3dDataError, match="other.h5: not a fer3d-shard file"):
        read_shard_index([path])
    with pytest.raises(Fer3dDataError, match="no such shard"):
        read_shard_index([tmp_path / "missing.h5"])


def test_reads_what_fer3d_data_writes(tmp_path):
    """Regression guard between the two packages: the real writer's output loads here."""
    shards = pytest.importorskip("fer3d_data.shards")
    pipeline = pytest.importorskip("fer3d_data.prep")
    s, rng = 16, np.random.default_rng(0)
    path = tmp_path / "real.h5"
    with shards.ShardWriter(path, dataset="bosphorus", cfg={"image_size": s}, image_size=s,
                            landmark_scheme="bosphorus", landmark_names=["a", "b"]) as w:
        for code, name in enumerate(("anger", "happiness")):
            mask = np.zeros((s, s), np.uint8)
            mask[4:8, 4:8] = 1
            w.append(pipeline.Sample(
                sample_id=f"bs000_E_{name.upper()}_0", subject="bs000", expression=name,
                intensity=-1, source=f"bs000/{name}.bnt",
                texture=rng.integers(0, 255, (s, s, 3), dtype=np.uint8),
                depth=rng.normal(0, 5, (s, s)).astype(np.float32),
                coverage=np.ones((s, s), bool), mask=mask,
                regions=np.stack([mask, 0 * mask, 0 * mask]),
                mask56=np.kron(mask, np.ones((7, 7)))[::2, ::2].astype(np.float32),
                mask28=np.kron(mask, np.ones((7, 7)))[::4, ::4].astype(np.float32),
                landmarks=np.zeros((2, 2), np.float32),
                landmarks68=np.full((68, 2), np.nan, np.float32)))
    ds = ShardDataset([path], image_size=16)
    assert ds.sample_ids.tolist() == ["bs000_E_ANGER_0", "bs000_E_HAPPINESS_0"]
    assert ds.labels.tolist() == [0, 3]
    item = ds[1]
    assert item["texture"].shape == (3, 16, 16) and item["mask"].shape == (1, 4, 4)
    assert item["mask"][0, 1, 1].item() == 1.0 and item["mask"][0, 3, 3].item() == 0.0


# --------------------------------------------------------------------------- device path

def _sources(shard, rows, aug, batch_size=5):
    index = read_shard_index([shard])
    cpu = torch.device("cpu")
    data = DeviceData(index, rows, cpu)
    return (make_source(index, rows, image_size=32, batch_size=batch_size, aug=aug,
                        device=cpu, data=data),
            make_source(index, rows, image_size=32, batch_size=batch_size, aug=aug,
                        workers=0, device=cpu))


@pytest.mark.parametrize("aug", [NO_AUGMENT, Augment()], ids=["plain", "augmented"])
def test_device_and_per_sample_paths_give_identical_batches(bu3dfe_shard, aug):
    rows = np.arange(3, 15)
    device, loader = _sources(bu3dfe_shard, rows, aug)
    for a, b in zip(device.train_batches(77), loader.train_batches(77), strict=True):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=2e-6)
    for a, b in zip(device.eval_batches(), loader.eval_batches(), strict=True):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    loader.close()


def test_device_batches_fixed_shape_and_independent_of_batch_layout(bu3dfe_shard):
    rows = np.arange(0, 12)
    small, _ = _sources(bu3dfe_shard, rows, Augment(), batch_size=4)
    big, _ = _sources(bu3dfe_shard, rows, Augment(), batch_size=5)
    a = list(small.train_batches(9))
    b = list(big.train_batches(9))
    assert [x[0].shape[0] for x in a] == [4, 4, 4] and [x[0].shape[0] for x in b] == [5, 5]
    # sample i gets the same draw whatever batch it lands in
    tex_a = {int(p): t for x in a for p, t in zip(x[4], x[0])}
    for x in b:
        for p, t in zip(x[4], x[0]):
            torch.testing.assert_close(t, tex_a[int(p)])
    assert not torch.equal(a[0][0], list(small.train_batches(10))[0][0])  # epochs differ


def test_augmentation_distribution(bu3dfe_shard):
    """Per-sample draws follow the Augment ranges: flip rate, angle, zoom and shift."""
    from fer3d.train.transforms import epoch_draws

    aug = Augment()
    _, flip, theta = epoch_draws(4000, 5, aug)
    assert 0.45 < flip.float().mean() < 0.55
    zoom = 1 / theta[:, 0, :2].norm(dim=1)
    angle = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0]))
    assert 0.95 - 1e-4 < zoom.min() and zoom.max() < 1.05 + 1e-4 and zoom.std() > 0.02
    assert -10.001 < angle.min() < -9 and 9 < angle.max() < 10.001
    assert theta[:, :, 2].abs().max() <= 0.1 + 1e-6


def test_data_path_choice(monkeypatch):
    from fer3d.train import sources as device_data

    cpu = torch.device("cpu")
    assert device_data.use_device_data("on", cpu, 10 ** 9, 224)
    assert not device_data.use_device_data("off", cpu, 1, 32)
    monkeypatch.setattr(device_data, "_available_ram", lambda: 4 << 30)
    assert device_data.use_device_data("auto", cpu, 720, 224)          # ~200 MB of 4 GiB
    assert not device_data.use_device_data("auto", cpu, 20000, 224)    # ~6 GB: the loader
