"""fer3d_data never imports torch: every module of the package, imported in a fresh process."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import fer3d_data


def test_no_module_of_fer3d_data_imports_torch():
    modules = sorted(m.name for m in pkgutil.walk_packages(fer3d_data.__path__, "fer3d_data.")
                     if not m.name.rsplit(".", 1)[-1].startswith("__"))
    assert {"fer3d_data.shards", "fer3d_data.prep.runner", "fer3d_data.cli",
            "fer3d_data.preview"} <= set(modules)
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "leaked = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not leaked, leaked\n"
            "print('imported', len(sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("imported ")
