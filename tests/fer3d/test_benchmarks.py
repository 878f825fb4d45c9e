"""The fer3d benchmark scripts at tiny sizes: bench_train, bench_loader and bench_campaign in a
subprocess as they are run by hand (stdout is one JSON object, the same as ``--out``, with
the documented keys, sane values and the machine it ran on), and gpu_check.py on the CPU,
the script a GPU session runs as-is."""

from __future__ import annotations

import importlib.util
import json
import os
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
    # lone and packed cells in turn; auto never picks the slower (the CPU: lone cells)
    assert r["lone_sps"] == r["train_sps"] and r["packed_sps"] > 0 and r["pack_k"] == 2
    for key in ("lone_sps", "packed_sps"):
        check_best_and_range(r, key)
    assert r["pack_auto"] == 1 and r["pack_speedup"] == 1.0
    assert r["packed_over_lone"] == pytest.approx(r["packed_sps"] / r["lone_sps"], rel=0.01)


# What the GPU machine lacks: gpu_check.py must run without these (and without fer3d_data's
# preprocessing chain, which needs them).
ABSENT_ON_GPU_MACHINE = ("open3d", "trimesh", "dlib", "ray", "pytorch_grad_cam")
BLOCKING_RUNNER = """
import runpy, sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {absent!r}:
            raise ImportError("not on the GPU machine: " + name)
sys.meta_path.insert(0, Absent())
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({script!r}, run_name="__main__")
"""
SMOKE = ["--device", "cpu", "--size", "32", "--packs", "1", "2", "--batch", "4", "--cells", "2",
         "--subjects", "2", "--epochs", "2", "--epoch-samples", "8", "--timed-epochs", "1",
         "--variant", "texture_only", "--no-compile", "--peak-tflops", "1"]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    return gpu_check


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu_with_only_the_gpu_machines_packages(tmp_path):
    import subprocess
    import sys

    code = BLOCKING_RUNNER.format(absent=ABSENT_ON_GPU_MACHINE, script=str(SCRIPT))
    done = subprocess.run([sys.executable, "-c", code, *SMOKE, "--out", str(tmp_path / "g.json")],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(SCRIPT.parents[1]),
                               "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)                             # stdout is the JSON
    assert json.loads((tmp_path / "g.json").read_text()) == result
    partial = [json.loads(line) for line in done.stderr.splitlines() if '"partial"' in line]
    assert [p["after"] for p in partial] == ["machine", "data", "step", "campaign",
                                             "projection"]
    assert result["errors"] == {} and result["skipped"] == []
    for k in ("1", "2"):
        assert result["step"][k]["sps"] > 0 and 0 < result["step"][k]["mfu"] < 1
    camp = result["campaign"]
    assert camp["cells"] == 2 and camp["wall_s"] >= camp["train_s"] > 0
    assert camp["cell_epoch_samples"] == 12                      # 24 samples, 2 folds
    assert result["projected_bu3dfe_hours"] > 0
    assert result["projected_reproduce_all_hours"] > result["projected_bu3dfe_hours"]
    assert result["machine"]["device"] == "cpu" and result["peak"]["sku"] == "given"


@pytest.mark.parametrize("name, sku, tflops", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.0), ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", "H100 NVL", 835.5), ("NVIDIA H200", "H200 SXM", 989.0),
    ("NVIDIA H200 NVL", "H200 NVL", 835.5), ("NVIDIA GH200 480GB", "GH200", 989.0),
    ("NVIDIA A100-SXM4-80GB", "A100", 312.0), ("NVIDIA A100 80GB PCIe", "A100", 312.0),
    ("NVIDIA L40S", "L40S", 362.0), ("NVIDIA L40", "L40", 181.0), ("NVIDIA A10", "A10", 125.0),
    ("NVIDIA GeForce RTX 3070", "RTX 3070", 40.6),
    ("NVIDIA GeForce RTX 3070 Ti", "RTX 3070 Ti", 43.5),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", 165.2)])
def test_gpu_peak_by_exact_name_and_sku(name, sku, tflops):
    peak = _gpu_check().peak_for(name)
    assert peak == {"device_name": name, "sku": sku, "bf16_dense_tflops": tflops}


def test_gpu_check_on_a_fake_cuda_device_named_cuda_0(monkeypatch, tmp_path, capsys):
    """The old crash: "cuda:0" refused by the campaign settings after the step timings, and
    no JSON at all. Now the settings take it, the machine stage names the SKU it matched,
    and a stage that fails is recorded while the JSON is still written after each stage."""
    gpu_check = _gpu_check()
    cfg = gpu_check.campaign_config("x.h5", str(tmp_path / "run"), gpu_check.parse([]),
                                    torch.device("cuda", 0))
    assert cfg.device == "cuda:0" and cfg.pack is None and cfg.cells == "0-19"
    props = type("Props", (), {"total_memory": 150_000_000_000, "multi_processor_count": 132})
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 PCIe")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    run = gpu_check.Run(str(tmp_path / "g.json"), 100.0)
    run.stage("machine", gpu_check.machine_stage, gpu_check.parse([]), torch.device("cuda", 0))

    def lost(*a):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    run.stage("step", lost)
    written = json.loads((tmp_path / "g.json").read_text())
    assert written["partial"] and written["gpu"] == "NVIDIA H100 PCIe"
    assert written["peak"]["sku"] == "H100 PCIe" and "peak: {'device_name'" in \
        capsys.readouterr().err
    assert written["errors"] == {"step": "RuntimeError: CUDA error: an illegal memory access "
                                         "was encountered"}


def test_gpu_check_configures_the_device_before_any_stage(monkeypatch):
    """cuDNN autotuning and TF32 are on (and the GPU current) before anything is timed."""
    gpu_check, seen = _gpu_check(), []
    monkeypatch.setattr(gpu_check, "configure", lambda device: seen.append(("configure",
                                                                              str(device))))
    monkeypatch.setattr(gpu_check.Run, "stage", lambda self, name, *a: seen.append(name))
    monkeypatch.setattr(gpu_check, "emit", lambda result, out, device: result)
    gpu_check.main(["--device", "cpu", "--no-compile"])
    assert seen == [("configure", "cpu"), "machine", "data", "step", "campaign", "projection"]


@pytest.mark.slow  # FLOPs of 13 variants: ~7 s
def test_gpu_check_projects_from_the_samples_each_cell_trained():
    """The mini-campaign's steady seconds per trained sample, scaled to the paper's 648
    training samples x 30 epochs x 1,000 cells, whatever fold count the mini-campaign had."""
    gpu_check = _gpu_check()
    args = gpu_check.parse(["--size", "32"])
    result = {"gflop_per_sample": gpu_check.gflop_per_sample("afnet_m", 32),
              "campaign": {"cell_epoch_s": 2.0, "cell_epoch_samples": 324,
                           "overhead_per_cell_s": 0.5}}
    out = gpu_check.projection(args, torch.device("cpu"), result)
    assert out["projected_bu3dfe_hours"] == round((2.0 * 30 * 648 / 324 + 0.5) * 1000 / 3600, 2)
    assert 9 < out["reproduce_all_afnet_units"] < 11           # 13 variants, 5 single-branch
    assert out["projected_reproduce_all_hours"] == pytest.approx(
        out["projected_bu3dfe_hours"] * out["reproduce_all_afnet_units"] * 1.5, rel=0.01)
