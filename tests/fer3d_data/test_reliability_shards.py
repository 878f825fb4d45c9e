"""Issue 15: no shard is lost. ``merge`` never opens another run's ``OUT.tmp`` and takes
only finished parts; a rerun of ``fer3d-prep`` never moves a finished shard, whether a
reader holds it or the rerun fails. The running writers and readers are real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from fer3d_data import cli, shards
from fer3d_data.errors import Fer3dDataError
from fer3d_data.prep import PrepConfig, run_prep, runner
from fer3d_data.shards import digest
from fer3d_data.shards.space import SpaceGuard

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import fake_process_scan, records  # noqa: E402
from test_shards import S, fake_sample, write_interrupted, write_shard, writer  # noqa: E402

HERE = str(Path(__file__).parent)


class Child:
    """A Python process running ``code``: it prints lines, and waits for ``go()`` where the
    code reads a line from stdin."""

    def __init__(self, code: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, *sys.path])}
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def expect(self, line: str) -> None:
        got = self.proc.stdout.readline().strip()
        assert got == line, (got, self.proc.poll())

    def go(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> str:
        out, _ = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, out
        return out


def running_writer(out: Path) -> Child:
    """A writer of ``out`` (fer3d-prep's ShardWriter) holding it mid-run: 3 samples written
    and flushed, 3 more after ``go()``, then complete."""
    child = Child(f"""
        import sys
        from test_shards import fake_sample, writer
        w = writer({str(out)!r})
        for i in range(3):
            w.append(fake_sample(i))
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(3, 6):
            w.append(fake_sample(i))
        w.close()
        print("done", flush=True)
    """)
    child.expect("ready")
    return child


def parts(tmp_path: Path) -> list[Path]:
    return [write_shard(tmp_path / "p0.h5", n=4, start=0),
            write_shard(tmp_path / "p1.h5", n=4, start=4)]


def merge_cli(out: Path, *args) -> object:
    return CliRunner().invoke(cli.fer3d_prep, ["merge", str(out), *map(str, args)])


def ids(path: Path) -> list[str]:
    with shards.open_shard(path) as shard:
        return shard.index["sample_id"].tolist()


# ---------------------------------------------------------------- merge and a running prep


@pytest.mark.parametrize("overwrite", [False, True])
def test_merge_onto_the_output_of_a_running_prep_loses_nothing(tmp_path, overwrite):
    """merge used to open OUT.tmp for writing: HDF5 emptied it before its lock check, and the
    prep then 'succeeded' with a corrupt OUT."""
    out = tmp_path / "out.h5"
    child = running_writer(out)
    try:
        r = merge_cli(out, *parts(tmp_path), *(["--overwrite"] if overwrite else []))
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert f"{shards.tmp_path(out)}: exists: a fer3d-prep run is writing" in r.output
        assert len(r.output.strip().splitlines()) == 1
    finally:
        child.go()
    assert child.finish().strip() == "done"
    assert shards.verify(out) == []
    assert ids(out) == [fake_sample(i).sample_id for i in range(6)]


def test_merge_onto_an_interrupted_prep_keeps_its_progress(tmp_path):
    out = tmp_path / "out.h5"
    before = write_interrupted(out).read_bytes()
    with pytest.raises(Fer3dDataError, match="or one was interrupted"):
        shards.merge(out, parts(tmp_path))
    assert shards.tmp_path(out).read_bytes() == before and not out.exists()
    with writer(out) as w:  # the rerun resumes every finished sample
        assert len(w) == 3


def test_a_failed_merge_leaves_no_tmp_behind(tmp_path, monkeypatch):
    out, both = tmp_path / "out.h5", parts(tmp_path)

    def failing(f):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(digest, "seal", failing)
    with pytest.raises(OSError):
        shards.merge(out, both)
    assert not out.exists() and not shards.tmp_path(out).exists()
    monkeypatch.undo()
    shards.merge(out, both)  # not refused by a .tmp of its own
    assert len(ids(out)) == 8


# ---------------------------------------------------------------- merge takes finished parts


def test_merge_refuses_an_unfinished_runs_tmp_as_a_part(tmp_path):
    """Issue 15: an interrupted run's .tmp was merged and verified OK."""
    tmp = write_interrupted(tmp_path / "p1.h5", n=1, start=4)
    r = merge_cli(tmp_path / "m.h5", write_shard(tmp_path / "p0.h5", n=4), tmp)
    assert r.exit_code == 2
    assert f"{tmp}: an unfinished run's temporary file, not a shard" in r.output
    renamed = tmp.rename(tmp_path / "renamed.h5")  # the name is not the only mark
    r = merge_cli(tmp_path / "m.h5", tmp_path / "p0.h5", renamed)
    assert r.exit_code == 2 and "not a finished, intact shard: no stored digests" in r.output
    assert not (tmp_path / "m.h5").exists()


def test_merge_refuses_a_part_changed_since_it_was_written(tmp_path):
    """merge seals its output: a changed part would otherwise come out with valid digests."""
    p0, p1 = parts(tmp_path)
    with h5py.File(p1, "r+") as f:
        f.attrs["dataset"] = "bosphorus"
    with pytest.raises(Fer3dDataError, match="p1.h5: not a finished, intact shard: attributes: "
                                             "SHA-256 digest differs"):
        shards.merge(tmp_path / "m.h5", [p0, p1])


# ---------------------------------------------------------------- prep reruns


def reader(path: Path) -> Child:
    """A process holding ``path`` open for reading; after ``go()`` it prints its ids."""
    child = Child(f"""
        import sys
        from fer3d_data import shards
        with shards.open_shard({str(path)!r}) as shard:
            print("ready", flush=True)
            sys.stdin.readline()
            print(",".join(shard.index["sample_id"].tolist()), flush=True)
    """)
    child.expect("ready")
    return child


def finished(tmp_path: Path, monkeypatch, n: int = 3) -> tuple[Path, list]:
    """A finished shard of ``n`` records written by run_prep (stand-in steps) and the
    records of 5 scans, the first ``n`` of them in the shard."""
    recs = records(5, tmp_path / "raw")
    monkeypatch.setattr(runner, "process_scan", fake_process_scan({}))
    out = tmp_path / "out.h5"
    run_prep(recs[:n], out, PrepConfig(image_size=S), workers=0, progress=False)
    return out, recs


def test_a_rerun_of_a_finished_shard_touches_nothing(tmp_path, monkeypatch):
    out, recs = finished(tmp_path, monkeypatch)
    before = os.stat(out)
    summary = run_prep(recs[:3], out, PrepConfig(image_size=S), workers=0, progress=False)
    assert summary.untouched and (summary.written, summary.skipped) == (0, 3)
    assert "already complete: left as it was" in summary.line()
    after = os.stat(out)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not shards.tmp_path(out).exists()


def test_a_rerun_extends_a_finished_shard_a_reader_holds(tmp_path, monkeypatch):
    """The rerun used to rename OUT to OUT.tmp first: with a reader holding it, the rerun
    failed on HDF5's lock and OUT was gone (a training run reading it died)."""
    out, recs = finished(tmp_path, monkeypatch)
    child = reader(out)
    try:
        summary = run_prep(recs, out, PrepConfig(image_size=S), workers=0, progress=False)
    finally:
        child.go()
    assert (summary.written, summary.skipped) == (2, 3)
    assert child.finish().strip() == ",".join(r.scan_id for r in recs[:3])  # its own copy
    assert ids(out) == [r.scan_id for r in recs] and shards.verify(out) == []
    assert not shards.tmp_path(out).exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_rerun_failing_midway_leaves_the_finished_shard_whole(tmp_path, monkeypatch,
                                                               overwrite):
    out, recs = finished(tmp_path, monkeypatch)
    before = out.read_bytes()
    good = fake_process_scan({})

    def stopped_at_the_fifth(record, cfg):
        if record.scan_id == recs[4].scan_id:
            raise KeyboardInterrupt  # or a kill, a full disk: the run stops here
        return good(record, cfg)
    monkeypatch.setattr(runner, "process_scan", stopped_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        run_prep(recs, out, PrepConfig(image_size=S), workers=0, progress=False,
                 overwrite=overwrite)
    assert out.read_bytes() == before and shards.verify(out) == []
    # the progress is in OUT.tmp; the next run resumes it and only then replaces OUT
    monkeypatch.setattr(runner, "process_scan", good)
    summary = run_prep(recs, out, PrepConfig(image_size=S), workers=0, progress=False)
    assert summary.written == 1 and ids(out) == [r.scan_id for r in recs]
    assert not shards.tmp_path(out).exists()


def test_a_rerun_without_room_for_the_copy_stops_before_touching_anything(tmp_path,
                                                                         monkeypatch):
    out, recs = finished(tmp_path, monkeypatch)
    monkeypatch.setattr(SpaceGuard, "free_bytes", lambda self: 1000)
    with pytest.raises(OSError) as e:
        run_prep(recs, out, PrepConfig(image_size=S), workers=0, progress=False)
    assert e.value.filename == str(shards.tmp_path(out))
    assert ids(out) == [r.scan_id for r in recs[:3]] and not shards.tmp_path(out).exists()
