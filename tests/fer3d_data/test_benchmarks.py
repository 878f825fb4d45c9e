"""Every fer3d_data benchmark script at tiny sizes (``--smoke``), in a subprocess as it is
run by hand: stdout is one JSON object, the same as ``--out``, with the documented keys,
sane values and the machine it ran on (benchmarks/_emit.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def load_emit():
    spec = importlib.util.spec_from_file_location("bench_emit", BENCHMARKS / "_emit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpuinfo_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), None)


def check_machine(m: dict, with_torch: bool) -> None:
    assert m["cpu_model"] == (cpuinfo_model() or m["cpu_model"]) and m["cpu_model"]
    assert 1 <= m["cpu_usable"] <= m["cpu_count"] == os.cpu_count()
    assert set(m["cpu_flags"]) <= set(load_emit().CPU_FLAGS)
    if with_torch:
        assert m["cpu_capability"] in ("DEFAULT", "NO AVX", "AVX2", "AVX512", "SVE256",
                                       "ZVECTOR", "VSX") and m["torch"]
    else:
        assert m["cpu_capability"].startswith("numpy ") or m["cpu_capability"] == "unknown"


def test_machine_without_torch_reports_numpy_and_cpuinfo(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    m = load_emit().machine()
    assert "torch" not in m
    check_machine(m, with_torch=False)
    assert m["numpy_simd"] and m["cpu_capability"] == f"numpy {m['numpy_simd'][-1]}"


def run_script(name: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert json.loads(out.read_text()) == result
    check_machine(result["machine"], importlib.util.find_spec("torch") is not None)
    return result


@pytest.mark.slow
def test_bench_gridfit_smoke(tmp_path):
    pytest.importorskip("pygridfit")
    r = run_script("bench_gridfit.py", "--smoke", tmp_path=tmp_path)
    assert (r["grid"], r["repeats"]) == ([32, 32], 2)
    assert 0 < r["ours_s"] and 0 < r["pygridfit_s"] and 0 < r["ours_disk_active_s"]
    assert r["speedup"] == pytest.approx(r["pygridfit_s"] / r["ours_s"], rel=0.05)
    assert 0 < r["speedup_range"][0] <= r["speedup_range"][1]
    assert r["max_rel_diff"] < 1e-9  # the same problem solved (docs/gridfit.md)
    assert 0 < r["disk_unknowns"] < 32 * 32


@pytest.mark.slow
def test_bench_readers_smoke(tmp_path):
    r = run_script("bench_readers.py", "--smoke", tmp_path=tmp_path)
    for name in ("wrl", "wrl_commented", "bnt"):
        assert r[f"{name}_mb"] > 0 and r[f"{name}_seconds"] > 0
        assert r[f"{name}_mb_per_s"] == pytest.approx(r[f"{name}_mb"] / r[f"{name}_seconds"],
                                                      rel=0.05)
        assert r[f"{name}_reference_mb_per_s"] > 0
        assert r[f"{name}_vs_reference"] == pytest.approx(
            r[f"{name}_mb_per_s"] / r[f"{name}_reference_mb_per_s"], rel=0.05)
    assert r["wrl_commented_mb"] > r["wrl_mb"] and r["bnt_grid"] == [230, 190]
    assert r["repeat"] == 1 and r["targets"] == {"wrl_mb_per_s": 30, "bnt_mb_per_s": 300}


@pytest.mark.slow
def test_bench_prep_smoke(tmp_path):
    r = run_script("bench_prep.py", "--smoke", tmp_path=tmp_path)
    assert r["parallel_scans"] == {"bu3dfe": 4, "bosphorus": 3}
    assert (r["size"], r["workers"], r["rounds"]) == (32, 2, 1)
    for name in ("bu3dfe", "bosphorus"):
        low, high = r[f"{name}_s_per_scan_range"]
        assert 0 < low <= r[f"{name}_s_per_scan"] <= high
        assert r[f"{name}_scans_per_s_all_cores"] > 0 and r["pool_startup_s"][name] > 0
    assert r["scans_per_s_all_cores"] > 0 and r["scans_per_s_one_core"] > 0
    # two scans past start-up: a steady state only when the pool start was not noisier
    steady = r["scans_per_s_all_cores_steady"]
    assert steady is None or (steady > 0 and r["parallel_speedup_steady"] > 0)
    assert 0 < r["peak_rss_mib_per_worker"] < 4096


@pytest.mark.slow
def test_bench_depth_storage_smoke(tmp_path):
    r = run_script("bench_depth_storage.py", "--smoke", tmp_path=tmp_path)
    assert r["size"] == 32
    for name, samples in (("bu3dfe", 4), ("bosphorus", 3)):
        d = r[name]
        assert d["samples"] == samples
        assert d["float32"]["max_error_mm_all"] == 0.0  # the reference against itself
        assert 0 < d["float16"]["max_error_mm_covered"] < 0.1  # half a float16 step at 100 mm
        assert d["float16"]["depth_kb_per_sample"] < d["float32"]["depth_kb_per_sample"]
        assert d["float16_saves_kb_per_sample"] > 0
