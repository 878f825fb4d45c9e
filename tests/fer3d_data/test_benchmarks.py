"""Every fer3d_data benchmark script at tiny sizes (``--smoke``), in a subprocess as it is
run by hand: stdout is one JSON object, the same as ``--out``, with the documented keys,
sane values and the machine it ran on (benchmarks/_emit.py)."""

from __future__ import annotations

import sys

import pytest


def test_machine_without_torch_reports_numpy_and_cpuinfo(monkeypatch, benchmarks):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    m = benchmarks.emit_module().machine()
    assert "torch" not in m
    benchmarks.check_machine(m, with_torch=False)
    assert m["numpy_simd"] and m["cpu_capability"] == f"numpy {m['numpy_simd'][-1]}"


@pytest.mark.slow
def test_bench_gridfit_smoke(benchmarks):
    pytest.importorskip("pygridfit")
    r = benchmarks.run("bench_gridfit.py", "--smoke")
    assert (r["grid"], r["repeats"]) == ([32, 32], 2)
    assert 0 < r["ours_s"] and 0 < r["pygridfit_s"] and 0 < r["ours_disk_active_s"]
    assert r["speedup"] == pytest.approx(r["pygridfit_s"] / r["ours_s"], rel=0.05)
    assert 0 < r["speedup_range"][0] <= r["speedup_range"][1]
    assert r["max_rel_diff"] < 1e-9  # the same problem solved (docs/gridfit.md)
    assert 0 < r["disk_unknowns"] < 32 * 32


@pytest.mark.slow
def test_bench_readers_smoke(benchmarks):
    r = benchmarks.run("bench_readers.py", "--smoke")
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
def test_bench_prep_smoke(benchmarks):
    r = benchmarks.run("bench_prep.py", "--smoke")
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
def test_bench_depth_storage_smoke(benchmarks):
    r = benchmarks.run("bench_depth_storage.py", "--smoke")
    assert r["size"] == 32
    for name, samples in (("bu3dfe", 4), ("bosphorus", 3)):
        d = r[name]
        assert d["samples"] == samples
        assert d["float32"]["max_error_mm_all"] == 0.0  # the reference against itself
        assert 0 < d["float16"]["max_error_mm_covered"] < 0.1  # half a float16 step at 100 mm
        assert d["float16"]["depth_kb_per_sample"] < d["float32"]["depth_kb_per_sample"]
        assert d["float16_saves_kb_per_sample"] > 0
