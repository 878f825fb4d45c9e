"""ShardWriter / open_shard / verify / merge / inspect on fabricated samples (S = 32)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from fer3d_data import shards
from fer3d_data.errors import Fer3dDataError
from fer3d_data.prep import PrepConfig, Sample
from fer3d_data.schema import CLASS_NAMES, FORMAT_VERSION

S = 32
EXPRESSIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


def fake_sample(i: int, *, size: int = S, k: int = 83, seed: int = 0) -> Sample:
    """A sample of random arrays with every shape and dtype of the schema; deterministic in i."""
    rng = np.random.default_rng(seed * 1000 + i)
    regions = (rng.random((3, size, size)) > 0.7).astype(np.uint8)
    mask = regions.max(axis=0)
    mask56 = (rng.random((56, 56)) > 0.7).astype(np.float32)
    mask28 = mask56.reshape(28, 2, 28, 2).mean(axis=(1, 3)).astype(np.float32)
    landmarks = rng.uniform(0, size - 1, (k, 2)).astype(np.float32)
    landmarks[::7] = np.nan
    expression = EXPRESSIONS[i % 7]
    return Sample(
        sample_id=(f"F{i // 7:04d}_{expression[:2].upper()}"
                   f"{0 if expression == 'neutral' else 4:02d}WH"),
        subject=f"F{i // 7:04d}", expression=expression,
        intensity=0 if expression == "neutral" else 4, source=f"F{i // 7:04d}/scan{i}.wrl",
        texture=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        depth=rng.normal(0, 10, (size, size)).astype(np.float32),
        coverage=rng.random((size, size)) > 0.3, mask=mask, regions=regions,
        mask56=mask56, mask28=mask28, landmarks=landmarks,
        landmarks68=np.full((68, 2), np.nan, np.float32), mask_source=i % 2)


def writer(path, cfg=None, **kw) -> shards.ShardWriter:
    cfg = cfg or PrepConfig(image_size=S)
    scheme, names = cfg.scheme().name, cfg.scheme().names
    return shards.ShardWriter(path, dataset=cfg.dataset, cfg=cfg, image_size=cfg.image_size,
                              landmark_scheme=scheme, landmark_names=names, **kw)


def write_shard(path, n: int = 10, start: int = 0, errors=()) -> Path:
    """A complete shard of fake samples start..start+n-1 plus the given error rows."""
    with writer(path) as w:
        for i in range(start, start + n):
            w.append(fake_sample(i))
        for source, step, message in errors:
            w.add_error(source, step, message)
    return Path(path)


def write_interrupted(path, n: int = 3, start: int = 0) -> Path:
    """``<path>.tmp`` of a run interrupted after fake samples start..start+n-1."""
    w = writer(path)
    for i in range(start, start + n):
        w.append(fake_sample(i))
    w.close(complete=False)
    return shards.tmp_path(path)


def assert_same_sample(got: dict, want: Sample):
    for name in ("texture", "depth", "coverage", "mask", "regions", "landmarks", "landmarks68"):
        np.testing.assert_array_equal(got[name], getattr(want, name), err_msg=name)
    for name in ("mask56", "mask28"):
        np.testing.assert_allclose(got[name], getattr(want, name), atol=5e-4, err_msg=name)
    assert got["sample_id"] == want.sample_id
    assert got["subject"] == want.subject
    assert CLASS_NAMES[got["expression"]] == want.expression
    assert got["intensity"] == want.intensity
    assert got["source"] == want.source
    assert got["mask_source"] == want.mask_source


def test_round_trip_schema_and_values(tmp_path):
    path = write_shard(tmp_path / "a.h5", n=9, errors=[("F9/x.wrl", "gridfit", "singular")])
    assert path.exists() and not shards.tmp_path(path).exists()
    with shards.open_shard(path) as shard:
        assert len(shard) == 9
        assert shard.attrs["format_version"] == FORMAT_VERSION
        assert shard.attrs["dataset"] == "bu3dfe"
        assert shard.attrs["image_size"] == S and shard.attrs["crop_radius"] == 90.0
        assert shard.class_names == CLASS_NAMES
        assert shard.config == PrepConfig(image_size=S).to_dict()
        assert shard.landmark_scheme == "bu3dfe83" and len(shard.landmark_names) == 83
        assert shard.index["sample_id"].dtype.kind == "U"
        np.testing.assert_array_equal(shard.index["expression"], [i % 7 for i in range(9)])
        for i in (0, 4, 8):
            assert_same_sample(shard.sample(i), fake_sample(i))
        assert_same_sample(shard.sample(-1), fake_sample(8))
        with pytest.raises(IndexError):
            shard.sample(9)
        assert shard.errors() == [{"source": "F9/x.wrl", "step": "gridfit", "message": "singular"}]
        f = shard.file
        assert f["texture"].shape == (9, S, S, 3) and f["texture"].dtype == np.uint8
        assert f["depth"].dtype == np.float32 and f["coverage"].dtype == np.bool_
        assert f["mask56"].shape == (9, 56, 56) and f["mask56"].dtype == np.float16
        assert f["mask28"].shape == (9, 28, 28) and f["regions"].shape == (9, 3, S, S)
        assert f["landmarks"].shape == (9, 83, 2) and f["landmarks68"].shape == (9, 68, 2)
        assert f["texture"].chunks == (1, S, S, 3) and f["texture"].maxshape == (None, S, S, 3)
        assert f["depth"].compression == "gzip" and f["depth"].shuffle and f["depth"].fletcher32
        assert f["index/sample_id"].dtype.itemsize == 64 and f["index/source"].dtype.itemsize == 256
    assert shards.verify(path) == []


def test_writer_rejects_bad_samples(tmp_path):
    with writer(tmp_path / "a.h5") as w:
        w.append(fake_sample(0))
        with pytest.raises(Fer3dDataError, match="already in the shard"):
            w.append(fake_sample(0))
        bad = fake_sample(1)
        bad.depth = np.zeros((S + 1, S), np.float32)
        with pytest.raises(Fer3dDataError, match=r"depth has shape \(33, 32\)"):
            w.append(bad)
        long_id = fake_sample(2)
        long_id.sample_id = "x" * 65
        with pytest.raises(Fer3dDataError, match="64 UTF-8 bytes"):
            w.append(long_id)
        assert len(w) == 1


def test_resume_after_crash_equals_uninterrupted_run(tmp_path):
    """Write 6 of 12 samples in a process that dies without closing, then resume."""
    whole = write_shard(tmp_path / "whole.h5", n=12)
    out = tmp_path / "resumed.h5"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_shards import writer, fake_sample
        w = writer({str(out)!r})
        for i in range(6):
            w.append(fake_sample(i))
        w.add_error("F0001/scan8.wrl", "read", "will succeed later")
        os._exit(3)  # a crash: no close, no rename
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert shards.tmp_path(out).exists() and not out.exists()
    with writer(out) as w:
        assert len(w) == 6
        assert w.existing_ids() == {fake_sample(i).sample_id for i in range(6)}
        w.add_error("F9/x.wrl", "gridfit", "old")
        w.add_error("F9/x.wrl", "gridfit", "new")  # replaces, no duplicate row
        for i in range(6, 12):
            w.append(fake_sample(i))
    with shards.open_shard(out) as a, shards.open_shard(whole) as b:
        assert len(a) == len(b) == 12
        for i in range(12):
            sa, sb = a.sample(i), b.sample(i)
            for name in sb:
                np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)
        # scan8's error row of the first run is gone: it was written on the rerun
        assert a.errors() == [{"source": "F9/x.wrl", "step": "gridfit", "message": "new"}]


def test_resume_truncates_half_written_row(tmp_path):
    out = tmp_path / "a.h5"
    with h5py.File(write_interrupted(out), "r+") as f:  # a crash between two datasets' writes
        f["texture"].resize(4, axis=0)
        f["depth"].resize(4, axis=0)
    with writer(out) as w:
        assert len(w) == 3
        w.append(fake_sample(3))
    with shards.open_shard(out) as shard:
        assert len(shard) == 4
        assert_same_sample(shard.sample(3), fake_sample(3))
    assert shards.verify(out) == []


def test_complete_shard_is_extended_in_place(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=3)
    with writer(out) as w:
        assert len(w) == 3
        w.append(fake_sample(3))
    with shards.open_shard(out) as shard:
        assert len(shard) == 4


def test_config_mismatch_is_refused_before_any_work(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=2)
    with pytest.raises(Fer3dDataError,
                       match=r"another config \(smoothness: 1.0 -> 2.0\).*--overwrite"):
        writer(out, PrepConfig(image_size=S, smoothness=2.0))
    assert out.exists() and not shards.tmp_path(out).exists()
    with writer(out, PrepConfig(image_size=S, smoothness=2.0), overwrite=True) as w:
        assert len(w) == 0
    with shards.open_shard(out) as shard:
        assert len(shard) == 0 and shard.config["smoothness"] == 2.0


def test_version_mismatch_is_refused(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=2)
    with h5py.File(out, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(Fer3dDataError, match=rf"format_version {FORMAT_VERSION + 1}.*--overwrite"):
        writer(out)
    with pytest.raises(Fer3dDataError,
                       match=rf"a.h5: fer3d-shard format_version {FORMAT_VERSION + 1}"):
        shards.open_shard(out)
    assert shards.verify(out)[0].endswith("(--overwrite)")


def test_open_shard_errors_name_the_file(tmp_path):
    with pytest.raises(Fer3dDataError, match="nope.h5: no such shard"):
        shards.open_shard(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(Fer3dDataError, match="text.h5: cannot be opened as HDF5"):
        shards.open_shard(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something"
    with pytest.raises(Fer3dDataError, match="other.h5: not a fer3d-shard file"):
        shards.open_shard(tmp_path / "other.h5")
    with pytest.raises(Fer3dDataError, match="other.h5: not a fer3d-shard file.*--overwrite"):
        writer(tmp_path / "other.h5")


def test_verify_reports_flipped_bytes_per_sample(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=5)
    with h5py.File(out, "r") as f:
        info = f["texture"].id.get_chunk_info(3)  # the chunk of sample 3
    with open(out, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        b = fh.read(1)
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    problems = shards.verify(out)
    assert len(problems) == 1
    assert f"sample 3 ({fake_sample(3).sample_id}): /texture cannot be read" in problems[0]


def test_verify_reports_bad_values(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=3)
    with h5py.File(out, "r+") as f:
        f["depth"][1, 0, 0] = np.nan
        f["mask28"][2, 0, 0] = 0.75 if f["mask28"][2, 0, 0] < 0.5 else 0.0
        f["index/expression"][0] = 9
        f["index/label"][2] = 7
    problems = shards.verify(out)
    assert any("/index/expression: codes outside -1..6 at rows [0]" in p for p in problems)
    assert any("/index/label: codes outside 0..6 at rows [2]" in p for p in problems)
    # changed in place
    assert any("/index/expression: SHA-256 digest differs" in p for p in problems)
    assert any("sample 1" in p and "sanity: depth: 1 non-finite cells" in p for p in problems)
    assert any("sample 2" in p and "mask28 differs from the area-resize of mask56" in p
               for p in problems)
    assert len(problems) == 6  # the label digest differs too


def _two_parts(tmp_path):
    (tmp_path / "parts").mkdir()
    a = write_shard(tmp_path / "parts" / "a.h5", n=4, errors=[("s1", "read", "m1")])
    b = write_shard(tmp_path / "parts" / "b.h5", n=3, start=4, errors=[("s2", "pose", "m2")])
    return a, b


@pytest.mark.parametrize("virtual", [False, True])
def test_merge_reads_as_one(tmp_path, virtual):
    a, b = _two_parts(tmp_path)
    out = shards.merge(tmp_path / "all.h5", [a, b], virtual=virtual)
    with shards.open_shard(out) as shard:
        assert len(shard) == 7
        for i in range(7):
            assert_same_sample(shard.sample(i), fake_sample(i))
        assert [e["source"] for e in shard.errors()] == ["s1", "s2"]
        assert shard.attrs["part_lengths"] == [4, 3]
        if virtual:
            assert shard.attrs["parts"] == ["parts/a.h5", "parts/b.h5"]
        else:
            assert "parts" not in shard.attrs and shard.attrs["merged_from"] == ["a.h5", "b.h5"]
    assert shards.verify(out) == []
    with pytest.raises(Fer3dDataError, match="exists"):
        shards.merge(out, [a, b], virtual=virtual)
    with pytest.raises(Fer3dDataError, match="share sample ids"):
        shards.merge(tmp_path / "dup.h5", [a, a], virtual=virtual)
    c = tmp_path / "c.h5"
    with writer(c, PrepConfig(image_size=S, pose=False)) as w:
        w.append(fake_sample(20))
    with pytest.raises(Fer3dDataError, match=r"config differs .*pose: True -> False"):
        shards.merge(tmp_path / "bad.h5", [a, c], virtual=virtual)


def test_merged_shard_travels(tmp_path, monkeypatch):
    """Copied alone to another folder and read with plain h5py from a third: every byte there."""
    a, b = _two_parts(tmp_path)
    out = shards.merge(tmp_path / "all.h5", [a, b])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = elsewhere / "copy.h5"
    copy.write_bytes(out.read_bytes())
    third = tmp_path / "third"
    third.mkdir()
    monkeypatch.chdir(third)
    with h5py.File(copy, "r") as f:
        assert not any(f[name].is_virtual for name in ("depth", "index/sample_id"))
        ids = f["index/sample_id"].asstr()[()].tolist()
        assert ids == [fake_sample(i).sample_id for i in range(7)]
        np.testing.assert_array_equal(f["depth"][5], fake_sample(5).depth)
        np.testing.assert_array_equal(f["texture"][0], fake_sample(0).texture)
        assert f["depth"].fletcher32 and f["depth"].chunks == (1, S, S)
    assert shards.verify(copy) == []
    # a self-contained merged shard is an ordinary one: a later run may append to it
    with writer(copy) as w:
        w.append(fake_sample(7))
    assert shards.inspect(copy)["n_samples"] == 8


def test_virtual_merge_refused_without_its_parts(tmp_path):
    a, b = _two_parts(tmp_path)
    out = shards.merge(tmp_path / "all.h5", [a, b], virtual=True)
    with pytest.raises(Fer3dDataError, match="merged"):
        writer(out)
    with pytest.raises(Fer3dDataError, match="virtual merged shard"):
        shards.merge(tmp_path / "again.h5", [a, out])
    os.remove(b)
    with pytest.raises(Fer3dDataError, match=r"parts are missing: parts/b.h5; .*without --virtual"):
        shards.open_shard(out)
    assert "parts are missing" in shards.verify(out)[0]


def test_inspect_counts(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=14, errors=[("s1", "read", "x"), ("s2", "read", "y"),
                                                        ("s3", "gridfit", "z")])
    info = shards.inspect(out)
    assert info["n_samples"] == 14 and info["n_subjects"] == 2
    assert info["by_subject"] == {"F0000": 7, "F0001": 7}
    assert info["by_label"] == {name: 2 for name in CLASS_NAMES}
    assert info["by_intensity"] == {0: 2, 4: 12}
    assert info["by_mask_source"] == {"native": 7, "dlib": 7}
    assert info["errors_by_step"] == {"gridfit": 1, "read": 2} and info["n_errors"] == 3
    assert info["complete"] is True
    json.dumps(info)  # printable as JSON by the CLI
