"""Issue 9, prep half: config validation, per-sample sanity checks, a full disk, the runner's
time limit, signals and worker lifetime. Fixtures from fer3d_data.synth only."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fer3d_data import shards, synth
from fer3d_data.datasets import walkers
from fer3d_data.errors import Fer3dDataError
from fer3d_data.prep import PrepConfig, run_prep
from fer3d_data.prep.sanity import sanity_problems

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import fake_sample, writer  # noqa: E402

# ---------------------------------------------------------------- config validation


def test_config_strings_are_coerced_once():
    cfg = PrepConfig.from_dict({"pose": "no", "image_size": "64", "smoothness": "2.5", "scan_timeout": 10})
    assert (cfg.pose, cfg.image_size, cfg.smoothness, cfg.scan_timeout) == (False, 64, 2.5, 10.0)
    assert PrepConfig(pose="TRUE").pose is True and PrepConfig(image_size=64.0).image_size == 64


def test_config_names_every_bad_key_once():
    with pytest.raises(Fer3dDataError) as e:
        PrepConfig.from_dict({"pose": "maybe", "image_size": 1.5, "interp": "cubic", "crop_radius": -1,
                              "scan_timeout": float("nan"), "min_points": True, "compression_level": 10,
                              "min_landmark_fraction": 1.5, "smoothness": "abc", "dataset": "bu4dfe"})
    message = str(e.value)
    for key, problem in (("pose", "must be a boolean (true or false), got 'maybe'"),
                         ("image_size", "must be an integer, got 1.5"), ("interp", "must be one of"),
                         ("crop_radius", "must be > 0, got -1"), ("scan_timeout", "must be finite, got nan"),
                         ("min_points", "must be a number, got True"),
                         ("compression_level", "must be >= 0 and <= 9, got 10"),
                         ("min_landmark_fraction", "must be >= 0 and <= 1, got 1.5"),
                         ("smoothness", "must be a number, got 'abc'"), ("dataset", "must be one of")):
        assert message.count(f" {key} must") == 1, key
        assert f"{key} {problem}" in message, key


def test_config_refuses_unknown_keys_and_non_mappings():
    with pytest.raises(Fer3dDataError, match="unknown preprocessing config keys \\['smoothnes'\\]"):
        PrepConfig.from_dict({"smoothnes": 1.0})
    with pytest.raises(Fer3dDataError, match="must be a mapping"):
        PrepConfig.from_dict([("pose", True)])


def test_scan_timeout_does_not_block_a_resume(tmp_path):
    """A time limit changes no sample: a rerun with another one resumes the same shard."""
    out = tmp_path / "a.h5"
    with writer(out, PrepConfig(image_size=32, scan_timeout=5)) as w:
        w.append(fake_sample(0))
    with writer(out, PrepConfig(image_size=32, scan_timeout=60)) as w:
        assert len(w) == 1
    with pytest.raises(Fer3dDataError, match="another config"):
        writer(out, PrepConfig(image_size=32, min_depth_relief=1.0))


# ---------------------------------------------------------------- sanity checks


def sane_arrays(size: int = 32) -> dict:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    mask = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 4) ** 2).astype(np.uint8)
    return {"texture": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "depth": (30 - 0.1 * ((xx - size / 2) ** 2 + (yy - size / 2) ** 2)).astype(np.float32),
            "coverage": np.ones((size, size), bool), "mask": mask,
            "landmarks": rng.uniform(0, size - 1, (83, 2)).astype(np.float32),
            "landmarks68": np.full((68, 2), np.nan, np.float32)}


@pytest.mark.parametrize("breakage, problem", [
    (lambda s: s.update(landmarks=s["landmarks"] + 500), "landmarks: 0/83 on the 32x32 grid"),
    (lambda s: s.update(texture=np.full_like(s["texture"], 77)), "texture: standard deviation 0.00"),
    (lambda s: s.update(mask=np.zeros_like(s["mask"])), "mask: empty"),
    (lambda s: s.update(depth=np.zeros_like(s["depth"])), "depth: relief 0.00 mm"),
    (lambda s: s["depth"].__setitem__((3, 3), np.nan), "depth: 1 non-finite cells"),
    (lambda s: s.update(coverage=np.zeros_like(s["coverage"])), "depth: no cell is covered"),
])
def test_sanity_fails_each_wrong_sample(breakage, problem):
    s = sane_arrays()
    assert sanity_problems(s, 0, PrepConfig().to_dict()) == []
    breakage(s)
    problems = sanity_problems(s, 0, PrepConfig().to_dict())
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_sanity_checks_the_landmarks_the_masks_came_from():
    s = sane_arrays()
    s["landmarks"][:] = np.nan  # dlib ran: the native rows are missing, dlib's count
    assert sanity_problems(s, 0, {})[0].startswith("landmarks: 0/83")
    s["landmarks68"] = np.full((68, 2), 10.0, np.float32)
    assert sanity_problems(s, 1, {}) == []
    s["landmarks68"][:40] = -300
    assert sanity_problems(s, 1, {})[0].startswith("dlib landmarks68: 28/68")
    assert sanity_problems(s, 1, {"min_landmark_fraction": 0.4}) == []


def bu_tree(root, expressions=("neutral", "anger")):
    synth.make_bu3dfe(root, subjects=1, vertices=3000, texture_size=128, f2d_size=8,
                      expressions=expressions)
    return walkers["bu3dfe"](root)


def test_wrong_scans_become_sanity_rows_not_samples(tmp_path):
    """Issue 9: landmarks 500 mm off the mesh and a 1x1 texture were written and verified OK."""
    import cv2

    records = bu_tree(tmp_path / "raw")[:3]
    off, flat, good = records
    lines = off.landmarks.read_text().splitlines()
    off.landmarks.write_text("\n".join(
        " ".join([c[0], *(f"{float(v) + 500:.4f}" for v in c[1:])]) for c in (ln.split() for ln in lines)
        if c) + "\n")
    cv2.imwrite(str(flat.texture), np.full((1, 1, 3), 90, np.uint8))
    out = tmp_path / "bu.h5"
    summary = run_prep(records, out, PrepConfig(image_size=48), workers=0, progress=False,
                       raw_root=tmp_path / "raw")
    assert (summary.written, summary.failed_by_step) == (1, {"sanity": 2})
    with shards.open_shard(out) as shard:
        assert shard.index["sample_id"].tolist() == [good.scan_id]
        errors = {e["source"]: e for e in shard.errors()}
    assert errors[f"F0001/{off.mesh.name}"]["step"] == "sanity"
    assert "landmarks: 0/83 on the 48x48 grid" in errors[f"F0001/{off.mesh.name}"]["message"]
    assert "mask: empty" in errors[f"F0001/{off.mesh.name}"]["message"]
    assert "texture: standard deviation 0.00" in errors[f"F0001/{flat.mesh.name}"]["message"]
    assert shards.verify(out) == []


# ---------------------------------------------------------------- a full disk

from test_cli import fake_process_scan, records  # noqa: E402

from fer3d_data.prep import runner  # noqa: E402
from fer3d_data.shards import writer as shard_writer  # noqa: E402


def run_fake(recs, out, **kw):
    return run_prep(recs, out, PrepConfig(image_size=32), workers=0, progress=False, **kw)


def test_enospc_mid_sample_stops_cleanly_and_resumes(tmp_path, monkeypatch):
    """A write failing on a full disk half-way through a sample (arrays written, index not):
    OSError(ENOSPC) naming the .tmp, the finished samples kept, a rerun completes the shard."""
    recs = records(8, tmp_path)
    monkeypatch.setattr(runner, "process_scan", fake_process_scan({}))
    real = shard_writer.ShardWriter._write_row
    calls = []

    def full_after_five(self, arrays, row):
        calls.append(1)
        if len(calls) == 6:
            for name, a in arrays.items():  # half a row, as a disk filling up leaves it
                self._file[name].resize(self._n + 1, axis=0)
                self._file[name][self._n] = a
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, arrays, row)

    monkeypatch.setattr(shard_writer.ShardWriter, "_write_row", full_after_five)
    out = tmp_path / "out.h5"
    with pytest.raises(OSError) as e:
        run_fake(recs, out)
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(shards.tmp_path(out)))
    assert not out.exists()
    monkeypatch.setattr(shard_writer.ShardWriter, "_write_row", real)
    summary = run_fake(recs, out)
    assert (summary.skipped, summary.written, summary.n_samples) == (5, 3, 8)
    with shards.open_shard(out) as shard:
        assert shard.index["sample_id"].tolist() == [r.scan_id for r in recs]
    assert shards.verify(out) == []


def test_enospc_before_writing_when_free_space_is_short(tmp_path, monkeypatch):
    recs = records(4, tmp_path)
    monkeypatch.setattr(runner, "process_scan", fake_process_scan({}))
    free = iter([10 ** 9] * 3 + [1000] * 10)
    monkeypatch.setattr(shard_writer.ShardWriter, "_free_bytes", lambda self: next(free))
    out = tmp_path / "out.h5"
    with pytest.raises(OSError, match="No space left on device") as e:
        run_fake(recs, out)
    assert e.value.filename == str(shards.tmp_path(out))
    monkeypatch.undo()
    monkeypatch.setattr(runner, "process_scan", fake_process_scan({}))
    assert run_fake(recs, out).skipped == 3


def flip_last_byte_of_chunk(path, dataset: str, row: int) -> None:
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info_by_coord((row,) + (0,) * (f[dataset].ndim - 1))
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size - 1)
        b = fh.read(1)
        fh.seek(info.byte_offset + info.size - 1)
        fh.write(bytes([b[0] ^ 0x5A]))


@pytest.mark.parametrize("dataset", ["texture", "index/mask_source"])
def test_resume_drops_an_unreadable_last_row_only(tmp_path, dataset):
    """Issue 9: a half-written last chunk made every rerun fail with 'filter returned
    failure during read'; now that row is dropped, the finished ones are kept."""
    out = tmp_path / "a.h5"
    w = writer(out)
    for i in range(5):
        w.append(fake_sample(i))
    w.close(complete=False)
    flip_last_byte_of_chunk(shards.tmp_path(out), dataset, 4)
    with writer(out) as w:
        assert len(w) == 4
        assert w.existing_ids() == {fake_sample(i).sample_id for i in range(4)}
        w.append(fake_sample(4))
    assert shards.verify(out) == []


def mount_tmpfs(path, size: str) -> bool:
    path.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def test_full_tmpfs_stops_cleanly_and_resumes_after_space_is_freed(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "2m"):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        recs = records(120, tmp_path)
        monkeypatch.setattr(runner, "process_scan", fake_process_scan({}))
        out = disk / "out.h5"
        with pytest.raises(OSError) as e:
            run_fake(recs, out)
        assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(shards.tmp_path(out)))
        with shards.open_shard(shards.tmp_path(out)) as shard:
            kept = len(shard)
        assert 0 < kept < len(recs)
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        summary = run_fake(recs, out)
        assert (summary.skipped, summary.n_samples) == (kept, len(recs))
        assert shards.verify(out) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)
