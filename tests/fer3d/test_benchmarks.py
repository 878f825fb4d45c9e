"""benchmarks/gpu_check.py as a smoke test on the CPU: the script a GPU session runs as-is."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_check.py"


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
