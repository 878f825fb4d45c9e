"""``fer3d-prep folder`` end to end on the synthetic labelled folder: every CSV row is a sample
or an error row, labels and sequences reach the index, --frames, --masks none, resume
guards, the training index's contract, and the shard read by Hugging Face ``datasets``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import trimesh

from fer3d_data import cli, synth
from fer3d_data.shard_index import read_shard_index
from fer3d_data.shards import open_shard, verify

pytestmark = pytest.mark.slow
SIZE = ("--size", "48", "--workers", "0", "--quiet")


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """(raw folder, labels.csv, scheme.yaml, the shard written from all of it)."""
    root = tmp_path_factory.mktemp("folder")
    labels = synth.make_folder(root / "raw", subjects=2, frames=3, vertices=3500,
                               texture_size=128)
    scheme = root / "raw" / "scheme.yaml"
    out = root / "all.h5"
    assert prep(root / "raw", out, labels, scheme) == 0
    return root / "raw", labels, scheme, out


def prep(raw, out, labels, scheme, *extra) -> int:
    return cli.main(["folder", str(raw), str(out), "--labels", str(labels),
                     "--landmark-scheme", str(scheme), *SIZE, *extra])


def csv_rows(labels: Path) -> list[dict]:
    with open(labels, newline="") as f:
        return list(csv.DictReader(f))


def test_every_row_is_a_sample_or_an_error_row(collection):
    raw, labels, _, out = collection
    rows = csv_rows(labels)
    with open_shard(out) as shard:
        index, errors = shard.index, shard.errors()
        names, attrs = shard.class_names, shard.attrs
    samples = set(index["source"].tolist())
    failed = {e["source"] for e in errors}
    assert samples | failed == {r["path"] for r in rows} and not samples & failed
    assert len(failed) == synth.folder.BROKEN and all(e["step"] == "read" for e in errors)
    assert names == tuple(sorted(synth.FOLDER_CLASSES)) and attrs["dataset"] == "folder"
    assert attrs["masks"] == "landmarks" and verify(out) == []
    by_path = {r["path"]: r for r in rows}
    for i, source in enumerate(index["source"]):
        row = by_path[source]
        assert names[index["label"][i]] == row["label"] and index["subject"][i] == row["subject"]
        assert index["sequence"][i] == row["sequence"]
        assert index["frame"][i] == (int(row["frame"]) if row["frame"] else -1)
        assert index["expression"][i] == -1 and index["sample_id"][i] == source
        # rows without a landmark file got dlib's points on the aligned texture
        assert index["mask_source"][i] == (0 if row["landmarks"] else 1), source


def test_training_index_contract(collection):
    *_, out = collection
    index = read_shard_index([out])
    assert index.class_names == tuple(sorted(synth.FOLDER_CLASSES)) and index.masks == "landmarks"
    assert index.label.dtype == np.int64 and index.frame.dtype == np.int64
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(index.label, f["index/label"][()])
    in_seq = index.sequence != ""
    assert set(index.sequence[in_seq]) == {"p01_seq", "p02_seq"}
    assert (index.frame[~in_seq] == -1).all() and sorted(index.frame[in_seq]) == [0, 0, 1, 1, 2, 2]
    assert (index.expression == -1).all()  # labels of their own, none an expression


def test_apex_frames_keep_one_frame_per_sequence(collection, tmp_path):
    raw, labels, scheme, _ = collection
    out = tmp_path / "apex.h5"
    assert prep(raw, out, labels, scheme, "--frames", "apex", "--subjects", "p02") == 0
    index = read_shard_index([out])
    assert index.sequence[index.sequence != ""].tolist() == ["p02_seq"]
    assert index.frame[index.sequence != ""].tolist() == [1]
    assert len(index) == len(synth.FOLDER_CLASSES) + 1


def test_other_labels_do_not_resume_a_shard(collection, tmp_path, capsys):
    raw, labels, scheme, out = collection
    copy = tmp_path / "copy.h5"
    copy.write_bytes(out.read_bytes())
    more = tmp_path / "labels.csv"
    more.write_text(labels.read_text().replace("p02/smile.obj,p02,smile", "p02/smile.obj,p02,grin"))
    assert prep(raw, copy, more, scheme) == 2
    assert "labels ['brow_raise', 'frown', 'jaw_drop', 'smile'], this run has ['brow_raise', " \
           "'frown', 'grin', 'jaw_drop', 'smile']" in capsys.readouterr().err


def test_scans_without_texture_or_landmarks_need_masks_none(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    p = synth.folder._face(0, "p01", "smile", 4.0, 0)[0]
    xyz, faces, *_ = synth.folder.face_mesh(p, vertices=2500, texture_size=16, offset=np.zeros(3))
    (raw / "a.off").write_text(trimesh.exchange.off.export_off(trimesh.Trimesh(xyz, faces,
                                                                               process=False)))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,subject,label\na.off,p01,smile\n")
    args = ["folder", str(raw), str(tmp_path / "o.h5"), "--labels", str(labels), *SIZE]
    assert cli.main(args) == 1  # nothing written: the one scan failed
    with open_shard(tmp_path / "o.h5") as shard:
        assert "no landmark file and no texture for dlib" in shard.errors()[0]["message"]
    assert cli.main(args + ["--masks", "none", "--overwrite"]) == 0
    with open_shard(tmp_path / "o.h5") as shard:
        s = shard.sample(0)
        assert shard.masks == "none" and s["mask_source"] == 2
        assert not s["mask"].any() and not s["mask56"].any() and not s["texture"].any()
        assert s["coverage"].mean() > 0.3
    assert read_shard_index([tmp_path / "o.h5"]).masks == "none"
    assert verify(tmp_path / "o.h5") == []


def test_shard_reads_in_plain_h5py_and_hugging_face_datasets(collection, tmp_path):
    """The shard as written, through h5py and through datasets' own HDF5 builder (no
    conversion; docs/shards.md), give the same arrays and labels."""
    pytest.importorskip("datasets")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the builder is local; never the network
    from fer3d_data.shards.hf import load_hf

    *_, out = collection
    ds = load_hf(out, cache_dir=tmp_path / "hf").with_format("numpy")
    with h5py.File(out, "r") as f:
        assert len(ds) == f["index/sample_id"].shape[0]
        assert ds.features["index"]["label"].names == list(f.attrs["class_names"])
        for i in (0, len(ds) - 1):
            row = ds[i]
            for name in ("texture", "depth", "coverage", "mask56", "landmarks"):
                np.testing.assert_array_equal(row[name], f[name][i], err_msg=name)
            assert row["index"]["sample_id"] == f["index/sample_id"].asstr()[i]
            assert row["index"]["label"] == f["index/label"][i]
            assert row["index"]["sequence"] == f["index/sequence"].asstr()[i]
