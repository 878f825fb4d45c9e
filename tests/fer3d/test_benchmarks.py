"""The fer3d benchmark scripts at tiny sizes: bench_train, bench_loader and bench_campaign in a
subprocess as they are run by hand (stdout is one JSON object, the same as ``--out``, with
the documented keys, sane values and the machine it ran on), and gpu_check.py on the CPU,
the script a GPU session runs as-is."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fer3d.train.runtime import resolve_amp

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_check.py"
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny models on a shared 2-core machine (conftest)


def check_best_and_range(r: dict, key: str) -> None:
    """``key`` is the best round of ``key_range`` (slowest, fastest)."""
    low, high = r[f"{key}_range"]
    assert 0 < low <= high == r[key]


@pytest.mark.slow
def test_bench_train_smoke(benchmarks):
    r = benchmarks.run("bench_train.py", "--smoke", "--device", "cpu", env=ONE_THREAD)
    assert (r["image_size"], r["batch"], r["steps"], r["warmup"], r["rounds"]) == (32, 2, 1, 1, 2)
    assert r["ours_amp"] == resolve_amp("auto", torch.device("cpu")).name
    modes = ["naive_fp32", "ours"] + (["forced_bf16"] if r["ours_amp"] == "off" else [])
    assert sorted(k.removesuffix("_sps") for k in r if k.endswith("_sps")) == sorted(modes)
    for mode in modes:
        check_best_and_range(r, f"{mode}_sps")
    for mode in modes[1:]:  # over the same-run reference, per round and best over best
        assert r[f"{mode}_speedup"] == pytest.approx(r[f"{mode}_sps"] / r["naive_fp32_sps"],
                                                     rel=0.02)
        low, high = r[f"{mode}_speedup_range"]
        assert 0 < low <= high
    assert r["machine"]["device"] == "cpu"


@pytest.mark.slow
def test_bench_loader_smoke(benchmarks):
    r = benchmarks.run("bench_loader.py", "--smoke", env=ONE_THREAD)
    assert (r["image_size"], r["batch"], r["workers"], r["steps"], r["rounds"]) == (32, 4, 1, 1, 2)
    assert r["samples_per_epoch"] == 24
    check_best_and_range(r, "loader_sps")
    assert r["train_step_sps"] > 0 and r["single_process_item_ms"] > 0
    assert r["loader_vs_train_step"] == pytest.approx(r["loader_sps"] / r["train_step_sps"],
                                                      rel=0.02)
    low, high = r["loader_vs_train_step_range"]
    assert 0 < low <= high and r["target_vs_train_step"] == 10


@pytest.mark.slow
def test_bench_campaign_smoke(benchmarks):
    r = benchmarks.run("bench_campaign.py", "--size", "32", "--n", "24", "--batch", "4",
                       "--steps", "1", "--campaign-size", "32", "--variant", "texture_only",
                       "--device", "cpu", env=ONE_THREAD)
    assert (r["image_size"], r["batch"], r["variant"]) == (32, 4, "texture_only")
    for key in ("loader_sps", "device_data_sps", "gflop_per_sample", "train_sps",
                "achieved_gflops", "campaign_old_s", "campaign_new_s"):
        assert r[key] > 0, key
    picked, other = ((r["device_data_sps"], r["loader_sps"]) if r["auto_picks"] == "device"
                     else (r["loader_sps"], r["device_data_sps"]))
    assert r["data_speedup"] == pytest.approx(picked / other)
    assert r["campaign_speedup"] == pytest.approx(r["campaign_old_s"] / r["campaign_new_s"])
    assert r["achieved_gflops"] == pytest.approx(r["train_sps"] * r["gflop_per_sample"])


def test_gpu_check_smoke_on_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    result = gpu_check.main(["--device", "cpu", "--size", "32", "--batch-sizes", "2",
                             "--steps", "1", "--subjects", "2", "--cells", "2", "--epochs", "1",
                             "--batches", "6", "--variant", "texture_only",
                             "--peak-tflops", "1", "--out", str(tmp_path / "g.json")])
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{\n"):]) == result         # stdout is the JSON
    assert json.loads((tmp_path / "g.json").read_text()) == result
    for key in ("train_sps_b2", "mfu_b2", "gflop_per_sample", "device_data_sps",
                "campaign_wall_s", "seconds_per_cell", "projected_bu3dfe_hours",
                "cpu_capability"):
        assert key in result, key
    assert result["train_sps_b2"] > 0 and 0 < result["mfu_b2"] < 1
    assert result["campaign_wall_s"] > result["one_cell_wall_s"] * 0.5  # both runs happened
