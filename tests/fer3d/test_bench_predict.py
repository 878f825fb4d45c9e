"""benchmarks/bench_predict.py --smoke: the script runs end to end and its JSON holds every
figure docs/performance.md quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "benchmarks"

pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_bench_predict_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "bench_predict.py", "--smoke", "--out", str(out)],
                          cwd=BENCH, capture_output=True, text=True, timeout=1800,
                          env={"PYTHONPATH": str(BENCH.parent)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout[proc.stdout.index("{\n"):]) == result
    for key in ("prep_s", "forward_torch_s", "forward_onnx_s", "forward_torch_s_b2",
                "end_to_end_torch_s", "end_to_end_onnx_s", "first_scan_s",
                "folder_scans_per_s_torch", "folder_scans_per_s_onnx",
                "shard_samples_per_s_torch", "shard_samples_per_s_onnx"):
        assert result[key] > 0, key
    assert result["scans"] == 4 and result["machine"]["cpu_model"]
    assert result["end_to_end_torch_s"] > result["prep_s"]  # the scan's prep is inside it
    assert set(result["targets"]) == {"end_to_end_s_per_scan_per_core", "end_to_end_met",
                                      "onnx_forward_not_slower_met"}
