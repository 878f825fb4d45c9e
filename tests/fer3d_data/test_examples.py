"""examples/*.py run as a user would: subprocesses on a fabricated shard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import S, write_shard  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    return write_shard(tmp_path_factory.mktemp("ex") / "shard.h5", n=14,
                       errors=[("F9/x.wrl", "read", "bad")])


def run(script: str, path: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_read_shard_h5py(shard):
    out = run("read_shard_h5py.py", shard)
    first = "['F0000_AN04WH', 'F0000_DI04WH', 'F0000_FE04WH']"
    assert f"14 samples of 2 subjects; first: {first}" in out
    assert f"  texture      {str((S, S, 3)):14s} uint8" in out
    assert "  mask56       (56, 56)       float16" in out
    assert "  landmarks    (83, 2)        float32" in out
    assert "  anger      2" in out and "  neutral    2" in out
    assert "failed scans: 1" in out


def test_torch_minimal(shard):
    pytest.importorskip("torch")
    out = run("torch_minimal.py", shard)
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and lines[1].startswith("epoch 2: loss ")
    assert lines[0].endswith("(12 samples)")  # 14 minus the 2 neutral


def test_examples_refuse_missing_argument():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "read_shard_h5py.py")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Usage:" in proc.stderr


@pytest.mark.parametrize("script", ["read_shard_h5py.py", "torch_minimal.py"])
def test_examples_refuse_virtual_shard_missing_a_part(tmp_path, script):
    if script == "torch_minimal.py":
        pytest.importorskip("torch")
    from fer3d_data import shards

    a = write_shard(tmp_path / "a.h5", n=3)
    b = write_shard(tmp_path / "b.h5", n=3, start=3)
    merged = shards.merge(tmp_path / "m.h5", [a, b], virtual=True)
    assert "6 samples of 1 subjects" in run("read_shard_h5py.py", merged)  # parts present: fine
    b.unlink()
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), str(merged)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "merged shard whose part b.h5 is missing" in proc.stderr
    assert "Traceback" not in proc.stderr and "epoch" not in proc.stdout
