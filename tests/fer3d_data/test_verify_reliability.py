"""Issue 9, verify half: what `verify` proves (digests, checksums, depth sanity, merged parts)
and a seeded byte-flip/truncation fuzz suite (more cases with ``-m fuzz``)."""

from __future__ import annotations

import importlib
import os
import re
import resource
import signal
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from fer3d_data import shards
from fer3d_data.errors import Fer3dDataError

verify_module = importlib.import_module("fer3d_data.shards.verify")  # the name is the function

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import write_shard  # noqa: E402


def patch_bytes(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1, (old, data.count(old))
    path.write_bytes(data.replace(old, new))


def test_one_character_in_config_is_detected(tmp_path):
    """Issue 9: `"image_size": 74` in /config passed verify in 23 of 40 trials."""
    out = write_shard(tmp_path / "a.h5", n=2)
    patch_bytes(out, b'"image_size": 32', b'"image_size": 74')
    problems = shards.verify(out)
    assert any("/config: SHA-256 digest differs" in p for p in problems), problems


def test_one_character_in_an_error_message_is_detected(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=2, errors=[("F9/x.wrl", "gridfit", "singular matrix")])
    patch_bytes(out, b"singular matrix", b"singular matrin")
    problems = shards.verify(out)
    assert any("/errors/message: SHA-256 digest differs" in p for p in problems), problems


def test_a_changed_attribute_is_detected(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=2)
    with h5py.File(out, "r+") as f:
        f["landmarks"].attrs["names"] = ["x"] * 83
    assert any("attributes: SHA-256 digest differs" in p for p in shards.verify(out))


def test_a_file_without_digests_is_reported(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=2)
    with h5py.File(out, "r+") as f:
        del f.attrs["digests"]
    assert any("no stored digests" in p for p in shards.verify(out))


def corrupt_error_message(path: Path) -> None:
    """Point row 0 of /errors/message at a heap object that does not exist: HDF5 cannot read
    the column (``bad heap index``) while everything else reads."""
    with h5py.File(path, "r") as f:
        offset = f["errors/message"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:  # a string is (length u32, heap address u64, object u32)
        fh.seek(offset + 12)
        fh.write((0xFFFF).to_bytes(4, "little"))


def test_unreadable_errors_are_reported(tmp_path):
    out = write_shard(tmp_path / "a.h5", n=2, errors=[("F9/x.wrl", "gridfit", "singular matrix")])
    corrupt_error_message(out)
    problems = shards.verify(out)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{out}: /errors/message: cannot be read (corrupt: OSError: ")
    assert "bad heap index" in problems[0]


def test_depth_reading_as_zeros_is_caught(tmp_path):
    """Issue 9: a flip that leaves /depth of a sample reading as all zeros passed verify.
    A chunk whose index entry is lost reads as the fill value, past Fletcher-32."""
    out = write_shard(tmp_path / "a.h5", n=4)
    with h5py.File(out, "r+") as f:
        f["depth"][2] = 0.0
    problems = shards.verify(out)
    assert any("sample 2" in p and "sanity: depth: relief 0.00 mm" in p for p in problems), problems


def test_merged_part_missing_or_replaced_by_a_shorter_shard(tmp_path):
    (tmp_path / "parts").mkdir()
    a = write_shard(tmp_path / "parts" / "a.h5", n=4)
    b = write_shard(tmp_path / "parts" / "b.h5", n=3, start=4)
    out = shards.merge(tmp_path / "all.h5", [a, b], virtual=True)
    assert shards.verify(out) == []
    write_shard(tmp_path / "short.h5", n=2, start=4)
    os.replace(tmp_path / "short.h5", b)
    with pytest.raises(Fer3dDataError, match=r"merged part parts/b.h5: /\w+ has shape \(2,"):
        shards.open_shard(out).close()
    assert re.search(r"merged part parts/b.h5: /\w+ has shape \(2,", shards.verify(out)[0])
    b.unlink()
    with pytest.raises(Fer3dDataError, match="parts are missing: parts/b.h5"):
        shards.open_shard(out)
    assert "parts are missing: parts/b.h5" in shards.verify(out)[0]


# ------------------------------------------------- the forked reader: crash and stall


def in_child_at(monkeypatch, sample: int, act) -> None:
    """verify's child runs ``act()`` when it reaches ``sample`` (as HDF5 does when it crashes
    or loops on a damaged chunk); the calling process must never read (it would die too)."""
    parent, real = os.getpid(), verify_module._sample_problems

    def sample_problems(f, spec, i, config):
        assert os.getpid() != parent, "verify read the shard in the calling process"
        if i == sample:
            act()
        return real(f, spec, i, config)
    monkeypatch.setattr(verify_module, "_sample_problems", sample_problems)


def segfault() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_crash_of_the_reader_is_reported(tmp_path, monkeypatch):
    out = write_shard(tmp_path / "a.h5", n=4)
    in_child_at(monkeypatch, 2, segfault)
    assert shards.verify(out) == [f"{out}: corrupt: the HDF5 library crashed reading it "
                                  f"(child exit {-signal.SIGSEGV})"]


def test_a_reader_that_stops_making_progress_is_killed_and_reported(tmp_path, monkeypatch):
    out, pid_file = write_shard(tmp_path / "a.h5", n=4), tmp_path / "child.pid"

    def loop_forever():
        pid_file.write_text(str(os.getpid()))
        time.sleep(3600)

    in_child_at(monkeypatch, 1, loop_forever)
    t0 = time.monotonic()
    problems = shards.verify(out, stall_s=0.5)
    assert time.monotonic() - t0 < 10
    assert problems == [f"{out}: corrupt: reading it made no progress for 0.5 s (the HDF5 "
                        "library loops on a damaged structure)"]
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left looping
        os.kill(int(pid_file.read_text()), 0)


def test_a_slow_reader_that_makes_progress_is_not_a_stall(tmp_path, monkeypatch):
    """Progress is one step per sample: 6 samples of 0.25 s each take longer than stall_s."""
    out = write_shard(tmp_path / "a.h5", n=6)
    parent, real = os.getpid(), verify_module._sample_problems

    def slow(f, spec, i, config):
        assert os.getpid() != parent
        time.sleep(0.25)
        return real(f, spec, i, config)
    monkeypatch.setattr(verify_module, "_sample_problems", slow)
    t0 = time.monotonic()
    assert shards.verify(out, stall_s=1.0) == []
    assert time.monotonic() - t0 > 1.0


# ---------------------------------------------------------------- fuzz


def digested_ranges(path: Path) -> list[tuple[int, int]]:
    """Byte ranges verify covers by a checksum: every chunk of the per-sample datasets and
    index columns (Fletcher-32), and the text of /config and of the /errors row (SHA-256)."""
    ranges = []
    data = path.read_bytes()
    with h5py.File(path, "r") as f:
        for name in (*shards.array_spec(2, 1), *(f"index/{c}" for c in shards.INDEX_DTYPES)):
            ds = f[name]
            for k in range(ds.id.get_num_chunks()):
                info = ds.id.get_chunk_info(k)
                ranges.append((info.byte_offset, info.byte_offset + info.size))
        texts = [f["config"][()], *(f[f"errors/{c}"][0] for c in shards.ERROR_COLUMNS)]
    for text in texts:
        assert data.count(text) == 1, text
        ranges.append((data.index(text), data.index(text) + len(text)))
    return ranges


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = write_shard(tmp_path_factory.mktemp("fuzz") / "a.h5", n=4,
                       errors=[("F9/x.wrl", "gridfit", "singular matrix")])
    assert shards.verify(path) == []
    return path, path.read_bytes(), digested_ranges(path)


def mutate(data: bytes, rng: np.random.Generator, ranges) -> tuple[bytes, str, bool]:
    """(mutated bytes, what was done, whether a checksummed chunk changed)."""
    buf = bytearray(data)
    kind = rng.choice(["flip", "flip_chunk", "truncate", "zero_run"])
    if kind == "truncate":
        cut = int(rng.integers(0, len(buf)))
        return bytes(buf[:cut]), f"truncate at {cut}", True
    if kind == "flip_chunk":
        lo, hi = ranges[int(rng.integers(len(ranges)))]
        pos = int(rng.integers(lo, hi))
    else:
        pos = int(rng.integers(0, len(buf)))
    if kind == "zero_run":
        n = int(rng.integers(1, 64))
        buf[pos:pos + n] = bytes(min(n, len(buf) - pos))
        what = f"zero {n} bytes at {pos}"
    else:
        buf[pos] ^= 1 << int(rng.integers(8))
        what = f"flip a bit at {pos}"
    # a zero run starting before a range can still end inside it; zeros over zeros change nothing
    in_chunk = any(buf[lo:hi] != data[lo:hi] for lo, hi in ranges)
    return bytes(buf), what, in_chunk


def run_fuzz(pristine, tmp_path, cases: int, seed: int) -> int:
    """Run ``cases`` mutations; the number of them that changed a checksummed byte."""
    _, data, ranges = pristine
    rng = np.random.default_rng(seed)
    target = tmp_path / "m.h5"
    changed = 0
    for case in range(cases):
        mutated, what, in_chunk = mutate(data, rng, ranges)
        changed += in_chunk
        target.write_bytes(mutated)
        t0 = time.monotonic()
        problems = shards.verify(target, stall_s=1.0)  # must not raise; HDF5 can loop forever
        seconds = time.monotonic() - t0
        assert seconds < 2.0, (case, what, seconds)
        assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
        if in_chunk:
            assert problems, f"case {case}: {what} changed a checksummed chunk, verify said OK"
    return changed


def test_fuzz_verify_never_raises_and_never_misses_a_checksummed_change(pristine, tmp_path):
    # a quarter of the cases flip a bit inside a checksummed range and a quarter truncate:
    # at least half must change a covered byte, or the check above hardly ever runs
    assert run_fuzz(pristine, tmp_path, cases=40, seed=0) >= 20


@pytest.mark.fuzz
@pytest.mark.slow
def test_fuzz_verify_many(pristine, tmp_path):
    cases = int(os.environ.get("FER3D_FUZZ_CASES", "1000"))
    assert run_fuzz(pristine, tmp_path, cases=cases, seed=1) >= cases // 2


def test_a_sample_without_a_stored_chunk_is_caught(tmp_path):
    """A write lost on a full disk can leave the extent grown and no chunk: zeros on read."""
    out = write_shard(tmp_path / "a.h5", n=3)
    with h5py.File(out, "r+") as f:
        f["texture"].resize(4, axis=0)
        f["index/subject"].resize(4, axis=0)
    problems = shards.verify(out)
    assert any("/texture: 1 of 4 samples have no stored chunk" in p for p in problems), problems


def test_training_index_refuses_a_virtual_shard_with_a_missing_part(tmp_path):
    from fer3d_data.shard_index import read_shard_index

    (tmp_path / "parts").mkdir()
    a = write_shard(tmp_path / "parts" / "a.h5", n=4)
    b = write_shard(tmp_path / "parts" / "b.h5", n=3, start=4)
    out = shards.merge(tmp_path / "all.h5", [a, b], virtual=True)
    assert len(read_shard_index([out])) == 7
    b.unlink()
    with pytest.raises(Fer3dDataError, match="parts are missing: parts/b.h5"):
        read_shard_index([out])
