"""Fixtures shared by every test package."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def refuse_listing(monkeypatch):
    """``refuse_listing(folder)``: os.scandir raises PermissionError for ``folder`` as it
    does for a mode-000 folder when not root (tests often run as root, who may list any
    folder)."""
    real = os.scandir

    def refuse(folder: Path) -> None:
        def scandir(path="."):
            if Path(path) == folder:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)
        monkeypatch.setattr(os, "scandir", scandir)
    return refuse


class Benchmarks:
    """The benchmarks/ scripts as a test runs them (fixture ``benchmarks``)."""

    folder = Path(__file__).parents[1] / "benchmarks"

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path

    def emit_module(self):
        """benchmarks/_emit.py (not a package: loaded from its file)."""
        spec = importlib.util.spec_from_file_location("bench_emit", self.folder / "_emit.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def check_machine(self, m: dict, with_torch: bool) -> None:
        """``machine`` names this machine: its CPU model, cores, capability and flags."""
        try:
            lines = Path("/proc/cpuinfo").read_text().splitlines()
        except OSError:
            lines = []
        model = next((line.split(":", 1)[1].strip() for line in lines
                      if line.startswith("model name")), None)
        assert m["cpu_model"] == (model or m["cpu_model"]) and m["cpu_model"]
        assert 1 <= m["cpu_usable"] <= m["cpu_count"] == os.cpu_count()
        assert set(m["cpu_flags"]) <= set(self.emit_module().CPU_FLAGS)
        if with_torch:
            assert m["cpu_capability"] in ("DEFAULT", "NO AVX", "AVX2", "AVX512", "SVE256",
                                           "ZVECTOR", "VSX") and m["torch"]
        else:
            assert m["cpu_capability"].startswith("numpy ") or m["cpu_capability"] == "unknown"

    def run(self, name: str, *args: str, env: dict | None = None) -> dict:
        """Run benchmarks/``name`` in a subprocess as by hand; its JSON (stdout is that one
        object, the same as ``--out``), with ``machine`` checked."""
        out = self.tmp_path / "result.json"
        done = subprocess.run([sys.executable, str(self.folder / name), *args, "--out", str(out)],
                              capture_output=True, text=True, timeout=600, check=False,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                                   **(env or {})})
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)
        assert json.loads(out.read_text()) == result
        self.check_machine(result["machine"], importlib.util.find_spec("torch") is not None)
        return result


@pytest.fixture
def benchmarks(tmp_path) -> Benchmarks:
    return Benchmarks(tmp_path)


def pytest_collection_modifyitems(config, items):
    """The long fuzz suites (marker ``fuzz``) run only when asked for: ``-m fuzz``."""
    if "fuzz" in (config.getoption("markexpr") or ""):
        return
    long = [item for item in items if item.get_closest_marker("fuzz")]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if not item.get_closest_marker("fuzz")]
