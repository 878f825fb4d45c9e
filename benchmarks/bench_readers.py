"""Reader throughput on database-size synthetic files: load_wrl on a BU-3DFE-size F3D mesh
(~8,000 vertices, ~15,000 polygons), the same mesh with a ``#`` comment on every line (the
VRML scan must stay linear), and load_bnt on a Bosphorus-size (230x190) range grid.

Prints JSON: MB/s (best of ``--repeat`` runs), the file sizes and the CPU it ran on.
Targets: wrl >= 30 MB/s, bnt >= 300 MB/s. Usage: python benchmarks/bench_readers.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from fer3d_data.io import load_bnt, load_wrl
from fer3d_data.synth import (
    build_bosphorus_scan,
    build_bu3dfe_scan,
    write_bosphorus_scan,
    write_bu3dfe_scan,
)


def best_seconds(fn, path: Path, repeat: int) -> float:
    fn(path)  # warm the page cache and imports
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t)
    return min(times)


def cpu() -> dict:
    """The CPU the figures belong to: model name (Linux), cores and numpy's SIMD extensions."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    simd = (getattr(np._core._multiarray_umath, "__cpu_features__", {})
            if hasattr(np, "_core") else {})
    return {"model": model, "cores": os.cpu_count(),
            "simd": [name for name in ("SSE42", "AVX2", "AVX512F", "NEON", "ASIMD")
                     if simd.get(name)]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bu = build_bu3dfe_scan("F0001", "happiness", 4, texture_size=16, f2d_size=16)
        wrl = write_bu3dfe_scan(bu, tmp)[0]
        bs = build_bosphorus_scan("bs000", "happiness", texture_scale=0.1)
        bnt = write_bosphorus_scan(bs, tmp)[0]
        commented = Path(tmp) / "commented.wrl"
        commented.write_bytes(wrl.read_bytes().replace(b"\n", b"  # comment\n"))
        wrl_mb, bnt_mb = wrl.stat().st_size / 1e6, bnt.stat().st_size / 1e6
        t_wrl = best_seconds(load_wrl, wrl, args.repeat)
        t_commented = best_seconds(load_wrl, commented, args.repeat)
        commented_mb = commented.stat().st_size / 1e6
        t_bnt = best_seconds(load_bnt, bnt, args.repeat)
    result = {
        "wrl_mb_per_s": round(wrl_mb / t_wrl, 1),
        "bnt_mb_per_s": round(bnt_mb / t_bnt, 1),
        "wrl_commented_mb_per_s": round(commented_mb / t_commented, 1),
        "wrl_mb": round(wrl_mb, 3), "wrl_vertices": int(len(bu.vertices)),
        "wrl_polygons": int(len(bu.sizes)), "wrl_seconds": round(t_wrl, 4),
        "bnt_mb": round(bnt_mb, 3), "bnt_grid": list(bs.xyz.shape[:2]),
        "bnt_seconds": round(t_bnt, 5),
        "targets": {"wrl_mb_per_s": 30, "bnt_mb_per_s": 300},
        "cpu": cpu(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
