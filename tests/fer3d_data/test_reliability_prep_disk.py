"""Issue 9: a full disk during prep is one clean OSError(ENOSPC) naming the .tmp, keeps every
finished sample, and a rerun resumes; a half-written last row is dropped on resume, never a
finished one. Injected ENOSPC, and real tmpfs file systems where mounting is permitted."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from fer3d_data import shards
from fer3d_data.errors import Fer3dDataError, ScanError
from fer3d_data.prep import PrepConfig, run_prep, runner
from fer3d_data.shards import writer as shard_writer
from fer3d_data.shards.space import SpaceGuard

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import fake_process_scan, records  # noqa: E402
from test_shards import fake_sample, write_interrupted, writer  # noqa: E402
from test_verify_reliability import corrupt_error_message  # noqa: E402


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
    monkeypatch.setattr(SpaceGuard, "free_bytes", lambda self: next(free))
    out = tmp_path / "out.h5"
    with pytest.raises(OSError, match="No space left on device") as e:
        run_fake(recs, out)
    assert e.value.filename == str(shards.tmp_path(out))
    monkeypatch.undo()
    monkeypatch.setattr(runner, "process_scan", fake_process_scan({}))
    assert run_fake(recs, out).skipped == 3


def test_a_full_disk_reaches_the_command_line_as_one_line(tmp_path, monkeypatch):
    """The ENOSPC of a prep run reaches the CLI plumbing (fer3d_data.clibase) as one line
    naming the file, exit 2: no h5py traceback."""
    import click
    from click.testing import CliRunner

    from fer3d_data import clibase

    recs = records(3, tmp_path)
    monkeypatch.setattr(runner, "process_scan", fake_process_scan({}))
    free = iter([10 ** 9] * 2 + [1000] * 10)
    monkeypatch.setattr(SpaceGuard, "free_bytes", lambda self: next(free))
    out = tmp_path / "out.h5"

    @click.command(cls=clibase.Command)
    def prep():
        run_fake(recs, out)

    result = CliRunner().invoke(prep, [])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [(f"Error: no space left on device writing {shards.tmp_path(out)}; "
                      "free space and rerun the same command to resume")]


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
    flip_last_byte_of_chunk(write_interrupted(out, n=5), dataset, 4)
    with writer(out) as w:
        assert len(w) == 4
        assert w.existing_ids() == {fake_sample(i).sample_id for i in range(4)}
        w.append(fake_sample(4))
    assert shards.verify(out) == []


def test_a_tmp_deleted_under_a_writer_is_a_clear_error(tmp_path):
    out = tmp_path / "a.h5"
    w = writer(out)
    w.append(fake_sample(0))
    shards.tmp_path(out).unlink()  # the open file lives on; its name is gone
    with pytest.raises(Fer3dDataError, match=r"a.h5.tmp: vanished before it could be renamed"):
        w.close()


@pytest.mark.parametrize("fails_again", [True, False])
def test_an_unreadable_errors_table_is_emptied_and_its_scans_retried(tmp_path, monkeypatch,
                                                                     fails_again):
    """A full disk while /errors is rewritten can leave it unreadable: the resume starts it
    afresh (the failed scans are not in the index, so they are retried and recorded again)."""
    recs = records(4, tmp_path)
    failing = {recs[1].scan_id: ScanError("gridfit", "singular matrix")}
    out = tmp_path / "out.h5"
    w = writer(out)  # a killed run: samples 0 and 2 and scan 1's error row written
    for i in (0, 2):
        w.append(fake_sample(i))
    w.add_error(runner.source_of(recs[1], None), "gridfit", "singular matrix")
    w.close(complete=False)
    corrupt_error_message(shards.tmp_path(out))
    monkeypatch.setattr(runner, "process_scan", fake_process_scan(failing if fails_again else {}))
    summary = run_fake(recs, out)
    assert (summary.skipped, summary.written) == (2, 1 if fails_again else 2)
    with shards.open_shard(out) as shard:
        assert [e["message"] for e in shard.errors()] == (["singular matrix"] if fails_again
                                                          else [])
    assert shards.verify(out) == []


_MS_REMOUNT = 32  # <sys/mount.h>


def _mount(path: Path, size: str, flags: int = 0) -> None:
    """mount(2) of a tmpfs of ``size`` on ``path`` (flags: remount); OSError with its errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, f"size={size}".encode()):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(path))


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` on ``path``; yields ``resize(new_size)``. Skips the test only where
    mounting is not permitted (EPERM: not root, or a container without CAP_SYS_ADMIN); any
    other failure fails it."""
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs and mount(2) are Linux")
    path.mkdir(exist_ok=True)
    try:
        _mount(path, size)
    except OSError as e:
        if e.errno == errno.EPERM:
            pytest.skip(f"mounting a tmpfs is not permitted here ({e})")
        raise
    try:
        yield lambda new_size: _mount(path, new_size, _MS_REMOUNT)
    finally:
        ctypes.CDLL(None, use_errno=True).umount2(os.fsencode(path), 0)


def test_tmpfs_tests_skip_only_where_mounting_is_not_permitted(tmp_path):
    with tmpfs(tmp_path / "ok", "1m"):  # skips here where mounting is not permitted
        pass
    with pytest.raises(OSError) as e:
        try:
            with tmpfs(tmp_path / "bad", "4 megabytes"):
                pass
        except pytest.skip.Exception:
            pytest.fail("a mount failing for another reason than EPERM skipped the test")
    assert e.value.errno == errno.EINVAL


def test_full_tmpfs_stops_cleanly_and_resumes_after_space_is_freed(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    with tmpfs(disk, "4m") as resize:
        recs = records(200, tmp_path)
        monkeypatch.setattr(runner, "process_scan", fake_process_scan({}))
        out = disk / "out.h5"
        with pytest.raises(OSError) as e:
            run_fake(recs, out)
        assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(shards.tmp_path(out)))
        with shards.open_shard(shards.tmp_path(out)) as shard:
            kept = len(shard)
        assert 0 < kept < len(recs)
        resize("16m")
        summary = run_fake(recs, out)
        assert (summary.skipped, summary.n_samples) == (kept, len(recs))
        assert shards.verify(out) == []


FILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from fer3d_data.shards.space import SpaceGuard
from test_shards import fake_sample, writer

SpaceGuard.free_bytes = lambda self: float("inf")  # no check before writing: HDF5 hits the wall
w = writer({out!r})
try:
    for i in range(10000):
        w.append(fake_sample(i))
except OSError as e:
    w.close(complete=False)
    print("stopped", e.errno, e.filename, len(w))
"""


def test_a_write_failing_inside_hdf5_on_a_full_disk_is_clean(tmp_path):
    """Issue 9: ~390 lines of h5py tracebacks and a segfault (rc 139), then no resume. With
    the free-space check disabled the write fails inside HDF5: one OSError(ENOSPC), a clean
    close (the ballast makes room for HDF5's flush), and a resume."""
    disk = tmp_path / "disk"
    with tmpfs(disk, "2m") as resize:
        out = disk / "out.h5"
        script = tmp_path / "fill.py"
        script.write_text(FILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=120, check=False,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert done.returncode == 0, done.stderr[-3000:]
        assert ("Traceback" not in done.stderr
                and "Exception ignored" not in done.stderr), done.stderr[-3000:]
        _, code, filename, kept = done.stdout.split()
        assert (int(code), filename) == (errno.ENOSPC, str(shards.tmp_path(out)))
        assert not (disk / "out.h5.tmp.spare").exists()
        resize("8m")
        with writer(out) as w:
            # the row being written may be whole once the close could flush it: kept, not lost
            assert len(w) in (int(kept), int(kept) + 1) and int(kept) > 0
            assert w.existing_ids() == {fake_sample(i).sample_id for i in range(len(w))}
            w.append(fake_sample(len(w)))
        assert shards.verify(out) == []


def test_no_room_for_the_ballast_is_enospc_before_any_sample(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    out = tmp_path / "a.h5"
    with pytest.raises(OSError) as e:
        writer(out)
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(shards.tmp_path(out)))
    assert not (tmp_path / "a.h5.tmp.spare").exists()
    monkeypatch.undo()
    with writer(out) as w:  # space back: the empty .tmp resumes
        w.append(fake_sample(0))
    assert shards.verify(out) == []
